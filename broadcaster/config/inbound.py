"""Alert intake (docs/alerts.md): who may send alerts, and which rules turn them into posts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict
from .scalars import Duration
from .secrets import Secret


class InboundReceiver(Strict):
    """One sender: which tool it is and how it proves itself (at least one credential)."""

    source: Literal["alertmanager", "grafana", "pagerduty", "opsgenie", "uptime-kuma"]
    token: Secret | None = None  # Authorization: Bearer <token> (or in ``header``)
    header: str | None = None  # read the token from this header instead of Authorization
    username: str | None = None  # HTTP basic auth (Alertmanager's basic_auth)
    password: Secret | None = None
    hmac_secret: Secret | None = None  # Grafana's and PagerDuty's signature secret
    signature_header: str | None = None  # Grafana: default X-Grafana-Alerting-Signature
    timestamp_header: str | None = None  # Grafana: its optional timestamp header (then replay-safe)
    max_age: Duration = 300.0  # a signed timestamp older (or newer) than this is refused


class InboundMatch(Strict):
    receiver: str | None = None
    source: str | None = None
    severity: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class InboundRule(Strict):
    match: InboundMatch = InboundMatch()
    kind: Literal["incident", "maintenance", "promotion", "deploy", "notice"] = "incident"
    severity: Literal["minor", "major", "critical"] | None = None
    components: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()  # empty: the kind's route
    title: str = "{title}"
    body: str = "{summary}"
    resolved_body: str = "This has been resolved."
    mode: Literal["draft", "publish"] = "draft"


class InboundSettings(Strict):
    receivers: dict[str, InboundReceiver] = Field(default_factory=dict)
    rules: tuple[InboundRule, ...] = ()
    #: a group that fires again within this of resolving reopens its draft or incident
    flap_window: Duration = 600.0
