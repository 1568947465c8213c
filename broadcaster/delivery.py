"""The delivery policy: what happens after an attempt. Pure functions, no I/O.

This is the one place that reacts to the ``DeliveryError`` tree:

==========================  =====================================================================
outcome                     next state
==========================  =====================================================================
sent                        delivered
RateLimited(retry_after)    retrying, due exactly ``retry_after`` later (not counted as a failure)
ChannelUnavailable          retrying when the breaker lets a probe through — or fallen_back once
                            the breaker has been open longer than ``fallback_after``
AmbiguousDelivery           idempotent channel or one that can look up → retrying (checked first);
                            a private channel (email) → retrying, re-sending only uncertain items;
                            otherwise → unknown (never re-posted blindly)
TransientError              retrying after exponential backoff with full jitter
PermanentError              failed → fallen_back when the channel has fallbacks
message cannot be built     failed at once (engine: render, or the adapter building its payload
from the text               before any I/O); never "maybe sent", never counted by the breaker
out of attempts / deadline  failed → fallen_back when the channel has fallbacks
==========================  =====================================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import ChannelPolicy
from .errors import (
    AmbiguousDelivery,
    ChannelUnavailable,
    DeliveryError,
    PermanentError,
    RateLimited,
    TransientError,
)
from .models import DeliveryState

S = DeliveryState

#: waits up to this long are also handed to Celery as a countdown (for latency); longer waits
#: live only in the ledger and are picked up by the scheduler's sweep.
SHORT_WAIT = 5.0


@dataclass(frozen=True)
class Decision:
    state: DeliveryState
    reason: str
    due_at: float | None = None
    attempted: bool = True
    maybe_sent: bool | None = None
    fall_back: bool = False

    @property
    def wait(self) -> float | None:
        return self.due_at


def backoff(attempt: int, policy: ChannelPolicy, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(max, base · 2^(attempt-1))], at least 100 ms."""
    ceiling = min(policy.backoff.max, policy.backoff.base * (2 ** max(0, attempt - 1)))
    return max(0.1, (rng or random).uniform(0, ceiling))


def _give_up(reason: str, policy: ChannelPolicy, maybe_sent: bool | None = None) -> Decision:
    if policy.fallback:
        return Decision(S.FALLEN_BACK, f"{reason}; falling back to {', '.join(policy.fallback)}", fall_back=True,
                        maybe_sent=maybe_sent)
    return Decision(S.FAILED, reason, maybe_sent=maybe_sent)


def decide(
    exc: DeliveryError,
    *,
    attempt: int,
    now: float,
    deadline_at: float | None,
    policy: ChannelPolicy,
    idempotent: bool,
    can_lookup: bool,
    public: bool = True,
    rng: random.Random | None = None,
) -> Decision:
    """What to do after attempt number ``attempt`` raised ``exc``."""
    message = str(exc)

    def retry_at(due: float, reason: str, attempted: bool = True, maybe_sent: bool | None = None) -> Decision:
        if deadline_at is not None and due > deadline_at:
            return _give_up(f"{reason}; the next try would be after the deadline", policy, maybe_sent)
        return Decision(S.RETRYING, reason, due_at=due, attempted=attempted, maybe_sent=maybe_sent)

    if isinstance(exc, ChannelUnavailable):
        return retry_at(now + max(0.5, exc.retry_after or policy.breaker.cooldown), message, attempted=False)
    if isinstance(exc, RateLimited):
        wait = exc.retry_after if exc.retry_after is not None else backoff(attempt, policy, rng)
        return retry_at(now + wait, f"{message}; waiting {wait:.1f}s as the provider asked")
    if isinstance(exc, PermanentError):
        return _give_up(message, policy)
    if isinstance(exc, AmbiguousDelivery):
        if public and not (idempotent or can_lookup):
            return Decision(S.UNKNOWN, f"{message}; it may have been posted, so it is not re-sent — check the channel",
                            maybe_sent=True)
        if attempt >= policy.attempts:
            return Decision(S.UNKNOWN, f"{message}; out of attempts and the outcome could not be confirmed", maybe_sent=True)
        due = now + backoff(attempt, policy, rng)
        if deadline_at is not None and due > deadline_at:
            return Decision(S.UNKNOWN, f"{message}; the deadline passes before it could be confirmed — check the "
                                       "channel", maybe_sent=True)
        how = ("re-sent with the same idempotency key" if idempotent else "looked up before any re-send"
               if can_lookup else "re-sent (a private channel: at-least-once for the uncertain items only)")
        return retry_at(due, f"{message}; will be {how}", maybe_sent=True)
    if isinstance(exc, TransientError):
        if attempt >= policy.attempts:
            return _give_up(f"{message}; gave up after {attempt} attempts", policy)
        wait = backoff(attempt, policy, rng)
        return retry_at(now + wait, f"{message}; retry in {wait:.1f}s")
    return _give_up(message, policy)  # a DeliveryError outside the two branches: treat as permanent


def breaker_fallback_due(opened_at: float | None, now: float, policy: ChannelPolicy) -> bool:
    """The breaker has stayed open past ``fallback_after``: hand over to the fallbacks."""
    return bool(policy.fallback) and policy.fallback_after is not None and opened_at is not None \
        and now - opened_at >= policy.fallback_after


def counts_against_breaker(exc: DeliveryError) -> bool:
    """Provider health failures open the breaker; our own content/recipient problems do not."""
    from .errors import AuthError

    if isinstance(exc, (RateLimited, ChannelUnavailable)):
        return False
    return isinstance(exc, (TransientError, AuthError))
