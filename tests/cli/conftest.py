"""A live API for the CLI: real app, real SQLite ledger, and a recording enqueuer that can
settle each delivery shortly after it is enqueued (as a worker would) with a chosen outcome."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.cli.live import make_settings, memory_runtime, serve, settle
from tests.support.runtime import wakeups

CHANNELS = {
    "hook-a": {"kind": "webhook", "url": "http://127.0.0.1:9/a"},
    "hook-b": {"kind": "webhook", "url": "http://127.0.0.1:9/b"},
}
#: components announcements may name (declared by a status channel that is not routed)
COMPONENTS = ["API", "Checkout"]
#: a configured template (``--template``)
TEMPLATES = {"checkout": {"title": "Checkout is failing", "severity": "major", "components": ["Checkout"],
                          "phases": {"investigating": "Payments fail; we are looking.",
                                     "resolved": "Payments work again."}}}


@dataclass
class LiveApi:
    url: str
    token: str
    deploy_token: str
    runtime: object
    enqueued: list = field(default_factory=list)
    #: channel → state a delivery to it is settled to after ``delay`` seconds (absent: left pending)
    outcomes: dict = field(default_factory=dict)
    delay: float = 0.3

    def env(self, **extra) -> dict:
        return {"BROADCASTER_URL": self.url, "BROADCASTER_TOKEN": self.token, **extra}

    def wait_enqueued(self, n: int, timeout: float = 5.0) -> list:
        """The API wakes the workers right after its answer (a background task), so a client
        can see the 202 a moment before the wake-up: wait for it, boundedly."""
        deadline = time.monotonic() + timeout
        while len(self.enqueued) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.enqueued)

    def on_enqueue(self, delivery_id: str, channel: str, countdown) -> None:
        self.enqueued.append((delivery_id, channel))
        outcome = self.outcomes.get(channel)
        if outcome:
            kw = {"url": f"https://example.test/{channel}/{delivery_id}"} if outcome == "delivered" else \
                {"error": f"{channel}: provider said no"}
            threading.Timer(self.delay, settle, (self.runtime, delivery_id, outcome), kw).start()


@pytest.fixture
def api(tmp_path):
    routed = list(CHANNELS)
    site = {"kind": "statuspage", "output_dir": str(tmp_path / "site"), "components": COMPONENTS}  # not routed
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", {**CHANNELS, "site": site},
                             routes={k: routed for k in ("incident", "deploy", "notice", "maintenance")},
                             templates=TEMPLATES)
    rt = memory_runtime(settings)
    with serve(settings, rt) as (url, app):
        token, _ = app.state.tokens.create("ops", admin=True, actor="test")
        deploy, _ = app.state.tokens.create("ci", kinds=["deploy"], actor="test")
        live = LiveApi(url=url, token=token, deploy_token=deploy, runtime=rt)
        wakeups(rt).on_deliver = live.on_enqueue
        yield live
    rt.ledger.close()
