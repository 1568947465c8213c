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
- ``opt_outs`` — SMS numbers that replied STOP (the ledger's ``sms_opt_outs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, Protocol

from ..models import Post

#: opens an SMTP connection from the channel's SMTP settings
SmtpFactory = Callable[..., Any]
#: (list names, post) → (address, unsubscribe URL or None) for every subscriber to mail
Subscribers = Callable[[tuple[str, ...], Post], Iterable[tuple[str, str | None]]]
#: the status site's state → {relative path: file content} of its trust files
TrustFiles = Callable[[dict[str, Any]], dict[str, bytes]]
#: a fresh ``apprise.Apprise``
AppriseFactory = Callable[[], Any]


class OptOuts(Protocol):
    """Where numbers that replied STOP are kept (the ledger's ``sms_opt_outs`` in a running system)."""

    def opted_out(self, numbers: Iterable[str]) -> set[str]: ...

    def opt_out(self, number: str, *, channel: str, reason: str) -> None: ...


@dataclass(frozen=True)
class ChannelPorts:
    smtp_factory: SmtpFactory | None = None
    subscribers: Subscribers | None = None
    trust_files: TrustFiles | None = None
    apprise_factory: AppriseFactory | None = None
    opt_outs: OptOuts | None = None

    @classmethod
    def pick(cls, available: dict[str, Any]) -> ChannelPorts:
        """The ports among a process's collaborators (others, such as the subscribers'
        confirmation sender, are not a channel's business)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in available.items() if k in names})
