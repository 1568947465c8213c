"""The root of the configuration: every section, and the look-ups derived from them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer

from .base import ChannelSettings, Strict
from .commitments import CommitmentsSettings, TemplateSettings
from .inbound import InboundSettings
from .policy import ChannelPolicy, Policy
from .scalars import Url
from .secrets import mask_url_password
from .sections import (
    ApiSettings,
    OfficialSettings,
    ReadinessSettings,
    RetentionSettings,
    ReviewSettings,
    SandboxSettings,
    SchedulerSettings,
    SentinelSettings,
    SigningSettings,
    StaticToken,
    SubscribersSettings,
    WorkerSettings,
)


class Settings(Strict):
    ledger: str = "sqlite:///var/broadcaster.db"
    broker: str | None = None  # Redis (or amqp://) URL; None → $REDIS_URL or the local Redis
    redis: str | None = None  # shared breaker/rate-limit state; None → the broker when it is Redis
    sentinel: SentinelSettings | None = None  # needed when broker or redis is a sentinel:// URL
    public_url: Url = "http://127.0.0.1:8080"
    channels: dict[str, Any] = Field(default_factory=dict)
    routes: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    policy: Policy = Policy()
    tokens: tuple[StaticToken, ...] = ()
    quiet_during_incidents: tuple[str, ...] = ()
    quiet_action: Literal["hold", "cancel"] = "hold"
    scheduler: SchedulerSettings = SchedulerSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    sandbox: SandboxSettings = SandboxSettings()
    subscribers: SubscribersSettings = SubscribersSettings()
    retention: RetentionSettings = RetentionSettings()
    signing: SigningSettings | None = None  # None: announcements are not signed
    official: OfficialSettings = OfficialSettings()
    inbound: InboundSettings = InboundSettings()
    review: ReviewSettings = ReviewSettings()
    readiness: ReadinessSettings = ReadinessSettings()
    templates: dict[str, TemplateSettings] = Field(default_factory=dict)
    commitments: CommitmentsSettings = CommitmentsSettings()
    source: str | None = None  # path the settings were read from

    @field_serializer("ledger", "broker", "redis")
    def _mask_urls(self, value: str | None) -> str | None:
        return mask_url_password(value) if value else value

    def __repr_args__(self):
        for key, value in super().__repr_args__():
            yield key, (mask_url_password(value) if key in ("ledger", "broker", "redis") and value else value)

    # -- derived look-ups (plain functions of the frozen data)

    def channel(self, name: str) -> ChannelSettings:
        return self.channels[name]

    def policy_for(self, channel: str) -> ChannelPolicy:
        override = self.policy.channels.get(channel)
        if override is None:
            return self.policy.defaults
        base = self.policy.defaults
        changes = {}
        for key in override.model_fields_set:
            value = getattr(override, key)
            if value is None:
                continue
            if isinstance(value, BaseModel):  # nested: only the keys the override names
                value = getattr(base, key).model_copy(update={k: getattr(value, k) for k in value.model_fields_set})
            changes[key] = value
        return base.model_copy(update=changes)

    def deadline_for(self, kind: str, channel: str) -> float:
        if kind in self.policy.deadlines:
            return self.policy.deadlines[kind]
        return self.policy_for(channel).deadline

    def route(self, kind: str) -> tuple[str, ...]:
        return tuple(c for c in self.routes.get(kind, ()) if self.channels[c].enabled)

    def fallback_reach(self, channels: Iterable[str]) -> dict[str, list[str]]:
        """Each channel → every other channel a failure could hand its message to: its fallbacks,
        theirs, and so on (a loop ends where it started). Posting to a channel is posting to
        these too, so a token's channel limit is checked against them."""
        out: dict[str, list[str]] = {}
        for channel in channels:
            seen, todo = [channel], list(self.policy_for(channel).fallback)
            while todo:
                nxt = todo.pop(0)
                if nxt in seen or nxt not in self.channels:
                    continue
                seen.append(nxt)
                todo.extend(self.policy_for(nxt).fallback)
            if len(seen) > 1:
                out[channel] = seen[1:]
        return out
