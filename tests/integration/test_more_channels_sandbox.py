"""The channel kinds of issue 18 (Telegram, Matrix, Twilio SMS, Google Chat, Mattermost, Teams
Workflows), each adapter against its sandbox stand-in over loopback HTTP: the request shape the
stand-in enforces, threads, retract, and the fault modes that matter for each kind."""

from __future__ import annotations

import httpx
import pytest

from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.telegram import Telegram, TelegramSettings
from broadcaster.errors import AmbiguousDelivery, AuthError, ContentRejected, RateLimited, TransientError
from broadcaster.models import Post, Receipt
from broadcaster.sandbox import Sandbox

TOKEN = "sandbox-token"


@pytest.fixture(scope="module")
def box():
    sandbox = Sandbox(port=0, smtp_port=None).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def clean_box(box):
    box.reset()
    yield


def text_post(*parts: str, reply_to: Receipt | None = None, title: str = "t", url: str | None = None) -> Post:
    return Post(channel="c", kind="incident", title=title, text="\n".join(parts), parts=parts, reply_to=reply_to,
                url=url)


def live(box, provider: str) -> list[dict]:
    return [p for p in box.posts(provider) if not p["deleted"]]


# ---------------------------------------------------------------- Telegram


def telegram(box, token: str = "123:sandbox-bot") -> Telegram:
    s = TelegramSettings(base_url=box.url("telegram"), bot_token=token, chat_id="@example_status")
    return Telegram("tg", s, http=httpx.Client(timeout=5))


def test_telegram_posts_threads_and_retracts(box):
    ch = telegram(box)
    assert "@sandbox_bot" in ch.check()
    first = ch.send(text_post(ch.escape("Login <errors> & timeouts")), key="k1")
    update = ch.send(text_post("part one", "part two", reply_to=first), key="k2")
    posts = live(box, "telegram")
    assert [p["text"] for p in posts] == ["Login <errors> & timeouts", "part one", "part two"]
    assert posts[1]["reply_to"] == first.remote_id and posts[2]["reply_to"] == posts[1]["id"]
    ch.retract(update)
    ch.retract(first)
    assert live(box, "telegram") == []


def test_telegram_429_retry_after_is_the_exact_wait(box):
    box.set_fault("telegram", "429", count=1, seconds=7)
    with pytest.raises(RateLimited) as info:
        telegram(box).send(text_post("x"), key="k")
    assert info.value.retry_after == 7.0
    assert live(box, "telegram") == []


def test_telegram_faults(box):
    ch = telegram(box)
    box.set_fault("telegram", "5xx", count=1)
    with pytest.raises(TransientError):
        ch.send(text_post("x"), key="k")
    box.set_fault("telegram", "bad_token", count=1)
    with pytest.raises(AuthError):
        ch.send(text_post("x"), key="k")
    with pytest.raises(ContentRejected):
        ch.send(text_post("<unescaped> markup"), key="k")
    box.set_fault("telegram", "accept_then_drop", count=1)
    progress = MemoryProgress()
    with pytest.raises(AmbiguousDelivery):
        ch.send(text_post("dropped"), key="k", progress=progress)
    assert progress.states()["part:0"][0] == "sending"  # left uncertain: never re-sent blindly
    assert [p["text"] for p in live(box, "telegram")] == ["dropped"]
