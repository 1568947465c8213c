"""The settings sections for running the service and its features, each with sane defaults.

Processes: ``scheduler``, ``api``, ``worker``, ``sandbox``, ``sentinel``, ``retention``.
Features: ``subscribers``, ``tokens``, ``signing``, ``official``, ``review``, ``readiness``.
Alert intake (``inbound``) has its own module, :mod:`.inbound`; delivery policy :mod:`.policy`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from ..models import KINDS
from .base import Strict
from .scalars import Duration, Rate, Url
from .secrets import Secret

# ---------------------------------------------------------------- processes


class SchedulerSettings(Strict):
    interval: Duration = 1.0  # how often due work is enqueued and leases are checked
    requeue_after: Duration = 10.0  # an enqueued-but-unclaimed delivery is enqueued again after this
    lease: Duration = 30.0  # extra time a worker holds a claimed delivery beyond the channel timeout


class ApiSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    rate_limit: Rate = (120, 60.0)  # per token
    #: previews per token (the page's live preview, /api/v1/preview): a budget of their own, so
    #: typing on the compose page never uses up what posting needs
    preview_rate_limit: Rate = (600, 60.0)
    anonymous_rate_limit: Rate = (30, 60.0)  # per address, unauthenticated
    #: reverse proxies (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are
    #: believed, e.g. ["127.0.0.1", "::1"]; a comma-separated string works too (from ${VAR})
    trusted_proxies: tuple[str, ...] = ()
    workers: int = Field(1, ge=1, le=64)  # API processes (uvicorn workers)
    #: a token the ledger verified is trusted this long by one process (revocation reaches every
    #: other process within it); 0 asks the ledger on every request
    token_cache: Duration = Field(1.0, ge=0, le=60)
    #: a web page session ends after this long without a request …
    session_idle: Duration = Field(12 * 3600.0, gt=0)
    #: … and this long after sign-in in any case
    session_lifetime: Duration = Field(7 * 86400.0, gt=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, v: Any) -> Any:
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ValueError(f"{p!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)") from None
        return v


class WorkerSettings(Strict):
    concurrency: int = Field(8, ge=1, le=256)
    pool: Literal["threads", "prefork", "solo"] = "threads"
    #: deliveries of one channel a worker claims and sends at once (see broadcaster.drain)
    batch: int = Field(8, ge=1, le=64)
    #: threads sending one batch concurrently (1: one after another in the worker's thread)
    batch_threads: int = Field(1, ge=1, le=16)


class SandboxSettings(Strict):
    autostart: bool = False  # `broadcaster up` also runs the provider stand-ins (demo)
    host: str = "127.0.0.1"
    port: int = Field(8099, ge=1, le=65535)
    smtp_port: int = Field(8025, ge=1, le=65535)


class SentinelSettings(Strict):
    """Redis Sentinel: ``broker`` (and ``redis``) given as ``sentinel://host:26379;sentinel://…``."""

    master_name: str = Field(min_length=1)  # the name the Sentinels monitor, e.g. mymaster
    password: Secret | None = None  # the Sentinels' own password (requirepass in sentinel.conf), if any


class RetentionSettings(Strict):
    keep_events: Duration | None = 90 * 86400.0  # delivery-attempt history
    keep_announcements: Duration | None = None  # never pruned unless set
    every: Duration = 3600.0


# ---------------------------------------------------------------- features


class SubscribersSettings(Strict):
    secret_key: Secret | None = None  # signs confirmation and unsubscribe links; else $BROADCASTER_SECRET_KEY
    confirmation_channel: str | None = None  # an email channel that sends double opt-in mails
    critical_overrides_optout: bool = False
    confirm_within: Duration = 7 * 86400.0
    confirm_resend_after: Duration = 600.0  # at most one confirmation mail per address per this
    lists: tuple[str, ...] = ()
    promotion_kinds: tuple[str, ...] = ("promotion",)


class StaticToken(Strict):
    name: str = Field(..., min_length=1, max_length=200)
    hash: str  # "sha256:<64 hex>" — `broadcaster tokens hash` prints one
    kinds: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    admin: bool = False

    @field_validator("hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", v):
            raise ValueError("must be 'sha256:' and 64 lowercase hex digits (`broadcaster tokens hash` prints one)")
        return v

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [k for k in v if k not in KINDS]
        if bad:
            raise ValueError(f"unknown kind(s) {', '.join(bad)} (one of {', '.join(KINDS)})")
        return v


class SigningSettings(Strict):
    key_dir: str = "var/keys"  # keyring.json (public) and <id>.pem (private, 0600); never in the ledger
    key_id: str | None = None  # sign with this key; default: the keyring's active key
    verify_url: Url | None = None  # the verify page; default: <statuspage site_url>/verify.html
    embed_link: bool = True  # end every post with "Verify: <link>"


class OfficialListing(Strict):
    label: str | None = None
    handle: str | None = None
    url: Url | None = None
    hide: bool = False


class OfficialExtra(Strict):
    label: str
    kind: str = "other"
    handle: str | None = None
    url: Url | None = None


class OfficialSettings(Strict):
    organization: str | None = None
    channels: dict[str, OfficialListing] = Field(default_factory=dict)  # per configured channel: relabel, give handle/url, or hide
    extra: tuple[OfficialExtra, ...] = ()  # places we post by hand (a forum, a phone line)


class ReviewSettings(Strict):
    """Two-person review (docs/alerts.md): posts of these kinds, or to these channels, wait for a
    second token's approval before any delivery becomes due."""

    kinds: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    #: an admin token posting while an incident is open is not held (the first minutes matter)
    admins_skip_during_incident: bool = True
    #: how often the scheduler logs a post still waiting (and past its publish time)
    remind_every: Duration = 900.0


class ReadinessSettings(Strict):
    """Readiness checks (docs/alerts.md): each channel's non-posting credential check, on a schedule."""

    enabled: bool = True
    interval: Duration = 900.0  # how often the scheduler checks every enabled channel
    warn_before: Duration = 7 * 86400.0  # a token expiring sooner than this is flagged
    #: channel → when its token expires (ISO date or epoch), for providers that do not tell
    token_expires: dict[str, str] = Field(default_factory=dict)

    def expiry_of(self, channel: str) -> float | None:
        """When ``token_expires`` says the channel's token expires (epoch seconds), or None —
        also for a value that is no date: the forecast is advice, never a reason to fail."""
        raw = self.token_expires.get(channel)
        if raw is None:
            return None
        try:
            return float(raw)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
