"""Telegram adapter against a fake Bot API: exact requests, threads, escaping, the error map."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from broadcaster import delivery
from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.telegram import Telegram, TelegramSettings, visible_length
from broadcaster.config import ChannelPolicy
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    PermanentError,
    RateLimited,
    TransientError,
)
from broadcaster.models import Announcement, DeliveryState, Message, Post, Receipt

TOKEN = "123456:AAE-s3cr3t-bot-token"
BASE = "https://tg.test"


class FakeBot:
    def __init__(self, replies: list[httpx.Response] | None = None):
        self.requests: list[httpx.Request] = []
        self.replies = list(replies or [])
        self.next_id = 100

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.replies:
            return self.replies.pop(0)
        if request.url.path.endswith("/sendMessage"):
            self.next_id += 1
            result = {"message_id": self.next_id, "date": 1, "chat": {"id": -1}}
            return httpx.Response(200, json={"ok": True, "result": result})
        if request.url.path.endswith("/deleteMessage"):
            return httpx.Response(200, json={"ok": True, "result": True})
        if request.url.path.endswith("/getMe"):
            return httpx.Response(200, json={"ok": True, "result": {"id": 1, "is_bot": True, "username": "status_bot"}})
        return httpx.Response(404, json={"ok": False, "error_code": 404, "description": "Not Found"})

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


def make(fake: FakeBot, chat_id: str = "@example_status", **kw) -> Telegram:
    s = TelegramSettings(base_url=BASE, bot_token=TOKEN, chat_id=chat_id)
    return Telegram("tg", s, http=httpx.Client(transport=httpx.MockTransport(fake)), **kw)


def post(*parts: str, reply_to: Receipt | None = None) -> Post:
    return Post(channel="tg", kind="incident", title="t", text=parts[0], parts=parts, reply_to=reply_to)


def bot_error(status: int, description: str, **params) -> httpx.Response:
    body: dict = {"ok": False, "error_code": status, "description": description}
    if params:
        body["parameters"] = params
    return httpx.Response(status, json=body)


def test_send_makes_the_exact_request():
    fake = FakeBot()
    receipt = make(fake).send(post("API down"), key="k")
    (req,) = fake.requests
    assert str(req.url) == f"{BASE}/bot{TOKEN}/sendMessage"
    assert json.loads(req.content) == {"chat_id": "@example_status", "text": "API down", "parse_mode": "HTML",
                                       "link_preview_options": {"is_disabled": True}}
    assert receipt == Receipt(remote_id="101", url="https://t.me/example_status/101",
                              extra={"ids": ["101"], "last_id": "101", "chat_id": "@example_status"})


def test_private_channel_link_and_plain_chat_without_link():
    assert make(FakeBot(), chat_id="-1001234567").send(post("x"), key="k").url == "https://t.me/c/1234567/101"
    assert make(FakeBot(), chat_id="4242").send(post("x"), key="k").url is None


def test_thread_parts_and_updates_reply_to_the_message_before():
    fake = FakeBot()
    earlier = Receipt(remote_id="7", extra={"ids": ["7", "8"], "last_id": "8"})
    make(fake).send(post("a (1/2)", "b (2/2)", reply_to=earlier), key="k")
    bodies = fake.bodies()
    assert bodies[0]["reply_parameters"] == {"message_id": 8, "allow_sending_without_reply": True}
    assert bodies[1]["reply_parameters"] == {"message_id": 101, "allow_sending_without_reply": True}


def test_progress_skips_parts_that_landed():
    fake = FakeBot()
    progress = MemoryProgress()
    progress.mark(["part:0"], "done", "55")
    receipt = make(fake).send(post("a", "b"), key="k", progress=progress)
    assert len(fake.requests) == 1 and fake.bodies()[0]["reply_parameters"]["message_id"] == 55
    assert receipt.extra["ids"] == ["55", "101"]


def test_author_html_is_escaped_and_measured_as_telegram_does():
    msg = Message(announcement=Announcement(id="a1", kind="incident", title="<b>Bold</b> & co", body="x < y > z"))
    rendered = make(FakeBot()).render(msg)
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in rendered.text and "<b>" not in rendered.text
    assert visible_length("&lt;b&gt;") == 3
    assert visible_length("😀") == 2  # UTF-16 code units, as Telegram counts


def test_long_text_is_split_to_4096():
    msg = Message(announcement=Announcement(id="a1", kind="incident", title="T", body="word & " * 1500))
    rendered = make(FakeBot()).render(msg)
    assert len(rendered.parts) > 1 and all(visible_length(p) <= 4096 for p in rendered.parts)


def test_429_waits_exactly_retry_after():
    fake = FakeBot([bot_error(429, "Too Many Requests: retry after 35", retry_after=35)])
    with pytest.raises(RateLimited) as info:
        make(fake).send(post("x"), key="k")
    assert info.value.retry_after == 35.0
    dec = delivery.decide(info.value, attempt=1, now=1000.0, deadline_at=None, policy=ChannelPolicy(),
                          idempotent=False, can_lookup=False)
    assert dec.state == DeliveryState.RETRYING and dec.due_at == 1035.0


@pytest.mark.parametrize(("reply", "error", "words"), [
    (bot_error(401, "Unauthorized"), AuthError, "token refused"),
    (bot_error(404, "Not Found"), AuthError, "token refused"),
    (bot_error(400, "Bad Request: message is too long"), ContentRejected, "too long"),
    (bot_error(400, "Bad Request: can't parse entities: unsupported start tag"), ContentRejected, "parse"),
    (bot_error(400, "Bad Request: chat not found"), PermanentError, "chat not found"),
    (bot_error(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=-1009),
     PermanentError, "set chat_id to -1009"),
    (bot_error(403, "Forbidden: bot is not a member of the channel chat"), PermanentError, "administrator"),
    (bot_error(500, "Internal Server Error"), TransientError, "HTTP 500"),
    (bot_error(502, "Bad Gateway"), TransientError, "HTTP 502"),
    (httpx.Response(200, json={"ok": True}), AmbiguousDelivery, "without a message id"),
])
def test_classification(reply, error, words):
    with pytest.raises(error) as info:
        make(FakeBot([reply])).send(post("x"), key="k")
    assert words in str(info.value)
    assert TOKEN not in str(info.value)
    assert isinstance(info.value, error)


def test_timeout_after_sending_is_ambiguous_and_ends_unknown():
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    ch = Telegram("tg", TelegramSettings(base_url=BASE, bot_token=TOKEN, chat_id="@c"),
                  http=httpx.Client(transport=httpx.MockTransport(boom)))
    with pytest.raises(AmbiguousDelivery) as info:
        ch.send(post("x"), key="k")
    dec = delivery.decide(info.value, attempt=1, now=0.0, deadline_at=None, policy=ChannelPolicy(),
                          idempotent=ch.idempotent, can_lookup=ch.can_lookup, public=ch.public)
    assert dec.state == DeliveryState.UNKNOWN


def test_retract_deletes_every_part_last_first_and_tolerates_gone():
    fake = FakeBot([httpx.Response(200, json={"ok": True, "result": True}),
                    bot_error(400, "Bad Request: message to delete not found")])
    make(fake).retract(Receipt(remote_id="5", extra={"ids": ["5", "6"], "chat_id": "@c"}))
    assert [json.loads(r.content) for r in fake.requests] == [{"chat_id": "@c", "message_id": 6},
                                                             {"chat_id": "@c", "message_id": 5}]
    assert all(r.url.path.endswith("/deleteMessage") for r in fake.requests)


def test_retract_refused_is_permanent():
    fake = FakeBot([bot_error(400, "Bad Request: message can't be deleted")])
    with pytest.raises(PermanentError):
        make(fake).retract(Receipt(remote_id="5"))


def test_check_names_the_bot():
    assert "@status_bot" in make(FakeBot()).check()


def test_repr_and_settings_hide_the_token():
    ch = make(FakeBot())
    assert TOKEN not in repr(ch) and TOKEN not in repr(ch.settings)


def test_a_word_cut_at_the_limit_never_leaves_half_an_entity():
    class Small(Telegram):  # a small limit, so the grapheme-by-grapheme cut stays quick
        max_length = 40

    ch = Small("tg", TelegramSettings(base_url=BASE, bot_token=TOKEN, chat_id="@c"), on_too_long="truncate")
    for lead in range(6):  # shift where the cut falls
        giant = "x" * lead + "&<" * 100  # the first word: truncation must cut inside it
        msg = Message(announcement=Announcement(id="a1", kind="incident", title=giant, body="b"))
        [part] = ch.render(msg).parts
        assert visible_length(part) <= 40
        assert re.fullmatch(r"(?:[^&]|&(?:amp|lt|gt);)*", part), part[-20:]
    with pytest.raises(ContentRejected):  # a thread never cuts a word: it refuses instead
        Small("tg", TelegramSettings(base_url=BASE, bot_token=TOKEN, chat_id="@c"), on_too_long="thread").render(msg)
