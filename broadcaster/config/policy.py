"""How deliveries to a channel are tried: attempts, backoff, deadline, breaker, fallback.

``policy.defaults`` applies to every channel; ``policy.channels.<name>`` overrides only the keys
it names (merged by :meth:`.settings.Settings.policy_for`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..models import KINDS
from .base import Strict
from .scalars import Duration, Rate


class Backoff(Strict):
    base: Duration = 2.0
    max: Duration = 300.0


class BreakerPolicy(Strict):
    failures: int = Field(5, ge=1)
    cooldown: Duration = 30.0


class ChannelPolicy(Strict):
    """How deliveries to one channel are tried. Every field has a sane default."""

    attempts: int = Field(8, ge=1, le=1000)
    backoff: Backoff = Backoff()
    deadline: Duration = 24 * 3600.0
    timeout: Duration = 10.0
    rate_limit: Rate | None = None
    breaker: BreakerPolicy = BreakerPolicy()
    fallback: tuple[str, ...] = ()
    fallback_after: Duration | None = None
    on_too_long: Literal["thread", "truncate", "reject"] = "thread"


_POLICY_FIELDS = set(ChannelPolicy.model_fields)


class PolicyOverride(Strict):
    """A partial :class:`ChannelPolicy`; unset keys inherit from ``policy.defaults``."""

    attempts: int | None = Field(None, ge=1, le=1000)
    backoff: Backoff | None = None
    deadline: Duration | None = None
    timeout: Duration | None = None
    rate_limit: Rate | None = None
    breaker: BreakerPolicy | None = None
    fallback: tuple[str, ...] | None = None
    fallback_after: Duration | None = None
    on_too_long: Literal["thread", "truncate", "reject"] | None = None


class Policy(Strict):
    defaults: ChannelPolicy = ChannelPolicy()
    channels: dict[str, PolicyOverride] = Field(default_factory=dict)
    #: per-kind deadline: nothing is delivered later than this after it was due
    deadlines: dict[str, Duration] = Field(default_factory=dict)

    @field_validator("deadlines")
    @classmethod
    def _known_kinds(cls, v: dict[str, float]) -> dict[str, float]:
        for kind in v:
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
        return v
