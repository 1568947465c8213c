"""Subscribe to one component from the status page and get only its incidents (issue 16, "How it
will be checked"), in headless Chromium against the real API and the real delivery engine.

The static site (served by a plain loopback file server) links the API's webhook form; the
reader ticks one component and gives their webhook (a loopback receiver standing in for Slack),
opens the link the challenge posted to it and presses Confirm. An incident on another component
does not reach them; one on theirs does, with its one-click unsubscribe link, which stops the
next. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import time

import pytest

from broadcaster import engine, service
from broadcaster.runtime import standard_ports
from broadcaster.subscribers import endpoints as eps
from tests.cli.live import make_settings, serve
from tests.conftest import free_port
from tests.support.receiver import Receiver
from tests.support.runtime import memory_runtime
from tests.web.test_browser import ARTIFACTS, browser  # noqa: F401 - the fixture
from tests.web.test_status_site_browser import served  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow]
SECRET = "status-site-subscribe-test-key-0123456789"


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def deliver(rt, ann_id: str) -> None:
    """Run every delivery of ``ann_id`` through the engine until it settles."""
    for d in rt.ledger.deliveries_of(ann_id):
        for _ in range(20):
            if engine.attempt(rt, d.id) != "retrying":
                break
            time.sleep(0.15)


def posts(receiver: Receiver, word: str) -> list[str]:
    return [s.json()["text"] for s in receiver.requests if word in s.body.decode()]


def test_subscribe_to_one_component_from_the_page_and_get_only_its_incidents(browser, served, receiver,  # noqa: F811
                                                                             tmp_path):
    root, site_url = served
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        f"sqlite:///{tmp_path}/ledger.db",
        {"status": {"kind": "statuspage", "output_dir": str(root), "title": "Example status", "site_url": site_url,
                    "components": ["API", "Mail"],
                    "subscribe_webhook_url": f"{api_url}/api/v1/subscribe/endpoint/form?list=readers"},
         "readers": {"kind": "subscriber_webhooks", "lists": ["readers"], "allow_http": True, "allow_private": True}},
        routes={"incident": ["status", "readers"]}, public_url=api_url, subscribers={"secret_key": SECRET},
        policy={"defaults": {"backoff": {"base": 0, "max": 0}}})
    rt = memory_runtime(settings, ports=standard_ports)
    admin = service.Principal("ops", admin=True)
    try:
        with serve(settings, rt, port=port):
            first = service.submit(rt, {"kind": "notice", "title": "Welcome", "channels": ["status"]}, principal=admin)
            deliver(rt, first.id)  # the site exists
            page = browser.new_page()
            page.goto(f"{site_url}/index.html")
            page.click("text=By webhook")
            page.wait_for_url(lambda u: "/subscribe/endpoint/form" in u)
            page.select_option("select[name=format]", "slack")
            page.fill("input[name=url]", receiver.url + "/services/T/B/x")
            page.check("input[name=components][value=API]")
            page.click("button[type=submit]")
            assert "confirmation code is on its way" in page.inner_text("body")
            assert eps.flush(rt, timeout=10)
            (challenge,) = receiver.requests
            link = re.search(r"(http://\S+/api/v1/subscribe/endpoint/confirm\?code=[0-9a-f]+)",
                             challenge.json()["text"]).group(1)
            page.goto(link)
            assert "about API" in page.inner_text("body")
            page.screenshot(path=str(ARTIFACTS / "status-site-subscribe-confirm.png"), full_page=True)
            page.click("button[type=submit]")
            assert "We will post the announcements of readers about API" in page.inner_text("body")

            other = service.submit(rt, {"kind": "incident", "title": "Mail is delayed", "severity": "minor",
                                        "components": ["Mail"]}, principal=admin)
            deliver(rt, other.id)
            mine = service.submit(rt, {"kind": "incident", "title": "API errors", "severity": "major",
                                       "components": ["API"]}, principal=admin)
            deliver(rt, mine.id)
            assert posts(receiver, "Mail is delayed") == []
            (got,) = posts(receiver, "API errors")
            stop = re.search(r"Stop these posts: (\S+)", got).group(1)

            page.goto(f"{site_url}/index.html")
            assert page.locator(".banner").inner_text() == "Partial System Outage"
            page.goto(stop)
            page.click("button[type=submit]")
            assert "Nothing more" in page.inner_text("body")
            page.screenshot(path=str(ARTIFACTS / "status-site-unsubscribed.png"), full_page=True)
            again = service.submit(rt, {"kind": "incident", "title": "API errors again", "severity": "minor",
                                        "components": ["API"]}, principal=admin)
            deliver(rt, again.id)
            assert posts(receiver, "API errors again") == []
            page.close()
    finally:
        rt.close()
        rt.ledger.close()
