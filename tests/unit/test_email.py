"""Email channel: message shape, per-recipient progress, SMTP reply and exception mapping,
Postmark request shape and error table. No network: a scripted SMTP connection and
``httpx.MockTransport``."""

from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
import ssl

import httpx
import pytest

from broadcaster.channels import _mail
from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.email import Email, EmailSettings
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    PermanentError,
    RateLimited,
    RecipientsRefused,
    TransientError,
)
from broadcaster.models import Announcement, Message, Receipt, Update

T0 = 1_700_000_000.0


class FakeSMTP:
    """Speaks the smtplib calls the sender uses; ``script`` maps an address to what happens.

    With ``pipelining`` (the ``smtp_mode`` fixture sets it for every connection) the server
    offers PIPELINING: MAIL/RCPT/DATA then arrive in one ``send`` and are answered by the next
    three ``getreply`` calls, with the same script. ``"354 anyway"`` scripts a server that takes
    DATA after refusing the recipient (RFC 2920 says the client must then not send a body)."""

    pipelining = False

    def __init__(self, script: dict | None = None, *, login_error: Exception | None = None):
        self.script = script or {}
        self.login_error = login_error
        self.accepted: list[tuple[str, bytes]] = []
        self.calls: list[str] = []
        self.rcpt_to: str | None = None
        self.rcpt_ok = False
        self.replies: list = []  # pipelined answers not yet read
        self.closed = False
        self.dead = False

    def ehlo(self):
        self.calls.append("ehlo")
        return 250, b"ok"

    def has_extn(self, name):
        return name.lower() == "pipelining" and self.pipelining

    def starttls(self, context=None):
        self.calls.append("starttls")
        return 220, b"go"

    def login(self, user, password):
        self.calls.append(f"login {user}")
        if self.login_error:
            raise self.login_error
        return 235, b"ok"

    def _check(self):
        if self.dead:
            raise smtplib.SMTPServerDisconnected("gone")

    def mail(self, sender):
        self.calls.append(f"mail {sender}")
        return self._mail(sender)

    def _mail(self, sender):
        self._check()
        return 250, b"ok"

    def rcpt(self, to):
        self._check()
        self.rcpt_to, self.rcpt_ok = to, False
        what = self.script.get(to)
        if isinstance(what, int):
            return what, b"scripted"
        if what == "drop_before_data":
            self.dead = True
            raise smtplib.SMTPServerDisconnected("dropped")
        if what == "354 anyway":
            return 550, b"no such user"
        self.rcpt_ok = True
        return 250, b"ok"

    def docmd(self, cmd):
        self._check()
        if not self.rcpt_ok and self.script.get(self.rcpt_to) != "354 anyway":
            return 554, b"no valid recipients"
        return 354, b"go ahead"

    def send(self, data):
        self._check()
        if self.is_envelope(data):
            self._pipelined(data)
            return
        if data == b".\r\n" and self.script.get(self.rcpt_to) == "354 anyway":
            self.calls.append("empty body")
            self.replies.append((554, b"no valid recipients"))
            return
        body, envelope = self.split(data)
        self.data = body
        if self.script.get(self.rcpt_to) == "drop_after_data":
            self.dead = True
            raise smtplib.SMTPServerDisconnected("dropped")
        if self.pipelining:  # answered in order: this body, then the envelope behind it
            self.replies.append(self._final())
            if envelope:
                self._pipelined(envelope)

    def split(self, data):
        """(body, the pipelined envelope written behind it or b"")."""
        if self.pipelining and b"\r\n.\r\nMAIL FROM:<" in data:
            cut = data.index(b"\r\n.\r\nMAIL FROM:<") + 5
            return data[:cut], data[cut:]
        return data, b""

    def is_envelope(self, data):
        """Whether ``send`` got pipelined MAIL/RCPT/DATA rather than a message body."""
        return self.pipelining and data.startswith(b"MAIL FROM:<")

    def _pipelined(self, data):
        mail, rcpt, command, rest = data.split(b"\r\n")
        assert command == b"DATA" and rest == b"", data
        self.calls.append("pipelined")
        steps = [lambda: self._mail(mail[len(b"MAIL FROM:<"):-1].decode()),
                 lambda: self.rcpt(rcpt[len(b"RCPT TO:<"):-1].decode()), lambda: self.docmd("data")]
        for step in steps:
            try:
                self.replies.append(step())
            except smtplib.SMTPServerDisconnected as exc:  # read by the getreply that reaches it
                self.replies.append(exc)
                return

    def getreply(self):
        if self.replies:
            reply = self.replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        return self._final()

    def _final(self):
        final = self.script.get(("data", self.rcpt_to), 250)
        if final == 250:
            self.accepted.append((self.rcpt_to, self.data))
        return final, b"queued"

    def rset(self):
        return 250, b"ok"

    def quit(self):
        self.closed = True

    def close(self):
        self.closed = True


@pytest.fixture(params=["one command at a time", "pipelining"])
def smtp_mode(request, monkeypatch):
    """Runs a test against a server without PIPELINING and against one that offers it."""
    monkeypatch.setattr(FakeSMTP, "pipelining", request.param == "pipelining")
    return request.param


def settings(**kw):
    base = {
        "kind": "email",
        "transport": "smtp",
        "smtp": {"host": "mx.test", "security": "none"},
        "from_address": "Status <status@example.com>",
        "recipients": ["a@x.test", "b@x.test", "c@x.test"],
        "connections": 1,  # one scripted connection; several: the tests under "parallel connections"
    }
    base.update(kw)
    return EmailSettings.model_validate(base)


def channel(fake=None, **kw):
    fakes = [fake or FakeSMTP()]
    io = {"smtp_factory": lambda s: fakes[0]}
    io.update(kw.pop("io", {}))
    return Email("mail", settings(**kw), clock=lambda: T0, **io), fakes[0]


def message(kind="incident", update=None, thread=()):
    a = Announcement(id="a1", kind=kind, title="Login <script>alert(1)</script> down",
                     body="We are **on it**. <b>x</b>", url="https://status.example.com/a1")
    return Message(announcement=a, update=update, thread=thread)


def parsed(data: bytes) -> email.message.EmailMessage:
    raw = data.removesuffix(b".\r\n").replace(b"\r\n..", b"\r\n.")
    return email.message_from_bytes(raw, policy=email.policy.default)


# ---------------------------------------------------------------- shape


def test_message_shape_escapes_and_stable_ids():
    ch, fake = channel()
    post = ch.render(message())
    receipt = ch.send(post, key="k1")
    assert receipt.extra == {"message_id_key": "k1", "root_key": "k1", "sent": 3, "refused": 0, "skipped": 0}
    assert [to for to, _ in fake.accepted] == ["a@x.test", "b@x.test", "c@x.test"]
    msg = parsed(fake.accepted[0][1])
    assert msg["Message-ID"] == _mail.message_id("k1", "a@x.test", "example.com")
    assert msg["Message-ID"].endswith("@example.com>")
    assert msg["Subject"] == "Login <script>alert(1)</script> down"
    assert "List-Unsubscribe" not in msg  # static recipients have nothing to unsubscribe from
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>x</b>" not in html and "<strong>on it</strong>" in html
    text = msg.get_body(("plain",)).get_content()
    assert "We are on it." in text
    # ids differ per recipient and are stable per (key, recipient)
    ids = {parsed(d)["Message-ID"] for _, d in fake.accepted}
    assert len(ids) == 3
    assert _mail.message_id("k1", "A@X.test ", "example.com") == _mail.message_id("k1", "a@x.test", "example.com")


def test_update_threads_under_the_original_per_recipient():
    ch, fake = channel(recipients=["a@x.test"])
    first = ch.send(ch.render(message()), key="k1")
    upd = Update(id="u1", announcement_id="a1", status="identified", body="Found it")
    post = ch.render(message(update=upd, thread=(first,)))
    second = ch.send(post, key="k2")
    msg = parsed(fake.accepted[-1][1])
    original = _mail.message_id("k1", "a@x.test", "example.com")
    assert msg["In-Reply-To"] == original and msg["References"] == original
    assert msg["Subject"].startswith("[Identified] ")
    assert second.extra["root_key"] == "k1"
    upd2 = Update(id="u2", announcement_id="a1", status="resolved", body="Fixed")
    ch.send(ch.render(message(update=upd2, thread=(first, second))), key="k3")
    third = parsed(fake.accepted[-1][1])
    assert third["In-Reply-To"] == _mail.message_id("k2", "a@x.test", "example.com")
    assert third["References"].split() == [original, _mail.message_id("k2", "a@x.test", "example.com")]


def test_marketing_mail_gets_one_click_unsubscribe_only_with_https():
    subs = [("s1@x.test", "https://ex.com/u/1"), ("s2@x.test", "http://ex.com/u/2"), ("bad", None)]
    seen = {}

    def source(lists, post):
        seen["lists"], seen["kind"] = lists, post.kind
        return subs

    ch, fake = channel(recipients=[], lists=["news"], io={"subscribers": source})
    receipt = ch.send(ch.render(message(kind="promotion")), key="p1")
    assert seen == {"lists": ("news",), "kind": "promotion"}
    assert receipt.extra["sent"] == 2
    m1, m2 = (parsed(d) for _, d in fake.accepted)
    assert m1["List-Unsubscribe"] == "<https://ex.com/u/1>"
    assert m1["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://ex.com/u/1" in m1.get_body(("plain",)).get_content()
    assert "List-Unsubscribe" not in m2  # http links are not offered as one-click


def test_every_mail_to_a_subscriber_is_one_click_unsubscribable():
    """An incident to a list carries its leave-the-list link in the body (text and HTML) and as
    the List-Unsubscribe one-click header, as promotions do; static recipients get no link."""
    ch, fake = channel(recipients=["ops@x.test"], lists=["news"],
                       io={"subscribers": lambda lists, post: [("s1@x.test", "https://ex.com/leave/1")]})
    ch.send(ch.render(message()), key="i1")
    mails = {to: parsed(d) for to, d in fake.accepted}
    sub, ops = mails["s1@x.test"], mails["ops@x.test"]
    assert sub["List-Unsubscribe"] == "<https://ex.com/leave/1>"
    assert sub["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "List-Unsubscribe" not in ops
    assert "Unsubscribe: https://ex.com/leave/1" in sub.get_body(("plain",)).get_content()
    assert 'href="https://ex.com/leave/1"' in sub.get_body(("html",)).get_content()
    assert "Unsubscribe" not in ops.get_body(("plain",)).get_content()


# ---------------------------------------------------------------- progress and replies


@pytest.mark.usefixtures("smtp_mode")
def test_4xx_deferred_5xx_refused_and_retry_skips_done():
    fake = FakeSMTP({"a@x.test": 450, "b@x.test": 550})
    ch, _ = channel(fake)
    progress = MemoryProgress()
    post = ch.render(message())
    with pytest.raises(TransientError) as err:
        ch.send(post, key="k", progress=progress)
    assert "1 accepted, 1 refused, 1 deferred, 0 uncertain" in str(err.value)
    states = progress.states()
    assert states["a@x.test"][0] == "failed" and states["a@x.test"][1].startswith("450")
    assert states["b@x.test"][0] == "refused" and states["c@x.test"][0] == "done"
    fake.script = {}
    fake.accepted.clear()
    receipt = ch.send(post, key="k", progress=progress)
    assert [to for to, _ in fake.accepted] == ["a@x.test"]
    assert receipt.extra == {"message_id_key": "k", "root_key": "k", "sent": 1, "refused": 1, "skipped": 2}


@pytest.mark.usefixtures("smtp_mode")
def test_every_recipient_refused():
    fake = FakeSMTP({"a@x.test": 550, "b@x.test": 553, ("data", "c@x.test"): 554})
    ch, _ = channel(fake)
    with pytest.raises(RecipientsRefused) as err:
        ch.send(ch.render(message()), key="k")
    assert set(err.value.refused) == {"a@x.test", "b@x.test", "c@x.test"}
    assert "a@x.test" not in str(err.value)  # counts in the message, not addresses


@pytest.mark.usefixtures("smtp_mode")
def test_drop_after_data_is_ambiguous_for_that_address_only():
    fake = FakeSMTP({"b@x.test": "drop_after_data"})
    reconnect = FakeSMTP()
    fakes = iter([fake, reconnect])
    ch = Email("mail", settings(), clock=lambda: T0, smtp_factory=lambda s: next(fakes))
    progress = MemoryProgress()
    post = ch.render(message())
    with pytest.raises(AmbiguousDelivery) as err:
        ch.send(post, key="k", progress=progress)
    assert "2 accepted, 0 refused, 0 deferred, 1 uncertain" in str(err.value)
    assert {k: v[0] for k, v in progress.states().items()} == {
        "a@x.test": "done", "b@x.test": "sending", "c@x.test": "done"}
    assert [to for to, _ in reconnect.accepted] == ["c@x.test"]  # the pass went on over a new connection
    first_id = parsed(fake.data)["Message-ID"]
    second = FakeSMTP()
    fakes = iter([second])
    receipt = ch.send(post, key="k", progress=progress)
    assert [to for to, _ in second.accepted] == ["b@x.test"]
    assert parsed(second.accepted[0][1])["Message-ID"] == first_id
    assert receipt.extra["sent"] == 1 and receipt.extra["skipped"] == 2


@pytest.mark.usefixtures("smtp_mode")
def test_drop_before_data_is_plain_transient():
    ch, _fake = channel(FakeSMTP({"a@x.test": "drop_before_data"}))
    progress = MemoryProgress()
    with pytest.raises(TransientError) as err:
        ch.send(ch.render(message()), key="k", progress=progress)
    assert not isinstance(err.value, AmbiguousDelivery)
    assert progress.states()["a@x.test"][0] == "failed"


@pytest.mark.usefixtures("smtp_mode")
def test_421_stops_the_pass():
    ch, _fake = channel(FakeSMTP({"b@x.test": 421}))
    progress = MemoryProgress()
    with pytest.raises(TransientError):
        ch.send(ch.render(message()), key="k", progress=progress)
    assert {k: v[0] for k, v in progress.states().items()} == {"a@x.test": "done", "b@x.test": "failed"}


@pytest.mark.usefixtures("smtp_mode")
def test_batches_use_one_connection_each():
    made = []

    def factory(s):
        made.append(FakeSMTP())
        return made[-1]

    ch = Email("mail", settings(batch_size=2), clock=lambda: T0, smtp_factory=factory)
    ch.send(ch.render(message()), key="k")
    assert [len(f.accepted) for f in made] == [2, 1] and all(f.closed for f in made)



def test_with_pipelining_the_envelope_is_one_write_and_the_message_unchanged(monkeypatch):
    classic, _ = channel(FakeSMTP({"b@x.test": 550}))
    post = classic.render(message())
    classic.send(post, key="k")
    monkeypatch.setattr(FakeSMTP, "pipelining", True)
    ch, fake = channel(FakeSMTP({"b@x.test": 550}))
    ch.send(post, key="k")
    assert fake.calls.count("pipelined") == 3, "MAIL/RCPT/DATA of each address in one write"
    assert not [c for c in fake.calls if c.startswith("mail ")], "no command sent on its own"
    def unbounded(accepted):  # each pass draws its own MIME boundary
        return [(to, re.sub(rb"={15}\d+==", b"BOUNDARY", data)) for to, data in accepted]

    assert unbounded(fake.accepted) == unbounded(classic.smtp_factory(None).accepted), "the same messages"
    assert [to for to, _ in fake.accepted] == ["a@x.test", "c@x.test"]


def test_with_pipelining_a_server_taking_data_for_a_refused_recipient_gets_an_empty_body(monkeypatch):
    monkeypatch.setattr(FakeSMTP, "pipelining", True)
    made: list[FakeSMTP] = []

    def factory(s):
        made.append(FakeSMTP({"b@x.test": "354 anyway"}))
        return made[-1]

    ch = Email("mail", settings(), clock=lambda: T0, smtp_factory=factory)
    progress = MemoryProgress()
    ch.send(ch.render(message()), key="k", progress=progress)
    assert {k: v[0] for k, v in progress.states().items()} == {
        "a@x.test": "done", "b@x.test": "refused", "c@x.test": "done"}
    assert progress.states()["b@x.test"][1].startswith("550")
    assert len(made) == 1 and made[0].calls.count("empty body") == 1, "RFC 2920: an empty body, no message"
    assert [to for to, _ in made[0].accepted] == ["a@x.test", "c@x.test"]


def test_an_address_that_is_not_plain_ascii_goes_command_by_command(monkeypatch):
    monkeypatch.setattr(FakeSMTP, "pipelining", True)
    ch, fake = channel(recipients=["a@x.test", "jürgen@x.test"])
    ch.send(ch.render(message()), key="k")
    assert fake.calls.count("pipelined") == 1 and fake.calls.count("mail status@example.com") == 1
    assert [to for to, _ in fake.accepted] == ["a@x.test", "jürgen@x.test"]


@pytest.mark.parametrize(
    "exc, cls",
    [
        (smtplib.SMTPAuthenticationError(535, b"bad creds"), AuthError),
        (smtplib.SMTPAuthenticationError(454, b"try later"), TransientError),
        (smtplib.SMTPNotSupportedError("no auth"), PermanentError),
        (ssl.SSLCertVerificationError("bad cert"), PermanentError),
        (ConnectionRefusedError("refused"), TransientError),
        (smtplib.SMTPConnectError(554, b"go away"), TransientError),
    ],
)
def test_connection_and_login_errors(exc, cls):
    s = settings(smtp={"host": "mx.test", "security": "starttls", "username": "u", "password": "hunter2"})
    ch = Email("mail", s, smtp_factory=lambda _: FakeSMTP(login_error=exc))
    with pytest.raises(cls) as err:
        ch.send(ch.render(message()), key="k")
    assert type(err.value) is cls
    assert "hunter2" not in str(err.value) and "hunter2" not in repr(s)
    assert err.value.__cause__ is exc


def test_check_logs_in_without_sending():
    fake = FakeSMTP()
    s = settings(smtp={"host": "mx.test", "username": "u", "password": "p"})
    ch = Email("mail", s, smtp_factory=lambda _: fake)
    assert "login" in ch.check()
    assert fake.calls == ["ehlo", "starttls", "ehlo", "login u"] and fake.accepted == []


def test_settings_validation():
    with pytest.raises(ValueError, match="postmark"):
        settings(transport="postmark")
    with pytest.raises(ValueError, match="recipients"):
        settings(recipients=["nope"])
    with pytest.raises(ValueError, match="lists"):
        settings(recipients=[])
    with pytest.raises(ValueError, match="marketing_kinds"):
        settings(marketing_kinds=["spam"])
    assert settings(smtp={"host": "h", "security": "tls"}).smtp.effective_port == 465


# ---------------------------------------------------------------- Postmark


def postmark_channel(handler, **kw):
    s = settings(transport="postmark", smtp=None, postmark={"server_token": "tok-secret", "message_stream": "broadcast"}, **kw)
    return Email("mail", s, http=httpx.Client(transport=httpx.MockTransport(handler)), clock=lambda: T0)


def test_postmark_request_shape():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"ErrorCode": 0, "Message": "OK", "MessageID": "pm-1"})

    ch = postmark_channel(handler, recipients=["a@x.test"])
    receipt = ch.send(ch.render(message()), key="k")
    (req,) = seen
    assert req.method == "POST" and str(req.url) == "https://api.postmarkapp.com/email"
    assert req.headers["X-Postmark-Server-Token"] == "tok-secret"
    assert req.headers["Accept"] == "application/json"
    body = json.loads(req.content)
    assert body["From"] == "Status <status@example.com>" and body["To"] == "a@x.test"
    assert body["MessageStream"] == "broadcast" and body["Tag"] == "mail"
    assert {"Name": "Message-ID", "Value": _mail.message_id("k", "a@x.test", "example.com")} in body["Headers"]
    assert "&lt;script&gt;" in body["HtmlBody"] and "<script>" not in body["HtmlBody"]
    assert receipt.extra["sent"] == 1


@pytest.mark.parametrize(
    "status, body, headers, cls",
    [
        (401, {"ErrorCode": 10, "Message": "bad token"}, {}, AuthError),
        (422, {"ErrorCode": 300, "Message": "Invalid email request"}, {}, PermanentError),
        (422, {"ErrorCode": 400, "Message": "Sender signature not found"}, {}, PermanentError),
        (429, {}, {"Retry-After": "7"}, RateLimited),
        (500, {}, {}, TransientError),
        (503, {}, {}, TransientError),
        (413, {}, {}, PermanentError),
    ],
)
def test_postmark_error_table(status, body, headers, cls):
    ch = postmark_channel(lambda r: httpx.Response(status, json=body, headers=headers), recipients=["a@x.test"])
    progress = MemoryProgress()
    with pytest.raises(cls) as err:
        ch.send(ch.render(message()), key="k", progress=progress)
    assert type(err.value) is cls
    assert progress.states()["a@x.test"][0] == "failed"
    assert "tok-secret" not in str(err.value)
    if cls is RateLimited:
        assert err.value.retry_after == 7


def test_postmark_406_refuses_one_address_and_timeout_is_ambiguous():
    def handler(request):
        to = json.loads(request.content)["To"]
        if to == "a@x.test":
            return httpx.Response(422, json={"ErrorCode": 406, "Message": "inactive recipient"})
        if to == "b@x.test":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"ErrorCode": 0, "MessageID": "x"})

    ch = postmark_channel(handler)
    progress = MemoryProgress()
    with pytest.raises(AmbiguousDelivery):
        ch.send(ch.render(message()), key="k", progress=progress)
    assert {k: v[0] for k, v in progress.states().items()} == {
        "a@x.test": "refused", "b@x.test": "sending", "c@x.test": "done"}


def test_postmark_check():
    ch = postmark_channel(lambda r: httpx.Response(200, json={"Name": "srv"}) if r.url.path == "/server"
                          and r.headers["X-Postmark-Server-Token"] == "tok-secret" else httpx.Response(404))
    assert "accepted" in ch.check()
    bad = postmark_channel(lambda r: httpx.Response(401, json={"ErrorCode": 10}))
    with pytest.raises(AuthError):
        bad.check()


# ---------------------------------------------------------------- one mailing, built once


def _slow_payload(post, *, key, to, unsubscribe, reply_to=None, date=T0):
    """What the adapter sent before Template: the email package, once per recipient."""
    mail = _mail.build(post, key=key, to=to, domain="example.com", unsubscribe_url=unsubscribe)
    return _mail.smtp_payload(_mail.to_mime(mail, from_address="Status <status@example.com>", reply_to=reply_to,
                                            date=date))


def _same_bytes(a: bytes, b: bytes) -> bool:
    import re

    boundary = re.compile(rb"===============\d+==")  # random per serialization
    return boundary.sub(b"B", a) == boundary.sub(b"B", b)


@pytest.mark.parametrize("reply_to", [None, "ops@example.com"])
@pytest.mark.parametrize("body", [
    "We are **on it**. <b>x</b>",
    "Line one\n.leading dot\n..two dots\nünïcödé Å … " + "x" * 120 + "\ntrailing space \nend\t",
    "=" * 150 + "\n\n\n",
])
def test_template_payload_is_what_the_email_package_builds(body, reply_to):
    a = Announcement(id="a1", kind="promotion", title="Ünïcode and a rather long subject " + "word " * 12, body=body,
                     url="https://status.example.com/a1")
    upd = Update(id="u1", announcement_id="a1", status="identified", body=body)
    thread = (Receipt(remote_id="r", extra={"message_id_key": "k0", "root_key": "kr"}),)
    for msg in (message(), Message(announcement=a), Message(announcement=a, update=upd, thread=thread)):
        ch, _ = channel()
        post = ch.render(msg)
        tpl = _mail.Template(post, key="k1", domain="example.com", from_address="Status <status@example.com>",
                             reply_to=reply_to, date=T0)
        for to, unsub in [("a@x.test", None), ("b@x.test", "https://ex.com/u/b?t=1&x=.y"),
                          ("c@x.test", "http://ex.com/u/c"), ("ünï@x.test", None), ("d,e@x.test", None)]:
            fast = tpl.payload(to, unsub)
            slow = _slow_payload(post, key="k1", to=to, unsubscribe=unsub, reply_to=reply_to)
            assert _same_bytes(fast, slow), (to, unsub)
            assert fast.endswith(b"\r\n.\r\n") and b"\n" not in fast.replace(b"\r\n", b"")
            assert all(len(line) <= 78 for line in fast.split(b"\r\n"))


def test_template_shares_the_body_and_differs_only_in_recipient_headers():
    ch, _ = channel()
    tpl = _mail.Template(ch.render(message()), key="k1", domain="example.com",
                         from_address="Status <status@example.com>", reply_to=None, date=T0)
    one, two = parsed(tpl.payload("a@x.test")), parsed(tpl.payload("b@x.test"))
    assert one["To"] == "a@x.test" and two["To"] == "b@x.test"
    assert one["Message-ID"] == _mail.message_id("k1", "a@x.test", "example.com") != two["Message-ID"]
    assert one["Date"] == two["Date"] and one["Date"].datetime.timestamp() == T0
    for part in ("plain", "html"):
        assert one.get_body((part,)).get_content() == two.get_body((part,)).get_content()
    assert tpl.bodies(None) is tpl.bodies(None), "the plain body is encoded once per mailing"


def test_long_unsubscribe_url_stays_one_unencoded_line():
    """The email package would RFC 2047-encode a List-Unsubscribe longer than 78 characters,
    which mail clients cannot use; an unfoldable ASCII value may run to 998 characters."""
    url = "https://ex.com/unsubscribe?token=" + "t" * 120
    ch, _ = channel()
    tpl = _mail.Template(ch.render(message(kind="promotion")), key="k1", domain="example.com",
                         from_address="status@example.com", reply_to=None, date=T0)
    data = tpl.payload("a@x.test", url)
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in data
    msg = parsed(data)
    assert msg["List-Unsubscribe"] == f"<{url}>"
    assert url in msg.get_body(("plain",)).get_content() and "=?" not in msg["List-Unsubscribe"]


def test_header_line_folds_plain_values_at_spaces_and_encodes_the_rest():
    refs = " ".join(_mail.message_id(k, "a@x.test", "example.com") for k in ("k1", "k2", "k3"))
    folded = _mail.header_line("References", refs)
    lines = folded.split(b"\r\n")
    assert lines[-1] == b"" and all(len(x) <= 78 for x in lines)
    assert all(x.startswith(b" ") for x in lines[1:-1])
    assert b" ".join(x.strip() for x in lines).removeprefix(b"References: ").strip() == refs.encode()
    assert _mail.header_line("To", "a@x.test") == b"To: a@x.test\r\n"
    assert _mail.header_line("To", "ünï@x.test") == _mail.POLICY.fold_binary(
        *_mail.POLICY.header_store_parse("To", "ünï@x.test"))
    with pytest.raises(ValueError):
        _mail.header_line("To", "a@x.test\r\nBcc: everyone@x.test")
    assert _mail.envelope_address("a@x.test") == "a@x.test"
    assert _mail.envelope_address("A <a@x.test>") == "a@x.test"


# ---------------------------------------------------------------- progress writes per message


class RecordingProgress(MemoryProgress):
    """A progress with ``mark_all`` (as LedgerProgress): records each durable write."""

    def __init__(self):
        super().__init__()
        self.writes: list[list[tuple]] = []

    def mark_all(self, marks):
        self.writes.append([(list(items), state) for items, state, _ in marks])
        for items, state, detail in marks:
            self.mark(items, state, detail)


def test_one_write_per_message_carrying_the_previous_outcome(smtp_mode):
    ch, fake = channel(recipients=["a@x.test", "b@x.test", "c@x.test", "d@x.test"])
    fake.script = {"b@x.test": 550}
    progress = RecordingProgress()
    snapshots = []
    send = fake.send

    def send_and_look(data):  # what is durable at the moment each message goes out
        if fake.is_envelope(data):
            return send(data)
        snapshots.append((fake.rcpt_to, {k: v[0] for k, v in progress.states().items()}))
        send(data)

    fake.send = send_and_look
    ch.send(ch.render(message()), key="k", progress=progress)
    if smtp_mode == "pipelining":  # rounds: a refused envelope is answered before any mark, so b is never `sending`
        assert progress.writes == [
            [(["a@x.test"], "sending")],
            [(["a@x.test"], "done"), (["b@x.test"], "refused")],
            [(["c@x.test"], "sending")],
            [(["c@x.test"], "done"), (["d@x.test"], "sending")],
            [(["d@x.test"], "done")],
        ]
    else:  # the sending mark is written while the envelope is exchanged
        assert progress.writes == [
            [(["a@x.test"], "sending")],
            [(["a@x.test"], "done"), (["b@x.test"], "sending")],
            [(["b@x.test"], "refused"), (["c@x.test"], "sending")],
            [(["c@x.test"], "done"), (["d@x.test"], "sending")],
            [(["d@x.test"], "done")],
        ]
    # one address in flight; everyone before it already recorded
    assert snapshots == [
        ("a@x.test", {"a@x.test": "sending"}),
        ("c@x.test", {"a@x.test": "done", "b@x.test": "refused", "c@x.test": "sending"}),
        ("d@x.test", {"a@x.test": "done", "b@x.test": "refused", "c@x.test": "done", "d@x.test": "sending"}),
    ]


@pytest.mark.usefixtures("smtp_mode")
def test_a_held_outcome_is_written_when_the_pass_stops():
    # 421 on c: b's "done" is held when the pass raises; it must still be recorded
    ch, _fake = channel(FakeSMTP({"c@x.test": 421}))
    progress = RecordingProgress()
    with pytest.raises(TransientError):
        ch.send(ch.render(message()), key="k", progress=progress)
    assert {k: v[0] for k, v in progress.states().items()} == {
        "a@x.test": "done", "b@x.test": "done", "c@x.test": "failed"}
    # the next batch's connection fails: the last outcome of the previous batch is kept
    made = [FakeSMTP()]

    def factory(s):
        if not made:
            raise ConnectionRefusedError("refused")
        return made.pop()

    ch = Email("mail", settings(batch_size=2), clock=lambda: T0, smtp_factory=factory)
    progress = RecordingProgress()
    with pytest.raises(TransientError, match="cannot connect"):
        ch.send(ch.render(message()), key="k", progress=progress)
    assert {k: v[0] for k, v in progress.states().items()} == {"a@x.test": "done", "b@x.test": "done"}


@pytest.mark.usefixtures("smtp_mode")
def test_a_crash_mid_message_leaves_only_that_address_uncertain():
    """kill -9 while the server holds c's message: nothing after the write of c's "sending"
    runs. Everyone before c is recorded; a later pass re-sends c alone, same Message-ID."""
    ch, fake = channel()
    progress = RecordingProgress()

    class Killed(BaseException):
        pass

    def die(data):
        if fake.rcpt_to == "c@x.test":
            fake.data = data
            raise Killed

    send = fake.send
    fake.send = lambda data: die(data) or send(data)
    durable = {}

    def mark_all(marks):  # what a killed process leaves in the ledger: writes up to the kill
        RecordingProgress.mark_all(progress, marks)
        durable.update(progress.states())

    progress.mark_all = mark_all
    with pytest.raises(Killed):
        ch.send(ch.render(message()), key="k", progress=progress)
    assert {k: v[0] for k, v in durable.items()} == {"a@x.test": "done", "b@x.test": "done", "c@x.test": "sending"}
    first_id = parsed(fake.data)["Message-ID"]
    after = MemoryProgress()
    for item, (state, detail) in durable.items():
        after.mark([item], state, detail)
    again = FakeSMTP()
    ch2, _ = channel(again)
    receipt = ch2.send(ch2.render(message()), key="k", progress=after)
    assert [to for to, _ in again.accepted] == ["c@x.test"]
    assert parsed(again.accepted[0][1])["Message-ID"] == first_id
    assert receipt.extra["sent"] == 1 and receipt.extra["skipped"] == 2


# ---------------------------------------------------------------- the ledger side (its marks: tests/contract)


def test_ledger_progress_renews_the_lease_at_most_every_few_seconds(monkeypatch):
    from broadcaster.engine import LedgerProgress

    calls = []

    class FakeLedger:
        def mark_items_and_extend(self, delivery_id, owner, marks, lease=None):
            calls.append((delivery_id, owner, [(list(i), s, x) for i, s, x in marks], lease))
            return None if lease is None else True

    class Rt:
        deliveries = FakeLedger()  # the delivery port LedgerProgress writes through

    class D:
        id = "dlv_1"

    t = [100.0]
    progress = LedgerProgress(Rt(), D(), "w", 60.0)
    progress._clock = lambda: t[0]
    assert progress.renew_every == 2.0
    progress.mark(["a"], "sending")
    t[0] += 1.0
    progress.mark_all([(["a"], "done", "250"), (["b"], "sending", None)])
    t[0] += 1.5
    progress.mark(["b"], "done", "250")
    assert calls == [("dlv_1", "w", [(["a"], "sending", None)], 60.0),
                     ("dlv_1", "w", [(["a"], "done", "250"), (["b"], "sending", None)], None),
                     ("dlv_1", "w", [(["b"], "done", "250")], 60.0)]
    assert LedgerProgress(Rt(), D(), "w", 5.0).renew_every == 1.25, "at least four renewals per lease"
