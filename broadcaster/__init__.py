"""broadcaster — submit an announcement once; deliver it everywhere, even on a bad day.

The names below are the curated public surface (``__all__``, checked by
``tests/unit/test_public_api.py``). They are resolved lazily on first access, so
``import broadcaster`` stays cheap and never drags in Celery, FastAPI or SQLAlchemy, and
submodules (``broadcaster.errors``, ``broadcaster.config`` …) import without cycles.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: the installed distribution's name (``pip show broadcaster-relay``); the import package and the
#: command are ``broadcaster``, but that name on the public package index is an unrelated project
DISTRIBUTION = "broadcaster-relay"

try:
    from importlib.metadata import PackageNotFoundError, version as _version

    try:
        __version__ = _version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that was never installed
        __version__ = "0.0.0+unknown"
except ImportError:  # pragma: no cover - importlib.metadata is in every supported Python
    __version__ = "0.0.0+unknown"

#: public name → submodule that defines it
_EXPORTS: dict[str, str] = {
    # configuration
    "Settings": "config",
    "ChannelPolicy": "config",
    "Secret": "config",
    "load_settings": "config",
    "read_settings": "config",
    "parse_duration": "config",
    "parse_rate": "config",
    # plain data
    "Announcement": "models",
    "Update": "models",
    "Delivery": "models",
    "DeliveryEvent": "models",
    "DeliveryState": "models",
    "Message": "models",
    "Post": "models",
    "Receipt": "models",
    "Window": "models",
    # channels
    "Channel": "channels.base",
    # errors
    "BroadcasterError": "errors",
    "ConfigError": "errors",
    "LedgerError": "errors",
    "LedgerUnavailable": "errors",
    "NotFound": "errors",
    "Conflict": "errors",
    "IdempotencyConflict": "errors",
    "Forbidden": "errors",
    "InvalidRequest": "errors",
    "DeliveryError": "errors",
    "TransientError": "errors",
    "RateLimited": "errors",
    "AmbiguousDelivery": "errors",
    "ChannelUnavailable": "errors",
    "PermanentError": "errors",
    "AuthError": "errors",
    "ContentRejected": "errors",
    "RecipientsRefused": "errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # cache: later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs; "X as X" marks a re-export
    from .channels.base import (
        Channel as Channel,
    )
    from .config import (
        ChannelPolicy as ChannelPolicy,
        Secret as Secret,
        Settings as Settings,
        load_settings as load_settings,
        parse_duration as parse_duration,
        parse_rate as parse_rate,
        read_settings as read_settings,
    )
    from .errors import (
        AmbiguousDelivery as AmbiguousDelivery,
        AuthError as AuthError,
        BroadcasterError as BroadcasterError,
        ChannelUnavailable as ChannelUnavailable,
        ConfigError as ConfigError,
        Conflict as Conflict,
        ContentRejected as ContentRejected,
        DeliveryError as DeliveryError,
        Forbidden as Forbidden,
        IdempotencyConflict as IdempotencyConflict,
        InvalidRequest as InvalidRequest,
        LedgerError as LedgerError,
        LedgerUnavailable as LedgerUnavailable,
        NotFound as NotFound,
        PermanentError as PermanentError,
        RateLimited as RateLimited,
        RecipientsRefused as RecipientsRefused,
        TransientError as TransientError,
    )
    from .models import (
        Announcement as Announcement,
        Delivery as Delivery,
        DeliveryEvent as DeliveryEvent,
        DeliveryState as DeliveryState,
        Message as Message,
        Post as Post,
        Receipt as Receipt,
        Update as Update,
        Window as Window,
    )
