"""The channel kinds of issue 18 (Telegram, Matrix, Twilio SMS, Google Chat, Mattermost, Teams
Workflows), each adapter against its sandbox stand-in over loopback HTTP: the request shape the
stand-in enforces, threads, retract, and the fault modes that matter for each kind."""

from __future__ import annotations

import httpx
import pytest

from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.google_chat import GoogleChat, GoogleChatSettings
from broadcaster.channels.matrix import Matrix, MatrixSettings
from broadcaster.channels.mattermost import Mattermost, MattermostSettings
from broadcaster.channels.telegram import Telegram, TelegramSettings
from broadcaster.channels.twilio_sms import MemoryOptOuts, TwilioSms, TwilioSmsSettings
from broadcaster.channels.webhook import Webhook, WebhookSettings
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    PermanentError,
    RateLimited,
    TransientError,
)
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


def text_post(*parts: str, reply_to: Receipt | None = None, title: str = "t", url: str | None = None,
              announcement_id: str = "ann") -> Post:
    return Post(channel="c", kind="incident", title=title, text="\n".join(parts), parts=parts, reply_to=reply_to,
                url=url, meta={"announcement_id": announcement_id})


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


# ---------------------------------------------------------------- Matrix

ROOM = "!ops:sandbox.test"


def matrix(box, token: str = TOKEN) -> Matrix:
    s = MatrixSettings(homeserver=box.url("matrix"), access_token=token, room_id=ROOM)
    return Matrix("mx", s, http=httpx.Client(timeout=5))


def test_matrix_posts_threads_and_redacts(box):
    ch = matrix(box)
    assert "@status:sandbox.test" in ch.check()
    first = ch.send(text_post("API errors"), key="k1")
    update = ch.send(text_post("resolved", reply_to=first), key="k2")
    posts = live(box, "matrix")
    assert [p["text"] for p in posts] == ["API errors", "resolved"]
    assert posts[1]["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert posts[1]["reply_to"] == first.remote_id
    ch.retract(update)
    ch.retract(first)
    assert live(box, "matrix") == []


def test_matrix_send_killed_after_acceptance_retried_with_same_txn_yields_one_event(box):
    ch = matrix(box)
    box.set_fault("matrix", "accept_then_drop", count=1)
    with pytest.raises(AmbiguousDelivery):
        ch.send(text_post("only once"), key="delivery-1")
    assert len(box.posts("matrix")) == 1  # the server made it; the answer was lost
    receipt = ch.send(text_post("only once"), key="delivery-1")
    posts = box.posts("matrix")
    assert len(posts) == 1 and receipt.remote_id == posts[0]["id"]
    puts = [r for r in box.requests("matrix") if r["method"] == "PUT"]
    assert len(puts) == 2 and puts[0]["path"] == puts[1]["path"]  # the same txnId both times


def test_matrix_faults(box):
    ch = matrix(box)
    box.set_fault("matrix", "429", count=1, seconds=3)
    with pytest.raises(RateLimited) as info:
        ch.send(text_post("x"), key="k")
    assert info.value.retry_after == 3.0
    box.set_fault("matrix", "bad_token", count=1)
    with pytest.raises(AuthError):
        ch.send(text_post("x"), key="k")
    box.set_fault("matrix", "5xx", count=1)
    with pytest.raises(TransientError):
        ch.send(text_post("x"), key="k")
    assert ch.send(text_post("x"), key="k").remote_id and len(live(box, "matrix")) == 1


# ---------------------------------------------------------------- SMS (Twilio)

ACCOUNT = "AC" + "5" * 32
N1, N2, N3 = "+15550100001", "+15550100002", "+15550100003"


def sms(box, opt_outs: MemoryOptOuts, token: str = TOKEN) -> TwilioSms:
    s = TwilioSmsSettings(base_url=box.url("twilio"), account_sid=ACCOUNT, auth_token=token,
                          from_number="+15550199999", recipients=[N1, N2, N3])
    return TwilioSms("sms", s, http=httpx.Client(timeout=5), opt_outs=opt_outs)


def test_sms_reaches_every_recipient_once_and_stop_opts_out(box):
    box.configure("twilio", unsubscribed=[N2], tokens=[TOKEN])
    store = MemoryOptOuts()
    ch = sms(box, store)
    assert "Sandbox account" in ch.check()
    receipt = ch.send(text_post("Planned maintenance tonight 22:00\u201323:00 UTC"), key="k1")
    assert receipt.extra["sent"] == 2 and receipt.extra["refused"] == 1
    assert store.opted_out([N1, N2, N3]) == {N2}
    posts = box.posts("twilio")
    assert sorted(p["to"] for p in posts) == [N1, N3]
    assert {p["encoding"] for p in posts} == {"UCS-2"}  # the en dash is not in the GSM alphabet
    box.configure("twilio", unsubscribed=[])  # even if the carrier forgot, we do not
    ch.send(text_post("Maintenance finished"), key="k2")
    creates = [r for r in box.requests("twilio") if r["method"] == "POST"]
    assert len(creates) == 5  # 3 + 2: N2 was not asked again
    assert box.state.counts()["twilio"]["duplicate_texts"] == 0


def test_sms_answer_lost_is_never_resent(box):
    box.configure("twilio", tokens=[TOKEN])
    ch = sms(box, MemoryOptOuts())
    box.set_fault("twilio", "accept_then_drop", count=1)
    progress = MemoryProgress()
    with pytest.raises(AmbiguousDelivery):
        ch.send(text_post("only once"), key="k", progress=progress)
    with pytest.raises(AmbiguousDelivery):
        ch.send(text_post("only once"), key="k", progress=progress)
    assert sorted(p["to"] for p in box.posts("twilio")) == [N1, N2, N3]  # each exactly once


def test_sms_faults(box):
    box.configure("twilio", tokens=[TOKEN])
    ch = sms(box, MemoryOptOuts())
    box.set_fault("twilio", "429", count=1, seconds=2)
    progress = MemoryProgress()
    with pytest.raises(RateLimited) as info:
        ch.send(text_post("x"), key="k", progress=progress)
    assert info.value.retry_after == 2.0
    ch.send(text_post("x"), key="k", progress=progress)
    assert len(box.posts("twilio")) == 3
    with pytest.raises(AuthError):
        sms(box, MemoryOptOuts(), token="wrong").send(text_post("x"), key="k2")


# ---------------------------------------------------------------- Teams Workflows


def teams(box, path: str) -> Webhook:
    s = WebhookSettings(url=box.url("teams") + path, format="teams_workflow")
    return Webhook("teams", s, http=httpx.Client(timeout=5))


def test_teams_workflow_card_is_accepted(box):
    teams(box, "/workflows/abc/triggers/manual/paths/invoke?sig=s3cr3t").send(
        text_post("We are investigating.", title="API errors", url="https://status.example.com/a/1"), key="k")
    [p] = live(box, "teams")
    assert p["text"] == "API errors\nWe are investigating."


def test_teams_retired_connector_is_permanent_with_the_fix(box):
    with pytest.raises(PermanentError) as info:
        teams(box, "/webhookb2/1111@2222/IncomingWebhook/3333/4444").send(text_post("x"), key="k")
    assert "create a Workflows webhook" in str(info.value)
    assert live(box, "teams") == []


# ---------------------------------------------------------------- Google Chat and Mattermost


def gchat(box, token: str = TOKEN) -> GoogleChat:
    url = f"{box.url('googlechat')}/v1/spaces/AAAA/messages?key=k3y&token={token}"
    return GoogleChat("gc", GoogleChatSettings(url=url), http=httpx.Client(timeout=5))


def test_google_chat_update_lands_in_the_thread_of_the_first_post(box):
    ch = gchat(box)
    first = ch.send(text_post("API errors", announcement_id="ann-1"), key="k1")
    ch.send(text_post("resolved", reply_to=first), key="k2")
    ch.send(text_post("another incident", announcement_id="ann-2"), key="k3")
    a, b, c = box.posts("googlechat")
    assert a["thread"] == b["thread"] != c["thread"]
    assert b["reply_to"] == a["thread"]


def test_google_chat_faults(box):
    box.configure("googlechat", tokens=[TOKEN])
    ch = gchat(box)
    box.set_fault("googlechat", "429", count=1, seconds=4)
    with pytest.raises(RateLimited) as info:
        ch.send(text_post("x"), key="k")
    assert info.value.retry_after == 4.0
    with pytest.raises(AuthError):
        gchat(box, token="wrong").send(text_post("x"), key="k")
    box.set_fault("googlechat", "accept_then_drop", count=1)
    with pytest.raises(AmbiguousDelivery):
        ch.send(text_post("dropped"), key="k")
    assert [p["text"] for p in box.posts("googlechat")] == ["dropped"]


def mattermost(box, hook: str = "h00k") -> Mattermost:
    return Mattermost("mm", MattermostSettings(url=f"{box.url('mattermost')}/hooks/{hook}", username="Status"),
                      http=httpx.Client(timeout=5))


def test_mattermost_posts_and_faults(box):
    box.configure("mattermost", tokens=["h00k"])
    ch = mattermost(box)
    ch.send(text_post(ch.escape("@channel API errors")), key="k1")
    [p] = box.posts("mattermost")
    assert p["text"] == "@\u2060channel API errors" and p["username"] == "Status"
    with pytest.raises(PermanentError):
        mattermost(box, hook="gone").send(text_post("x"), key="k")
    box.set_fault("mattermost", "429", count=1, seconds=5)
    with pytest.raises(RateLimited) as info:
        ch.send(text_post("x"), key="k")
    assert info.value.retry_after == 5.0
    box.set_fault("mattermost", "5xx", count=1)
    with pytest.raises(TransientError):
        ch.send(text_post("x"), key="k")
