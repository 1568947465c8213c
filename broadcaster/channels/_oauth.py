"""What an adapter whose token can be renewed shares (X, LinkedIn, Facebook, Matrix).

A channel configured with ``refresh:`` asks its :class:`~broadcaster.oauth.credential.Credential`
for the token of each request instead of reading ``access_token``, and when the provider refuses
the token (the adapter says which answers mean that) repeats the request once with the token the
credential renews or finds stored. Repeating is safe for every call: a refused request created
nothing. Without ``refresh:`` nothing changes — the configured token is used as it is.

The credential comes from the process's runtime (``ports.credentials``: one per channel, shared
by workers' and readiness checks' instances). A tool without a runtime (break-glass) builds its
own on the same store, under the process's lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import DeliveryError, TransientError
from .ports import CredentialSource

if TYPE_CHECKING:
    from ..oauth.credential import Credential

log = logging.getLogger(__name__)


class RenewableToken:
    """Mixin for :class:`~broadcaster.channels.base.Channel` subclasses whose settings have
    ``access_token`` and an optional ``refresh`` section."""

    name: str
    settings: Any
    credentials: CredentialSource | None
    clock: Callable[[], float]
    timeout: float
    #: learnt by ``check()``: when the channel stops working unless someone authorizes again
    credential_expires_at: float | None = None
    _credential_obj: Credential | None = None

    def credential(self) -> Credential | None:
        if getattr(self.settings, "refresh", None) is None:
            return None
        if self._credential_obj is None:
            found = self.credentials(self.name) if self.credentials is not None else None
            if found is None:
                from ..oauth.credential import for_channel
                from ..oauth.lock import LOCAL

                found = for_channel(self.name, self.settings, lock=LOCAL, clock=self.clock, timeout=self.timeout)
            self._credential_obj = found
        return self._credential_obj

    def bearer_token(self) -> str:
        cred = self.credential()
        if cred is None:
            return str(self.settings.access_token.reveal())
        return _guarded(cred.token, self.name)

    def with_token(self, request: Callable[[str], httpx.Response],
                   refused: Callable[[httpx.Response], bool]) -> httpx.Response:
        """``request(token)``; when the answer is a refusal of the token and a fresher one can
        be had, ``request(fresher)`` once more."""
        token = self.bearer_token()
        response = request(token)
        cred = self.credential()
        if cred is None or not refused(response):
            return response
        fresh = _guarded(lambda: cred.refused(token), self.name)
        if fresh is None or fresh == token:
            return response
        log.info("channel %s: the provider refused the token; repeating the request with the renewed one", self.name)
        return request(fresh)

    def note_expiry(self) -> str:
        """After a successful ``check()``: a renewal that is failing fails the check (the token
        in use runs out soon); else learn the forecast, and say how the token is kept."""
        cred = self.credential()
        if cred is None:
            return ""
        problem = _guarded(cred.problem, self.name)
        if problem is not None:
            raise problem
        self.credential_expires_at = _guarded(cred.forecast, self.name)
        note = cred.note()
        return f"; {note}" if note else ""


def _guarded(fn: Callable[[], Any], channel: str) -> Any:
    """A renewal's failure as one of ours: never a content error (nothing was built from the
    text) and never "may have been sent" (nothing was posted)."""
    try:
        return fn()
    except DeliveryError:
        raise
    except Exception as exc:  # an unexpected failure while renewing must not fail the post for good
        log.exception("channel %s: token renewal failed unexpectedly", channel)
        raise TransientError(f"{channel}: token renewal failed unexpectedly ({type(exc).__name__})") from None
