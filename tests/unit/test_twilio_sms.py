"""SMS through Twilio against a fake Messages API: segment counting, the exact request, STOP
opt-outs (also durable in a real SQLite ledger), and "never twice" on ambiguous outcomes."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl

import httpx
import pytest

from broadcaster import delivery
from broadcaster.channels._sms import segments
from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.twilio_sms import MemoryOptOuts, TwilioSms, TwilioSmsSettings
from broadcaster.config import ChannelPolicy
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    PermanentError,
    RateLimited,
    RecipientsRefused,
    TransientError,
)
from broadcaster.ledger import Ledger
from broadcaster.ledger.opt_outs import OptOutStore
from broadcaster.models import Announcement, DeliveryState, Message, Post

SID = "AC" + "0" * 31 + "1"
AUTH = "tw-auth-s3cr3t-token"
A, B, C = "+15550000001", "+15550000002", "+15550000003"

# ---------------------------------------------------------------- segments

SEGMENT_TABLE = [
    # text, encoding, units, billed messages
    ("", "GSM-7", 0, 0),
    ("Hello", "GSM-7", 5, 1),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # extension table: two septets each
    ("€" * 81, "GSM-7", 162, 2),
    ("a" * 152 + "{" + "a" * 10, "GSM-7", 164, 2),  # 152+2 would straddle: the escape pair moves on
    ("a" * 152 + "[" + "a" * 152, "GSM-7", 306, 3),  # the pair cannot split, so 306 septets need 3
    ("Ünïcödé àéè £$¥ ÄÖÑÜ§¿", "UCS-2", 22, 1),  # ï is not GSM: the whole text is UCS-2
    ("ÄÖÑÜ äöñü à é è ù ì ò Ç Ø å Æ ß É", "GSM-7", 33, 1),
    ("Ω" * 160, "GSM-7", 160, 1),  # Greek capitals of the GSM alphabet
    ("ω" * 70, "UCS-2", 70, 1),  # lower-case omega is not
    ("ω" * 71, "UCS-2", 71, 2),
    ("x" * 134 + "ω", "UCS-2", 135, 3),
    ("😀" * 35, "UCS-2", 70, 1),  # a surrogate pair is two units
    ("😀" * 36, "UCS-2", 72, 2),
    ("a" * 66 + "😀" + "b" * 10, "UCS-2", 78, 2),  # 66+2 straddles 67: the pair moves on
    ("„smart quotes“", "UCS-2", 14, 1),
]


@pytest.mark.parametrize(("text", "encoding", "units", "count"), SEGMENT_TABLE)
def test_segment_counts_follow_gsm7_and_ucs2_rules(text, encoding, units, count):
    seg = segments(text)
    assert (seg.encoding, seg.units, seg.count) == (encoding, units, count)


# ---------------------------------------------------------------- fake API


def twilio_error(status: int, code: int, message: str = "") -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, "status": status,
                                        "more_info": f"https://www.twilio.com/docs/errors/{code}"})


class FakeTwilio:
    def __init__(self, per_number: dict[str, list] | None = None):
        self.requests: list[httpx.Request] = []
        self.per_number = {k: list(v) for k, v in (per_number or {}).items()}
        self.n = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"sid": SID, "friendly_name": "Ops", "status": "active"})
        to = dict(parse_qsl(request.content.decode()))["To"]
        queue = self.per_number.get(to)
        if queue:
            reply = queue.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        self.n += 1
        return httpx.Response(201, json={"sid": f"SM{self.n:032d}", "status": "queued", "num_segments": "1"})

    def sent_to(self) -> list[str]:
        return [dict(parse_qsl(r.content.decode()))["To"] for r in self.requests if r.method == "POST"]


def make(fake, recipients=(A, B, C), opt_outs=None, **kw) -> TwilioSms:
    s = TwilioSmsSettings(account_sid=SID, auth_token=AUTH, from_number="+15557654321", recipients=list(recipients),
                          **kw)
    io = {"opt_outs": opt_outs} if opt_outs is not None else {}
    return TwilioSms("sms", s, http=httpx.Client(transport=httpx.MockTransport(fake)), **io)


def post(*parts: str) -> Post:
    return Post(channel="sms", kind="incident", title="t", text=parts[0], parts=parts)


def timeout_for(request_to: str) -> Exception:
    return httpx.ReadTimeout("read timed out", request=httpx.Request("POST", "https://api.twilio.com/"))


# ---------------------------------------------------------------- requests and receipts


def test_send_makes_the_exact_request():
    fake = FakeTwilio()
    receipt = make(fake, recipients=(A,)).send(post("API down"), key="k")
    (req,) = fake.requests
    assert str(req.url) == f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:{AUTH}".encode()).decode()
    assert dict(parse_qsl(req.content.decode())) == {"To": A, "Body": "API down", "From": "+15557654321"}
    assert receipt.remote_id == "SM" + "1".zfill(32) and receipt.extra == {"sent": 1, "refused": 0, "segments": [1]}


def test_messaging_service_instead_of_a_number():
    fake = FakeTwilio()
    s = TwilioSmsSettings(account_sid=SID, auth_token=AUTH, messaging_service_sid="MG" + "a" * 32, recipients=[A])
    TwilioSms("sms", s, http=httpx.Client(transport=httpx.MockTransport(fake))).send(post("x"), key="k")
    assert dict(parse_qsl(fake.requests[0].content.decode()))["MessagingServiceSid"] == "MG" + "a" * 32


@pytest.mark.parametrize("bad", [
    {"recipients": ["5551234"]},
    {"recipients": [A, A]},
    {"recipients": []},
    {"from_number": None},
    {"messaging_service_sid": "MG" + "a" * 32},
    {"account_sid": "nope"},
])
def test_settings_refuse_bad_values(bad):
    base = {"account_sid": SID, "auth_token": AUTH, "from_number": "+15557654321", "recipients": [A]}
    with pytest.raises(ValueError):
        TwilioSmsSettings(**{**base, **bad})


def test_render_fits_texts_to_max_segments():
    ch = make(FakeTwilio(), max_segments=2)
    msg = Message(announcement=Announcement(id="a1", kind="incident", title="Outage", body="word " * 200))
    rendered = ch.render(msg)
    assert len(rendered.parts) > 1 and all(segments(p).count <= 2 for p in rendered.parts)
    short = ch.render(Message(announcement=Announcement(id="a2", kind="incident", title="Outage", body="fixed")))
    assert short.parts == (short.text,)


# ---------------------------------------------------------------- STOP and refusals


def test_stop_refuses_that_number_opts_it_out_and_it_is_never_messaged_again():
    store = MemoryOptOuts()
    fake = FakeTwilio({B: [twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")]})
    receipt = make(fake, opt_outs=store).send(post("first"), key="k1")
    assert receipt.extra["sent"] == 2 and receipt.extra["refused"] == 1
    assert store.opted_out([A, B, C]) == {B}
    fake2 = FakeTwilio()
    make(fake2, opt_outs=store).send(post("second"), key="k2")
    assert fake2.sent_to() == [A, C]  # B is skipped before any request


def test_stop_within_a_thread_skips_the_later_parts_for_that_number():
    progress = MemoryProgress()
    fake = FakeTwilio({B: [twilio_error(400, 21610)]})
    make(fake, opt_outs=MemoryOptOuts()).send(post("p1", "p2"), key="k", progress=progress)
    assert fake.sent_to() == [A, B, C, A, C]
    assert progress.states()[f"sms:{B}:1"][0] == "refused"


def test_an_invalid_number_is_refused_for_itself_only():
    store = MemoryOptOuts()
    fake = FakeTwilio({A: [twilio_error(400, 21211, "The 'To' number is not a valid phone number.")]})
    receipt = make(fake, opt_outs=store).send(post("x"), key="k")
    assert receipt.extra == {"sent": 2, "refused": 1, "segments": [1]}
    assert store.opted_out([A]) == set()  # not a STOP: not opted out


def test_every_recipient_refused_is_recipients_refused():
    fake = FakeTwilio({A: [twilio_error(400, 21610)], B: [twilio_error(400, 21614)]})
    with pytest.raises(RecipientsRefused) as info:
        make(fake, recipients=(A, B), opt_outs=MemoryOptOuts()).send(post("x"), key="k")
    assert set(info.value.refused) == {A, B}


# ---------------------------------------------------------------- never twice


def test_timeout_after_sending_leaves_that_number_uncertain_sends_the_rest_and_ends_unknown():
    progress = MemoryProgress()
    fake = FakeTwilio({B: [timeout_for(B)]})
    ch = make(fake, opt_outs=MemoryOptOuts())
    with pytest.raises(AmbiguousDelivery) as info:
        ch.send(post("x"), key="k", progress=progress)
    assert fake.sent_to() == [A, B, C]
    assert progress.states()[f"sms:{B}:0"][0] == "sending"
    dec = delivery.decide(info.value, attempt=1, now=0.0, deadline_at=None, policy=ChannelPolicy(),
                          idempotent=ch.idempotent, can_lookup=ch.can_lookup, public=ch.public)
    assert dec.state == DeliveryState.UNKNOWN and dec.maybe_sent
    # were it tried again anyway, the uncertain number would still not be messaged
    fake.requests.clear()
    with pytest.raises(AmbiguousDelivery):
        ch.send(post("x"), key="k", progress=progress)
    assert fake.sent_to() == []


def test_rate_limit_mid_list_continues_where_it_stopped():
    progress = MemoryProgress()
    limited = httpx.Response(429, json={"code": 20429, "message": "Too Many Requests"}, headers={"Retry-After": "3"})
    fake = FakeTwilio({B: [limited]})
    ch = make(fake, opt_outs=MemoryOptOuts())
    with pytest.raises(RateLimited) as info:
        ch.send(post("x"), key="k", progress=progress)
    assert info.value.retry_after == 3.0 and progress.states()[f"sms:{B}:0"][0] == "failed"
    ch.send(post("x"), key="k", progress=progress)
    assert fake.sent_to() == [A, B, B, C]  # A once; B again (the 429 said not sent); then C


@pytest.mark.parametrize(("reply", "error", "words"), [
    (twilio_error(401, 20003, "Authenticate"), AuthError, "auth token refused"),
    (twilio_error(400, 21606, "The From phone number is not a valid, SMS-capable number"), PermanentError, "21606"),
    (twilio_error(400, 21617, "too long"), ContentRejected, "1600"),
    (twilio_error(500, 20500, "Internal error"), TransientError, "HTTP 500"),
    (httpx.Response(201, json={}), AmbiguousDelivery, "without a message sid"),
])
def test_channel_level_classification(reply, error, words):
    fake = FakeTwilio({A: [reply]})
    with pytest.raises(error) as info:
        make(fake, recipients=(A,), opt_outs=MemoryOptOuts()).send(post("x"), key="k")
    assert words in str(info.value) and AUTH not in str(info.value)


def test_check_reads_the_account():
    assert "Ops" in make(FakeTwilio()).check()


def test_no_retract():
    assert not TwilioSms.can_retract


# ---------------------------------------------------------------- the ledger keeps opt-outs


def test_opt_outs_survive_in_the_ledger(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = Ledger.open(url)
    fake = FakeTwilio({B: [twilio_error(400, 21610)]})
    make(fake, opt_outs=OptOutStore(ledger)).send(post("x"), key="k")
    ledger.close()
    reopened = Ledger.open(url)
    store = OptOutStore(reopened)
    assert store.opted_out([A, B, C]) == {B}
    store.opt_out(B, channel="sms", reason="again")  # a second record of the same number is fine
    fake2 = FakeTwilio()
    make(fake2, opt_outs=store).send(post("y"), key="k2")
    assert B not in fake2.sent_to()
    assert store.remove(B) and store.opted_out([B]) == set()
    reopened.close()


def test_form_body_is_never_json():
    fake = FakeTwilio()
    make(fake, recipients=(A,)).send(post("x"), key="k")
    with pytest.raises(ValueError):
        json.loads(fake.requests[0].content)


def test_an_opt_out_store_that_cannot_write_does_not_stop_the_batch():
    class Broken(MemoryOptOuts):
        def opt_out(self, number: str, *, channel: str, reason: str) -> None:
            raise RuntimeError("ledger down")

    progress = MemoryProgress()
    fake = FakeTwilio({A: [twilio_error(400, 21610)]})
    receipt = make(fake, opt_outs=Broken()).send(post("x"), key="k", progress=progress)
    assert receipt.extra["sent"] == 2 and progress.states()[f"sms:{A}:0"][0] == "refused"
