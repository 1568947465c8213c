"""From alert to post through the real parts: the API on a real SQLite ledger, a real Celery
worker on a real Redis, two channels that are real HTTP endpoints on loopback.

For each of Alertmanager, Grafana and PagerDuty, in their documented payload shapes and with
their own sender proof: the alert sent twice, with a flap in between, makes one draft; publishing
it posts once per channel; the resolve is one more post per channel, on the same announcement.
A rule set to publish does the same without a person. An unsigned or wrongly signed call is
refused with 401 and creates nothing — no draft, no announcement, no post.
"""

from __future__ import annotations

import itertools
import time

import pytest

from broadcaster.ledger.drafts import DraftStore
from broadcaster.tokens import TokenStore
from tests.api.conftest import TestClient
from tests.support.alert_payloads import (
    AM_TOKEN,
    GF_SECRET,
    PD_SECRET,
    am_payload,
    bearer,
    gf_headers,
    grafana_payload,
    pd_headers,
    pd_payload,
    raw,
)
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow

SECRET = "whsec_" + "ZW5kLXRvLWVuZC1hbGVydHMtc2VjcmV0LTEyMzQ="
_events = itertools.count(1)


def inbound() -> dict:
    receivers = {"am": {"source": "alertmanager", "token": AM_TOKEN},
                 "graf": {"source": "grafana", "hmac_secret": GF_SECRET,
                          "timestamp_header": "X-Grafana-Alerting-Timestamp"},
                 "pd": {"source": "pagerduty", "hmac_secret": PD_SECRET}}
    receivers |= {f"{name}-auto": dict(rec) for name, rec in receivers.items()}
    rules = [{"match": {"receiver": f"{name}-auto"}, "mode": "publish", "severity": "major"} for name in ("am", "graf", "pd")]
    rules.append({"severity": "major"})  # everything else: a draft
    return {"receivers": receivers, "rules": rules}


def fire(source: str, status: str) -> tuple[str, bytes, dict]:
    """(path suffix, body, headers) of one signed call saying the alert fires or resolved."""
    if source == "am":
        body = raw(am_payload(status))
        return "alertmanager", body, bearer(AM_TOKEN)
    if source == "graf":
        body = raw(grafana_payload(status))
        return "grafana", body, gf_headers(body)
    kind = "incident.triggered" if status == "firing" else "incident.resolved"
    body = raw(pd_payload(kind, f"01EVT{next(_events):04d}"))
    return "pagerduty", body, pd_headers(body)


def unsigned(source: str) -> list[tuple[str, bytes, dict]]:
    """Calls without the sender's proof, or with a wrong one."""
    tool, body, headers = fire(source, "firing")
    plain = {"Content-Type": "application/json"}
    if source == "am":
        return [(tool, body, plain), (tool, body, bearer("not-" + AM_TOKEN))]
    if source == "graf":
        return [(tool, body, plain), (tool, body, gf_headers(body, secret="wrong")),
                (tool, body.replace(b"HighLatency", b"LowLatency"), headers)]
    return [(tool, body, plain), (tool, body, pd_headers(body, "wrong"))]


@pytest.fixture(scope="module")
def rig(tmp_path_factory, receiver_module):
    import shutil

    from tests.conftest import PrivateRedis

    redis = PrivateRedis().start()
    tmp = tmp_path_factory.mktemp("alerts")
    channels = {"hook": {"kind": "webhook", "format": "generic", "url": receiver_module.url + "/hook", "secret": SECRET},
                "chat": {"kind": "webhook", "format": "slack", "url": receiver_module.url + "/chat"}}
    settings = settings_for(f"sqlite:///{tmp}/l.db", redis.url, channels, routes={"incident": ["hook", "chat"]},
                            inbound=inbound(), api={"rate_limit": "10000/m", "anonymous_rate_limit": "10000/m"})
    system = System(settings)
    from broadcaster.asgi import create_app

    client = TestClient(create_app(settings, system.runtime), raise_server_exceptions=False)
    raw_token, _ = TokenStore(system.runtime.ledger, settings).create("oncall", admin=True, actor="test")
    with system.worker():
        yield system, client, {"Authorization": f"Bearer {raw_token}"}, receiver_module
    client.close()
    system.stop()
    redis.stop()
    shutil.rmtree(redis.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def receiver_module():
    from tests.support.receiver import Receiver

    r = Receiver().start()
    yield r
    r.stop()


def posts(receiver) -> dict[str, int]:
    ok = receiver.ok()
    return {path: sum(1 for s in ok if s.path == f"/{path}") for path in ("hook", "chat")}


def send(client, receiver_name: str, call: tuple[str, bytes, dict]):
    tool, body, headers = call
    return client.post(f"/api/v1/inbound/{tool}/{receiver_name}", content=body, headers=headers)


def settled_posts(system, receiver, ann: str, expected: dict[str, int], count: int) -> None:
    system.wait_settled(ann, count=count)
    assert receiver.wait_for(lambda: posts(receiver) == expected, timeout=20), (posts(receiver), expected)
    time.sleep(0.3)  # nothing more arrives
    assert posts(receiver) == expected


@pytest.mark.parametrize("source", ["am", "graf", "pd"])
def test_draft_flap_then_one_resolve_posts_once_per_channel(rig, source):
    system, client, admin, receiver = rig
    before = posts(receiver)
    drafts_before = len(DraftStore(system.runtime.ledger).page())

    first = send(client, source, fire(source, "firing"))
    assert first.status_code == 202 and first.json()["result"] == "created", first.text
    draft = first.json()["draft"]
    assert send(client, source, fire(source, "firing")).json() == {"result": "updated", "draft": draft}
    published = client.post(f"/api/v1/drafts/{draft}/publish", headers=admin)
    assert published.status_code == 202, published.text
    ann = published.json()["announcement"]
    once = {k: v + 1 for k, v in before.items()}
    settled_posts(system, receiver, ann, once, count=2)

    # the flap: resolved, firing again, resolved — still the one draft, nothing posted by itself
    assert send(client, source, fire(source, "resolved")).json()["result"] == "resolve_proposed"
    assert send(client, source, fire(source, "firing")).json()["result"] == "refired"
    assert send(client, source, fire(source, "resolved")).json()["result"] == "resolve_proposed"
    time.sleep(0.5)
    assert posts(receiver) == once
    resolved = client.post(f"/api/v1/drafts/{draft}/publish", headers=admin)
    assert resolved.status_code == 202, resolved.text
    assert client.post(f"/api/v1/drafts/{draft}/publish", headers=admin).status_code == 409
    settled_posts(system, receiver, ann, {k: v + 2 for k, v in before.items()}, count=4)
    assert len(DraftStore(system.runtime.ledger).page()) == drafts_before + 1
    assert system.runtime.ledger.get_announcement(ann).status == "resolved"


@pytest.mark.parametrize("source", ["am", "graf", "pd"])
def test_a_publish_rule_posts_once_per_channel_and_resolves_once(rig, source):
    system, client, _, receiver = rig
    before = posts(receiver)
    first = send(client, f"{source}-auto", fire(source, "firing")).json()
    assert first["result"] == "created" and first["announcement"], first
    ann = first["announcement"]
    again = send(client, f"{source}-auto", fire(source, "firing")).json()  # the sender repeats the group
    assert again["result"] == "updated" and again["draft"] == first["draft"], again
    settled_posts(system, receiver, ann, {k: v + 1 for k, v in before.items()}, count=2)
    done = send(client, f"{source}-auto", fire(source, "resolved")).json()
    assert done["update"], done
    send(client, f"{source}-auto", fire(source, "resolved"))  # repeated: no second resolve
    settled_posts(system, receiver, ann, {k: v + 2 for k, v in before.items()}, count=4)
    assert system.runtime.ledger.get_announcement(ann).status == "resolved"


@pytest.mark.parametrize("source", ["am", "graf", "pd"])
def test_unsigned_or_wrongly_signed_is_401_and_creates_nothing(rig, source):
    system, client, _, receiver = rig
    before_posts, before_anns = posts(receiver), len(system.runtime.ledger.list_announcements(limit=500))
    before_drafts = len(DraftStore(system.runtime.ledger).page())
    for name in (source, f"{source}-auto"):
        for call in unsigned(source):
            r = send(client, name, call)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (name, r.text)
    time.sleep(0.5)
    assert len(DraftStore(system.runtime.ledger).page()) == before_drafts
    assert len(system.runtime.ledger.list_announcements(limit=500)) == before_anns
    assert posts(receiver) == before_posts
