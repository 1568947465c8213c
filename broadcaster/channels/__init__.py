"""Channel adapters: one module per provider kind, all following :mod:`.base`."""

from .base import Channel
from .registry import channel_class, kinds, register

__all__ = ["Channel", "channel_class", "kinds", "register"]
