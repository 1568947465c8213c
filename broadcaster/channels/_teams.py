"""Microsoft Teams through a Workflows webhook (``webhook`` channel, ``format: teams_workflow``).

Microsoft retired the Office 365 connector "Incoming Webhook" URLs (``https://<tenant>.webhook.
office.com/webhookb2/…``, earlier ``https://outlook.office.com/webhook/…``). Their replacement is a
Teams Workflows (Power Automate) flow — "Post to a channel when a webhook request is received" —
whose trigger URL accepts a message envelope holding an Adaptive Card:

    {"type": "message",
     "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                      "content": {"type": "AdaptiveCard", "version": "1.4", "body": […], …}}]}

A connector URL that answers 4xx is not a transient problem and not a credential typo: the
operator has to create a Workflows webhook and configure its URL, and the error says so. The same
URL shape is reported when the configuration is loaded and by ``broadcaster check``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import PermanentError, RateLimited
from ..models import Post
from . import _http

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
#: Adaptive Card 1.4 renders in Teams on desktop, web and mobile
CARD_VERSION = "1.4"

RETIRED_HINT = ("the URL is a retired Office 365 connector URL (…webhook.office.com/webhookb2/…); in Teams, create "
                "a Workflows webhook (\"Post to a channel when a webhook request is received\") and set its URL with "
                "format: teams_workflow")


def is_retired_connector(url: str) -> bool:
    """The URL of an Office 365 connector Incoming Webhook, which Microsoft retired."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host.endswith(".webhook.office.com") or "/webhookb2/" in parts.path:
        return True
    return host in ("outlook.office.com", "outlook.office365.com") and parts.path.startswith("/webhook/")


def workflow_payload(post: Post) -> dict[str, Any]:
    """The message envelope a Workflows webhook takes: one Adaptive Card attachment."""
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": [
            {"type": "TextBlock", "text": post.title, "weight": "Bolder", "size": "Medium", "wrap": True,
             "style": "heading"},
            {"type": "TextBlock", "text": post.text, "wrap": True},
        ],
    }
    if post.url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Details", "url": post.url}]
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}]}


def classify(response: Any, url: str, what: str) -> None:
    """What Teams-specific answers mean before the generic HTTP rules apply."""
    code = response.status_code
    if 400 <= code < 500 and code != 429 and is_retired_connector(url):
        raise PermanentError(f"{what}: refused (HTTP {code}): {RETIRED_HINT}", response=_http.short(response),
                             status=code)
    if code == 200 and "returned HTTP error 429" in response.text:
        # legacy connectors answered throttling with a 200 whose body carries the 429
        raise RateLimited(f"{what}: Teams throttled the message", response=_http.short(response), status=code)
