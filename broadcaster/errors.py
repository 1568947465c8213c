"""Every exception broadcaster raises, in one tree.

    BroadcasterError
    ├── ConfigError                 bad or missing configuration; carries (path, message) problems
    ├── LedgerError                 the ledger cannot be reached or refused a write
    │   └── LedgerUnavailable       connection-level failure (retry later, API answers 503)
    ├── NotFound                    no such announcement / delivery / token
    ├── Conflict                    the request contradicts stored state
    │   └── IdempotencyConflict     same Idempotency-Key, different body (API: 422)
    ├── Forbidden                   the token may not do this (API: 403)
    ├── InvalidRequest              the request itself is wrong (API: 400/422)
    └── DeliveryError               raised by a channel's send/lookup/check — the only kind they raise
        ├── TransientError          try again later, with exponential backoff and jitter
        │   ├── RateLimited         the provider said how long to wait (``retry_after`` seconds)
        │   ├── AmbiguousDelivery   the request may have landed; never re-post blindly
        │   └── ChannelUnavailable  our own breaker is open; no request was made
        └── PermanentError          the same request will never succeed; stop and fall back
            ├── AuthError           credentials rejected
            ├── ContentRejected     the text cannot be posted (too long, invalid)
            └── RecipientsRefused   every recipient was refused

The delivery policy (``broadcaster.delivery``) is the only place that reacts to the
``DeliveryError`` branch. Channels translate foreign exceptions into it at one boundary and
chain the cause (``raise ... from exc``).
"""

from __future__ import annotations


class BroadcasterError(Exception):
    """Base of everything broadcaster raises on purpose."""

    code = "error"


class ConfigError(BroadcasterError):
    """Configuration problems, each with the key path that caused it."""

    code = "config_error"

    def __init__(self, problems: list[tuple[str, str]] | str):
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = list(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{path}: {message}" if path else message for path, message in self.problems]


class LedgerError(BroadcasterError):
    code = "ledger_error"


class LedgerUnavailable(LedgerError):
    code = "ledger_unavailable"


class NotFound(BroadcasterError):
    code = "not_found"


class Conflict(BroadcasterError):
    code = "conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class Forbidden(BroadcasterError):
    code = "forbidden"


class InvalidRequest(BroadcasterError):
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, details: dict | None = None):
        self.field = field
        self.details = details or {}  # extra facts for the caller (e.g. the accepted values)
        super().__init__(message)


class DeliveryError(BroadcasterError):
    """A channel could not deliver. ``response`` is a short, secret-free provider excerpt."""

    code = "delivery_error"

    def __init__(self, message: str, *, response: str | None = None, status: int | None = None):
        super().__init__(message)
        self.response = (response or "")[:500] or None
        self.status = status


class TransientError(DeliveryError):
    code = "transient"


class RateLimited(TransientError):
    code = "rate_limited"

    def __init__(self, message: str = "rate limited", *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = None if retry_after is None else max(0.0, float(retry_after))


class AmbiguousDelivery(TransientError):
    code = "ambiguous"


class ChannelUnavailable(TransientError):
    code = "channel_unavailable"

    def __init__(self, message: str = "circuit breaker open", *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    code = "permanent"


class AuthError(PermanentError):
    code = "auth"


class ContentRejected(PermanentError):
    code = "content_rejected"


class RecipientsRefused(PermanentError):
    code = "recipients_refused"

    def __init__(self, message: str = "all recipients refused", *, refused: dict | None = None, **kw):
        super().__init__(message, **kw)
        self.refused = refused or {}
