"""The CLI on a 429 (the outside trial: a post refused while the page's previews had used up the
token's budget): it waits the server's Retry-After, says so, and sends the same request — the
same Idempotency-Key — again; past 60 s of waiting in all it gives up with exit 4, not 1 (1
means a channel failed)."""

from __future__ import annotations

import email.utils
import json

import httpx
import pytest

from broadcaster.cli import EXIT_FAILED, EXIT_RATE_LIMITED
from broadcaster.cli.apiclient import Api, ClientError, retry_after

CREATED = {"id": "ann_1", "deliveries": []}


def limited_then(answers: list[httpx.Response]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    return httpx.MockTransport(handler), seen


def too_many(seconds: str) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": seconds},
                          json={"error": {"code": "rate_limited", "message": f"too many requests; retry in {seconds} s",
                                          "details": {"retry_after": seconds}}})


def client(transport) -> tuple[Api, list[float], list[str]]:
    slept: list[float] = []
    said: list[str] = []
    return Api("http://api.test", "t", transport=transport, sleep=slept.append, say=said.append), slept, said


def test_a_post_refused_with_429_is_sent_again_after_retry_after_with_the_same_key():
    transport, seen = limited_then([too_many("7"), httpx.Response(202, json=CREATED)])
    api, slept, said = client(transport)
    out = api.call("POST", "/announcements", json_body={"kind": "notice", "title": "x"},
                   headers={"Idempotency-Key": "deploy-42"})
    assert out == CREATED
    assert slept == [7]
    assert said == ["rate limited by the server; waiting 7 s and sending it again (same Idempotency-Key)"]
    assert [r.headers["Idempotency-Key"] for r in seen] == ["deploy-42", "deploy-42"]
    assert json.loads(seen[0].content) == json.loads(seen[1].content)


def test_still_refused_after_sixty_seconds_of_waiting_is_exit_4():
    transport, seen = limited_then([too_many("30")])
    api, slept, said = client(transport)
    with pytest.raises(ClientError) as err:
        api.call("POST", "/announcements", json_body={}, headers={"Idempotency-Key": "k"})
    assert slept == [30, 30] and len(seen) == 3 and len(said) == 2
    assert err.value.code == EXIT_RATE_LIMITED != EXIT_FAILED
    assert "rate limited: 429 too many requests" in str(err.value) and "60 s" in str(err.value)


def test_a_retry_after_beyond_the_patience_is_not_waited():
    transport, seen = limited_then([too_many("120")])
    api, slept, _ = client(transport)
    with pytest.raises(ClientError) as err:
        api.call("POST", "/announcements", json_body={}, headers={"Idempotency-Key": "k"})
    assert slept == [] and len(seen) == 1 and err.value.code == EXIT_RATE_LIMITED


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after("12") == 12
    assert retry_after(email.utils.formatdate(1_000_030, usegmt=True), now=1_000_000) == 30
    assert retry_after("soon") is None and retry_after(None) is None
