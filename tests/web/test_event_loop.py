"""No request holds the event loop (issue 13, item 6): a real uvicorn server on loopback keeps
answering ``/healthz`` while slow work — rendering, a ledger write, a token check, a slow SMTP
server — is in flight on the page and the API.

The deterministic tests park one request inside its slow step (an event it waits for) and ask
``/healthz`` meanwhile: on an ``async`` handler that works on the loop, ``/healthz`` cannot be
answered until the step is released, so the call runs into its (generous) timeout. The flood
test sends real 20 kB previews for every channel from several threads and checks that every
``/healthz`` answer arrived within a few seconds (it took 11.6 s before);
``python -m tests.benchmarks --only event_loop`` prints the figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from broadcaster import preview as routes_preview, service
from tests.cli.live import make_settings, memory_runtime, serve
from tests.web.conftest import field

CHANNELS = {
    "hook-a": {"kind": "webhook", "url": "http://127.0.0.1:9/a"},
    "chat": {"kind": "webhook", "format": "slack", "url": "http://127.0.0.1:9/chat"},
    "discord-ops": {"kind": "webhook", "format": "discord", "url": "http://127.0.0.1:9/d"},
}
#: the costly renderers (thread splitting by each provider's counting rule)
THREADED = {
    "x-main": {"kind": "x", "base_url": "http://127.0.0.1:9/x", "access_token": "t"},
    "mastodon-main": {"kind": "mastodon", "base_url": "http://127.0.0.1:9/m", "access_token": "t"},
    "bluesky-main": {"kind": "bluesky", "base_url": "http://127.0.0.1:9/b", "handle": "s.example.com",
                     "app_password": "p"},
}
#: a healthy server answers /healthz in milliseconds; this only separates "answered" from "stuck"
HEALTHZ_TIMEOUT = 5.0


@contextmanager
def live_server(tmp_path, **collaborators):
    """The API and page over uvicorn; ``collaborators`` go to the runtime (a slow mail sender)."""
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", {**CHANNELS, **THREADED},
                             subscribers={"lists": ["customers"], "secret_key": "s" * 40})
    rt = memory_runtime(settings, **collaborators)
    with serve(settings, rt) as (url, app):
        yield url, app, rt
    rt.ledger.close()


@pytest.fixture
def live(tmp_path):
    with live_server(tmp_path) as served:
        yield served


def sign_in(url: str, app) -> tuple[httpx.Client, str, str]:
    raw, _ = app.state.tokens.create("ops", admin=True, actor="test")
    c = httpx.Client(base_url=url, timeout=30, follow_redirects=True)
    pre = field(c.get("/signin").text, "csrf")
    r = c.post("/signin", data={"csrf": pre, "token": raw})
    assert r.status_code == 200 and "/signin" not in str(r.url), r.text
    return c, field(c.get("/compose").text, "csrf"), raw


class Gate:
    """Wraps a function so each call waits until the test opens the gate."""

    def __init__(self, fn: Callable, *, hold: float = 30.0):
        self.fn = fn
        self.hold = hold  # a bound so a failed test cannot leave a request parked for ever
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, *a, **kw):
        self.entered.set()
        self.opened.wait(self.hold)
        return self.fn(*a, **kw)


@contextmanager
def parked(request: Callable[[], httpx.Response], gate: Gate) -> Iterator[list[httpx.Response]]:
    """Run ``request`` in a thread until it is inside ``gate``; yield; then let it finish."""
    done: list[httpx.Response] = []
    t = threading.Thread(target=lambda: done.append(request()), daemon=True)
    t.start()
    try:
        assert gate.entered.wait(15), "the request never reached its slow step"
        yield done
    finally:
        gate.opened.set()
        t.join(30)


def healthz_answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=HEALTHZ_TIMEOUT).status_code == 200
    except httpx.TimeoutException:
        return False


def test_page_preview_renders_off_the_event_loop(live, monkeypatch):
    url, app, _ = live
    c, csrf, _ = sign_in(url, app)
    gate = Gate(routes_preview.render_one)
    monkeypatch.setattr(routes_preview, "render_one", gate)
    body = {"kind": "incident", "title": "Slow", "body": "word " * 4000, "channels": list(CHANNELS)}
    with parked(lambda: c.post("/ui/preview", json=body, headers={"X-CSRF-Token": csrf}), gate) as done:
        assert healthz_answers(url), "/healthz waited for a preview: rendering ran on the event loop"
    assert done and done[0].status_code == 200


def test_api_preview_renders_off_the_event_loop(live, monkeypatch):
    url, app, _ = live
    _, _, raw = sign_in(url, app)
    gate = Gate(routes_preview.render_one)
    monkeypatch.setattr(routes_preview, "render_one", gate)
    body = {"kind": "incident", "title": "Slow", "body": "word " * 4000, "channels": list(CHANNELS)}
    with parked(lambda: httpx.post(url + "/api/v1/preview", json=body, timeout=30,
                                   headers={"Authorization": f"Bearer {raw}"}), gate) as done:
        assert healthz_answers(url)
    assert done and done[0].status_code == 200


@pytest.mark.parametrize("action", ["compose", "update", "retract"])
def test_page_actions_write_the_ledger_off_the_event_loop(live, monkeypatch, action):
    url, app, _ = live
    c, csrf, _ = sign_in(url, app)
    form = {"csrf": csrf, "kind": "incident", "title": "API errors", "body": "Looking.", "channels": ["hook-a"],
            "idempotency_key": "k-1"}
    if action == "compose":
        gate = Gate(service.submit)
        monkeypatch.setattr(service, "submit", gate)
        def request():
            return c.post("/compose", data=form)
    else:
        ann_id = c.post("/compose", data=form, follow_redirects=False).headers["location"].split("/")[2].split("?")[0]
        name = {"update": "add_update", "retract": "retract"}[action]
        gate = Gate(getattr(service, name))
        monkeypatch.setattr(service, name, gate)
        data = {"csrf": csrf, "status": "identified", "body": "Found it.", "confirm": "yes", "reason": "wrong"}
        path = {"update": "updates", "retract": "retract"}[action]
        def request():
            return c.post(f"/announcements/{ann_id}/{path}", data=data)
    with parked(request, gate) as done:
        assert healthz_answers(url), f"/healthz waited for the page's {action}"
    assert done and done[0].status_code == 200


def test_sign_in_checks_the_token_off_the_event_loop(live, monkeypatch):
    url, app, _ = live
    raw, _ = app.state.tokens.create("ops", admin=True, actor="test")
    c = httpx.Client(base_url=url, timeout=30, follow_redirects=True)
    pre = field(c.get("/signin").text, "csrf")
    gate = Gate(app.state.tokens.verify)
    monkeypatch.setattr(app.state.tokens, "verify", gate)
    with parked(lambda: c.post("/signin", data={"csrf": pre, "token": raw}), gate) as done:
        assert healthz_answers(url), "/healthz waited for a sign-in"
    assert done and done[0].status_code == 200


def test_subscribe_with_a_slow_mail_server_leaves_the_loop_free(tmp_path):
    gate = Gate(lambda *a, **kw: None)
    with live_server(tmp_path, confirmation_sender=gate) as (url, _, _rt), \
            parked(lambda: httpx.post(url + "/api/v1/subscribe",
                                      json={"list": "customers", "address": "a@example.com"}, timeout=30),
                   gate) as done:
        assert healthz_answers(url), "/healthz waited for the confirmation mail"
    assert done and done[0].status_code == 202


def flood_previews(url: str, client: httpx.Client, csrf: str, *, senders: int, seconds: float) -> list[float]:
    """``senders`` threads post 20 kB previews for every channel for ``seconds``; meanwhile
    ``/healthz`` is timed. Returns the healthz latencies."""
    body = {"kind": "incident", "title": "Flood", "body": ("lorem ipsum **dolor** sit amet. " * 700)[:20000],
            "channels": list(THREADED)}
    stop = threading.Event()

    def send() -> int:
        n = 0
        while not stop.is_set():
            r = client.post("/ui/preview", json=body, headers={"X-CSRF-Token": csrf})
            assert r.status_code in (200, 429), r.text
            n += 1
        return n

    latencies: list[float] = []
    with ThreadPoolExecutor(senders) as pool:
        futures = [pool.submit(send) for _ in range(senders)]
        time.sleep(0.5)  # let the flood start
        end = time.monotonic() + seconds
        try:
            with httpx.Client(base_url=url, timeout=60) as probe:
                while time.monotonic() < end:
                    t0 = time.perf_counter()
                    assert probe.get("/healthz").status_code == 200
                    latencies.append(time.perf_counter() - t0)
                    time.sleep(0.05)
        finally:
            stop.set()
        sent = sum(f.result() for f in futures)
    assert sent > 0
    return latencies


def test_healthz_answers_while_previews_flood_the_page(live):
    url, app, _ = live
    c, csrf, _ = sign_in(url, app)
    c.timeout = httpx.Timeout(300)  # one such preview is seconds of CPU on a busy machine
    latencies = flood_previews(url, c, csrf, senders=2, seconds=3.0)
    assert latencies and max(latencies) < HEALTHZ_TIMEOUT, f"slowest /healthz {max(latencies):.2f} s"


def test_a_pile_of_slow_previews_leaves_the_thread_pool_to_everyone_else(live, monkeypatch):
    """More previews in flight than the thread pool has threads (40): they wait for a render
    slot without holding a thread, the overflow is refused at once, and ``/healthz`` as well as
    an API call that needs a thread (the token check, the ledger) keep being answered."""
    url, app, _ = live
    c, csrf, raw = sign_in(url, app)
    # a bound on a stalled request only (a busy CI machine may take a while to answer 48 at
    # once); what is asserted is who gets 503 and who gets 200, not how fast
    c.timeout = httpx.Timeout(120)
    # held longer than the wait below: a render released by the gate's own bound would free a
    # slot, let a queued preview in and turn the count of refusals into a race with the clock
    gate = Gate(routes_preview.render_one, hold=200)
    monkeypatch.setattr(routes_preview, "render_one", gate)
    body = {"kind": "incident", "title": "Pile", "body": "word " * 100, "channels": ["hook-a"]}
    answers: list[int] = []
    with ThreadPoolExecutor(48) as pool:
        futures = [pool.submit(lambda: c.post("/ui/preview", json=body, headers={"X-CSRF-Token": csrf}).status_code)
                   for _ in range(48)]
        try:
            assert gate.entered.wait(15)
            deadline = time.monotonic() + 90
            while sum(f.done() for f in futures) < 48 - 2 - 8 and time.monotonic() < deadline:
                time.sleep(0.05)  # the overflow is answered while the first two still render
            refused = [f.result() for f in futures if f.done()]
            assert refused.count(503) == 48 - 2 - 8, refused
            assert healthz_answers(url), "/healthz starved"
            r = httpx.get(url + "/api/v1/channels", headers={"Authorization": f"Bearer {raw}"}, timeout=HEALTHZ_TIMEOUT)
            assert r.status_code == 200
        finally:
            gate.opened.set()
        answers = [f.result() for f in futures]
    assert answers.count(503) == 48 - 2 - 8, answers
    assert answers.count(200) == 10
