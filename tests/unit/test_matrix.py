"""Matrix adapter against a fake homeserver: exact requests, txnId idempotency, threads, errors."""

from __future__ import annotations

import json
from urllib.parse import unquote

import httpx
import pytest

from broadcaster import delivery
from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.matrix import Matrix, MatrixSettings, txn_id
from broadcaster.config import ChannelPolicy
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    PermanentError,
    RateLimited,
    TransientError,
)
from broadcaster.models import DeliveryState, Post, Receipt

TOKEN = "syt_s3cr3t_matrix_token"
HS = "https://hs.test"
ROOM = "!ops:example.org"


class FakeHomeserver:
    """Remembers txnIds per token like a real homeserver."""

    def __init__(self, replies: list[httpx.Response] | None = None):
        self.requests: list[httpx.Request] = []
        self.replies = list(replies or [])
        self.txns: dict[str, str] = {}
        self.events = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.replies:
            return self.replies.pop(0)
        if request.url.path.endswith("/whoami"):
            return httpx.Response(200, json={"user_id": "@status:example.org"})
        txn = request.url.path.rsplit("/", 1)[1]
        if txn not in self.txns:
            self.events += 1
            self.txns[txn] = f"$ev{self.events}"
        return httpx.Response(200, json={"event_id": self.txns[txn]})

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.method == "PUT"]


def make(fake, **kw) -> Matrix:
    s = MatrixSettings(homeserver=HS, access_token=TOKEN, room_id=ROOM, **kw)
    return Matrix("mx", s, http=httpx.Client(transport=httpx.MockTransport(fake)))


def post(*parts: str, reply_to: Receipt | None = None) -> Post:
    return Post(channel="mx", kind="incident", title="t", text=parts[0], parts=parts, reply_to=reply_to)


def mx_error(status: int, errcode: str, error: str = "", **extra) -> httpx.Response:
    return httpx.Response(status, json={"errcode": errcode, "error": error, **extra})


def test_send_makes_the_exact_request():
    fake = FakeHomeserver()
    receipt = make(fake).send(post("API <down> & out"), key="k1")
    (req,) = fake.requests
    assert req.method == "PUT"
    assert req.url.raw_path.decode().startswith("/_matrix/client/v3/rooms/%21ops%3Aexample.org/send/m.room.message/")
    assert req.url.path.rsplit("/", 1)[1] == txn_id("k1", "part:0")
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(req.content) == {"msgtype": "m.notice", "body": "API <down> & out",
                                       "format": "org.matrix.custom.html",
                                       "formatted_body": "API &lt;down&gt; &amp; out", "m.mentions": {}}
    assert receipt.remote_id == "$ev1" and receipt.extra == {"ids": ["$ev1"], "last_id": "$ev1", "root": "$ev1"}
    assert unquote(receipt.url) == f"https://matrix.to/#/{ROOM}/$ev1"


def test_progress_skips_parts_that_landed():
    fake = FakeHomeserver()
    progress = MemoryProgress()
    progress.mark(["part:0"], "done", "$early")
    receipt = make(fake).send(post("a", "b"), key="k", progress=progress)
    assert len(fake.requests) == 1 and receipt.extra["ids"] == ["$early", "$ev1"]
    assert fake.bodies()[0]["m.relates_to"]["event_id"] == "$early"


def test_txn_id_is_stable_per_delivery_and_part():
    assert txn_id("k", "part:0") == txn_id("k", "part:0")
    assert len({txn_id("k", "part:0"), txn_id("k", "part:1"), txn_id("k2", "part:0")}) == 3


def test_a_resend_after_an_accepted_but_lost_answer_yields_one_event():
    """The first PUT reaches the server (it makes the event) but the answer is lost; the retry
    carries the same txnId and the server answers with the event it already made."""
    fake = FakeHomeserver()
    state = {"calls": 0}

    def lossy(request: httpx.Request) -> httpx.Response:
        state["calls"] += 1
        answer = fake(request)
        if state["calls"] == 1:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return answer

    ch = make(lossy)
    with pytest.raises(AmbiguousDelivery) as info:
        ch.send(post("x"), key="k")
    dec = delivery.decide(info.value, attempt=1, now=0.0, deadline_at=None, policy=ChannelPolicy(),
                          idempotent=ch.idempotent, can_lookup=ch.can_lookup, public=ch.public)
    assert dec.state == DeliveryState.RETRYING and "same idempotency key" in dec.reason
    receipt = ch.send(post("x"), key="k")
    assert fake.events == 1 and receipt.remote_id == "$ev1"


def test_parts_and_updates_go_into_the_thread_of_the_first_message():
    fake = FakeHomeserver()
    first = make(fake).send(post("a", "b"), key="k1")
    assert "m.relates_to" not in fake.bodies()[0]
    assert fake.bodies()[1]["m.relates_to"] == {"rel_type": "m.thread", "event_id": "$ev1", "is_falling_back": True,
                                                "m.in_reply_to": {"event_id": "$ev1"}}
    make(fake).send(post("resolved", reply_to=first), key="k3")
    assert fake.bodies()[-1]["m.relates_to"]["event_id"] == "$ev1"
    assert fake.bodies()[-1]["m.relates_to"]["m.in_reply_to"] == {"event_id": "$ev2"}


@pytest.mark.parametrize(("reply", "error", "words"), [
    (mx_error(401, "M_UNKNOWN_TOKEN", "Invalid token"), AuthError, "M_UNKNOWN_TOKEN"),
    (mx_error(403, "M_FORBIDDEN", "User not in room"), PermanentError, "invite"),
    (mx_error(413, "M_TOO_LARGE"), ContentRejected, "too large"),
    (mx_error(400, "M_BAD_JSON"), PermanentError, "M_BAD_JSON"),
    (mx_error(502, "M_UNKNOWN"), TransientError, "HTTP 502"),
    (httpx.Response(200, json={}), AmbiguousDelivery, "without an event id"),
])
def test_classification(reply, error, words):
    with pytest.raises(error) as info:
        make(FakeHomeserver([reply])).send(post("x"), key="k")
    assert words in str(info.value) and TOKEN not in str(info.value)


def test_limit_exceeded_waits_retry_after_ms():
    limited = mx_error(429, "M_LIMIT_EXCEEDED", "Too many", retry_after_ms=2500)
    with pytest.raises(RateLimited) as info:
        make(FakeHomeserver([limited])).send(post("x"), key="k")
    assert info.value.retry_after == 2.5
    header_only = httpx.Response(429, json={"errcode": "M_LIMIT_EXCEEDED"}, headers={"Retry-After": "4"})
    with pytest.raises(RateLimited) as info:
        make(FakeHomeserver([header_only])).send(post("x"), key="k")
    assert info.value.retry_after == 4.0


def test_retract_redacts_every_event_and_tolerates_gone():
    fake = FakeHomeserver([httpx.Response(200, json={"event_id": "$r1"}), mx_error(404, "M_NOT_FOUND")])
    make(fake).retract(Receipt(remote_id="$a", extra={"ids": ["$a", "$b"]}))
    paths = [unquote(r.url.path) for r in fake.requests]
    assert "/redact/$b/" in paths[0] and "/redact/$a/" in paths[1]


def test_check_names_the_user():
    assert "@status:example.org" in make(FakeHomeserver()).check()


@pytest.mark.parametrize("room", ["#ops:example.org", "ops", "!a b", "!a/b"])
def test_room_alias_and_junk_are_refused_by_the_settings(room):
    with pytest.raises(ValueError):
        MatrixSettings(homeserver=HS, access_token=TOKEN, room_id=room)


def test_room_ids_without_a_server_part_are_accepted():
    MatrixSettings(homeserver=HS, access_token=TOKEN, room_id="!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM")
