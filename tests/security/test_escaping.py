"""HTML and script in every text field are rendered inert everywhere text becomes HTML: the
status page (index, incident page, Atom feed, summary JSON), the web page, and e-mail HTML.

Payloads: a script element, an attribute break-out with an event handler, and ``javascript:``
URLs (as a Markdown link target and inside an http URL). "Inert" is checked by parsing the output:
no element carries an ``on*`` attribute, no ``href``/``src`` starts with ``javascript:``, no
script element holds user text, and the payload strings never appear unescaped.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html import unescape
from html.parser import HTMLParser

import pytest

from broadcaster import service
from broadcaster.models import Announcement, Message, Update

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
JS_LINK = "[click me](javascript:alert(1))"
JS_URL = "javascript:alert(1)"
EVIL = f"{SCRIPT} {BREAKOUT} {JS_LINK} {JS_URL}"
RAW = (SCRIPT, "<img src=x onerror", "onerror=alert(1)>")


class Inspector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            if name.lower() in ("href", "src", "action", "formaction") and value and \
                    value.strip().lower().replace("\t", "").replace("\n", "").startswith(("javascript:", "vbscript:")):
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag == "img" and dict(attrs).get("src") == "x":
            self.problems.append("<img src=x> from user text")
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and "alert(1)" in data:
            self.problems.append("user text inside a script element")


def assert_inert(html: str, where: str) -> None:
    for raw in RAW:
        assert raw not in html, f"{where}: unescaped {raw!r}"
    p = Inspector()
    p.feed(html)
    p.close()
    assert not p.problems, f"{where}: {p.problems}"


# ---------------------------------------------------------------- status page


@pytest.fixture
def status_site(tmp_path):
    from broadcaster.channels.statuspage import Statuspage, StatuspageSettings

    settings = StatuspageSettings.model_validate({
        "kind": "statuspage", "output_dir": str(tmp_path / "site"), "title": f"Status {EVIL}",
        "components": ["API", f"Web {EVIL}"], "site_url": "https://status.example.com"})
    times = iter(range(1_700_000_000, 1_800_000_000, 60))
    ch = Statuspage("status", settings, clock=lambda: float(next(times)))
    a = Announcement(id="a1", kind="incident", title=f"Login {EVIL} down", body=f"We look into it {EVIL}",
                     severity="major", components=(f"Web {EVIL}",), url=f'https://example.com/?q={BREAKOUT}',
                     tags=(EVIL,))
    first = ch.send(ch.render(Message(announcement=a)), key="k1")
    upd = Update(id="u1", announcement_id="a1", status="identified", body=f"Cause {EVIL}", title=f"Upd {EVIL}")
    ch.send(ch.render(Message(announcement=a, update=upd, thread=(first,))), key="k1-u1")
    m = Announcement(id="a2", kind="maintenance", title=f"Window {EVIL}", body=f"Planned {EVIL}",
                     url="https://example.com/ok")
    ch.send(ch.render(Message(announcement=m)), key="k2")
    root = tmp_path / "site"
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_status_page_html_is_inert(status_site):
    pages = {k: v for k, v in status_site.items() if k.endswith(".html")}
    assert "index.html" in pages and any(k.startswith("incidents/") for k in pages)
    for name, html in pages.items():
        assert_inert(html, name)
    incident = next(v for k, v in pages.items() if k.startswith("incidents/") and "Login" in v)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in incident  # shown as text, not dropped


def test_status_page_atom_feed_is_inert(status_site):
    feed = ET.fromstring(status_site["feed.atom"].encode())
    ns = "{http://www.w3.org/2005/Atom}"
    entries = feed.findall(f"{ns}entry")
    assert entries
    for entry in entries:
        for el in entry.iter():
            assert el.tag.startswith(ns), f"foreign element {el.tag} in the feed"
        content = entry.find(f"{ns}content")
        # feed readers render type="html" content as HTML: what they get must be inert too
        assert_inert(content.text if content.get("type") == "html" else unescape(content.text or ""), "feed entry")
        for link in entry.findall(f"{ns}link"):
            assert link.get("href", "").startswith("https://"), link.get("href")


def test_status_page_json_is_escaped_and_round_trips(status_site):
    for name in ("api/v2/summary.json", "api/v2/status.json", "api/v2/components.json"):
        if name not in status_site:
            continue
        text = status_site[name]
        assert "<" not in text and ">" not in text, f"{name}: raw angle brackets (a JSON page sniffed as HTML)"
        json.loads(text)
    summary = json.loads(status_site["api/v2/summary.json"])
    names = [i["name"] for i in summary["incidents"]]
    assert f"Login {EVIL} down" in names  # readers get the text back intact


# ---------------------------------------------------------------- web page


#: a component name carrying the attack, within the 100 characters a name may have
COMPONENT = f"C {EVIL}"[:100]


@pytest.fixture
def web_pages(tmp_path):
    from fastapi.testclient import TestClient

    from broadcaster.asgi import create_app
    from broadcaster.models import DeliveryState as S
    from tests.cli.live import make_settings, memory_runtime
    from tests.web.conftest import field

    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db",
                             {"hook-a": {"kind": "webhook", "url": "http://127.0.0.1:9/a"},
                              # declares the component named below (only configured ones are accepted)
                              "site": {"kind": "statuspage", "output_dir": str(tmp_path / "site"),
                                       "components": [COMPONENT]}},
                             routes={"incident": ["hook-a"]})
    rt = memory_runtime(settings)
    app = create_app(settings, rt)
    raw, _ = app.state.tokens.create("ops", admin=True, actor="test")
    who = service.Principal("ops", admin=True)
    ann = service.submit(rt, {"kind": "incident", "title": f"T {EVIL}", "body": f"B {EVIL}", "components": [COMPONENT],
                              "tags": [f"tag {EVIL}"[:100]], "url": f"https://example.com/?q={BREAKOUT}",
                              "variants": {"hook-a": {"title": f"VT {EVIL}", "body": f"VB {EVIL}"}}}, principal=who)
    (d,) = rt.ledger.deliveries_of(ann.id)
    rt.ledger.force(d.id, S.FAILED, f"provider said {EVIL}", actor="test", from_states=[S.PENDING])
    service.add_update(rt, ann.id, {"status": "identified", "body": f"U {EVIL}", "title": f"UT {EVIL}"}, principal=who)
    c = TestClient(app, base_url="http://testserver")
    pre = field(c.get("/signin").text, "csrf")
    assert c.post("/signin", data={"csrf": pre, "token": raw}, follow_redirects=False).status_code == 303
    pages = {"list": c.get("/").text, "announcement": c.get(f"/announcements/{ann.id}").text,
             "channels": c.get("/channels").text, "compose": c.get("/compose").text}
    csrf = field(pages["compose"], "csrf")
    r = c.post("/ui/preview", json={"kind": "incident", "title": f"P {EVIL}", "body": f"P {EVIL}"},
               headers={"X-CSRF-Token": csrf})
    yield pages, r
    rt.ledger.close()


def test_web_pages_are_inert(web_pages):
    pages, _ = web_pages
    for name, html in pages.items():
        assert_inert(html, name)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["announcement"]


def test_web_live_preview_is_json_not_html(web_pages):
    _, r = web_pages
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")


# ---------------------------------------------------------------- e-mail HTML


def test_email_html_is_inert_and_text_is_plain():
    from tests.unit.test_email import channel, parsed

    ch, fake = channel(recipients=["a@x.test"])
    a = Announcement(id="a1", kind="incident", title=f"Login {EVIL}", body=f"We are on it {EVIL}",
                     url=f"https://status.example.com/a1?q={BREAKOUT}")
    first = ch.send(ch.render(Message(announcement=a)), key="k1")
    upd = Update(id="u1", announcement_id="a1", status="identified", body=f"Found {EVIL}", title=f"UT {EVIL}")
    ch.send(ch.render(Message(announcement=a, update=upd, thread=(first,))), key="k1-u1")
    assert len(fake.accepted) == 2
    for _, data in fake.accepted:
        msg = parsed(data)
        html = msg.get_body(("html",)).get_content()
        assert_inert(html, "email html")
        assert "&lt;script&gt;" in html
        for header in ("Subject", "From", "To"):
            assert "\n" not in str(msg[header]) and "\r" not in str(msg[header])
