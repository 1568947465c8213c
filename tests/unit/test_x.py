"""X adapter against a fake API: exact requests, threads, the duplicate signal, error map."""

from __future__ import annotations

import json

import httpx
import pytest

from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.x import X, XSettings
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    DeliveryError,
    PermanentError,
    RateLimited,
    TransientError,
)
from broadcaster.models import Announcement, Message, Post, Receipt

TOKEN = "x-user-token-s3cr3t"
BASE = "https://api.x.test"
NOW = 1_700_000_000.0
DUPLICATE = httpx.Response(
    403,
    json={"detail": "You are not allowed to create a Tweet with duplicate content.", "type": "about:blank", "title": "Forbidden", "status": 403},
)


class FakeX:
    def __init__(self, replies: list[httpx.Response] | None = None):
        self.requests: list[httpx.Request] = []
        self.replies = list(replies or [])
        self.next_id = 1000

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/2/tweets" and request.method == "POST":
            if self.replies:
                return self.replies.pop(0)
            self.next_id += 1
            text = json.loads(request.content)["text"]
            return httpx.Response(201, json={"data": {"id": str(self.next_id), "text": text, "edit_history_post_ids": [str(self.next_id)]}})
        if request.url.path == "/2/users/me":
            return httpx.Response(200, json={"data": {"id": "42", "username": "ops", "name": "Ops"}})
        if request.method == "DELETE":
            return httpx.Response(200, json={"data": {"deleted": True}})
        return httpx.Response(404)

    @property
    def posts(self):
        return [r for r in self.requests if r.method == "POST"]


def make(fake: FakeX, **kw) -> X:
    s = XSettings(base_url=BASE, access_token=TOKEN, **kw)
    return X("x-main", s, http=httpx.Client(transport=httpx.MockTransport(fake), base_url=BASE), clock=lambda: NOW)


def post(*parts: str, reply_to: Receipt | None = None) -> Post:
    return Post(channel="x-main", kind="incident", title="t", text=parts[0], parts=parts, reply_to=reply_to)


def test_send_makes_the_exact_request():
    fake = FakeX()
    receipt = make(fake, username="ops").send(post("API down"), key="k")
    (req,) = fake.posts
    assert str(req.url) == f"{BASE}/2/tweets"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Content-Type"] == "application/json"
    assert json.loads(req.content) == {"text": "API down"}
    assert receipt == Receipt(remote_id="1001", url="https://x.com/ops/status/1001", extra={"ids": ["1001"], "last_id": "1001"})


def test_thread_replies_chain():
    fake = FakeX()
    receipt = make(fake).send(post("a (1/3)", "b (2/3)", "c (3/3)"), key="k")
    bodies = [json.loads(r.content) for r in fake.posts]
    assert bodies[0] == {"text": "a (1/3)"}
    assert bodies[1] == {"text": "b (2/3)", "reply": {"in_reply_to_tweet_id": "1001"}}
    assert bodies[2] == {"text": "c (3/3)", "reply": {"in_reply_to_tweet_id": "1002"}}
    assert receipt.url == "https://x.com/i/status/1001" and receipt.extra["last_id"] == "1003"


def test_update_replies_to_the_last_part():
    fake = FakeX()
    make(fake).send(post("[Resolved] ok", reply_to=Receipt(remote_id="1", extra={"last_id": "3"})), key="u")
    assert json.loads(fake.posts[0].content)["reply"] == {"in_reply_to_tweet_id": "3"}


def test_duplicate_means_already_posted():
    receipt = make(FakeX([DUPLICATE])).send(post("same text"), key="k")
    assert receipt.remote_id is None and receipt.url is None
    assert receipt.extra["duplicate"] is True


def test_duplicate_part_in_a_thread_is_skipped_and_the_thread_continues():
    fake = FakeX([httpx.Response(201, json={"data": {"id": "7"}}), DUPLICATE])
    progress = MemoryProgress()
    receipt = make(fake).send(post("a (1/3)", "b (2/3)", "c (3/3)"), key="k", progress=progress)
    assert json.loads(fake.posts[2].content)["reply"] == {"in_reply_to_tweet_id": "7"}
    assert receipt.remote_id == "7" and receipt.extra["duplicate_parts"] == [1]
    assert progress.states()["part:1"] == ("done", "")


def test_progress_skips_done_parts():
    fake = FakeX()
    progress = MemoryProgress()
    progress.mark(["part:0"], "done", "500")
    receipt = make(fake).send(post("a (1/2)", "b (2/2)"), key="k", progress=progress)
    assert len(fake.posts) == 1 and json.loads(fake.posts[0].content)["reply"] == {"in_reply_to_tweet_id": "500"}
    assert receipt.extra["ids"] == ["500", "1001"]


@pytest.mark.parametrize(
    "response, error",
    [
        (httpx.Response(401, json={"title": "Unauthorized", "status": 401}), AuthError),
        (httpx.Response(403, json={"title": "Forbidden", "detail": "You are not permitted to perform this action.", "status": 403}), PermanentError),
        (httpx.Response(400, json={"title": "Invalid Request", "detail": "text length exceeds 280", "status": 400}), ContentRejected),
        (httpx.Response(400, json={"title": "Invalid Request", "detail": "bad reply id", "status": 400}), PermanentError),
        (httpx.Response(404, json={"title": "Not Found"}), PermanentError),
        (httpx.Response(500, text="Internal"), TransientError),
        (httpx.Response(503, json={"title": "Service Unavailable"}), TransientError),
        (httpx.Response(200, json={"errors": [{"message": "nope"}]}), PermanentError),
        (httpx.Response(201, text=""), AmbiguousDelivery),
    ],
)
def test_error_table(response, error):
    with pytest.raises(error) as info:
        make(FakeX([response])).send(post("x"), key="k")
    assert type(info.value) is error
    assert info.value.response.startswith(f"HTTP {response.status_code}")


def test_rate_limit_waits_for_the_reset_epoch():
    reply = httpx.Response(429, json={"title": "Too Many Requests"},
                           headers={"x-rate-limit-reset": str(int(NOW) + 300), "x-rate-limit-remaining": "0"})
    with pytest.raises(RateLimited) as info:
        make(FakeX([reply])).send(post("x"), key="k")
    assert info.value.retry_after == pytest.approx(300)


def test_rate_limit_prefers_a_spent_24_hour_quota():
    headers = {
        "x-rate-limit-reset": str(int(NOW) + 300),
        "x-user-limit-24hour-remaining": "0",
        "x-user-limit-24hour-reset": str(int(NOW) + 7200),
    }
    with pytest.raises(RateLimited) as info:
        make(FakeX([httpx.Response(429, headers=headers)])).send(post("x"), key="k")
    assert info.value.retry_after == pytest.approx(7200)


def test_render_uses_weighted_length():
    ch = make(FakeX())
    fits = Announcement(id="a", kind="notice", title="日" * 140)  # 280 weighted
    assert ch.render(Message(fits)).parts == ("日" * 140,)
    over = Announcement(id="a", kind="notice", title="日" * 100, body="日本 " * 40)
    parts = ch.render(Message(over)).parts
    assert len(parts) == 2 and all(ch.count(p) <= 280 for p in parts)


def test_check_retract_and_secret():
    fake = FakeX()
    ch = make(fake)
    assert ch.check() == "@ops (id 42)"
    ch.retract(Receipt(remote_id="1", extra={"ids": ["1", "2"]}))
    assert [r.url.path for r in fake.requests if r.method == "DELETE"] == ["/2/tweets/2", "/2/tweets/1"]
    assert TOKEN not in repr(ch) + repr(ch.settings)
    with pytest.raises(DeliveryError) as info:
        make(FakeX([httpx.Response(401)])).send(post("x"), key="k")
    assert TOKEN not in str(info.value) + (info.value.response or "")


def test_an_update_whose_parent_was_deleted_is_posted_unthreaded_and_says_so():
    gone = httpx.Response(404, json={"title": "Not Found Error", "detail": "Could not find tweet with id: [3].",
                                     "type": "https://api.twitter.com/2/problems/resource-not-found", "status": 404})
    fake = FakeX([gone])
    receipt = make(fake).send(post("[Resolved] ok (1/2)", "b (2/2)", reply_to=Receipt(remote_id="1", extra={"last_id": "3"})),
                              key="u")
    bodies = [json.loads(r.content) for r in fake.posts]
    assert [b.get("reply") for b in bodies] == [{"in_reply_to_tweet_id": "3"}, None, {"in_reply_to_tweet_id": "1001"}]
    assert receipt.remote_id == "1001" and receipt.extra["ids"] == ["1001", "1002"]
    assert "(3) is gone on x-main (HTTP 404)" in receipt.extra["unthreaded"]


def test_a_refused_reply_other_than_a_missing_parent_still_fails():
    fake = FakeX([httpx.Response(403, json={"title": "Forbidden", "detail": "reply not allowed", "status": 403})])
    with pytest.raises(PermanentError):
        make(fake).send(post("[Resolved] ok", reply_to=Receipt(remote_id="1", extra={"last_id": "3"})), key="u")
    assert len(fake.posts) == 1
