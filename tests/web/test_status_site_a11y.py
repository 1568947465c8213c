"""axe-core on the status site in headless Chromium (issue 16): the index, an incident page, the
history and the widget, in light and dark colour schemes, have no serious or critical WCAG 2.x
A/AA violations (contrast, landmarks, names, lists…).

axe-core is found at $BROADCASTER_AXE, /opt/axe/node_modules/axe-core/axe.min.js (where
``.ci/services`` installs it in CI) or ./node_modules; outside CI its absence skips, in CI it fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from broadcaster.channels.statuspage import Statuspage, StatuspageSettings
from broadcaster.models import Announcement, Message, Update, Window
from tests.conftest import unavailable
from tests.web.test_browser import browser  # noqa: F401 - the fixture
from tests.web.test_status_site_browser import Clock, served  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow]
CANDIDATES = [os.environ.get("BROADCASTER_AXE", ""), "/opt/axe/node_modules/axe-core/axe.min.js",
              str(Path(__file__).resolve().parents[2] / "node_modules/axe-core/axe.min.js")]


def axe_script() -> Path:
    for c in CANDIDATES:
        if c and Path(c).is_file():
            return Path(c)
    unavailable("axe-core (npm install --prefix /opt/axe axe-core@4, or set BROADCASTER_AXE)")
    raise AssertionError  # unreachable: unavailable() skips or fails


def test_no_serious_accessibility_violations(browser, served):  # noqa: F811 - fixtures
    script = axe_script()
    root, base = served
    clock = Clock(time.time() - 7200)
    ch = Statuspage("status", StatuspageSettings.model_validate({
        "kind": "statuspage", "output_dir": str(root), "title": "Example status", "site_url": base,
        "components": ["API", "Website", "Mail"], "groups": {"Core": ["API", "Website"]},
        "subscribe_url": "https://api.example.com/api/v1/subscribe/form"}), clock=clock)
    a = Announcement(id="a1", kind="incident", title="Slow logins", body="Looking into **it**.", severity="major",
                     components=("API", "Website"))
    first = ch.send(ch.render(Message(announcement=a)), key="k1")
    clock.t += 1800
    ch.send(ch.render(Message(announcement=a, update=Update(id="u1", announcement_id="a1", status="resolved",
                                                            body="Fixed."), thread=(first,))), key="k1-u1")
    b = Announcement(id="a2", kind="incident", title="Mail delayed", severity="critical", components=("Mail",))
    ch.send(ch.render(Message(announcement=b)), key="k2")
    ch.send(ch.render(Message(announcement=Announcement(id="m", kind="maintenance", title="DB upgrade",
                                                        window=Window(time.time() + 86400, time.time() + 90000)))),
            key="m")
    ch.send(ch.render(Message(announcement=Announcement(id="n", kind="notice", title="New address"))), key="n")
    pages = ["index.html", f"incidents/{first.remote_id}.html", "history.html", "widget.html"]
    found = []
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme)
        page = context.new_page()
        for rel in pages:
            page.goto(f"{base}/{rel}")
            page.add_script_tag(path=str(script))
            result = page.evaluate("""() => axe.run(document, {runOnly: {type: 'tag',
                values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}})""")
            assert any(p["id"] == "color-contrast" for p in result["passes"]), rel  # axe really checked
            for v in result["violations"]:
                if v["impact"] in ("serious", "critical"):
                    found.append((scheme, rel, v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]))
        context.close()
    assert found == []


def test_a_german_page_has_no_serious_accessibility_violations(browser, served):  # noqa: F811 - fixtures
    """The German index (its ``lang``, its longer words in the same layout) passes axe as well."""
    script = axe_script()
    root, base = served
    ch = Statuspage("status", StatuspageSettings.model_validate({
        "kind": "statuspage", "output_dir": str(root), "title": "Beispiel", "site_url": base, "language": "de",
        "components": ["API", "Website"], "subscribe_url": "https://api.example.com/api/v1/subscribe/form"}),
        clock=Clock(time.time()))
    ch.send(ch.render(Message(announcement=Announcement(id="a1", kind="incident", title="Langsam", severity="major",
                                                        components=("API",)))), key="k1")
    page = browser.new_page()
    page.goto(f"{base}/index.html")
    page.add_script_tag(path=str(script))
    result = page.evaluate("""() => axe.run(document, {runOnly: {type: 'tag',
        values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}})""")
    assert any(p["id"] == "color-contrast" for p in result["passes"])
    assert [(v["id"], v["help"]) for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
