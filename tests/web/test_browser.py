"""The whole path in headless Chromium (Debian's), driven by Playwright: sign in, compose an
incident while the preview counts, submit, watch every channel reach ``delivered`` through a real
Celery worker and Redis, post a "resolved" update, and save a screenshot of the timeline.

Outside CI a missing browser, Playwright or Redis skips this test with the reason; in CI
(``CI=true``) it fails instead, so a green CI always means the browser really ran.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.cli.live import serve
from tests.conftest import unavailable
from tests.support.system import System, settings_for

CHROMIUM = os.environ.get("BROADCASTER_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        unavailable(f"headless Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def system(shared_redis_url, receiver, tmp_path):
    # channel names are unique per run: the shared Redis's queues are named after channels
    tag = uuid.uuid4().hex[:6]
    channels = {f"status-{tag}": {"kind": "webhook", "url": f"{receiver.url}/status"},
                f"ops-{tag}": {"kind": "webhook", "url": f"{receiver.url}/ops"}}
    settings = settings_for(f"sqlite:///{tmp_path}/ledger.db", shared_redis_url, channels,
                            routes={"incident": list(channels)},
                            api={"rate_limit": "10000/1m", "anonymous_rate_limit": "10000/1m"})
    s = System(settings)
    s.start_scheduler()
    try:
        with s.worker():
            yield s
    finally:
        s.stop()


def all_delivered(page, count: int, timeout: float = 40_000) -> None:
    page.wait_for_function(
        """n => { const s = [...document.querySelectorAll('#timeline [data-state]')].map(e => e.textContent);
                  return s.length === n && s.every(x => x === 'delivered'); }""",
        arg=count, timeout=timeout)


def test_sign_in_compose_deliver_update_in_a_real_browser(browser, system, receiver):
    problems: list[str] = []
    with serve(system.settings, system.runtime) as (url, app):
        token, _ = app.state.tokens.create("ops-browser", admin=True, actor="test")
        page = browser.new_page(viewport={"width": 420, "height": 900})  # a phone-sized window
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(f"{url}/")
        assert page.url.endswith("/signin")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")

        page.goto(f"{url}/compose?kind=incident")
        names = list(system.settings.channels)
        for name in names:
            assert page.is_checked(f'input[name="channels"][value="{name}"]')
        page.fill("#title", "Checkout is failing")
        page.select_option("#severity", "major")
        first = f'.pv[data-channel="{names[0]}"] .count'
        page.wait_for_function("sel => { const e = document.querySelector(sel); return e && e.dataset.length === '19'; }",
                               arg=first)  # "Checkout is failing" is 19 characters
        page.fill("#body", "Card payments fail for some customers.")
        expected = len("Checkout is failing\n\nCard payments fail for some customers.")
        page.wait_for_function("([sel, n]) => { const e = document.querySelector(sel); return e && e.dataset.length === n; }",
                               arg=[first, str(expected)])
        assert f"{expected} characters" in page.text_content(first)

        page.click("#submit")
        page.wait_for_url(lambda u: "/announcements/ann_" in u)
        assert "Accepted" in page.text_content(".notice")
        all_delivered(page, len(names))

        page.select_option("#upd-status", "resolved")
        page.fill("#upd-body", "Payments work again.")
        page.click("#update-form button[type=submit]")
        page.wait_for_url(lambda u: "done=update" in u)
        all_delivered(page, 2 * len(names))
        assert page.text_content("#ann-status") == "resolved"
        assert page.text_content("#overall") == "delivered"

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "timeline.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 1000

    assert len(receiver.unique_ids()) == 2 * len(names)  # each post exactly once per channel
    bodies = [r.json() for r in receiver.ok()]
    assert any("Payments work again." in str(b) for b in bodies)
    assert not problems, problems
