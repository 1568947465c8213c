"""The sandbox as a real server on loopback: uvicorn in a thread, httpx and smtplib clients.
Proves the faults reach the wire as a client would see them (refusals, timeouts, dropped
connections) while the sandbox still records what landed."""

from __future__ import annotations

import smtplib
import subprocess
import sys
import time

import httpx
import pytest

from broadcaster.sandbox import Sandbox
from broadcaster.sandbox.server import free_port

AUTH = {"Authorization": "Bearer token-1"}


@pytest.fixture(scope="module")
def box():
    with Sandbox(port=0, smtp_port=0) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def clean(box):
    box.reset()
    yield


@pytest.fixture
def http():
    with httpx.Client(timeout=5) as client:
        yield client


def test_accept_then_drop_is_a_transport_error_and_a_recorded_post(box, http):
    box.set_fault("x", "accept_then_drop", count=1)
    with pytest.raises(httpx.TransportError) as info:
        http.post(box.url("x") + "/2/tweets", json={"text": "release 1.2 is out"}, headers=AUTH)
    assert not isinstance(info.value, (httpx.ConnectError, httpx.ConnectTimeout))  # the request was sent
    assert [p["text"] for p in box.posts("x")] == ["release 1.2 is out"]
    assert box.requests("x")[-1]["outcome"] == "accepted_then_dropped"
    # the blind retry is what X refuses as a duplicate, and nothing new is created
    again = http.post(box.url("x") + "/2/tweets", json={"text": "release 1.2 is out"}, headers=AUTH)
    assert again.status_code == 403 and box.post_count("x") == 1
    # the server keeps serving after the drop
    assert http.get(box.url("x") + "/2/users/me", headers=AUTH).status_code == 200


def test_mastodon_idempotency_over_the_wire(box, http):
    box.set_fault("mastodon", "accept_then_drop", count=1)
    headers = dict(AUTH, **{"Idempotency-Key": "ann-1:mastodon:0"})
    with pytest.raises(httpx.TransportError):
        http.post(box.url("mastodon") + "/api/v1/statuses", json={"status": "incident"}, headers=headers)
    retry = http.post(box.url("mastodon") + "/api/v1/statuses", json={"status": "incident"}, headers=headers)
    assert retry.status_code == 200 and retry.json()["id"] == box.posts("mastodon")[0]["id"]
    assert box.post_count("mastodon") == 1
    assert "T" in retry.headers["x-ratelimit-reset"] and retry.headers["x-ratelimit-reset"].endswith("Z")


def test_slow_fault_times_out_the_client_but_the_post_lands(box):
    box.set_fault("slack", "slow", count=1, seconds=1.0)
    with httpx.Client(timeout=0.3) as short, pytest.raises(httpx.ReadTimeout):
        short.post(box.url("slack") + "/services/T/B/X", json={"text": "maybe"})
    deadline = time.monotonic() + 3
    while box.post_count("slack") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box.post_count("slack") == 1


def test_control_api_over_http(box, http):
    r = http.post(box.base_url + "/_sandbox/faults", json={"provider": "bluesky", "mode": "down"})
    assert r.status_code == 201
    down = http.post(box.url("bluesky") + "/xrpc/com.atproto.server.createSession", json={"identifier": "a.b", "password": "p"})
    assert down.status_code == 503
    http.delete(box.base_url + "/_sandbox/faults")
    assert http.post(box.url("bluesky") + "/xrpc/com.atproto.server.createSession",
                     json={"identifier": "a.b", "password": "p"}).status_code == 200
    assert http.get(box.base_url + "/_sandbox/counts").json()["bluesky"] == {"requests": 2, "posts": 0, "duplicate_texts": 0}
    assert "bluesky" in http.get(box.base_url + "/_sandbox/").text


def test_smtp_sink_records_mail_and_refuses_one_recipient(box):
    box.set_fault("smtp", "4xx", recipient="busy@example.com")
    with smtplib.SMTP(box.host, box.smtp_port, timeout=5) as smtp:
        smtp.login("user", "pass")
        refused = smtp.sendmail("ops@example.com", ["a@example.com", "busy@example.com"],
                                "Subject: Maintenance\r\nMessage-ID: <m1@example.com>\r\n\r\nTonight.")
    assert refused == {"busy@example.com": (450, b"4.2.1 Mailbox busy, try again later")}
    assert box.mails_to("a@example.com") == 1 and box.mails_to("busy@example.com") == 0
    assert box.messages()[0]["text"] == "Maintenance"


def _mail(to: str, message_id: str, subject: str = "Maintenance tonight", body: str = "From 22:00.") -> str:
    return f"To: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\r\n{body}"


def test_one_mail_to_two_recipients_is_not_a_repeat_but_a_second_copy_is(box, http):
    """A mailing sends the same text to each recipient: that is not a repeat. A repeat is a
    recipient getting a Message-ID (a re-sent copy) or a text (a second mailing) twice."""
    with smtplib.SMTP(box.host, box.smtp_port, timeout=5) as smtp:
        smtp.sendmail("ops@example.com", ["a@example.com"], _mail("a@example.com", "m-a@example.com"))
        smtp.sendmail("ops@example.com", ["b@example.com"], _mail("b@example.com", "m-b@example.com"))
        smtp.sendmail("ops@example.com", ["c@example.com", "d@example.com"], _mail("list", "m-cd@example.com"))
    counts = http.get(box.base_url + "/_sandbox/counts").json()["smtp"]
    assert counts["posts"] == 3 and counts["duplicate_texts"] == 0
    with smtplib.SMTP(box.host, box.smtp_port, timeout=5) as smtp:
        # the same Message-ID again (a retry that re-sent it) and the same text under a new id
        smtp.sendmail("ops@example.com", ["a@example.com"], _mail("a@example.com", "m-a@example.com"))
        smtp.sendmail("ops@example.com", ["B@example.com"], _mail("b@example.com", "m-b2@example.com"))
        # a different text to a recipient who had the first one is not a repeat
        smtp.sendmail("ops@example.com", ["c@example.com"], _mail("c@example.com", "m-c2@example.com",
                                                                   subject="Maintenance completed"))
    assert http.get(box.base_url + "/_sandbox/counts").json()["smtp"]["duplicate_texts"] == 2


def test_smtp_drop_after_data_is_ambiguous_but_delivered(box):
    box.set_fault("smtp", "accept_then_drop", count=1)
    with pytest.raises(smtplib.SMTPServerDisconnected), smtplib.SMTP(box.host, box.smtp_port, timeout=5) as smtp:
        smtp.sendmail("ops@example.com", ["a@example.com"], "Subject: Hi\r\n\r\nBody")
    assert box.mails_to("a@example.com") == 1


def test_smtp_down(box):
    box.set_fault("smtp", "down", count=1)
    with smtplib.SMTP(box.host, box.smtp_port, timeout=5) as smtp, pytest.raises(smtplib.SMTPSenderRefused) as info:
        smtp.sendmail("ops@example.com", ["a@example.com"], "Subject: Hi\r\n\r\nBody")
    assert info.value.smtp_code == 421


def test_cli_starts_and_applies_launch_faults(tmp_path):
    port = free_port()
    code = ("import sys; from broadcaster.sandbox.cli import sandbox; "
            "sandbox(['--port', sys.argv[1], '--smtp-port', '-1', '--fault', 'mastodon=5xx,count=1'])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(base + "/_sandbox/counts", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    pytest.fail("sandbox CLI did not start:\n" + proc.communicate(timeout=5)[0])
                time.sleep(0.1)
        url = base + "/mastodon/api/v1/statuses"
        assert httpx.post(url, json={"status": "a"}, headers=AUTH).status_code == 500
        assert httpx.post(url, json={"status": "a"}, headers=AUTH).status_code == 200
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=10)


def test_the_sandbox_serves_a_status_site_read_only(tmp_path):
    """``broadcaster up`` has the sandbox serve the demo's status site (the Verify link's page)."""
    (tmp_path / "verify.html").write_text("<title>verify</title>")
    (tmp_path / "index.html").write_text("<title>status</title>")
    with Sandbox(port=0, smtp_port=None, site_dir=str(tmp_path)) as box:
        assert httpx.get(f"{box.base_url}/status/verify.html?id=ann_1").text == "<title>verify</title>"
        assert httpx.get(f"{box.base_url}/status/").text == "<title>status</title>"
        assert httpx.post(f"{box.base_url}/status/verify.html").status_code == 405
        assert httpx.get(f"{box.base_url}/status/../../etc/passwd").status_code == 404
