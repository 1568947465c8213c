"""Internal failures around a delivery attempt must never turn into a false "maybe sent":
an error before the request gives the claim back; shared Redis state failing open lets the
announcement go out."""

from __future__ import annotations

import httpx

from broadcaster import engine, service
from broadcaster.channels.webhook import Webhook
from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from broadcaster.resilience import MemoryBreaker
from tests.support.runtime import memory_runtime


class BrokenLimiter:
    def acquire(self, *args):
        raise ConnectionError("redis is down")


class BrokenBreaker(MemoryBreaker):
    def allow(self, *args):
        raise ConnectionError("redis is down")

    def failure(self, *args):
        raise ConnectionError("redis is down")


def runtime(tmp_path, *, breaker=None, limiter=None, handler=None, fmt="slack"):
    settings = load_settings({
        "channels": {"chat": {"kind": "webhook", "format": fmt, "url": "https://chat.example/hook"}},
        "routes": {"incident": ["chat"]},
        "policy": {"defaults": {"rate_limit": "10/s"}}}, env={})
    http = httpx.Client(transport=httpx.MockTransport(handler or (lambda r: httpx.Response(200, text="ok"))))
    return memory_runtime(settings, ledger=Ledger.open(f"sqlite:///{tmp_path}/l.db"), http=http,
                          **{k: v for k, v in {"breaker": breaker, "limiter": limiter}.items() if v is not None})


def only_delivery(rt):
    ann = service.submit(rt, {"kind": "incident", "title": "t"}, principal=service.SYSTEM).id
    [d] = rt.ledger.deliveries_of(ann)
    return d


def test_shared_state_down_fails_open_and_delivers(tmp_path):
    sent = []
    rt = runtime(tmp_path, breaker=BrokenBreaker(), limiter=BrokenLimiter(),
                 handler=lambda r: sent.append(r) or httpx.Response(200, text="ok"))
    d = only_delivery(rt)
    assert engine.attempt(rt, d.id) == "delivered"
    assert len(sent) == 1


class BrokenRender(Webhook):
    def render(self, message):
        raise RuntimeError("template bug")


def test_internal_error_before_sending_gives_the_claim_back(tmp_path):
    sent = []
    rt = runtime(tmp_path, handler=lambda r: sent.append(r) or httpx.Response(200, text="ok"))
    d = only_delivery(rt)
    rt = rt.replaced(channels={"chat": BrokenRender("chat", rt.settings.channels["chat"], http=rt.http)})
    assert engine.attempt(rt, d.id) == "pending"
    after = rt.ledger.get_delivery(d.id)
    assert not after.maybe_sent and after.attempts == 0 and not sent
    assert "nothing was sent" in rt.ledger.events_of(d.id)[-1].reason
