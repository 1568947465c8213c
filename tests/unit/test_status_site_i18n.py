"""The status site's fixed words come from a message catalogue (issue 16 item 9): every language
has every message English has, with the same placeholders; the templates hold no English of
their own; a site built in German shows no English word from the catalogue — banner, states,
headings, times, bars, feeds, badges and the script."""

from __future__ import annotations

import html.parser
import json
import re
import string
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from broadcaster.channels import _statusi18n as i18n
from broadcaster.channels._statuspages import STYLE, TEMPLATES
from broadcaster.channels.statuspage import Statuspage, StatuspageSettings
from broadcaster.config import ConfigError, load_settings
from broadcaster.models import Announcement, Message, Update, Window

T0 = 1_796_000_000.0  # 30 Nov 2026, 00:53 UTC
ENGLISH = i18n.catalogue("en")


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("language", [lang for lang in i18n.languages() if lang != "en"])
def test_every_catalogue_has_every_message_with_the_same_placeholders(language):
    other = json.loads((i18n.LOCALES / f"{language}.json").read_text(encoding="utf-8"))
    assert set(other) == set(ENGLISH.messages), "missing or extra messages"
    for key, value in ENGLISH.messages.items():
        theirs = other[key]
        assert type(theirs) is type(value), key
        if isinstance(value, str):
            assert fields(theirs) == fields(value), key
        elif isinstance(value, dict):
            assert set(theirs) >= {"one", "other"} and all(fields(f) == {"n"} for f in theirs.values()), key
        else:
            assert len(theirs) == len(value) == 12, key


class Words(html.parser.HTMLParser):
    """The words a reader sees or hears: text, and the attributes read out or shown."""

    SPOKEN = frozenset({"title", "aria-label", "alt", "placeholder"})

    def __init__(self):
        super().__init__()
        self.words: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self._skip += 1
        self.words += [v for k, v in attrs if k in self.SPOKEN and v]

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.words.append(data)


def test_the_templates_hold_no_words_of_their_own():
    for name, source in TEMPLATES.items():
        bare = source.replace(STYLE, "")
        bare = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", bare, flags=re.S)
        parser = Words()
        parser.feed(bare)
        letters = [w.strip() for w in parser.words if re.search(r"[^\W\d_]", w)]
        assert letters == [], f"{name}: {letters}"


def german_site(tmp_path: Path) -> Path:
    now = [T0 - 7200]
    settings = StatuspageSettings.model_validate({
        "kind": "statuspage", "output_dir": str(tmp_path / "site"), "title": "Beispiel", "language": "de",
        "components": ["API", "Website", "Mail"], "site_url": "https://status.example.net",
        "subscribe_url": "https://api.example.net/api/v1/subscribe/form",
        "subscribe_webhook_url": "https://api.example.net/api/v1/subscribe/endpoint/form"})
    ch = Statuspage("status", settings, clock=lambda: now[0])
    a = Announcement(id="a1", kind="incident", title="Langsame Anmeldung", body="Wir prüfen es.", severity="major",
                     components=("API", "Website"), next_update_at=T0 + 1800)
    first = ch.send(ch.render(Message(announcement=a)), key="k1")
    now[0] = T0 - 3600
    ch.send(ch.render(Message(announcement=a, update=Update(id="u1", announcement_id="a1", status="resolved",
                                                            body="Behoben."), thread=(first,))), key="k1-u1")
    now[0] = T0
    b = Announcement(id="a2", kind="incident", title="Mail verzögert", severity="minor", components=("Mail",),
                     next_update_at=T0 + 1800)
    ch.send(ch.render(Message(announcement=b)), key="k2")
    m = Announcement(id="m", kind="maintenance", title="Datenbank", components=("Mail",),
                     window=Window(T0 + 86400, T0 + 90000))
    ch.send(ch.render(Message(announcement=m)), key="m")
    ch.send(ch.render(Message(announcement=Announcement(id="n", kind="notice", title="Neue Adresse"))), key="n")
    return tmp_path / "site"


def test_a_german_site_speaks_german_only(tmp_path):
    root = german_site(tmp_path)
    pages = {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
             for p in [*root.glob("*.html"), *root.glob("incidents/*.html")]}
    index = pages["index.html"]
    assert '<html lang="de">' in index
    for expected in ("Geringfügige Störung", "Eingeschränkte Leistung", "Vergangene Vorfälle", "Geplante Wartungen",
                     "Benachrichtigungen", "Per Webhook", "Nächste Meldung bis", "30. Nov. 2026, 00:53 UTC",
                     "(vor 1 Stunde)", "(in 1 Tag)", "(in 30 Minuten)", "Tage mit Vorfällen (1)",
                     "99,95 % verfügbar", "Wird untersucht", "title=\"2. Sept. 2026: Keine Vorfälle\""):
        assert expected in index, expected
    assert "November 2026" in pages["history.html"] and "Dauer: 1 Std." in pages["history.html"]
    english = {v for v in ENGLISH.messages.values() if isinstance(v, str) and len(v) > 4 and not fields(v)}
    english |= {f.format(n=2) for v in ENGLISH.messages.values() if isinstance(v, dict) for f in v.values()}
    english |= {p.split("{")[0].strip() for v in ENGLISH.messages.values() if isinstance(v, str) and fields(v)
                for p in [v] if len(p.split("{")[0].strip()) > 4}
    german = {v for v in i18n.catalogue("de").messages.values() if isinstance(v, str)}
    english -= german  # a word both languages share ("JSON", "Badge") is not a leak
    for name, page in pages.items():
        words = Words()
        words.feed(page.split("<main>")[-1])
        text = " ".join(words.words)
        leaked = sorted(e for e in english if e in text)
        assert leaked == [], f"{name}: {leaked}"
    badge = ET.fromstring((root / "badge.svg").read_bytes())
    assert [t.text for t in badge.iter("{http://www.w3.org/2000/svg}text")] == ["Status", "Geringfügige Störung"]
    feed = (root / "feed.atom").read_text(encoding="utf-8")
    assert "[Wird untersucht] Mail verzögert" in feed and "[Investigating]" not in feed
    script = (root / "status.js").read_text(encoding="utf-8")
    assert '"Ihre Zeit:"' in script and "your time" not in script
    summary = json.loads((root / "api/v2/status.json").read_text())
    assert summary["status"]["description"] == "Minor Service Outage", "the JSON stays in Statuspage's words"


def test_an_unknown_language_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_settings({"channels": {"s": {"kind": "statuspage", "output_dir": str(tmp_path), "language": "xx"}}},
                      env={})
    assert "channels.s.language" in str(exc.value) and "one of de, en" in str(exc.value)
