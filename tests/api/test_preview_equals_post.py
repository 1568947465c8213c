"""The preview shows exactly what will be posted, on every channel kind.

One announcement is previewed through ``POST /api/v1/preview`` and then submitted; each of its
deliveries is composed the way the worker composes it (``engine.build_message`` from the ledger,
the channel's ``render``, ``compose.stamp``). Apart from the announcement id — which does not
exist at preview time and is shown as a placeholder of the same length — every part of every
channel's text is the same, byte for byte: the same links, the same ``Verify:`` line, the same
thread split.
"""

from __future__ import annotations

import pytest

from broadcaster import compose, engine
from broadcaster.channels import registry
from broadcaster.preview import PREVIEW_ID
from broadcaster.signing import Keyring
from tests.api.conftest import Env
from tests.support.signed_site import BODY, CHANNELS

EXTRA_KINDS = {
    "status-site": {"kind": "statuspage", "output_dir": "site", "site_url": "https://status.example.com",
                    "components": ["API"]},
    "ops-telegram": {"kind": "telegram", "bot_token": "123:abc", "chat_id": "@example_status"},
    "ops-matrix": {"kind": "matrix", "homeserver": "https://matrix.example.org", "access_token": "t",
                   "room_id": "!AbCdEfGh:example.org"},
    "oncall-sms": {"kind": "twilio_sms", "account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "t",
                   "from_number": "+15557654321", "recipients": ["+15551230001"], "max_segments": 10},
    "ops-gchat": {"kind": "google_chat", "url": "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t"},
    "ops-mattermost": {"kind": "mattermost", "url": "https://mattermost.example/hooks/xyz"},
    "ops-teams-flow": {"kind": "webhook", "format": "teams_workflow",
                       "url": "https://prod.westus.logic.azure.com/workflows/abc/triggers/manual/paths/invoke"},
    "subscriber-hooks": {"kind": "subscriber_webhooks", "lists": ["ops"]},
}


@pytest.fixture
def env(tmp_path):
    channels = {**CHANNELS, **EXTRA_KINDS}
    channels["status-site"] = {**channels["status-site"], "output_dir": str(tmp_path / "site")}
    if "apprise" not in registry.kinds():  # an optional extra
        channels = {n: c for n, c in channels.items() if c["kind"] != "apprise"}
    Keyring(tmp_path / "keys").create("k1")
    cfg = {
        "ledger": "sqlite:///unused.db",
        "public_url": "https://broadcaster.example",
        "channels": channels,
        "routes": {"incident": list(channels)},
        "signing": {"key_dir": str(tmp_path / "keys")},
        "api": {"rate_limit": "1000/m", "anonymous_rate_limit": "1000/m"},
    }
    e = Env(tmp_path, cfg)
    yield e
    e.client.close()
    e.ledger.close()


def test_every_kind_is_covered():
    kinds = {c["kind"] for c in {**CHANNELS, **EXTRA_KINDS}.values()}
    assert set(registry.kinds()) <= kinds, "a channel kind without a preview-equals-post check"


def test_preview_equals_post_on_every_channel_kind(env):
    body = {"kind": "incident", "title": "Login errors", "body": BODY, "url": "https://status.example.com/i/1",
            "severity": "major", "components": ["API"], "variants": {"x-main": {"title": "Logins failing"}}}
    r = env.post("/preview", body)
    assert r.status_code == 200, r.text
    previews = {p["channel"]: p for p in r.json()["channels"]}

    accepted = env.submit(**body)
    ann_id = accepted["id"]
    assert len(ann_id) == len(PREVIEW_ID), "the placeholder must count as the real id does"
    deliveries = env.ledger.deliveries_of(ann_id)
    assert {d.channel for d in deliveries} == set(previews), "the preview shows every routed channel"

    verify_lines = 0
    for d in deliveries:
        shown = previews[d.channel]
        assert shown["error"] is None, (d.channel, shown["error"])
        channel = env.runtime.channel(d.channel)
        message = engine.build_message(env.runtime, d)
        posted = compose.stamp(channel, channel.render(message), message, delivery_id=d.id, settings=env.settings)
        parts = [p.replace(PREVIEW_ID, ann_id) for p in shown["parts"]]
        assert parts == list(posted.parts or (posted.text,)), d.channel
        assert shown["lengths"] == posted.lengths(channel.count), d.channel
        verify_lines += any("Verify: " in p for p in parts)
    assert verify_lines >= len(deliveries) // 2, "the signed announcement's Verify line is part of the comparison"
