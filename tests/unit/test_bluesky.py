"""Bluesky adapter against a fake PDS: session handling, records, facets, threads, look-up."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.bluesky import Bluesky, BlueskySettings, link_facets, rkey_for, tid
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    PermanentError,
    RateLimited,
    TransientError,
)
from broadcaster.models import Announcement, Message, Post, Receipt, Update

PASSWORD = "app-pass-abcd-efgh-ijkl"
PDS = "https://pds.example"
DID = "did:plc:abc123"
NOW = 1_700_000_000.0
CREATED = 1_699_999_000.25
TID_RE = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


class FakePDS:
    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.records: dict[str, dict] = {}
        self.sessions = 0
        self.access = "access-1"
        self.expire_next = 0  # answer this many authenticated calls with ExpiredToken
        self.create_reply: httpx.Response | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        nsid = request.url.path.removeprefix("/xrpc/")
        auth = request.headers.get("Authorization", "")
        if nsid == "com.atproto.server.createSession":
            self.sessions += 1
            body = json.loads(request.content)
            if body["password"] != PASSWORD:
                return httpx.Response(401, json={"error": "AuthenticationRequired", "message": "Invalid identifier or password"})
            return httpx.Response(200, json={"accessJwt": self.access, "refreshJwt": "refresh-1", "did": DID, "handle": "ops.example"})
        if nsid == "com.atproto.server.refreshSession":
            assert auth == "Bearer refresh-1"
            self.access = "access-2"
            return httpx.Response(200, json={"accessJwt": "access-2", "refreshJwt": "refresh-1", "did": DID, "handle": "ops.example"})
        if self.expire_next:
            self.expire_next -= 1
            return httpx.Response(400, json={"error": "ExpiredToken", "message": "Token has expired"})
        assert auth == f"Bearer {self.access}"
        if nsid == "com.atproto.repo.createRecord":
            if self.create_reply is not None:
                return self.create_reply
            body = json.loads(request.content)
            rkey = body["rkey"]
            if rkey in self.records:
                return httpx.Response(500, json={"error": "InternalServerError", "message": "There is already a value at key"})
            uri = f"at://{DID}/app.bsky.feed.post/{rkey}"
            self.records[rkey] = {"uri": uri, "cid": f"cid-{rkey}", "value": body["record"]}
            return httpx.Response(200, json={"uri": uri, "cid": f"cid-{rkey}", "commit": {}, "validationStatus": "valid"})
        if nsid == "com.atproto.repo.getRecord":
            rkey = request.url.params["rkey"]
            if rkey not in self.records:
                return httpx.Response(400, json={"error": "RecordNotFound", "message": "Could not locate record"})
            return httpx.Response(200, json=self.records[rkey])
        if nsid == "com.atproto.repo.deleteRecord":
            self.records.pop(json.loads(request.content)["rkey"], None)
            return httpx.Response(200, json={})
        if nsid == "com.atproto.server.getSession":
            return httpx.Response(200, json={"handle": "ops.example", "did": DID})
        return httpx.Response(501, json={"error": "MethodNotImplemented"})

    def calls(self, nsid: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == f"/xrpc/{nsid}"]

    def created(self) -> list[dict]:
        return [json.loads(r.content) for r in self.calls("com.atproto.repo.createRecord")]


def make(fake: FakePDS, password: str = PASSWORD) -> Bluesky:
    s = BlueskySettings(handle="ops.example", app_password=password, base_url=PDS)
    return Bluesky("bsky", s, http=httpx.Client(transport=httpx.MockTransport(fake), base_url=PDS), clock=lambda: NOW)


def post(*parts: str, reply_to: Receipt | None = None) -> Post:
    return Post(channel="bsky", kind="incident", title="t", text=parts[0], parts=parts, reply_to=reply_to, meta={"created_at": CREATED})


# ---------------------------------------------------------------- pure pieces


def test_tid_syntax_and_determinism():
    assert tid(0, 0) == "2222222222222"
    keys = {rkey_for("delivery-1", i, CREATED) for i in range(5)}
    assert len(keys) == 5 and all(TID_RE.match(k) for k in keys)
    assert rkey_for("delivery-1", 3, CREATED) == rkey_for("delivery-1", 3, CREATED)
    assert rkey_for("delivery-1", 0, CREATED) != rkey_for("delivery-2", 0, CREATED)
    # sortable: later parts sort after earlier ones
    assert sorted(rkey_for("k", i, CREATED) for i in range(12)) == [rkey_for("k", i, CREATED) for i in range(12)]


def test_link_facets_use_utf8_byte_offsets():
    text = "Ünïcode 👍🏽 see https://status.example.com/x and http://b.example."
    (f1, f2) = link_facets(text)
    raw = text.encode()
    assert raw[f1["index"]["byteStart"] : f1["index"]["byteEnd"]] == b"https://status.example.com/x"
    assert raw[f2["index"]["byteStart"] : f2["index"]["byteEnd"]] == b"http://b.example"
    assert f1["features"] == [{"$type": "app.bsky.richtext.facet#link", "uri": "https://status.example.com/x"}]
    assert f1["index"]["byteStart"] == len("Ünïcode 👍🏽 see ".encode())


# ---------------------------------------------------------------- send


def test_send_logs_in_once_and_creates_the_exact_record():
    fake = FakePDS()
    ch = make(fake)
    receipt = ch.send(post("Down: https://status.example.com"), key="dlv-1")
    ch.send(post("Second"), key="dlv-2")
    assert fake.sessions == 1
    login = json.loads(fake.calls("com.atproto.server.createSession")[0].content)
    assert login == {"identifier": "ops.example", "password": PASSWORD}
    body = fake.created()[0]
    rkey = rkey_for("dlv-1", 0, CREATED)
    assert body == {
        "repo": DID,
        "collection": "app.bsky.feed.post",
        "rkey": rkey,
        "record": {
            "$type": "app.bsky.feed.post",
            "text": "Down: https://status.example.com",
            "createdAt": "2023-11-14T21:56:40.250Z",
            "facets": [
                {
                    "index": {"byteStart": 6, "byteEnd": 32},
                    "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://status.example.com"}],
                }
            ],
        },
    }
    assert receipt.remote_id == f"at://{DID}/app.bsky.feed.post/{rkey}"
    assert receipt.url == f"https://bsky.app/profile/ops.example/post/{rkey}"
    assert receipt.extra["cid"] == f"cid-{rkey}" and receipt.extra["rkeys"] == [rkey]


def test_thread_parts_carry_root_and_parent_refs():
    fake = FakePDS()
    receipt = make(fake).send(post("a (1/3)", "b (2/3)", "c (3/3)"), key="k")
    bodies = fake.created()
    refs = [{"uri": f"at://{DID}/app.bsky.feed.post/{b['rkey']}", "cid": f"cid-{b['rkey']}"} for b in bodies]
    assert "reply" not in bodies[0]["record"]
    assert bodies[1]["record"]["reply"] == {"root": refs[0], "parent": refs[0]}
    assert bodies[2]["record"]["reply"] == {"root": refs[0], "parent": refs[1]}
    assert receipt.extra["root"] == refs[0] and receipt.extra["last"] == refs[2]
    # createdAt is fixed per part, independent of the clock
    assert [b["record"]["createdAt"] for b in bodies] == ["2023-11-14T21:56:40.250Z", "2023-11-14T21:56:40.251Z", "2023-11-14T21:56:40.252Z"]


def test_update_replies_under_the_earlier_thread():
    fake = FakePDS()
    ch = make(fake)
    first = ch.send(post("a (1/2)", "b (2/2)"), key="k")
    ch.send(post("[Resolved] ok", reply_to=first), key="u")
    reply = fake.created()[-1]["record"]["reply"]
    assert reply == {"root": first.extra["root"], "parent": first.extra["last"]}


def test_expired_token_refreshes_and_retries_once():
    fake = FakePDS()
    ch = make(fake)
    ch.send(post("one"), key="k1")
    fake.expire_next = 1
    ch.send(post("two"), key="k2")
    assert fake.sessions == 1
    assert len(fake.calls("com.atproto.server.refreshSession")) == 1
    assert fake.calls("com.atproto.repo.createRecord")[-1].headers["Authorization"] == "Bearer access-2"
    assert len(fake.created()) == 3  # one, the refused two, two again


def test_token_still_refused_after_refresh_is_an_auth_error():
    fake = FakePDS()
    fake.expire_next = 2
    with pytest.raises(AuthError):
        make(fake).send(post("x"), key="k")


def test_wrong_app_password_is_an_auth_error_without_the_password():
    fake = FakePDS()
    ch = make(fake, password="wrong-password-xyz")
    with pytest.raises(AuthError) as info:
        ch.send(post("x"), key="k")
    assert "wrong-password-xyz" not in str(info.value) + (info.value.response or "")
    assert "wrong-password-xyz" not in repr(ch) + repr(ch.settings)


def test_retry_of_a_landed_record_finds_it_instead_of_failing():
    fake = FakePDS()
    ch = make(fake)
    first = ch.send(post("a (1/2)", "b (2/2)"), key="k")
    again = ch.send(post("a (1/2)", "b (2/2)"), key="k")  # no progress: the PDS refuses the keys
    assert again.extra == first.extra
    assert len(fake.records) == 2


def test_progress_skips_parts_already_done():
    fake = FakePDS()
    progress = MemoryProgress()
    ch = make(fake)
    ch.send(post("a (1/2)", "b (2/2)"), key="k", progress=progress)
    assert {item: state for item, (state, _) in progress.states().items()} == {"part:0": "done", "part:1": "done"}
    before = len(fake.requests)
    ch.send(post("a (1/2)", "b (2/2)"), key="k", progress=progress)
    assert len(fake.requests) == before  # nothing sent again


@pytest.mark.parametrize(
    "response, error",
    [
        (httpx.Response(400, json={"error": "InvalidRequest", "message": "Record/text must not be longer than 300 graphemes"}), ContentRejected),
        (httpx.Response(400, json={"error": "InvalidSwap"}), PermanentError),
        (httpx.Response(401, json={"error": "AccountTakedown"}), AuthError),
        (httpx.Response(403, json={"error": "Forbidden"}), AuthError),
        (httpx.Response(413, text="too large"), ContentRejected),
        (httpx.Response(501, json={"error": "MethodNotImplemented"}), PermanentError),
        (httpx.Response(502, json={"error": "UpstreamFailure"}), TransientError),
        (httpx.Response(503, text="<html>down</html>"), TransientError),
        (httpx.Response(200, json={"unexpected": True}), AmbiguousDelivery),
    ],
)
def test_error_table(response, error):
    fake = FakePDS()
    fake.create_reply = response
    with pytest.raises(error) as info:
        make(fake).send(post("x"), key="k")
    assert type(info.value) is error


def test_rate_limit_uses_the_reset_epoch():
    fake = FakePDS()
    fake.create_reply = httpx.Response(429, json={"error": "RateLimitExceeded"}, headers={"RateLimit-Reset": str(int(NOW) + 90)})
    with pytest.raises(RateLimited) as info:
        make(fake).send(post("x"), key="k")
    assert info.value.retry_after == pytest.approx(90)


# ---------------------------------------------------------------- lookup, check, retract, render


def test_lookup_tells_whether_the_thread_landed():
    fake = FakePDS()
    ch = make(fake)
    p = post("a (1/2)", "b (2/2)")
    assert ch.lookup(p, key="k") is None
    sent = ch.send(p, key="k")
    assert ch.lookup(p, key="k") == sent
    lookups = fake.calls("com.atproto.repo.getRecord")
    assert lookups[0].url.params["rkey"] == rkey_for("k", 0, CREATED) and lookups[0].url.params["repo"] == DID


def test_check_and_retract():
    fake = FakePDS()
    ch = make(fake)
    assert ch.check() == f"@ops.example ({DID})"
    receipt = ch.send(post("a (1/2)", "b (2/2)"), key="k")
    ch.retract(receipt)
    assert fake.records == {}
    deleted = [json.loads(r.content)["rkey"] for r in fake.calls("com.atproto.repo.deleteRecord")]
    assert deleted == list(reversed(receipt.extra["rkeys"]))


def test_render_sets_created_at_from_the_message_and_fits_300_graphemes():
    ch = make(FakePDS())
    a = Announcement(id="a", kind="incident", title="T", body="x " * 400, created_at=CREATED)
    p = ch.render(Message(a))
    assert p.meta["created_at"] == CREATED
    assert len(p.parts) == 3 and all(ch.count(q) <= 300 for q in p.parts)
    u = Update(id="u", announcement_id="a", status="resolved", body="ok", created_at=CREATED + 60)
    assert ch.render(Message(a, update=u)).meta["created_at"] == CREATED + 60
    scheduled = Announcement(id="b", kind="promotion", title="T", created_at=CREATED, publish_at=CREATED + 3600)
    assert ch.render(Message(scheduled)).meta["created_at"] == CREATED + 3600


def test_render_threads_on_bytes_when_graphemes_would_fit():
    ch = make(FakePDS())
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    a = Announcement(id="a", kind="incident", title="T", body=" ".join([family] * 200))  # 400 graphemes, 3.8 kB
    parts = make(FakePDS()).render(Message(a)).parts
    assert len(parts) > 1 and all(len(q.encode()) <= 3000 and ch.count(q) <= 300 for q in parts)


class ParentDeleted(FakePDS):
    """A PDS that refuses a reply whose parent record is gone."""

    def __init__(self, gone: str, status: int = 404):
        super().__init__()
        self.gone, self.status = gone, status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("createRecord"):
            reply = json.loads(request.content)["record"].get("reply") or {}
            if reply.get("parent", {}).get("uri") == self.gone:
                self.requests.append(request)
                return httpx.Response(self.status, json={"error": "RecordNotFound", "message": "Could not locate record"})
        return super().__call__(request)


@pytest.mark.parametrize("status", [404, 400])
def test_an_update_whose_parent_was_deleted_is_posted_unthreaded_and_says_so(status):
    first = make(FakePDS()).send(post("a (1/2)", "b (2/2)"), key="k")
    fake = ParentDeleted(first.extra["last"]["uri"], status)
    receipt = make(fake).send(post("[Resolved] ok (1/2)", "more (2/2)", reply_to=first), key="u")
    bodies = fake.created()
    assert bodies[0]["record"]["reply"]["parent"] == first.extra["last"], "the thread was tried first"
    assert "reply" not in bodies[1]["record"] and bodies[1]["rkey"] == bodies[0]["rkey"]
    own = {"uri": receipt.extra["uri"], "cid": receipt.extra["cid"]}
    assert bodies[2]["record"]["reply"] == {"root": own, "parent": own}, "the rest threads under the new post"
    assert receipt.extra["root"] == own
    assert f"({first.extra['last']['uri']}) is gone on bsky" in receipt.extra["unthreaded"]
