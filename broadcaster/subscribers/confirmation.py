"""The double opt-in mail: its text, the transport that sends it, and the background mailer.

Why in the background: the answer to a subscribe request must not tell whether the address was
new (a mail goes out), pending or confirmed (none does). Sending on the request path would make
the first answer as slow as the mail server; the mailer's one thread takes the mail off it, so
every answer costs the same ledger work and nothing else. A mail that fails is logged and
audited, and the address may ask again at once (its "mail sent" mark is released).
"""

from __future__ import annotations

import hashlib
import html
import logging
import queue
import re
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..channels import _mail
from ..channels.email import Email
from ..errors import ConfigError, InvalidRequest
from ..ledger.subscribers import Subscriber, SubscriberStore
from .links import settings_of

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

class ConfirmationSender(Protocol):
    """Mails one message to one address: a confirmation request (with the address's own
    ``unsubscribe`` link, sent as the one-click header too) or a notice to an endpoint's owner."""

    def __call__(self, address: str, subject: str, text: str, unsubscribe: str | None = None) -> None: ...


#: mails waiting beyond this are dropped (and may be asked for again): a flood must not grow memory
MAX_QUEUED = 1000


def confirmation_text(sub: Subscriber, url: str, unsubscribe: str | None = None) -> tuple[str, str]:
    subject = f"Please confirm your subscription to {sub.list}"
    what = "announcements and promotions" if sub.marketing else "announcements (no promotions)"
    text = (f"Someone, hopefully you, asked to receive {what} of {sub.list!r} at this address.\n\n"
            f"To confirm, open this link and press the button on the page:\n{url}\n\n"
            "If it was not you, ignore this message: nothing will be sent without your confirmation.")
    if unsubscribe:
        text += f"\n\n--\nNever mail this address about {sub.list}: {unsubscribe}"
    return subject, text


#: a link in our own mail text (ours: built from public_url and a signed token; ends at a blank)
_LINK = re.compile(r"https?://[^\s<>\"']+")


def mail_html(text: str) -> str:
    """The HTML part of a mail we write as plain text: paragraphs, line breaks, and every link a
    real ``<a>`` (a mail client need not guess that the confirm link is one). Everything else is
    escaped."""
    def para(p: str) -> str:
        out, at = [], 0
        for m in _LINK.finditer(p):
            url = m.group().rstrip(".,;:!?)")  # a sentence's full stop is not part of the link
            out += [html.escape(p[at:m.start()]), f'<a href="{html.escape(url, quote=True)}">{html.escape(url)}</a>']
            at = m.start() + len(url)
        out.append(html.escape(p[at:]))
        return "".join(out).replace("\n", "<br>")

    return "<p>" + "</p><p>".join(para(p) for p in text.split("\n\n")) + "</p>"


def channel_sender(runtime: Runtime, channel_name: str | None) -> ConfirmationSender:
    """A sender that mails through an email channel's own transport (SMTP or HTTP API)."""
    settings = runtime.settings
    names = [n for n, c in settings.channels.items() if getattr(c, "kind", None) == "email" and c.enabled]
    if channel_name is None:
        if not names:
            raise ConfigError([("subscribers.confirmation_channel",
                                "no email channel is configured to mail confirmation requests")])
        channel_name = names[0]
    elif channel_name not in names:
        raise ConfigError([("subscribers.confirmation_channel", f"{channel_name!r} is not an enabled email channel")])
    name = channel_name

    def send(address: str, subject: str, text: str, unsubscribe: str | None = None) -> None:
        channel = runtime.channel(name)
        if not isinstance(channel, Email):  # checked above; the runtime types channels loosely
            raise ConfigError([("subscribers.confirmation_channel", f"{name!r} is not an email channel")])
        st = channel.settings
        domain = _mail.domain_of(st.from_address)
        key = "confirm-" + hashlib.sha256(f"{address}\x00{text}".encode()).hexdigest()[:24]
        html_body = mail_html(text)
        headers = [("Message-ID", _mail.message_id(key, address, domain))]
        if _mail.one_click(unsubscribe):
            headers += [("List-Unsubscribe", f"<{unsubscribe}>"),
                        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
        mail = _mail.Mail(to=address, subject=subject, text=text + "\n", html=html_body, headers=tuple(headers))
        msg = _mail.to_mime(mail, from_address=st.from_address, reply_to=st.reply_to, date=runtime.clock())
        sender = channel.sender()
        sender.open()
        try:
            outcome, _detail = sender.deliver(mail, msg)
        finally:
            sender.close()
        if outcome != _mail.DONE:
            raise InvalidRequest("the mail server refused this address", field="address")

    return send


def resolve_sender(runtime: Runtime, sender: ConfirmationSender | None = None) -> ConfirmationSender:
    """The explicit sender, else the runtime's ``confirmation_sender``, else the configured email
    channel (ConfigError when there is none)."""
    return sender or runtime.confirmation_sender or channel_sender(runtime,
                                                                   settings_of(runtime.settings).confirmation_channel)


@dataclass(frozen=True)
class Job:
    subscriber_id: str
    address: str
    subject: str
    text: str
    marked_at: float  # the ``confirm_sent_at`` this mail claimed (released if it fails)
    send: ConfirmationSender
    unsubscribe: str | None = None  # the address's leave-the-list link (header and footer)


class Mailer:
    """One queue and at most one thread per runtime; the thread ends when the queue is empty."""

    def __init__(self, store: SubscriberStore):
        self.store = store
        self._queue: queue.Queue[Job] = queue.Queue()
        self._lock = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> bool:
        with self._lock:
            if self._busy >= MAX_QUEUED:
                log.warning("confirmation mails: %d waiting; dropped one (the address may ask again)", self._busy)
                self.store.release_confirmation_mail(job.subscriber_id, job.marked_at)
                return False
            self._busy += 1
            self._queue.put(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="confirmation-mailer", daemon=True)
                self._thread.start()
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    self._thread = None
                    self._lock.notify_all()
                    return
            try:
                self._send(job)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()

    def _send(self, job: Job) -> None:
        ledger = self.store.ledger
        try:
            job.send(job.address, job.subject, job.text, unsubscribe=job.unsubscribe)
        except Exception as exc:  # noqa: BLE001 - any failure: log it, let the address ask again
            log.warning("confirmation mail to subscriber %s failed: %s", job.subscriber_id, type(exc).__name__)
            try:
                self.store.release_confirmation_mail(job.subscriber_id, job.marked_at)
                ledger.audit("public", "subscriber.confirmation_failed", job.subscriber_id,
                             {"error": type(exc).__name__})
            except Exception:
                log.exception("could not record the failed confirmation mail")
            return
        try:
            ledger.audit("public", "subscriber.confirmation_sent", job.subscriber_id, {})
        except Exception:
            log.exception("could not record the confirmation mail")

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted mail was tried (tests, and the CLI before it exits)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._busy == 0, timeout)


_mailers: weakref.WeakKeyDictionary[Runtime, Mailer] = weakref.WeakKeyDictionary()
_mailers_lock = threading.Lock()


def mailer(runtime: Runtime) -> Mailer:
    with _mailers_lock:
        m = _mailers.get(runtime)
        if m is None:
            m = _mailers[runtime] = Mailer(SubscriberStore(runtime.ledger))
        return m


def flush(runtime: Runtime, timeout: float = 30.0) -> bool:
    return mailer(runtime).flush(timeout)
