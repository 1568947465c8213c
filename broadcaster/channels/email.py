"""Email: one message per recipient over SMTP or the Postmark API.

Why one message per recipient: each carries its own unsubscribe link and Message-ID, and each
address gets its own durable progress mark, so a retry mails only those not yet accepted.

A pass (one ``send``) hands the addresses not yet ``done``/``refused`` to ``connections`` SMTP
connections in parallel: driven by one thread in rounds when the server offers PIPELINING
(:mod:`._rounds`), else a thread each (:mod:`._lanes`); Postmark: one request at a time. Each connection takes
the next address, marks it ``sending``, hands the message over, then records ``done`` (accepted),
``refused`` (5yz, or Postmark 406) or ``failed`` (4yz: tried again on the next attempt); that
outcome is written together with the same connection's next ``sending`` (:class:`~._lanes.Marks`),
and all connections' marks go to the ledger in group commits. So each connection has at most one
address in flight: a crash leaves at most one uncertain address per connection.

The message body is built once per pass (:class:`~broadcaster.channels._mail.Template`); only the
per-recipient headers are written per address. A connection lost after the message body was sent
leaves the address ``sending`` (it may have been accepted); that connection reconnects and goes
on, the pass ends with ``AmbiguousDelivery``, and a later attempt re-sends only that address, with
the same Message-ID. A connection that cannot open, or is lost before a body was sent, ends; the
address it could not hand over goes to the other connections (once), and with none left the pass
ends with that error and the rest is sent by a later attempt — nobody is mailed twice for it.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import smtplib
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, NoReturn

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .. import render
from ..config import ChannelSettings, Duration, Secret, Strict, Url
from ..errors import (
    AmbiguousDelivery,
    AuthError,
    DeliveryError,
    PermanentError,
    RateLimited,
    RecipientsRefused,
    TransientError,
)
from ..models import KINDS, Message, Post, Receipt
from . import _http, _mail
from ._lanes import Committer, Marks, Work
from ._rounds import Rounds
from .base import Channel, MemoryProgress, Progress, io_begins
from .registry import register

log = logging.getLogger(__name__)

#: parallel SMTP connections per mailing, unless configured (docs/performance.md has the figures)
DEFAULT_CONNECTIONS = 8
MAX_CONNECTIONS = 32


class SmtpSettings(Strict):
    host: str
    port: int | None = Field(None, ge=1, le=65535)  # default by security: 587, 465, 25
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: Secret | None = None
    timeout: Duration = 30.0

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


class PostmarkSettings(Strict):
    base_url: Url = "https://api.postmarkapp.com"
    server_token: Secret
    message_stream: str = "outbound"


class EmailSettings(ChannelSettings):
    kind: Literal["email"] = "email"
    transport: Literal["smtp", "postmark"] = "smtp"
    smtp: SmtpSettings | None = None
    postmark: PostmarkSettings | None = None
    from_address: str
    reply_to: str | None = None
    recipients: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()  # subscriber list names, resolved by the injected source
    batch_size: int = Field(100, ge=1, le=10_000)  # messages per SMTP connection before it is reopened
    #: SMTP connections sending one mailing in parallel, each with its own in-flight address
    connections: int = Field(DEFAULT_CONNECTIONS, ge=1, le=MAX_CONNECTIONS)
    #: kept for old files; has no effect: every mail to a subscriber now carries the one-click
    #: headers (over https), and what its link stops follows ``subscribers.promotion_kinds``
    marketing_kinds: tuple[str, ...] = ("promotion",)

    @field_validator("connections")
    @classmethod
    def _smtp_only(cls, value: int, info: ValidationInfo) -> int:
        if value > 1 and info.data.get("transport") == "postmark":
            raise ValueError("applies to SMTP only: Postmark messages are sent one request at a time (leave it out)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EmailSettings:
        if getattr(self, self.transport) is None:
            raise ValueError(f"transport is {self.transport!r} but the {self.transport!r} section is missing")
        if not _mail.valid_address(email.utils.parseaddr(self.from_address)[1]):
            raise ValueError("from_address is not an email address")
        bad = [i for i, a in enumerate(self.recipients) if not _mail.valid_address(a)]
        if bad:
            raise ValueError(f"recipients[{bad[0]}] is not an email address")
        unknown = [k for k in self.marketing_kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"marketing_kinds: unknown kind {unknown[0]!r} (one of {', '.join(KINDS)})")
        if not self.recipients and not self.lists:
            raise ValueError("give recipients, lists, or both")
        return self

    # The validator above guarantees the chosen transport's section; these narrow the type.
    @property
    def smtp_section(self) -> SmtpSettings:
        if self.smtp is None:
            raise ValueError("transport smtp needs the smtp section")
        return self.smtp

    @property
    def postmark_section(self) -> PostmarkSettings:
        if self.postmark is None:
            raise ValueError("transport postmark needs the postmark section")
        return self.postmark


# ---------------------------------------------------------------- transports


class SmtpSender:
    """One SMTP connection for a batch; ``deliver`` runs MAIL/RCPT/DATA for one message."""

    def __init__(self, settings: SmtpSettings, from_address: str, factory: Callable[..., Any] | None, what: str):
        self.s = settings
        self.envelope_from = email.utils.parseaddr(from_address)[1]
        self.factory = factory or connect_smtp
        self.what = what
        self.conn: Any = None
        self.pipelining = False

    def open(self) -> None:
        try:
            conn = self.factory(self.s)
            conn.ehlo()
            if self.s.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if self.s.username:
                conn.login(self.s.username, self.s.password.reveal() if self.s.password else "")
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientError(f"{self.what}: login deferred ({exc.smtp_code})") from exc
            raise AuthError(f"{self.what}: login refused ({exc.smtp_code})", status=exc.smtp_code) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"{self.what}: server lacks a required extension (STARTTLS or AUTH)") from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"{self.what}: TLS certificate not trusted") from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, DNS, timeout, bad greeting
            raise TransientError(f"{self.what}: cannot connect ({type(exc).__name__})") from exc
        self.conn = conn
        self.pipelining = _offers_pipelining(conn)

    def close(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.quit()
        except (smtplib.SMTPException, OSError):
            with contextlib.suppress(OSError):
                self.conn.close()
        self.conn = None

    def message(self, template: _mail.Template, to: str, unsubscribe: str | None) -> bytes:
        return template.payload(to, unsubscribe)

    def deliver(self, to: str | _mail.Mail, payload: bytes | Any) -> tuple[str, str | None]:
        """MAIL/RCPT/DATA of ``payload`` (from :meth:`message`) to ``to``. Also takes the older
        ``(Mail, EmailMessage)`` pair, as the subscription confirmation mail passes it."""
        if isinstance(to, _mail.Mail):
            to = to.to
        if not isinstance(payload, bytes):
            payload = _mail.smtp_payload(payload)
        refused = self.envelope(to)
        return refused if refused is not None else self.body(payload)

    def envelope(self, to: str) -> tuple[str, str | None] | None:
        """MAIL, RCPT and DATA: None when the server waits for the body, else the refusal.
        Nothing can have been delivered yet, so a lost connection here is a plain retry.

        When the server offers PIPELINING (RFC 2920: Postfix, Exim and most relays do), the three
        commands go in one write and their three replies are read after it — one round trip
        instead of three, and none of smtplib's per-command address parsing. The command text is
        written directly only for a plain ASCII address (``_mail.plain_envelope``); any other goes
        through smtplib as before."""
        conn = self.conn
        try:
            if (plain := self.pipelined_rcpt(to)) is not None:
                return self._pipelined(conn, plain)
            for command, arg in (("mail", self.envelope_from), ("rcpt", _mail.envelope_address(to))):
                code, text = getattr(conn, command)(arg)
                if code not in (250, 251):
                    return self._negative(code, text)
            code, text = conn.docmd("data")
            if code != 354:
                return self._negative(code, text)
        except (smtplib.SMTPException, OSError) as exc:
            self.conn = None
            raise TransientError(f"{self.what}: connection lost before the message was sent ({type(exc).__name__})") from exc
        return None

    def _pipelined(self, conn: Any, rcpt: str) -> tuple[str, str | None] | None:
        """MAIL/RCPT/DATA in one write, then their replies (:meth:`_envelope_replies`)."""
        conn.send(self.envelope_bytes(rcpt))
        return self._envelope_replies(conn)

    def pipelined_rcpt(self, to: str) -> str | None:
        """The envelope address of ``to`` when its MAIL/RCPT/DATA may be pipelined, else None."""
        rcpt = _mail.envelope_address(to)
        ok = self.pipelining and _mail.plain_envelope(self.envelope_from) and _mail.plain_envelope(rcpt)
        return rcpt if ok else None

    def envelope_bytes(self, rcpt: str) -> bytes:
        """MAIL, RCPT and DATA as one pipelined write (``rcpt`` from :meth:`pipelined_rcpt`)."""
        return f"MAIL FROM:<{self.envelope_from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode("ascii")

    def _envelope_replies(self, conn: Any) -> tuple[str, str | None] | None:
        """The three replies of a pipelined envelope: None when the server waits for the body,
        else the first refusal (every reply is read, as RFC 2920 requires)."""
        mail, rcpt_reply, data = conn.getreply(), conn.getreply(), conn.getreply()
        refusal = next(((code, text) for code, text in (mail, rcpt_reply) if code not in (250, 251)), None)
        if refusal is None:
            return None if data[0] == 354 else self._negative(*data)
        if data[0] == 354:  # DATA taken with no recipient: RFC 2920 says end it with an empty body
            conn.send(b".\r\n")
            conn.getreply()  # the server refuses it (or accepts it for nobody)
            if refusal[0] == 421:
                return self._negative(*refusal)
            return _mail.reply_outcome(refusal[0]), _mail.reply_text(*refusal)
        return self._negative(*refusal)

    def send_envelope(self, rcpt: str) -> None:
        """Write a pipelined envelope; its replies are read by :meth:`read_envelope`."""
        try:
            self.conn.send(self.envelope_bytes(rcpt))
        except (smtplib.SMTPException, OSError) as exc:
            self._lost_before(exc)

    def read_envelope(self) -> tuple[str, str | None] | None:
        """The replies of an envelope written by :meth:`send_envelope` or :meth:`send_body`."""
        try:
            return self._envelope_replies(self.conn)
        except (smtplib.SMTPException, OSError) as exc:
            self._lost_before(exc)

    def _lost_before(self, exc: BaseException) -> NoReturn:
        self.conn = None
        raise TransientError(f"{self.what}: connection lost before the message was sent ({type(exc).__name__})") from exc

    def body(self, payload: bytes) -> tuple[str, str | None]:
        """The message itself, after :meth:`envelope`: from here on, a lost connection is ambiguous."""
        self.send_body(payload)
        return self.read_body(reset=True)

    def send_body(self, payload: bytes, then: bytes = b"") -> None:
        """Write a message body, and ``then`` (the next message's pipelined envelope: RFC 2920
        lets the end of a body and the next MAIL share a write). Its reply: :meth:`read_body`."""
        try:
            self.conn.send(payload + then if then else payload)
        except (smtplib.SMTPException, OSError) as exc:
            self._lost_after(exc)

    def read_body(self, *, reset: bool = False) -> tuple[str, str | None]:
        """The answer to a body. ``reset``: send RSET after a refusal (needless — the end of a body
        ends the transaction either way — and not allowed when a pipelined envelope follows)."""
        try:
            code, text = self.conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._lost_after(exc)
        if code != 250:
            return self._negative(code, text, reset=reset)
        return _mail.DONE, _mail.reply_text(code, text)

    def _lost_after(self, exc: BaseException) -> NoReturn:
        self.conn = None
        raise AmbiguousDelivery(
            f"{self.what}: connection lost after the message was sent; it may have been accepted"
        ) from exc

    def _negative(self, code: int, text: Any, *, reset: bool = True) -> tuple[str, str]:
        detail = _mail.reply_text(code, text)
        if code == 421:  # the server is closing the connection
            self.conn = None
            raise TransientError(f"{self.what}: server closing the connection ({code})", status=code)
        if not reset:
            return _mail.reply_outcome(code), detail
        try:
            self.conn.rset()
        except (smtplib.SMTPException, OSError):
            self.conn = None
        return _mail.reply_outcome(code), detail


def _offers_pipelining(conn: Any) -> bool:
    """Whether the server's EHLO answer lists PIPELINING (a connection without ``has_extn``, as
    a test's scripted one, speaks command by command)."""
    has_extn = getattr(conn, "has_extn", None)
    return bool(has_extn and has_extn("pipelining"))


def connect_smtp(s: SmtpSettings) -> smtplib.SMTP:
    if s.security == "tls":
        return smtplib.SMTP_SSL(s.host, s.effective_port, timeout=s.timeout, context=ssl.create_default_context())
    return smtplib.SMTP(s.host, s.effective_port, timeout=s.timeout)


class PostmarkSender:
    """``POST /email`` per message; errors classified per Postmark's HTTP and ErrorCode tables."""

    def __init__(self, settings: PostmarkSettings, channel: Email, what: str):
        self.s = settings
        self.channel = channel
        self.what = what
        self.conn = True

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "X-Postmark-Server-Token": self.s.server_token.reveal()}

    def message(self, template: _mail.Template, to: str, unsubscribe: str | None) -> _mail.Mail:
        return template.mail(to, unsubscribe)

    def envelope(self, to: str) -> None:
        """Nothing to agree on before the message over an HTTP API (see :meth:`SmtpSender.envelope`)."""
        return None

    def body(self, mail: _mail.Mail) -> tuple[str, str | None]:
        return self.deliver(mail, mail)

    def deliver(self, to: str | _mail.Mail, mail: _mail.Mail | Any) -> tuple[str, str | None]:
        """POST one message: ``(address, Mail)`` from :meth:`message`, or the older ``(Mail, _)``."""
        if isinstance(to, _mail.Mail):
            mail = to
        st = self.channel.settings
        body = _mail.to_postmark(mail, from_address=st.from_address, reply_to=st.reply_to,
                                 stream=self.s.message_stream, tag=self.channel.name)
        resp = _http.request(self.channel.http, "POST", f"{self.s.base_url}/email", json=body,
                             headers=self.headers(), what=self.what)
        return postmark_outcome(resp, self.what, now=self.channel.clock)


def postmark_outcome(resp, what: str, *, now: Callable[[], float]) -> tuple[str, str | None]:
    data = _http.json_or_none(resp)
    data = data if isinstance(data, dict) else {}
    code = resp.status_code
    if code == 200 and data.get("ErrorCode", 0) == 0:
        return _mail.DONE, str(data.get("MessageID") or "") or None
    error_code = data.get("ErrorCode")
    if code == 422 and error_code == 406:
        return _mail.REFUSED, f"postmark 406 {str(data.get('Message', ''))[:150]}"
    if code == 401:
        raise AuthError(f"{what}: server token refused (HTTP 401)", response=_http.short(resp), status=401)
    if code == 429:
        wait = _http.parse_retry_after(resp.headers.get("retry-after"), now=now())
        raise RateLimited(f"{what}: rate limited (HTTP 429)", retry_after=wait, response=_http.short(resp), status=429)
    if code == 422:
        raise PermanentError(f"{what}: Postmark ErrorCode {error_code}", response=_http.short(resp), status=422)
    if code >= 500:
        raise TransientError(f"{what}: provider error (HTTP {code})", response=_http.short(resp), status=code)
    _http.raise_for_status(resp, what, now=now)
    raise PermanentError(f"{what}: unexpected answer (HTTP {code})", response=_http.short(resp), status=code)


# ---------------------------------------------------------------- the channel


@register
class Email(Channel[EmailSettings]):
    kind = "email"
    Settings = EmailSettings
    public = False  # private mail, guarded per address by progress rather than by lookup
    idempotent = False

    def render(self, message: Message) -> Post:
        post = super().render(message)
        subject = render.status_prefix(message) + post.title
        meta = {**post.meta, "announcement_id": message.announcement.id,
                "update_id": message.update.id if message.update else None}
        return Post(channel=post.channel, kind=post.kind, title=subject, text=post.text, parts=(post.text,),
                    html=post.html, url=post.url, reply_to=post.reply_to, meta=meta)

    def sender(self):
        st = self.settings
        if st.transport == "postmark":
            return PostmarkSender(st.postmark_section, self, f"{self.name} (postmark)")
        return SmtpSender(st.smtp_section, st.from_address, self.smtp_factory, f"{self.name} (smtp)")

    def audience(self, post: Post) -> dict[str, tuple[str, str | None]]:
        """item → (address, unsubscribe URL): static recipients, then subscribers, deduplicated."""
        out: dict[str, tuple[str, str | None]] = {
            _mail.normalize(a): (a.strip(), None) for a in self.settings.recipients
        }
        source = self.subscribers
        if self.settings.lists and source is None:
            log.warning("%s: lists configured but no subscriber source; static recipients only", self.name)
        if self.settings.lists and source is not None:
            for address, unsubscribe in source(tuple(self.settings.lists), post):
                if _mail.valid_address(address):
                    out.setdefault(_mail.normalize(address), (address.strip(), unsubscribe))
        return out

    def lanes(self, todo: int) -> int:
        """How many connections send this pass: ``connections`` (SMTP), never more than there
        are addresses; Postmark sends one request at a time."""
        if self.settings.transport != "smtp":
            return 1 if todo else 0
        return min(self.settings.connections, todo)

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        progress = progress if progress is not None else MemoryProgress()
        everyone = self.audience(post)
        before = progress.states()
        todo = [(item, *everyone[item]) for item in everyone if before.get(item, ("",))[0] not in ("done", "refused")]
        st = self.settings
        template = _mail.Template(post, key=key, domain=_mail.domain_of(st.from_address), from_address=st.from_address,
                                  reply_to=st.reply_to, date=self.clock())
        work: Work[tuple[str, str, str | None]] = Work(todo, key=lambda entry: entry[0])
        n = self.lanes(len(todo))
        io_begins()  # the template (headers from the text) is built: from here on, mail may leave
        first = self._first_connection() if n and st.transport == "smtp" else None
        if isinstance(first, SmtpSender) and first.pipelining:
            rounds = Rounds(todo=todo, progress=progress, template=template, first=first, connections=n,
                            open_sender=self._opened, batch_size=st.batch_size, name=self.name,
                            timeout=st.smtp_section.timeout)
            accepted, errors = rounds.run()
            return self._finish(post, key, everyone, progress, accepted, len(everyone) - len(todo), errors,
                                rounds.left(), n)
        committer = Committer(progress, self.name, lanes=n)
        errors = []
        fatal: list[BaseException] = []

        firsts = [first] if first is not None else []

        def lane() -> None:
            try:
                opened = firsts.pop() if firsts else None
                if isinstance(opened, DeliveryError):  # the first connection could not open
                    raise opened
                self._lane(work, committer, template, opened)
            except DeliveryError as exc:  # this connection is done; the others go on with the rest
                errors.append(exc)
            except BaseException as exc:  # noqa: BLE001 - not the provider's: every connection stops, send raises it
                work.stop()
                fatal.append(exc)
            finally:
                committer.lane_ended()

        others = ThreadPoolExecutor(n - 1, thread_name_prefix=f"{self.name}-smtp") if n > 1 else None
        try:
            for _ in range(n - 1):
                others.submit(lane)  # type: ignore[union-attr]
            if n:
                lane()  # the first connection in the caller's thread
        finally:
            if others is not None:
                others.shutdown(wait=True)
            committer.close()
        if fatal:
            raise fatal[0]
        return self._finish(post, key, everyone, progress, work.accepted, len(everyone) - len(todo), errors,
                            work.left(), n)

    def _first_connection(self) -> SmtpSender | DeliveryError:
        """The pass's first SMTP connection, opened: its EHLO answer says whether the server
        pipelines (then one thread drives all connections in rounds, :mod:`._rounds`), else it is
        the first of the threaded lanes — or why it could not open (that lane ends with it)."""
        try:
            return self._opened()
        except DeliveryError as exc:
            return exc

    def _opened(self) -> SmtpSender:
        sender = self.sender()
        sender.open()
        return sender

    def _finish(self, post: Post, key: str, everyone: dict, progress: Progress, accepted: int, skipped: int,
                errors: list[DeliveryError], left: int, n: int) -> Receipt:
        if errors and left:  # nobody was left to send some addresses: the first error says why
            raise errors[0]
        if errors:  # the others sent the share: say so, a relay may allow fewer connections than configured
            log.warning("%s: %d of %d SMTP connections ended early, the others sent their share: %s",
                        self.name, len(errors), n, errors[0])
        return self._settle(post, key, everyone, progress.states(), accepted, skipped)

    def _lane(self, work: Work[tuple[str, str, str | None]], committer: Committer, template: _mail.Template,
              sender: Any = None) -> None:
        """One connection's share of a pass: take the next address until none is left, over a
        connection reopened every ``batch_size`` messages and after an ambiguous loss. An error
        that leaves an address certainly undelivered gives it back (once) for another connection,
        and ends this one."""
        marks = Marks(committer)
        used = 0
        try:
            while (entry := work.take()) is not None:
                item, address, unsubscribe = entry
                try:
                    if sender is None or sender.conn is None or used >= self.settings.batch_size:
                        if sender is not None:
                            sender.close()
                        sender, used = self.sender(), 0
                        sender.open()
                except BaseException:
                    sender = None
                    work.put_back(entry)
                    raise
                used += 1
                try:
                    state = self._one(sender, marks, template, item, address, unsubscribe)
                except DeliveryError:  # marked failed: not handed over
                    work.give_back(entry)
                    raise
                except BaseException:
                    work.finish()
                    raise
                work.finish(state == "done")
                if sender.conn is None and state != "sending":  # dropped without ambiguity: stop here
                    raise TransientError(f"{self.name}: connection closed by the server")
        finally:
            if sender is not None:
                sender.close()
            marks.flush()  # the last outcome, and the one held when this connection stops early

    def _one(self, sender, marks: Marks, template: _mail.Template, item: str, address: str,
             unsubscribe: str | None) -> str:
        """Hand one message over; returns its state: ``done``, ``refused``, ``failed`` (held and
        recorded with this connection's next ``sending`` mark, see :class:`Marks`) or ``sending``
        (the connection was lost after the body: uncertain, left so). Raises a ``DeliveryError``
        after marking the address ``failed`` when it was certainly not handed over."""
        msg = sender.message(template, address, unsubscribe)
        try:
            # the durable "sending" mark is written while the envelope is exchanged (nothing is
            # delivered before the body), and the body waits for it
            writing = marks.submit(([item], "sending", None))
            try:
                refused = sender.envelope(address)
            finally:
                writing.result()
            outcome, detail = refused if refused is not None else sender.body(msg)
        except AmbiguousDelivery:
            return "sending"  # re-sent with the same Message-ID by a later attempt
        except DeliveryError as exc:
            marks.write(([item], "failed", str(exc)[:200]))
            raise
        state = {"done": "done", "refused": "refused"}.get(outcome, "failed")
        marks.hold(([item], state, detail))
        return state

    def _settle(self, post: Post, key: str, everyone: dict, states: dict, sent: int, skipped: int) -> Receipt:
        def count(state: str) -> int:
            return sum(1 for i in everyone if states.get(i, ("",))[0] == state)

        refused = {i: states[i][1] for i in everyone if states.get(i, ("",))[0] == "refused"}
        done, unsure = count("done"), count("sending")
        pending = len(everyone) - done - len(refused) - unsure
        counts = f"{done} accepted, {len(refused)} refused, {pending} deferred, {unsure} uncertain"
        if unsure:
            raise AmbiguousDelivery(f"{self.name}: {counts}; the connection was lost after a message was sent")
        if pending:
            raise TransientError(f"{self.name}: {counts}; deferred recipients are tried again later")
        if everyone and not done:
            raise RecipientsRefused(f"{self.name}: every recipient was refused ({len(refused)})", refused=refused)
        root, _parent = _mail.thread_keys(post.reply_to)
        domain = _mail.domain_of(self.settings.from_address)
        return Receipt(
            remote_id=_mail.message_id(key, "", domain),
            extra={"message_id_key": key, "root_key": root or key, "sent": sent,
                   "refused": len(refused), "skipped": skipped},
        )

    def check(self) -> str:
        st = self.settings
        if st.transport == "postmark":
            what = f"{self.name} (postmark check)"
            postmark = st.postmark_section
            resp = _http.request(self.http, "GET", f"{postmark.base_url}/server",
                                 headers=PostmarkSender(postmark, self, what).headers(), what=what)
            _http.raise_for_status(resp, what, now=self.clock)
            return "Postmark server token accepted"
        sender = self.sender()
        sender.open()
        sender.close()
        smtp = st.smtp_section
        login = " and login" if smtp.username else ""
        return f"SMTP {smtp.host}:{smtp.effective_port} accepted EHLO{login}"
