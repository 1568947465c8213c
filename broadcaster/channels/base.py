"""The channel contract every adapter follows.

An adapter is built with its settings and injected I/O (an ``httpx.Client``, an SMTP
connection factory, a clock) and offers:

- ``render(message) -> Post`` — pure; applies the provider's length rule, thread split and the
  per-channel variant; raises ``ContentRejected`` when the text cannot fit.
- ``send(post, *, key, progress=None) -> Receipt`` — one remote attempt (one request, or one
  pass over a thread's parts / a mailing's recipients): no retry loops, no sleeping. ``key`` is
  stable for the delivery (the same on every retry) and is the provider idempotency key where
  one exists. ``progress`` (a :class:`Progress`) durably records per-item state (thread parts,
  recipients) so a later attempt skips what already landed. Raises only ``DeliveryError``.
- ``lookup(post, *, key) -> Receipt | None`` — where ``can_lookup``: did an earlier attempt with
  this key land? ``None`` means "certainly not"; raise ``TransientError`` when it cannot tell.
- ``check() -> str`` — verify credentials without posting; returns what was verified.
- ``retract(receipt)`` — delete the remote post where the provider allows it.

Class metadata tells the delivery policy how careful to be: ``idempotent`` (re-sending with the
same key cannot create a second post), ``can_lookup``, ``can_retract``, ``public``, and
``marks_io``: everything the adapter sends leaves through ``self.http`` (which calls
:func:`io_begins`) or after its own :func:`io_begins` call. The engine then knows that an
unexpected error raised before that point — building a payload or a mail header from the text —
sent nothing: a permanent content error, not a "maybe sent" and not a provider failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import ClassVar, Generic, Protocol, TypeVar

import httpx

from .. import render
from ..config import ChannelSettings
from ..errors import ContentRejected, PermanentError
from ..models import Message, Post, Receipt
from .ports import (
    AppriseFactory,
    ChannelPorts,
    CredentialSource,
    EndpointSource,
    OptOuts,
    Resolver,
    SmtpFactory,
    Subscribers,
    TrustFiles,
)

_io = threading.local()


def io_reset() -> None:
    """The engine, just before an attempt's remote calls: nothing has left this thread yet."""
    _io.started = False


def io_begins() -> None:
    """Called just before anything leaves the process (a request, an SMTP connection)."""
    _io.started = True


def io_started() -> bool:
    """Whether this thread reached the outside since :func:`io_reset` (True when never reset:
    unknown counts as "may have been sent")."""
    return bool(getattr(_io, "started", True))


class Progress(Protocol):
    """Durable per-item progress of one delivery (backed by the ledger; in-memory in tests).

    Items are strings chosen by the channel (``"part:0"``, an e-mail address); states are
    ``"sending"`` (attempt started, outcome not yet known), ``"done"``, ``"refused"``, ``"failed"``.
    ``detail`` keeps what a later attempt needs (a part's remote id, an SMTP reply).
    """

    def states(self) -> dict[str, tuple[str, str | None]]:
        """item → (state, detail) for every item recorded so far."""

    def mark(self, items: Iterable[str], state: str, detail: str | None = None) -> None:
        """Record (durably, before returning) that ``items`` are now in ``state``."""


class MemoryProgress:
    """In-memory :class:`Progress` for unit tests and previews."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, str | None]] = {}

    def states(self) -> dict[str, tuple[str, str | None]]:
        return dict(self._items)

    def mark(self, items: Iterable[str], state: str, detail: str | None = None) -> None:
        for item in items:
            self._items[item] = (state, detail)


def done_parts(progress: Progress | None) -> dict[int, str | None]:
    """Thread parts an earlier attempt already posted: ``{index: detail}`` from ``"part:<i>"`` items."""
    if progress is None:
        return {}
    return {
        int(item.split(":", 1)[1]): detail
        for item, (state, detail) in progress.states().items()
        if state == "done" and item.startswith("part:")
    }


#: the settings model of one adapter (each adapter is ``Channel[ItsSettings]``)
S = TypeVar("S", bound=ChannelSettings)


class Channel(Generic[S]):
    kind: ClassVar[str] = ""
    Settings: ClassVar[type[ChannelSettings]] = ChannelSettings
    #: re-sending with the same key is safe (provider dedupes, or receiver is told the key)
    idempotent: ClassVar[bool] = False
    can_lookup: ClassVar[bool] = False
    can_retract: ClassVar[bool] = False
    #: publishes announcements' signatures (the status site), so its posts carry one
    carries_signatures: ClassVar[bool] = False
    #: a public channel must never see a post twice (the at-most-once guarantee, docs/reliability.md)
    public: ClassVar[bool] = True
    #: every remote call goes through ``self.http`` or follows an ``io_begins()`` (module docstring)
    marks_io: ClassVar[bool] = True
    #: maximum length of one part, in the unit of ``count``; None = no limit
    max_length: ClassVar[int | None] = None

    def __init__(
        self,
        name: str,
        settings: S,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        on_too_long: str = "thread",
        ports: ChannelPorts | None = None,
        smtp_factory: SmtpFactory | None = None,
        subscribers: Subscribers | None = None,
        trust_files: TrustFiles | None = None,
        apprise_factory: AppriseFactory | None = None,
        opt_outs: OptOuts | None = None,
        endpoints: EndpointSource | None = None,
        resolver: Resolver | None = None,
        credentials: CredentialSource | None = None,
    ):
        """``ports`` carries a process's collaborators; a keyword given here wins over it."""
        self.name = name
        self.settings: S = settings
        self.clock = clock
        self.timeout = timeout
        self.on_too_long = on_too_long
        self._http = http
        self._owns_http = http is None
        given = ports or ChannelPorts()
        self.smtp_factory = smtp_factory or given.smtp_factory
        self.subscribers = subscribers or given.subscribers
        self.trust_files = trust_files or given.trust_files
        self.apprise_factory = apprise_factory or given.apprise_factory
        self.opt_out_store = opt_outs or given.opt_outs
        self.endpoints = endpoints or given.endpoints
        self.resolver = resolver or given.resolver
        self.credentials = credentials or given.credentials

    # -- I/O seams

    @property
    def http(self) -> httpx.Client:
        io_begins()  # asked for the client: a request is about to leave
        if self._http is None:
            from ._http import make_client

            self._http = make_client(self.timeout)
        return self._http

    def close(self) -> None:
        if self._http is not None and self._owns_http:
            self._http.close()
            self._http = None

    def __repr__(self) -> str:  # settings hold Secrets, which mask themselves anyway
        return f"<{type(self).__name__} {self.name!r}>"

    # -- the contract

    def count(self, text: str) -> int:
        """Length of ``text`` by this provider's rule (characters by default)."""
        return len(text)

    def escape(self, text: str) -> str:
        """Author text as the provider must receive it so nothing in it is read as a command
        (chat mentions, masked links); measured and split after escaping. Identity by default."""
        return text

    def render(self, message: Message) -> Post:
        """Default rendering: plain text (title, body, link) split to ``max_length`` if set."""
        title, body = render.title_and_body(message, self.name)
        text = self.escape(render.plain_text(title, body, message))
        parts: tuple[str, ...] = (text,)
        if self.max_length is not None:
            parts = tuple(render.fit(text, self.max_length, self.count, self.on_too_long, self.name))
        return Post(
            channel=self.name,
            kind=message.announcement.kind,
            title=self.escape(title),
            text=text,
            parts=parts,
            html=render.html_body(body, render.window_line(message)),
            url=message.announcement.url,
            reply_to=message.thread[-1] if message.thread else None,
            meta={"status": message.status, "update": message.is_update},
        )

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        raise NotImplementedError

    def lookup(self, post: Post, *, key: str) -> Receipt | None:
        raise NotImplementedError(f"{self.kind} cannot look up earlier posts")

    def check(self) -> str:
        return "no credential check available for this kind"

    def retract(self, receipt: Receipt) -> None:
        raise PermanentError(f"{self.kind} posts cannot be deleted remotely")


def too_long(channel: str, length: int, limit: int) -> ContentRejected:
    return ContentRejected(f"{channel}: text is {length} long, the limit is {limit}")
