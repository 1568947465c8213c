"""The static status site in headless Chromium (issue 16): an incident on two components with
two updates and a resolve, a maintenance window ahead of time and a promotion. During the
incident both components read *Degraded performance* under a matching banner; after the resolve
they read *Operational*; the bars, uptime, readable times and the upcoming window are there; the
promotion is not. The same page is read with JavaScript off. Screenshots go to test-artifacts/.

Served by a plain loopback file server: the site is static files and asks nothing of our API.
Outside CI a missing browser or Playwright skips with the reason; in CI it fails.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.channels.statuspage import Statuspage, StatuspageSettings
from broadcaster.models import Announcement, Message, Update, Window
from tests.support.runtime import Clock
from tests.web.test_browser import ARTIFACTS, browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def component_states(page) -> dict[str, str]:
    rows = page.locator("#h-components ~ ul.components li .row:first-child").all()
    return {r.locator("span").nth(0).inner_text(): r.locator("span").nth(1).inner_text() for r in rows}


def test_incident_on_two_components_then_resolved(browser, served, tmp_path):  # noqa: F811 - fixture
    root, base = served
    clock = Clock(time.time() - 3 * 3600)
    settings = StatuspageSettings.model_validate({
        "kind": "statuspage", "output_dir": str(root), "title": "Example status",
        "components": ["API", "Website", "Mail"], "site_url": base})
    ch = Statuspage("status", settings, clock=clock)
    a = Announcement(id="a1", kind="incident", title="Slow logins", body="We are looking into slow logins.",
                     severity="minor", components=("API", "Website"))
    first = ch.send(ch.render(Message(announcement=a)), key="k1")
    for i, status in enumerate(["identified", "monitoring"], 1):
        clock.t += 30 * 60
        u = Update(id=f"u{i}", announcement_id="a1", status=status, body=f"Update number {i}.")
        ch.send(ch.render(Message(announcement=a, update=u, thread=(first,))), key=f"k1-u{i}")
    m = Announcement(id="m1", kind="maintenance", title="Database upgrade", components=("Mail",),
                     window=Window(time.time() + 86400, time.time() + 90000))
    ch.send(ch.render(Message(announcement=m)), key="m1")
    ch.send(ch.render(Message(announcement=Announcement(id="p1", kind="promotion",
                                                        title="20% off annual plans"))), key="p1")
    ARTIFACTS.mkdir(exist_ok=True)

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/index.html")
    page.wait_for_load_state("load")
    assert page.locator(".banner").inner_text() == "Minor Service Outage"
    assert component_states(page) == {"API": "Degraded performance", "Website": "Degraded performance",
                                      "Mail": "Operational"}
    assert "20% off" not in page.content()
    upcoming = page.locator("section[aria-labelledby=h-upcoming]")
    assert "Database upgrade" in upcoming.inner_text() and "UTC" in upcoming.inner_text()
    page.wait_for_selector("span.local", timeout=5000)
    assert "your time:" in upcoming.inner_text(), errors  # the script added the reader's zone
    assert "(2 hours ago)" in page.locator("section[aria-labelledby=h-active]").inner_text()
    page.screenshot(path=str(ARTIFACTS / "status-site-during.png"), full_page=True)

    clock.t = time.time() - 60
    done = Update(id="u3", announcement_id="a1", status="resolved", body="Logins are fast again.")
    ch.send(ch.render(Message(announcement=a, update=done, thread=(first,))), key="k1-u3")
    # a query of its own: the same URL may come from the browser's heuristic cache (the file
    # was written seconds ago and carries Last-Modified), showing the page before the resolve
    page.goto(f"{base}/index.html?after=resolve")
    assert page.locator(".banner").inner_text() == "All Systems Operational"
    assert set(component_states(page).values()) == {"Operational"}
    assert page.locator(".bar").count() == 3 and page.locator(".bar").first.locator("span").count() == 90
    bad = page.locator(".bar").first.locator("span.d-degraded_performance")  # today (and yesterday near 0:00)
    assert 1 <= bad.count() <= 2 and "Degraded performance" in (bad.last.get_attribute("title") or "")
    assert "100.00% uptime" in page.inner_text("body")  # degraded performance counts as up
    assert "20% off" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "status-site-after.png"), full_page=True)

    page.click("text=Slow logins")
    timeline = page.inner_text("main")
    for text in ("Resolved", "Monitoring", "Identified", "Investigating", "Update number 1.", "Lasted"):
        assert text in timeline, text
    assert "API: Degraded performance" in timeline and "API: Operational" in timeline
    page.screenshot(path=str(ARTIFACTS / "status-site-incident.png"), full_page=True)
    page.close()

    context = browser.new_context(java_script_enabled=False)
    plain = context.new_page()
    plain.goto(f"{base}/index.html")
    body = plain.inner_text("body")
    assert "All Systems Operational" in body and "UTC (in 1 day)" in body  # written at build time
    assert "Days with incidents (1)" in body
    assert "your time:" not in body  # nothing needed the script
    assert "Database upgrade" in body
    context.close()


def test_a_german_page_in_the_browser(browser, served, tmp_path):  # noqa: F811 - fixture
    """The page's script speaks the page's language too: it refreshes "vor … Minuten" and adds
    "Ihre Zeit:" to a maintenance window; with JavaScript off the built German text stands."""
    root, base = served
    clock = Clock(time.time() - 600)
    ch = Statuspage("status", StatuspageSettings.model_validate({
        "kind": "statuspage", "output_dir": str(root), "title": "Beispiel", "language": "de",
        "components": ["API", "Mail"], "site_url": base}), clock=clock)
    ch.send(ch.render(Message(announcement=Announcement(id="a1", kind="incident", title="Langsam", severity="minor",
                                                        components=("API",)))), key="k1")
    ch.send(ch.render(Message(announcement=Announcement(  # built 10 minutes ago: the page says "gerade eben"
        id="m1", kind="maintenance", title="Datenbank", components=("Mail",),
        window=Window(time.time() + 86400, time.time() + 90000)))), key="m1")
    page = browser.new_page()
    page.goto(f"{base}/index.html")
    page.wait_for_selector("span.local", timeout=5000)
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.locator(".banner").inner_text() == "Geringfügige Störung"
    assert "Ihre Zeit:" in page.locator("section[aria-labelledby=h-upcoming]").inner_text()
    active = page.locator("section[aria-labelledby=h-active]").inner_text()
    assert "(vor 10 Minuten)" in active, active  # refreshed by the script, in German
    page.screenshot(path=str(ARTIFACTS / "status-site-de.png"), full_page=True)
    page.close()
    context = browser.new_context(java_script_enabled=False)
    plain = context.new_page()
    plain.goto(f"{base}/index.html")
    body = plain.inner_text("body")
    assert "Geplante Wartungen" in body and "(in 1 Tag)" in body and "Ihre Zeit" not in body
    assert "(gerade eben)" in plain.locator("section[aria-labelledby=h-active]").inner_text()  # as built
    context.close()
