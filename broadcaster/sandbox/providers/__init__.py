"""One stand-in per provider; ``PROVIDERS`` maps a URL prefix to the classes mounted there."""

from __future__ import annotations

from .base import Provider
from .bluesky import Bluesky
from .cachet import CachetV2, CachetV3
from .chat import Discord, Slack, Teams
from .facebook import Facebook
from .googlechat import GoogleChat
from .linkedin import LinkedIn
from .mastodon import Mastodon
from .matrix import Matrix
from .mattermost import Mattermost
from .statuspage import Statuspage
from .telegram import Telegram
from .twilio import Twilio
from .webhook import Webhook
from .x import X

#: prefix → provider classes whose routes live under it (Cachet v2 and v3 share one prefix)
PROVIDERS: dict[str, tuple[type[Provider], ...]] = {
    "mastodon": (Mastodon,),
    "bluesky": (Bluesky,),
    "x": (X,),
    "facebook": (Facebook,),
    "statuspage": (Statuspage,),
    "cachet": (CachetV2, CachetV3),
    "slack": (Slack,),
    "discord": (Discord,),
    "teams": (Teams,),
    "webhook": (Webhook,),
    "linkedin": (LinkedIn,),
    "telegram": (Telegram,),
    "matrix": (Matrix,),
    "twilio": (Twilio,),
    "googlechat": (GoogleChat,),
    "mattermost": (Mattermost,),
}

__all__ = ["PROVIDERS", "Provider"]
