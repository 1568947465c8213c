"""YAML → validated, frozen settings.

Read once at start. ``${VAR}`` / ``${VAR:-default}`` pull values from the environment. Fields
declared as :class:`Secret` (tokens, passwords, webhook URLs) never show themselves in a repr,
log or error; passwords inside database and Redis URLs are masked when shown.
Every problem is reported as ``key.path: plain sentence`` — all of them at once, no traceback.

The package, one concept a module (import from here; the modules are its layout):

- :mod:`.secrets` — ``Secret``, URL password masking, redaction of secrets from text
- :mod:`.scalars` — ``Duration``, ``Rate``, ``Url``, ``SecretUrl`` and their parsers
- :mod:`.base` — ``Strict`` (every section) and ``ChannelSettings`` (every channel kind)
- :mod:`.policy` — how deliveries to a channel are tried
- :mod:`.sections` — the service's and features' sections; :mod:`.inbound` — alert intake;
  :mod:`.commitments` — incident templates and "next update by" reminders
- :mod:`.settings` — the root ``Settings`` and its derived look-ups
- :mod:`.loading` — reading, interpolation, error wording; :mod:`.checks` — cross-section checks
"""

from ..errors import ConfigError
from .base import ChannelSettings, Strict
from .commitments import CommitmentsSettings, TemplateSettings
from .inbound import InboundMatch, InboundReceiver, InboundRule, InboundSettings
from .loading import DEFAULT_CONFIG_PATHS, interpolate, load_settings, problems_of, read_settings
from .policy import Backoff, BreakerPolicy, ChannelPolicy, Policy, PolicyOverride
from .scalars import Duration, Rate, SecretUrl, Url, parse_duration, parse_rate
from .secrets import Secret, mask_url_password, redact, secret_values
from .sections import (
    ApiSettings,
    OfficialExtra,
    OfficialListing,
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
from .settings import Settings

__all__ = [
    "DEFAULT_CONFIG_PATHS",
    "ApiSettings",
    "Backoff",
    "BreakerPolicy",
    "ChannelPolicy",
    "ChannelSettings",
    "CommitmentsSettings",
    "ConfigError",
    "Duration",
    "InboundMatch",
    "InboundReceiver",
    "InboundRule",
    "InboundSettings",
    "OfficialExtra",
    "OfficialListing",
    "OfficialSettings",
    "Policy",
    "PolicyOverride",
    "Rate",
    "ReadinessSettings",
    "RetentionSettings",
    "ReviewSettings",
    "SandboxSettings",
    "SchedulerSettings",
    "Secret",
    "SecretUrl",
    "SentinelSettings",
    "Settings",
    "SigningSettings",
    "StaticToken",
    "Strict",
    "SubscribersSettings",
    "TemplateSettings",
    "Url",
    "WorkerSettings",
    "interpolate",
    "load_settings",
    "mask_url_password",
    "parse_duration",
    "parse_rate",
    "problems_of",
    "read_settings",
    "redact",
    "secret_values",
]
