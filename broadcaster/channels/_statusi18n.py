"""The status site's message catalogue: every fixed word the pages, feeds and badges show, per
language (``status_locales/<language>.json``), chosen by the status channel's ``language``.

Why a catalogue of keys rather than English text in the templates: a page in another language
must not leak English, and a test can prove it — the templates hold only keys (``page.past``)
and the catalogue the words. Each catalogue has every key English has (a test checks it, with
the same ``{placeholders}``); a word missing at run time still falls back to English rather
than breaking a build.

Plurals are ``{"one": …, "other": …}`` (enough for the languages shipped; a language needing
more forms adds its rule to :func:`plural_form`). Times are formatted here too, with the
catalogue's month names and patterns, so ``30 Nov 2026, 04:30 UTC`` reads ``30. Nov. 2026,
04:30 UTC`` on a German page — the same bytes on every build host, whatever its locale.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

LOCALES = Path(__file__).with_name("status_locales")
DEFAULT = "en"
MINUTE, HOUR, DAY = 60, 3600, 86400


def languages() -> tuple[str, ...]:
    """The languages shipped (each a ``status_locales/<code>.json``)."""
    return tuple(sorted(p.stem for p in LOCALES.glob("*.json")))


def plural_form(language: str, n: int) -> str:
    """The CLDR plural category of ``n`` (integers) for the languages shipped."""
    return "one" if n == 1 else "other"


@dataclass(frozen=True)
class Catalogue:
    language: str
    messages: Mapping[str, Any]
    fallback: Mapping[str, Any]

    def raw(self, key: str) -> Any:
        if key in self.messages:
            return self.messages[key]
        if key in self.fallback:
            return self.fallback[key]
        raise KeyError(f"status site: no message {key!r}")

    def has(self, key: str) -> bool:
        return key in self.messages or key in self.fallback

    def text(self, key: str, **values: Any) -> str:
        """Plain text (feeds, badges, titles): the message with its ``{placeholders}`` filled."""
        return str(self.raw(key)).format(**values)

    def __call__(self, key: str, **values: Any) -> Markup:
        """For templates: the message escaped, its placeholders filled with escaped values
        (a value that is already Markup — a ``<time>`` element — is kept as it is)."""
        return Markup(escape(str(self.raw(key)))).format(**values)

    def plural(self, key: str, n: int) -> str:
        forms = self.raw(key)
        return str(forms.get(plural_form(self.language, n)) or forms["other"]).format(n=n)

    # -- times

    def month(self, ts: float) -> str:
        d = datetime.fromtimestamp(ts, UTC)
        return self.text("time.month_year", month=self.raw("time.months")[d.month - 1], year=d.year)

    def day(self, ts: float) -> str:
        d = datetime.fromtimestamp(ts, UTC)
        return self.text("time.date", day=d.day, month=self.raw("time.months_short")[d.month - 1], year=d.year)

    def absolute(self, ts: float) -> str:
        d = datetime.fromtimestamp(ts, UTC)
        return self.text("time.datetime", day=d.day, month=self.raw("time.months_short")[d.month - 1], year=d.year,
                         time=f"{d:%H:%M}")

    def span(self, seconds: float) -> str:
        """``12 minutes``, ``3 hours``, ``2 days``: rounded down like people speak."""
        if seconds < HOUR:
            return self.plural("time.minutes", int(seconds // MINUTE))
        if seconds < DAY:
            return self.plural("time.hours", int(seconds // HOUR))
        return self.plural("time.days", int(seconds // DAY))

    def relative(self, ts: float, now: float) -> str:
        delta = now - ts
        if abs(delta) < MINUTE:
            return self.text("time.just_now")
        return self.text("time.in" if delta < 0 else "time.ago", span=self.span(abs(delta)))

    def duration(self, seconds: float) -> str:
        """``2 h 5 min``, ``45 min``, ``3 d 4 h`` (in the catalogue's words)."""
        s = int(seconds)
        if s < MINUTE:
            return self.text("time.under_a_minute")
        d, rest = divmod(s, DAY)
        h, rest = divmod(rest, HOUR)
        m = rest // MINUTE
        if d:
            return self.text("time.d_h", d=d, h=h) if h else self.text("time.d", d=d)
        if h:
            return self.text("time.h_m", h=h, m=m) if m else self.text("time.h", h=h)
        return self.text("time.m", m=m)

    def script_words(self) -> dict[str, Any]:
        """What ``status.js`` needs to speak the page's language."""
        return {key.removeprefix("time."): self.raw(key) for key in (
            "time.just_now", "time.ago", "time.in", "time.minutes", "time.hours", "time.days", "time.your_time")}


def _load(language: str) -> dict[str, Any]:
    return json.loads((LOCALES / f"{language}.json").read_text(encoding="utf-8"))


@functools.cache
def catalogue(language: str = DEFAULT) -> Catalogue:
    """The catalogue of ``language`` (a shipped one: the channel's settings check it)."""
    if language not in languages():
        raise ValueError(f"no status site catalogue for {language!r} (one of {', '.join(languages())})")
    return Catalogue(language, _load(language), _load(DEFAULT) if language != DEFAULT else {})


ENGLISH = catalogue(DEFAULT)
