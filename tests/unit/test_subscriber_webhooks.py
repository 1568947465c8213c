"""The ``subscriber_webhooks`` fan-out against ``httpx.MockTransport``: what an uncertain post
means per format, and what each endpoint receives."""

from __future__ import annotations

import json

import httpx

from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.subscriber_webhooks import SubscriberWebhooks, SubscriberWebhooksSettings
from broadcaster.errors import AmbiguousDelivery
from broadcaster.ledger.endpoints import Endpoint
from broadcaster.models import Post

SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Ng=="


def endpoint(eid: str, fmt: str) -> Endpoint:
    return Endpoint(id=eid, list="ops", format=fmt, url=f"https://{eid}.example.test/hook", owner=None,
                    components=(), state="confirmed", created_at=0.0, requested_at=0.0, challenge_sent_at=None,
                    confirmed_at=0.0, failures=0, last_error=None, disabled_at=None, notice=None)


class Twin:
    """An in-memory endpoint source."""

    def __init__(self, *endpoints: Endpoint):
        self.endpoints = list(endpoints)
        self.failures: dict[str, int] = {}
        self.disabled: set[str] = set()

    def targets(self, lists, post, formats):
        return [e for e in self.endpoints if e.format in formats]

    def current(self, ids):
        return {i: "disabled" if i in self.disabled else "confirmed" for i in ids}

    def secret(self, ep):
        return SECRET

    def unsubscribe_url(self, ep):
        return f"https://api.example.test/api/v1/unsubscribe/endpoint?token=t-{ep.id}"

    def succeeded(self, ep):
        self.failures[ep.id] = 0

    def failed(self, ep, error, max_failures):
        self.failures[ep.id] = self.failures.get(ep.id, 0) + 1


def channel(handler, twin: Twin) -> SubscriberWebhooks:
    settings = SubscriberWebhooksSettings(lists=("ops",))
    return SubscriberWebhooks("subs", settings, http=httpx.Client(transport=httpx.MockTransport(handler)),
                              clock=lambda: 1_700_000_000.0, endpoints=twin,
                              resolver=lambda host, port: ["93.184.216.34"])


POST = Post(channel="subs", kind="incident", title="API <!channel> down", text="API <!channel> down @everyone",
            parts=("API <!channel> down @everyone",), meta={"announcement_id": "ann_1"})


def test_an_uncertain_post_is_resent_only_where_the_receiver_can_dedupe():
    twin = Twin(endpoint("chat", "slack"), endpoint("gen", "generic"))
    seen: list[httpx.Request] = []
    lose = {"chat", "gen"}

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        host = req.headers["host"].split(".")[0]
        if host in lose:
            lose.discard(host)
            raise httpx.ReadTimeout("lost after sending", request=req)
        return httpx.Response(200)

    progress = MemoryProgress()
    ch = channel(handler, twin)
    try:
        ch.send(POST, key="dlv_1", progress=progress)
    except AmbiguousDelivery:
        pass
    else:
        raise AssertionError("an uncertain post must not count as delivered")
    receipt = ch.send(POST, key="dlv_1", progress=progress)  # the retry
    hosts = [r.headers["host"].split(".")[0] for r in seen]
    assert hosts.count("chat") == 1, "a chat webhook cannot dedupe: not posted again"
    assert hosts.count("gen") == 2
    ids = {r.headers["webhook-id"] for r in seen if r.headers["host"].startswith("gen")}
    assert ids == {"msg_dlv_1_gen"}, "the repeat carries the same webhook-id"
    assert progress.states()["endpoint:chat"][0] == "refused" and "uncertain" in progress.states()["endpoint:chat"][1]
    assert receipt.extra["done"] == 1 and receipt.extra["refused"] == 1


def test_each_format_gets_its_shape_and_nobody_is_pinged():
    twin = Twin(endpoint("s", "slack"), endpoint("d", "discord"), endpoint("t", "teams_workflow"),
                endpoint("g", "generic"))
    bodies: dict[str, dict] = {}

    def handler(req: httpx.Request) -> httpx.Response:
        bodies[req.headers["host"].split(".")[0]] = json.loads(req.content)
        assert req.url.host == "93.184.216.34"  # posted to the address that was checked
        return httpx.Response(200, json={"id": "1"})

    channel(handler, twin).send(POST, key="dlv_2")
    assert "<!channel>" not in bodies["s"]["text"]
    assert bodies["d"]["allowed_mentions"] == {"parse": []}
    assert bodies["t"]["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert bodies["g"]["data"]["title"] == "API <!channel> down", "a program gets the text as written"


def test_an_endpoint_disabled_during_the_pass_is_skipped():
    twin = Twin(endpoint("a", "slack"), endpoint("b", "slack"))
    twin.disabled.add("b")
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.headers["host"].split(".")[0])
        return httpx.Response(200)

    progress = MemoryProgress()
    channel(handler, twin).send(POST, key="dlv_3", progress=progress)
    assert seen == ["a"] and progress.states()["endpoint:b"] == ("refused", "endpoint disabled")
