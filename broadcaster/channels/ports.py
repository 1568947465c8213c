"""The collaborators an adapter is built with, typed (beyond its settings, HTTP client and clock).

A running system hands every adapter the same :class:`ChannelPorts` (``Runtime.build_channel``);
tests and tools pass only what they need. Each is a small callable or protocol so a test can
give a plain function or an in-memory twin:

- ``smtp_factory`` — opens an SMTP connection for the email adapter (``smtplib`` by default);
- ``subscribers`` — who on the configured lists gets this post: ``(address, unsubscribe URL)``
  pairs (the ledger's confirmed subscribers, or a break-glass export file);
- ``trust_files`` — the status site's official-channel list, key list, signature files and
  verify page, built from the site's state;
- ``apprise_factory`` — makes an ``apprise.Apprise`` object (the optional extra);
- ``opt_outs`` — SMS numbers that replied STOP (the ledger's ``sms_opt_outs``);
- ``endpoints`` — the webhooks subscribers brought, and their failure tracking
  (``subscribers/endpoints.py``), for ``subscriber_webhooks``;
- ``resolver`` — host name → addresses for the network guard (``_outbound``; DNS by default);
- ``credentials`` — channel name → its renewable OAuth credential (``oauth/``), shared by every
  instance of the channel in the process (None for a channel without ``refresh:``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from ..models import Post

if TYPE_CHECKING:
    from ..ledger.endpoints import Endpoint
    from ..oauth.credential import Credential

#: opens an SMTP connection from the channel's SMTP settings
SmtpFactory = Callable[..., Any]
#: (list names, post) → (address, unsubscribe URL or None) for every subscriber to mail
Subscribers = Callable[[tuple[str, ...], Post], Iterable[tuple[str, str | None]]]
#: the status site's state → {relative path: file content} of its trust files
TrustFiles = Callable[[dict[str, Any]], dict[str, bytes]]
#: a fresh ``apprise.Apprise``
AppriseFactory = Callable[[], Any]
#: (host, port) → the addresses it resolves to now
Resolver = Callable[[str, int], list[str]]
#: channel name → its renewable credential, or None when it has no ``refresh:`` section
CredentialSource = Callable[[str], "Credential | None"]


class OptOuts(Protocol):
    """Where numbers that replied STOP are kept (the ledger's ``sms_opt_outs`` in a running system)."""

    def opted_out(self, numbers: Iterable[str]) -> set[str]: ...

    def opt_out(self, number: str, *, channel: str, reason: str) -> None: ...


class EndpointSource(Protocol):
    """The endpoints a ``subscriber_webhooks`` channel posts to, and where it reports each outcome."""

    def targets(self, lists: Sequence[str], post: Post, formats: Sequence[str]) -> list[Endpoint]:
        """Confirmed endpoints of ``lists`` that should get ``post`` (components, kind)."""
        ...

    def current(self, endpoint_ids: Sequence[str]) -> dict[str, str]:
        """The state of each endpoint now (one disabled during the pass is skipped)."""
        ...

    def secret(self, endpoint: Endpoint) -> str:
        """The endpoint's signing secret (``whsec_…``)."""
        ...

    def unsubscribe_url(self, endpoint: Endpoint) -> str | None:
        """The endpoint's own unsubscribe link, carried by every post to it (None: none can be made)."""
        ...

    def succeeded(self, endpoint: Endpoint) -> None: ...

    def failed(self, endpoint: Endpoint, error: str, max_failures: int) -> None:
        """Count a failed post; disable the endpoint and tell its owner at ``max_failures``."""
        ...


@dataclass(frozen=True)
class ChannelPorts:
    smtp_factory: SmtpFactory | None = None
    subscribers: Subscribers | None = None
    trust_files: TrustFiles | None = None
    apprise_factory: AppriseFactory | None = None
    opt_outs: OptOuts | None = None
    endpoints: EndpointSource | None = None
    resolver: Resolver | None = None
    credentials: CredentialSource | None = None

    @classmethod
    def pick(cls, available: dict[str, Any]) -> ChannelPorts:
        """The ports among a process's collaborators (others, such as the subscribers'
        confirmation sender, are not a channel's business)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in available.items() if k in names})
