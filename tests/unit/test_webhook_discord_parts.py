"""A Discord text over 2000 characters is sent whole, as consecutive messages, and a retry
continues after the last message that landed."""

from __future__ import annotations

import json

import httpx

from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.webhook import Webhook, WebhookSettings
from broadcaster.models import Announcement, Message


def test_long_discord_text_goes_in_parts_and_resumes():
    sent, fail_at = [], {"n": 2}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["wait"] == "true"
        if len(sent) == fail_at["n"]:
            fail_at["n"] = -1
            return httpx.Response(503, text="busy")
        sent.append(json.loads(request.content)["content"])
        return httpx.Response(200, json={"id": str(1000 + len(sent))})

    settings = WebhookSettings(kind="webhook", format="discord", url="https://discord.example/api/webhooks/1/t")
    ch = Webhook("chat", settings, http=httpx.Client(transport=httpx.MockTransport(handler)))
    body = " ".join(f"word{i}" for i in range(1200))  # ~10 kB
    post = ch.render(Message(Announcement(id="ann_1", kind="incident", title="Long", body=body)))
    assert len(post.parts) >= 4 and all(len(p) <= 2000 for p in post.parts)
    progress = MemoryProgress()
    try:
        ch.send(post, key="dlv_1", progress=progress)
        raise AssertionError("the third message should have failed")
    except Exception as exc:  # noqa: BLE001
        assert "503" in str(exc)
    receipt = ch.send(post, key="dlv_1", progress=progress)  # the retry
    assert sent == list(post.parts), "every part exactly once, in order"
    assert receipt.extra["parts"] == [str(1001 + i) for i in range(len(post.parts))]
