"""Google Chat and Mattermost incoming webhooks against fakes: exact requests, threads (Google
Chat), escaping of mentions and masked links, and the error maps."""

from __future__ import annotations

import json

import httpx
import pytest

from broadcaster import delivery
from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.google_chat import GoogleChat, GoogleChatSettings
from broadcaster.channels.mattermost import Mattermost, MattermostSettings
from broadcaster.config import ChannelPolicy
from broadcaster.errors import AmbiguousDelivery, AuthError, PermanentError, RateLimited, TransientError
from broadcaster.models import Announcement, DeliveryState, Message, Post, Receipt

GC_URL = "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=k3y&token=t0ken-s3cr3t"
MM_URL = "https://mm.example.com/hooks/h00ks3cr3t"
WJ = "\u2060"


def client(replies: list, seen: list, default) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if replies:
            reply = replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        return default(request)

    return httpx.Client(transport=httpx.MockTransport(handler))


def gc_ok(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    n = len(body["text"])
    return httpx.Response(200, json={"name": f"spaces/AAAA/messages/m{n}",
                                     "thread": {"name": "spaces/AAAA/threads/t1",
                                                "threadKey": body.get("thread", {}).get("threadKey")}})


def gchat(replies=None, seen=None, **kw) -> GoogleChat:
    seen = seen if seen is not None else []
    return GoogleChat("gc", GoogleChatSettings(url=GC_URL, **kw), http=client(list(replies or []), seen, gc_ok))


def mm(replies=None, seen=None, **kw) -> Mattermost:
    seen = seen if seen is not None else []
    return Mattermost("mm", MattermostSettings(url=MM_URL, **kw),
                      http=client(list(replies or []), seen, lambda r: httpx.Response(200, text="ok")))


def post(*parts: str, reply_to: Receipt | None = None, announcement_id: str = "ann1") -> Post:
    return Post(channel="x", kind="incident", title="t", text=parts[0], parts=parts, reply_to=reply_to,
                meta={"announcement_id": announcement_id})


# ---------------------------------------------------------------- Google Chat


def test_google_chat_request_and_thread_key():
    seen: list = []
    receipt = gchat(seen=seen).send(post("API down"), key="k")
    (req,) = seen
    assert str(req.url) == GC_URL + "&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
    body = json.loads(req.content)
    assert body["text"] == "API down" and body["thread"]["threadKey"].startswith("bc-")
    assert receipt.remote_id == "spaces/AAAA/messages/m8"
    assert receipt.extra["thread_key"] == body["thread"]["threadKey"]


def test_google_chat_update_uses_the_first_posts_thread_key():
    seen: list = []
    first = gchat(seen=seen).send(post("first"), key="k1")
    gchat(seen=seen).send(post("update", reply_to=first, announcement_id="ann1"), key="k2")
    other = gchat(seen=seen).send(post("other", announcement_id="ann2"), key="k3")
    keys = [json.loads(r.content)["thread"]["threadKey"] for r in seen]
    assert keys[0] == keys[1] != keys[2] and other.extra["thread_key"] == keys[2]


def test_google_chat_without_threads():
    seen: list = []
    gchat(seen=seen, threads=False).send(post("x"), key="k")
    assert str(seen[0].url) == GC_URL and "thread" not in json.loads(seen[0].content)


def test_google_chat_parts_continue_after_progress():
    seen: list = []
    progress = MemoryProgress()
    progress.mark(["part:0"], "done", "spaces/AAAA/messages/early")
    receipt = gchat(seen=seen).send(post("a", "b"), key="k", progress=progress)
    assert len(seen) == 1 and receipt.extra["names"][0] == "spaces/AAAA/messages/early"


def test_google_chat_escaping():
    ch = gchat()
    text = "Ping <users/all> or see <https://evil.example|https://bank.example>"
    escaped = ch.escape(text)
    assert "<users/all>" not in escaped and "<https://evil" not in escaped
    assert escaped.replace(WJ, "") == text  # reads the same
    allowed = gchat(mentions=True).escape(text)
    assert "<users/all>" in allowed and "<https://evil" not in allowed


def test_google_chat_render_splits_at_4096():
    msg = Message(announcement=Announcement(id="a", kind="incident", title="T", body="word " * 1200))
    parts = gchat().render(msg).parts
    assert len(parts) > 1 and all(len(p) <= 4096 for p in parts)


def google_error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": status, "message": "m", "status": code}})


@pytest.mark.parametrize(("reply", "error", "words"), [
    (google_error(429, "RESOURCE_EXHAUSTED"), RateLimited, "RESOURCE_EXHAUSTED"),
    (google_error(403, "PERMISSION_DENIED"), AuthError, "removed"),
    (google_error(404, "NOT_FOUND"), PermanentError, "not found"),
    (google_error(400, "INVALID_ARGUMENT"), PermanentError, "HTTP 400"),
    (google_error(503, "UNAVAILABLE"), TransientError, "HTTP 503"),
    (httpx.Response(200, json={}), AmbiguousDelivery, "without a message name"),
])
def test_google_chat_classification(reply, error, words):
    with pytest.raises(error) as info:
        gchat([reply]).send(post("x"), key="k")
    assert words in str(info.value) and "t0ken-s3cr3t" not in str(info.value)


def test_google_chat_rate_limit_honours_retry_after():
    limited = httpx.Response(429, headers={"Retry-After": "6"}, json={"error": {"status": "RESOURCE_EXHAUSTED"}})
    with pytest.raises(RateLimited) as info:
        gchat([limited]).send(post("x"), key="k")
    assert info.value.retry_after == 6.0


def test_webhooks_have_no_idempotency_so_ambiguous_ends_unknown():
    for ch in (gchat([httpx.ReadTimeout("t")]), mm([httpx.ReadTimeout("t")])):
        with pytest.raises(AmbiguousDelivery) as info:
            ch.send(post("x"), key="k")
        dec = delivery.decide(info.value, attempt=1, now=0.0, deadline_at=None, policy=ChannelPolicy(),
                              idempotent=ch.idempotent, can_lookup=ch.can_lookup, public=ch.public)
        assert dec.state == DeliveryState.UNKNOWN
        assert not ch.can_retract


# ---------------------------------------------------------------- Mattermost


def test_mattermost_request():
    seen: list = []
    receipt = mm(seen=seen, username="Status", icon_url="https://status.example.com/icon.png",
                 channel="town-square").send(post("API down"), key="k")
    (req,) = seen
    assert str(req.url) == MM_URL and req.headers["Content-Type"] == "application/json"
    assert json.loads(req.content) == {"text": "API down", "username": "Status",
                                       "icon_url": "https://status.example.com/icon.png", "channel": "town-square"}
    assert receipt.remote_id == "k:0"


def test_mattermost_escaping_defuses_mentions_but_not_emails():
    text = "@channel @all @here @alice: mail ops@example.com, see [bank](https://evil.example)"
    escaped = mm().escape(text)
    assert escaped == (f"@{WJ}channel @{WJ}all @{WJ}here @{WJ}alice: mail ops@example.com, "
                       "see [bank] (https://evil.example)")
    assert mm(mentions=True).escape(text).startswith("@channel @all")


def test_mattermost_length_is_configurable():
    msg = Message(announcement=Announcement(id="a", kind="incident", title="T", body="word " * 900))
    assert len(mm().render(msg).parts) == 1
    parts = mm(max_characters=4000).render(msg).parts
    assert len(parts) == 2 and all(len(p) <= 4000 for p in parts)


@pytest.mark.parametrize(("reply", "error", "words"), [
    (httpx.Response(400, json={"id": "web.incoming_webhook.invalid.app_error", "message": "Invalid webhook",
                               "status_code": 400}), PermanentError, "does not exist"),
    (httpx.Response(404, text="Not found"), PermanentError, "does not exist"),
    (httpx.Response(400, json={"id": "web.incoming_webhook.text.app_error"}), PermanentError, "HTTP 400"),
    (httpx.Response(403, json={"id": "api.context.permissions.app_error"}), AuthError, "HTTP 403"),
    (httpx.Response(500, text="boom"), TransientError, "HTTP 500"),
])
def test_mattermost_classification(reply, error, words):
    with pytest.raises(error) as info:
        mm([reply]).send(post("x"), key="k")
    assert words in str(info.value) and "h00ks3cr3t" not in str(info.value)


def test_mattermost_rate_limit_reset_seconds():
    with pytest.raises(RateLimited) as info:
        mm([httpx.Response(429, headers={"X-Ratelimit-Reset": "3"})]).send(post("x"), key="k")
    assert info.value.retry_after == 3.0


def test_mattermost_parts_continue_after_progress():
    seen: list = []
    progress = MemoryProgress()
    progress.mark(["part:0"], "done", "k:0")
    mm(seen=seen).send(post("a", "b"), key="k", progress=progress)
    assert [json.loads(r.content)["text"] for r in seen] == ["b"]
