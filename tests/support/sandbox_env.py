"""Channel configurations pointing at a running :class:`broadcaster.sandbox.Sandbox`, and small
readers of what the stand-ins recorded — shared by the sandbox integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

SECRET = "whsec_" + "c2FuZGJveC1zZWNyZXQtZm9yLXdlYmhvb2tzLTA5ODc2NQ=="
TOKEN = "sandbox-token"
PAGE = "pg-sandbox"
FB_PAGE = "4242"
MAIL_TO = ("alice@example.net", "bob@example.org")
MAIL_FROM = "Status <status@example.com>"

#: channel name → sandbox provider (``smtp`` for the SMTP sink, None for our own status page)
PROVIDER = {
    "mastodon": "mastodon",
    "bluesky": "bluesky",
    "x": "x",
    "facebook": "facebook",
    "atlassian": "statuspage",
    "cachet": "cachet",
    "slack": "slack",
    "discord": "discord",
    "teams": "teams",
    "webhook": "webhook",
    "email": "smtp",
    "statuspage": None,
}

#: provider → a piece of the path of its "create a post" endpoint (faults are aimed at it, so a
#: fault never lands on a session, instance-limits or look-up request instead)
CREATE_PATH = {
    "mastodon": "/api/v1/statuses",
    "bluesky": "com.atproto.repo.createRecord",
    "x": "/2/tweets",
    "facebook": "/feed",
    "statuspage": f"/v1/pages/{PAGE}/incidents",
    "cachet": "/api/incidents",
    "slack": "/services/",
    "discord": "/api/webhooks/",
    "teams": "/workflows/",
    "webhook": "/webhook/hook1",
}


def channel_configs(box, tmp: Path) -> dict[str, dict[str, Any]]:
    """One channel of every kind, each pointed at its stand-in in ``box``."""
    return {
        "mastodon": {"kind": "mastodon", "base_url": box.url("mastodon"), "access_token": TOKEN},
        "bluesky": {"kind": "bluesky", "base_url": box.url("bluesky"), "handle": "ops.example.com",
                    "app_password": "app-pass-word"},
        "x": {"kind": "x", "base_url": box.url("x"), "access_token": TOKEN},
        "facebook": {"kind": "facebook", "graph_url": box.url("facebook") + "/v19.0", "page_id": FB_PAGE,
                     "access_token": TOKEN},
        "atlassian": {"kind": "atlassian_statuspage", "base_url": box.url("statuspage"), "page_id": PAGE,
                      "api_key": TOKEN},
        "cachet": {"kind": "cachet", "base_url": box.url("cachet"), "token": TOKEN, "version": 3},
        "slack": {"kind": "webhook", "format": "slack", "url": box.url("slack") + "/services/T0001/B0001/slacksecret"},
        "discord": {"kind": "webhook", "format": "discord", "url": box.url("discord") + "/api/webhooks/1001/discordtoken"},
        "teams": {"kind": "webhook", "format": "teams", "url": box.url("teams") + "/workflows/flow-1"},
        "webhook": {"kind": "webhook", "format": "generic", "url": box.url("webhook") + "/hook1", "secret": SECRET},
        "email": {"kind": "email", "smtp": {"host": "127.0.0.1", "port": box.smtp_port, "security": "none", "timeout": 5},
                  "from_address": MAIL_FROM, "recipients": list(MAIL_TO)},
        "statuspage": {"kind": "statuspage", "output_dir": str(tmp / "site"), "title": "Sandbox status"},
    }


def creates(box, provider: str) -> list[dict[str, Any]]:
    """Requests the provider received on its create endpoint, in order (POSTs only)."""
    path = CREATE_PATH[provider]
    return [r for r in box.requests(provider) if r["method"] == "POST" and path in r["path"]]


def live_posts(box, provider: str) -> list[dict[str, Any]]:
    return [p for p in box.posts(provider) if not p["deleted"]]


def get_json(box, provider: str, path: str, **headers: str) -> Any:
    """Read back from a stand-in over HTTP, as a client would."""
    with httpx.Client(timeout=5) as client:
        resp = client.get(box.url(provider) + path, headers=headers)
    resp.raise_for_status()
    return resp.json()


def header(mail: dict[str, Any], name: str) -> str | None:
    """A header of a mail the SMTP sink recorded (header names as sent)."""
    for key, value in mail["headers"].items():
        if key.lower() == name.lower():
            return value
    return None
