"""Mastodon adapter against a fake instance (httpx.MockTransport): exact requests, error map."""

from __future__ import annotations

import json

import httpx
import pytest

from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.mastodon import Mastodon, MastodonSettings
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    DeliveryError,
    PermanentError,
    RateLimited,
    TransientError,
)
from broadcaster.models import Announcement, Message, Post, Receipt, Update

TOKEN = "mastodon-secret-token-123"
BASE = "https://social.example"
NOW = 1_700_000_000.0


class Fake:
    """A tiny instance: records requests, answers statuses with increasing ids."""

    def __init__(self, instance=None, status_reply=None):
        self.requests: list[httpx.Request] = []
        self.instance = instance
        self.status_reply = status_reply
        self.next_id = 100

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/v2/instance":
            if self.instance is None:
                return httpx.Response(404, json={"error": "not found"})
            return httpx.Response(200, json=self.instance)
        if path == "/api/v1/statuses" and request.method == "POST":
            if self.status_reply is not None:
                return self.status_reply
            self.next_id += 1
            return httpx.Response(200, json={"id": str(self.next_id), "url": f"{BASE}/@ops/{self.next_id}"})
        if path == "/api/v1/accounts/verify_credentials":
            return httpx.Response(200, json={"id": "1", "username": "ops", "acct": "ops"})
        if request.method == "DELETE":
            return httpx.Response(200, json={})
        return httpx.Response(500)

    @property
    def posts(self):
        return [r for r in self.requests if r.method == "POST"]


def make(fake: Fake, **settings) -> Mastodon:
    s = MastodonSettings(base_url=BASE, access_token=TOKEN, **settings)
    http = httpx.Client(transport=httpx.MockTransport(fake), base_url=BASE)
    return Mastodon("mastodon-main", s, http=http, clock=lambda: NOW)


def post(*parts: str, reply_to: Receipt | None = None) -> Post:
    return Post(channel="mastodon-main", kind="incident", title="t", text=parts[0], parts=parts, reply_to=reply_to)


def test_send_makes_the_exact_request():
    fake = Fake()
    receipt = make(fake).send(post("API is down"), key="dlv-1")
    (req,) = fake.posts
    assert str(req.url) == f"{BASE}/api/v1/statuses"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Idempotency-Key"] == "dlv-1-0"
    assert json.loads(req.content) == {"status": "API is down", "visibility": "public"}
    assert receipt == Receipt(remote_id="101", url=f"{BASE}/@ops/101", extra={"ids": ["101"], "last_id": "101"})


def test_thread_parts_reply_to_each_other_with_stable_keys():
    fake = Fake()
    receipt = make(fake, visibility="unlisted").send(post("one (1/3)", "two (2/3)", "three (3/3)"), key="k")
    bodies = [json.loads(r.content) for r in fake.posts]
    assert [b.get("in_reply_to_id") for b in bodies] == [None, "101", "102"]
    assert [r.headers["Idempotency-Key"] for r in fake.posts] == ["k-0", "k-1", "k-2"]
    assert {b["visibility"] for b in bodies} == {"unlisted"}
    assert receipt.remote_id == "101" and receipt.extra == {"ids": ["101", "102", "103"], "last_id": "103"}


def test_a_retry_sends_the_same_keys_again():
    fake = Fake()
    ch = make(fake)
    ch.send(post("same"), key="k")
    ch.send(post("same"), key="k")
    assert [r.headers["Idempotency-Key"] for r in fake.posts] == ["k-0", "k-0"]


def test_update_replies_under_the_last_part_of_the_earlier_thread():
    fake = Fake()
    earlier = Receipt(remote_id="7", extra={"ids": ["7", "8", "9"], "last_id": "9"})
    make(fake).send(post("[Resolved] fixed", reply_to=earlier), key="u")
    assert json.loads(fake.posts[0].content)["in_reply_to_id"] == "9"
    make(fake).send(post("[Resolved] fixed", reply_to=Receipt(remote_id="7")), key="u2")
    assert json.loads(fake.posts[1].content)["in_reply_to_id"] == "7"


def test_progress_skips_parts_that_already_landed():
    fake = Fake()
    progress = MemoryProgress()
    progress.mark(["part:0"], "done", json.dumps({"id": "55", "url": f"{BASE}/@ops/55"}))
    receipt = make(fake).send(post("a (1/2)", "b (2/2)"), key="k", progress=progress)
    (req,) = fake.posts
    assert req.headers["Idempotency-Key"] == "k-1"
    assert json.loads(req.content)["in_reply_to_id"] == "55"
    assert receipt.extra["ids"] == ["55", "101"]
    assert progress.states()["part:1"][0] == "done"


def test_failed_part_stays_marked_sending():
    fake = Fake(status_reply=httpx.Response(503, json={"error": "try again"}))
    progress = MemoryProgress()
    with pytest.raises(TransientError):
        make(fake).send(post("a"), key="k", progress=progress)
    assert progress.states() == {"part:0": ("sending", None)}


@pytest.mark.parametrize(
    "response, error",
    [
        (httpx.Response(401, json={"error": "The access token is invalid"}), AuthError),
        (httpx.Response(403, json={"error": "This action is outside the authorized scopes"}), AuthError),
        (httpx.Response(404, json={"error": "Record not found"}), PermanentError),
        (httpx.Response(422, json={"error": "Validation failed: Text character limit of 500 exceeded"}), ContentRejected),
        (httpx.Response(400, json={"error": "ParameterMissing"}), PermanentError),
        (httpx.Response(503, json={"error": "Remote data could not be fetched"}), TransientError),
        (httpx.Response(500, text="oops"), TransientError),
        (httpx.Response(200, text="<html>proxy</html>"), AmbiguousDelivery),
    ],
)
def test_error_table(response, error):
    with pytest.raises(error) as info:
        make(Fake(status_reply=response)).send(post("x"), key="k")
    assert type(info.value) is error
    assert info.value.response and info.value.response.startswith(f"HTTP {response.status_code}")


def test_rate_limit_waits_until_the_iso_reset():
    reply = httpx.Response(429, json={"error": "Too many requests"}, headers={"X-RateLimit-Reset": "2023-11-14T22:15:20.000000Z"})
    with pytest.raises(RateLimited) as info:
        make(Fake(status_reply=reply)).send(post("x"), key="k")
    assert info.value.retry_after == pytest.approx(1_700_000_120.0 - NOW)


def test_transport_timeout_is_ambiguous():
    def boom(request):
        raise httpx.ReadTimeout("slow", request=request)

    ch = Mastodon("m", MastodonSettings(base_url=BASE, access_token=TOKEN, read_instance_limits=False),
                  http=httpx.Client(transport=httpx.MockTransport(boom)))
    with pytest.raises(AmbiguousDelivery):
        ch.send(post("x"), key="k")


# ---------------------------------------------------------------- limits and rendering


def test_limits_come_from_the_instance_once():
    fake = Fake(instance={"configuration": {"statuses": {"max_characters": 1000, "characters_reserved_per_url": 30}}})
    ch = make(fake)
    assert ch.max_length == 1000
    assert ch.count("see https://example.com/very/long") == 4 + 30
    assert ch.limits() == (1000, 30)
    assert [r.url.path for r in fake.requests] == ["/api/v2/instance"]


def test_limits_fall_back_to_config_when_the_instance_cannot_tell():
    fake = Fake(instance=None)
    ch = make(fake, max_characters=600)
    assert ch.limits() == (600, 23)
    ch.limits()
    assert len(fake.requests) == 1  # not asked again at once


def _message(body: str) -> Message:
    return Message(Announcement(id="a1", kind="incident", title="Outage", body=body))


def test_render_threads_long_text_and_counts_graphemes():
    fake = Fake(instance=None)
    ch = make(fake)
    fits = "👍🏽" * (500 - len("Outage\n\n"))
    assert ch.render(_message(fits)).parts == (f"Outage\n\n{fits}",)
    too_long = ("word " * 200).strip()
    parts = ch.render(_message(too_long)).parts
    assert len(parts) == 3 and all(ch.count(p) <= 500 for p in parts)


def test_render_rejects_when_policy_says_so():
    ch = make(Fake(instance=None))
    ch.on_too_long = "reject"
    with pytest.raises(ContentRejected):
        ch.render(_message("x" * 600))


def test_render_update_replies_to_thread():
    ch = make(Fake(instance=None))
    a = Announcement(id="a1", kind="incident", title="Outage")
    first = Receipt(remote_id="1", extra={"last_id": "3"})
    p = ch.render(Message(a, update=Update(id="u", announcement_id="a1", status="resolved", body="All good"), thread=(first,)))
    assert p.parts == ("[Resolved] Outage\n\nAll good",) and p.reply_to == first


# ---------------------------------------------------------------- check, retract, secrets


def test_check_and_retract():
    fake = Fake()
    ch = make(fake)
    assert ch.check() == f"@ops on {BASE}"
    ch.retract(Receipt(remote_id="1", extra={"ids": ["1", "2"]}))
    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert [r.url.path for r in deletes] == ["/api/v1/statuses/2", "/api/v1/statuses/1"]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in deletes)


def test_secret_never_shows():
    ch = make(Fake(status_reply=httpx.Response(401, json={"error": "invalid"})))
    assert TOKEN not in repr(ch) and TOKEN not in repr(ch.settings) and TOKEN not in str(ch.settings.model_dump())
    with pytest.raises(DeliveryError) as info:
        ch.send(post("x"), key="k")
    assert TOKEN not in str(info.value) and TOKEN not in (info.value.response or "")


class ParentDeleted(Fake):
    """An instance where the earlier post (the update's reply target) was deleted."""

    def __init__(self, gone: str):
        super().__init__()
        self.gone = gone

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and json.loads(request.content).get("in_reply_to_id") == self.gone:
            self.requests.append(request)
            return httpx.Response(404, json={"error": "Record not found"})
        return super().__call__(request)


def test_an_update_whose_parent_was_deleted_is_posted_unthreaded_and_says_so():
    fake = ParentDeleted(gone="9")
    earlier = Receipt(remote_id="7", extra={"ids": ["7", "8", "9"], "last_id": "9"})
    progress = MemoryProgress()
    receipt = make(fake).send(post("[Resolved] fixed (1/2)", "more (2/2)", reply_to=earlier), key="u", progress=progress)
    bodies = [json.loads(r.content) for r in fake.posts]
    assert [b.get("in_reply_to_id") for b in bodies] == ["9", None, "101"], "refused, then on its own, then threaded"
    assert [r.headers["Idempotency-Key"] for r in fake.posts] == ["u-0", "u-0-unthreaded", "u-1"]
    assert receipt.remote_id == "101" and receipt.extra["ids"] == ["101", "102"]
    assert "(9) is gone on mastodon-main (HTTP 404): posted on its own" in receipt.extra["unthreaded"]
    # a resumed send still knows (the note travels with the part's progress)
    again = make(Fake()).send(post("[Resolved] fixed (1/2)", "more (2/2)", reply_to=earlier), key="u",
                              progress=progress)
    assert again.extra["unthreaded"] == receipt.extra["unthreaded"]


def test_a_404_for_a_first_post_or_a_later_part_is_not_turned_into_an_unthreaded_post():
    fake = Fake(status_reply=httpx.Response(404, json={"error": "Record not found"}))
    with pytest.raises(PermanentError):
        make(fake).send(post("new post"), key="n")
    assert len(fake.posts) == 1, "no parent: nothing to leave out, so no second request"
