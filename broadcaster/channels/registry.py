"""``{kind: Channel class}``, filled by each adapter module's ``@register``.

Built-in modules are imported on first use so that ``config`` can validate channel settings
without import cycles, and an optional adapter whose extra is not installed simply is not listed.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .base import Channel

#: any adapter class (``Channel[ItsSettings]``)
ChannelClass = TypeVar("ChannelClass", bound="type[Channel[Any]]")

log = logging.getLogger(__name__)

BUILTIN_MODULES = (
    "webhook",
    "mastodon",
    "bluesky",
    "x",
    "facebook",
    "email",
    "statuspage",
    "atlassian",
    "cachet",
    "apprise",
    "linkedin",
    "telegram",
    "matrix",
    "twilio_sms",
    "google_chat",
    "mattermost",
    "subscriber_webhooks",
)

_registry: dict[str, type[Channel[Any]]] = {}
_loaded = False


def register(cls: ChannelClass) -> ChannelClass:
    """Class decorator: make ``cls.kind`` configurable."""
    _registry[cls.kind] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN_MODULES:
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                log.debug("channel module %s not available: %s", name, exc)


def channel_class(kind: str) -> type[Channel[Any]] | None:
    _load_builtins()
    return _registry.get(kind)


def kinds() -> list[str]:
    _load_builtins()
    return sorted(_registry)
