"""YAML → validated, frozen settings.

Read once at start. ``${VAR}`` / ``${VAR:-default}`` pull values from the environment. Fields
declared as :class:`Secret` (tokens, passwords, webhook URLs) never show themselves in a repr,
log or error; passwords inside database and Redis URLs are masked when shown.
Every problem is reported as ``key.path: plain sentence`` — all of them at once, no traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_serializer, field_validator
from pydantic_core import ErrorDetails

from .errors import ConfigError
from .models import KINDS

DEFAULT_CONFIG_PATHS = ("config/broadcaster.yaml",)


# ---------------------------------------------------------------- secrets and scalar types


class Secret:
    """A credential. Its repr and str are masked; ask for ``.reveal()`` at the point of use."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        from pydantic_core import core_schema

        def to_secret(v: Any) -> Secret:
            if isinstance(v, Secret):
                return v
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                return cls(str(v))
            raise ValueError("must be a string")

        return core_schema.no_info_plain_validator_function(
            to_secret, serialization=core_schema.plain_serializer_function_ser_schema(lambda s: "**********")
        )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"250ms"`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("not a duration (use e.g. 30s, 5m, 2h)")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite duration (use e.g. 30s, 5m, 2h)")
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 2h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_rate(value: Any) -> tuple[int, float]:
    """``"300/5m"`` → (300 requests, 300 seconds); ``"1/s"`` → (1, 1.0)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        try:
            limit, per = int(value[0]), float(value[1])
        except (TypeError, ValueError):
            raise ValueError(f"not a rate: {value!r} (use e.g. 300/5m, 1/s)") from None
        if limit <= 0 or not (0 < per < float("inf")):
            raise ValueError(f"not a rate: {value!r} (a positive count per a positive time)")
        return limit, per
    m = re.match(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$", str(value))
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"not a rate: {value!r} (use e.g. 300/5m, 1/s)")
    per = float(m.group(2) or 1) * _UNITS[m.group(3)]
    if per <= 0:
        raise ValueError(f"not a rate: {value!r}")
    return int(m.group(1)), per


def mask_url_password(url: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host`` for anything shown to people."""
    return re.sub(r"(//[^:/@\s;]*):[^@/\s;]*@", r"\1:***@", str(url))


def _url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/]+", value):
        raise ValueError("not a URL")
    return value.rstrip("/") if value.count("/") > 3 and value.endswith("/") else value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Rate = Annotated[tuple[int, float], BeforeValidator(parse_rate)]
Url = Annotated[str, BeforeValidator(_url)]
#: a URL that is itself a credential (chat webhook URLs): validated, then masked
SecretUrl = Annotated[Secret, BeforeValidator(_url)]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


# ---------------------------------------------------------------- sections


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
    channels: dict[str, PolicyOverride] = {}
    #: per-kind deadline: nothing is delivered later than this after it was due
    deadlines: dict[str, Duration] = {}

    @field_validator("deadlines")
    @classmethod
    def _known_kinds(cls, v: dict[str, float]) -> dict[str, float]:
        for kind in v:
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
        return v


class SchedulerSettings(Strict):
    interval: Duration = 1.0  # how often due work is enqueued and leases are checked
    requeue_after: Duration = 10.0  # an enqueued-but-unclaimed delivery is enqueued again after this
    lease: Duration = 30.0  # extra time a worker holds a claimed delivery beyond the channel timeout


class ApiSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    rate_limit: Rate = (120, 60.0)  # per token
    anonymous_rate_limit: Rate = (30, 60.0)  # per address, unauthenticated
    #: reverse proxies (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are
    #: believed, e.g. ["127.0.0.1", "::1"]; a comma-separated string works too (from ${VAR})
    trusted_proxies: tuple[str, ...] = ()
    workers: int = Field(1, ge=1, le=64)  # API processes (uvicorn workers)
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


class SubscribersSettings(Strict):
    secret_key: Secret | None = None  # signs confirmation and unsubscribe links; else $BROADCASTER_SECRET_KEY
    confirmation_channel: str | None = None  # an email channel that sends double opt-in mails
    critical_overrides_optout: bool = False
    confirm_within: Duration = 7 * 86400.0
    confirm_resend_after: Duration = 600.0  # at most one confirmation mail per address per this
    lists: tuple[str, ...] = ()
    promotion_kinds: tuple[str, ...] = ("promotion",)


class RetentionSettings(Strict):
    keep_events: Duration | None = 90 * 86400.0  # delivery-attempt history
    keep_announcements: Duration | None = None  # never pruned unless set
    every: Duration = 3600.0


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


class ChannelSettings(Strict):
    """Fields every channel has; each kind extends this with its own (see ``channels/``)."""

    kind: str
    enabled: bool = True
    description: str | None = None


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
    channels: dict[str, OfficialListing] = {}  # per configured channel: relabel, give handle/url, or hide
    extra: tuple[OfficialExtra, ...] = ()  # places we post by hand (a forum, a phone line)


class SentinelSettings(Strict):
    """Redis Sentinel: ``broker`` (and ``redis``) given as ``sentinel://host:26379;sentinel://…``."""

    master_name: str = Field(min_length=1)  # the name the Sentinels monitor, e.g. mymaster
    password: Secret | None = None  # the Sentinels' own password (requirepass in sentinel.conf), if any


# ---------------------------------------------------------------- inbound alerts (docs/alerts.md)

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
    labels: dict[str, str] = {}


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
    receivers: dict[str, InboundReceiver] = {}
    rules: tuple[InboundRule, ...] = ()
    #: a group that fires again within this of resolving reopens its draft or incident
    flap_window: Duration = 600.0


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
    token_expires: dict[str, str] = {}


class Settings(Strict):
    ledger: str = "sqlite:///var/broadcaster.db"
    broker: str | None = None  # Redis (or amqp://) URL; None → $REDIS_URL or the local Redis
    redis: str | None = None  # shared breaker/rate-limit state; None → the broker when it is Redis
    sentinel: SentinelSettings | None = None  # needed when broker or redis is a sentinel:// URL
    public_url: Url = "http://127.0.0.1:8080"
    channels: dict[str, Any] = {}
    routes: dict[str, tuple[str, ...]] = {}
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


# ---------------------------------------------------------------- environment interpolation

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(node: Any, env: dict[str, str], path: str = "", problems: list | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; missing VARs are problems."""
    if problems is None:
        problems = []
    if isinstance(node, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            problems.append((path, f"environment variable {name} is not set"))
            return ""

        return _VAR.sub(sub, node)
    return node


# ---------------------------------------------------------------- loading and error wording


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-") or part in ("tagged-union",):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _wording(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in ("int_parsing", "int_type"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("string_type",):
        return "must be a string"
    if kind in ("dict_type", "model_type"):
        return "must be a mapping (key: value)"
    if kind in ("list_type", "tuple_type"):
        return "must be a list"
    if kind == "literal_error":
        return "must be " + msg.removeprefix("Input should be ")
    return msg[0].lower() + msg[1:] if msg else kind


def problems_of(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        path = _loc(err["loc"])
        full = f"{prefix}.{path}" if prefix and path else (prefix or path)
        out.append((full, _wording(err)))
    return out


def _validate_channels(raw: dict[str, Any], problems: list) -> dict[str, ChannelSettings]:
    from .channels import registry  # channel kinds register their settings models

    out: dict[str, ChannelSettings] = {}
    if not isinstance(raw, dict):
        problems.append(("channels", "must be a mapping of channel name to settings"))
        return out
    for name, body in raw.items():
        path = f"channels.{name}"
        if not re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", str(name)):
            problems.append((path, "channel names use lowercase letters, digits, - and _"))
            continue
        if not isinstance(body, dict):
            problems.append((path, "must be a mapping (key: value)"))
            continue
        kind = body.get("kind")
        if kind is None:
            problems.append((f"{path}.kind", "required key is missing"))
            continue
        if not isinstance(kind, str):
            problems.append((f"{path}.kind", f"must be a string (one of {', '.join(registry.kinds())})"))
            continue
        cls = registry.channel_class(kind)
        if cls is None:
            problems.append((f"{path}.kind", f"unknown channel kind {kind!r} (one of {', '.join(registry.kinds())})"))
            continue
        try:
            out[name] = cls.Settings.model_validate(body)
        except ValidationError as exc:
            problems.extend(problems_of(exc, path))
    return out


def _cross_check(settings: Settings, problems: list, declared: set[str] | None = None) -> None:
    """Checks across sections. ``declared`` are all channel names in the file, valid or not, so a
    channel with a bad field is reported once — not again by every route that names it."""
    names = set(settings.channels)
    known = names | (declared or set())
    for kind, channels in settings.routes.items():
        if kind not in KINDS:
            problems.append((f"routes.{kind}", f"unknown kind (one of {', '.join(KINDS)})"))
        for i, ch in enumerate(channels):
            if ch not in known:
                problems.append((f"routes.{kind}[{i}]", f"no channel named {ch!r}"))
    for ch in settings.policy.channels:
        if ch not in known:
            problems.append((f"policy.channels.{ch}", "no channel by that name"))
    for i, tok in enumerate(settings.tokens):
        for ch in tok.channels:
            if ch not in known:
                problems.append((f"tokens[{i}].channels", f"no channel named {ch!r}"))
    for ch in names:
        for i, fb in enumerate(settings.policy_for(ch).fallback):
            if fb not in known:
                problems.append((f"policy.channels.{ch}.fallback[{i}]", f"no channel named {fb!r}"))
            elif fb == ch:
                problems.append((f"policy.channels.{ch}.fallback[{i}]", "a channel cannot fall back to itself"))
    for ch in settings.official.channels:
        if ch not in known:
            problems.append((f"official.channels.{ch}", "no channel by that name"))
    conf = settings.subscribers.confirmation_channel
    if conf is not None and conf in names and (settings.channels[conf].kind != "email" or not settings.channels[conf].enabled):
        problems.append(("subscribers.confirmation_channel", f"{conf!r} is not an enabled email channel"))
    elif conf is not None and conf not in known:
        problems.append(("subscribers.confirmation_channel", f"no channel named {conf!r}"))
    for i, kind in enumerate(settings.quiet_during_incidents):
        if kind not in KINDS:
            problems.append((f"quiet_during_incidents[{i}]", f"unknown kind (one of {', '.join(KINDS)})"))
    _check_inbound(settings, problems, known)
    for key in ("broker", "redis"):
        url = getattr(settings, key)
        if url and url.startswith("sentinel://") and settings.sentinel is None:
            problems.append(("sentinel.master_name", f"required when {key} is a sentinel:// URL "
                                                     "(the name the Sentinels monitor, e.g. mymaster)"))
            break


def _check_inbound(settings: Settings, problems: list, known: set[str]) -> None:
    """Each receiver can authenticate its sender; each rule names receivers and channels that exist."""
    for name, rec in settings.inbound.receivers.items():
        where = f"inbound.receivers.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            problems.append((where, "a receiver name is letters, digits, - and _ (it is part of its URL)"))
        if rec.source == "pagerduty" and not rec.hmac_secret:
            problems.append((f"{where}.hmac_secret", "required: PagerDuty signs every webhook with it"))
        elif not (rec.token or rec.hmac_secret or (rec.username and rec.password)):
            problems.append((where, "needs a credential: token, username and password, or hmac_secret"))
        if rec.hmac_secret and rec.source not in ("grafana", "pagerduty"):
            problems.append((f"{where}.hmac_secret", f"{rec.source} does not sign its webhooks; use token"))
    for ch in settings.readiness.token_expires:
        if ch not in known:
            problems.append((f"readiness.token_expires.{ch}", "no channel by that name"))
    for i, kind in enumerate(settings.review.kinds):
        if kind not in KINDS:
            problems.append((f"review.kinds[{i}]", f"unknown kind (one of {', '.join(KINDS)})"))
    for i, ch in enumerate(settings.review.channels):
        if ch not in known:
            problems.append((f"review.channels[{i}]", f"no channel named {ch!r}"))
    for i, rule in enumerate(settings.inbound.rules):
        where = f"inbound.rules[{i}]"
        if rule.match.receiver and rule.match.receiver not in settings.inbound.receivers:
            problems.append((f"{where}.match.receiver", f"no receiver named {rule.match.receiver!r}"))
        for j, ch in enumerate(rule.channels):
            if ch not in known:
                problems.append((f"{where}.channels[{j}]", f"no channel named {ch!r}"))


def load_settings(data: dict[str, Any], *, env: dict[str, str] | None = None, source: str | None = None) -> Settings:
    """Validate a parsed YAML document. Raises :class:`ConfigError` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", "the configuration must be a mapping of keys (ledger, broker, channels, ...)")])
    problems: list[tuple[str, str]] = []
    data = interpolate(data, dict(os.environ) if env is None else env, problems=problems)
    raw_channels = data.pop("channels", {}) or {}
    channels = _validate_channels(raw_channels, problems)
    try:
        settings = Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems.extend(problems_of(exc))
        # drop the broken sections and cross-check the rest, so every problem shows in one run
        broken = {e["loc"][0] for e in exc.errors() if e["loc"]}
        try:
            partial = Settings.model_validate({k: v for k, v in data.items() if k not in broken})
            _cross_check(partial.model_copy(update={"channels": channels}), problems,
                         set(raw_channels) if isinstance(raw_channels, dict) else set())
        except ValidationError:
            pass
        raise ConfigError(problems) from None
    settings = settings.model_copy(update={"channels": channels})
    _cross_check(settings, problems, set(raw_channels) if isinstance(raw_channels, dict) else set())
    if problems:
        raise ConfigError(problems)
    return settings


def read_settings(path: str | os.PathLike | None = None, *, env: dict[str, str] | None = None) -> Settings:
    """Read the config file: ``path``, else ``$BROADCASTER_CONFIG``, else ``config/broadcaster.yaml``."""
    env = dict(os.environ) if env is None else env
    candidates = [path] if path else ([env["BROADCASTER_CONFIG"]] if env.get("BROADCASTER_CONFIG") else list(DEFAULT_CONFIG_PATHS))
    for candidate in candidates:
        p = Path(candidate)
        if p.is_file():
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
                raise ConfigError([(str(p), f"not valid YAML at {where}: {getattr(exc, 'problem', exc)}")]) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError([(str(p), f"cannot read the file: {exc}")]) from None
            return load_settings(data, env=env, source=str(p.resolve()))
        if path or env.get("BROADCASTER_CONFIG"):
            raise ConfigError([(str(p), "no such file")])
    raise ConfigError(
        [("", "no configuration found: pass --config PATH, set BROADCASTER_CONFIG, or create config/broadcaster.yaml "
              "(config/demo.yaml is a working example)")]
    )


def secret_values(node: Any) -> set[str]:
    """Every revealed Secret inside a settings object (nested models, dicts, lists included)."""
    out: set[str] = set()
    if isinstance(node, Secret):
        if len(node.reveal()) >= 4:
            out.add(node.reveal())
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            out |= secret_values(getattr(node, name))
    elif isinstance(node, dict):
        for v in node.values():
            out |= secret_values(v)
    elif isinstance(node, (list, tuple, set)):
        for v in node:
            out |= secret_values(v)
    return out


_BEARER = re.compile(r"(?i)\b(bearer|token|oauth)\s+[A-Za-z0-9._~+/=-]{8,}")


def redact(text: str | None, secrets: set[str]) -> str | None:
    """Remove secret values (and anything shaped like a bearer token) from text we store or show:
    providers sometimes echo the request back in their error bodies."""
    if not text:
        return text
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return _BEARER.sub(lambda m: m.group(1) + " ***", text)

