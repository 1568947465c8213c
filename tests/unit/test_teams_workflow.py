"""Teams Workflows webhooks (``webhook`` with ``format: teams_workflow``): the Adaptive Card
envelope, and the retired Office 365 connector URLs (permanent, with a message saying what to do)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from broadcaster.channels import _teams
from broadcaster.channels.webhook import Webhook, WebhookSettings
from broadcaster.config import load_settings
from broadcaster.errors import AmbiguousDelivery, PermanentError, RateLimited, TransientError
from broadcaster.models import Post

WORKFLOW = "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=s3cr3tsig"
CONNECTOR = "https://contoso.webhook.office.com/webhookb2/1111@2222/IncomingWebhook/3333/4444"


def make(url: str, replies: list[httpx.Response] | None = None, fmt: str = "teams_workflow"):
    seen: list[httpx.Request] = []
    queue = list(replies or [])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if queue else httpx.Response(202)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    ch = Webhook("teams", WebhookSettings(url=url, format=fmt), http=client)
    return ch, seen


POST = Post(channel="teams", kind="incident", title="API errors", text="We are investigating [x](<y>).",
            url="https://status.example.com/a/1")


def test_the_card_payload_has_the_documented_shape():
    ch, seen = make(WORKFLOW)
    ch.send(POST, key="k")
    (req,) = seen
    assert req.headers["Content-Type"] == "application/json"
    body = json.loads(req.content)
    assert body == {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": [
                    {"type": "TextBlock", "text": "API errors", "weight": "Bolder", "size": "Medium", "wrap": True,
                     "style": "heading"},
                    {"type": "TextBlock", "text": "We are investigating [x](<y>).", "wrap": True},
                ],
                "actions": [{"type": "Action.OpenUrl", "title": "Details", "url": "https://status.example.com/a/1"}],
            },
        }],
    }


def test_author_masked_links_are_defused_like_teams():
    ch, _ = make(WORKFLOW)
    assert ch.escape("[bank](https://evil.example)") == "[bank] (https://evil.example)"


@pytest.mark.parametrize("url", [
    CONNECTOR,
    "https://outlook.office.com/webhook/1111@2222/IncomingWebhook/3333/4444",
    "https://example.test/teams/webhookb2/abc",
])
def test_retired_connector_urls_are_recognised(url):
    assert _teams.is_retired_connector(url)


@pytest.mark.parametrize("url", [WORKFLOW, "https://default123.environment.api.powerplatform.com/powerautomate/x"])
def test_workflow_urls_are_not(url):
    assert not _teams.is_retired_connector(url)


@pytest.mark.parametrize("status", [400, 403, 404, 410])
@pytest.mark.parametrize("fmt", ["teams", "teams_workflow"])
def test_a_4xx_from_a_retired_connector_is_permanent_and_says_what_to_do(status, fmt):
    ch, _ = make(CONNECTOR, [httpx.Response(status, text="Connector retired")], fmt=fmt)
    with pytest.raises(PermanentError) as info:
        ch.send(POST, key="k")
    message = str(info.value)
    assert "retired Office 365 connector" in message and "Workflows webhook" in message
    assert "teams_workflow" in message and "4444" not in message  # the URL (a credential) is not repeated


def test_a_4xx_from_a_workflow_url_is_the_generic_error():
    ch, _ = make(WORKFLOW, [httpx.Response(400, json={"error": {"code": "InvalidRequestContent"}})])
    with pytest.raises(PermanentError) as info:
        ch.send(POST, key="k")
    assert "retired" not in str(info.value)


def test_rate_limits_and_server_errors():
    ch, _ = make(WORKFLOW, [httpx.Response(429, headers={"Retry-After": "9"}), httpx.Response(502)])
    with pytest.raises(RateLimited) as info:
        ch.send(POST, key="k")
    assert info.value.retry_after == 9.0
    with pytest.raises(TransientError):
        ch.send(POST, key="k")
    legacy, _ = make(CONNECTOR, [httpx.Response(200, text="Microsoft Teams endpoint returned HTTP error 429")],
                     fmt="teams")
    with pytest.raises(RateLimited):
        legacy.send(POST, key="k")


def test_no_idempotency_so_ambiguous_is_never_resent():
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    ch = Webhook("teams", WebhookSettings(url=WORKFLOW, format="teams_workflow"),
                 http=httpx.Client(transport=httpx.MockTransport(boom)))
    assert not ch.idempotent and ch.public
    with pytest.raises(AmbiguousDelivery):
        ch.send(POST, key="k")


def test_loading_a_connector_url_warns_and_check_refuses(caplog):
    with caplog.at_level(logging.WARNING):
        settings = load_settings({"channels": {"teams": {"kind": "webhook", "format": "teams_workflow",
                                                         "url": CONNECTOR}}})
    assert any("retired Office 365 connector" in r.getMessage() for r in caplog.records)
    assert all("4444" not in r.getMessage() for r in caplog.records)
    ch = Webhook("teams", settings.channels["teams"])
    with pytest.raises(PermanentError) as info:
        ch.check()
    assert "Workflows webhook" in str(info.value)


def test_check_of_a_workflow_url_passes_without_posting():
    ch, seen = make(WORKFLOW)
    assert "well-formed" in ch.check() and seen == []


def test_broadcaster_check_offline_warns_about_a_connector_url(tmp_path):
    from click.testing import CliRunner

    from broadcaster.cli import main

    cfg = tmp_path / "teams.yaml"
    cfg.write_text(f"channels:\n  ops-teams: {{kind: webhook, format: teams_workflow, url: '{CONNECTOR}'}}\n"
                   "routes:\n  incident: [ops-teams]\n")
    result = CliRunner().invoke(main, ["--config", str(cfg), "check", "--offline"], env={"BROADCASTER_CONFIG": None})
    assert result.exit_code == 0, result.output
    assert "warning: channels.ops-teams: the URL is a retired Office 365 connector URL" in result.stderr
    assert "4444" not in result.output
