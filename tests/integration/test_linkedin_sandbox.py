"""The LinkedIn channel through its sandbox stand-in: first the adapter alone against the
stand-in's HTTP (request shape the stand-in enforces, escaping, retract), then the whole engine
(real ledger, Redis, Celery worker, scheduler) under the same fault modes as the other channels."""

from __future__ import annotations

import itertools
import math
import time
from urllib.parse import unquote

import httpx
import pytest

from broadcaster import service
from broadcaster.channels.linkedin import LinkedIn, LinkedInSettings
from broadcaster.errors import AuthError, ContentRejected, PermanentError
from broadcaster.models import Post
from broadcaster.sandbox import Sandbox
from tests.conftest import PrivateRedis
from tests.support.system import System, settings_for

TOKEN = "sandbox-token"
ORG = "4711"
CREATE = "/rest/posts"
_titles = itertools.count(1)


@pytest.fixture(scope="module")
def box():
    sandbox = Sandbox(port=0, smtp_port=None).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def clean_box(box):
    box.reset()
    box.configure("linkedin", organizations={ORG: "Example Inc"}, tokens=[TOKEN])
    yield


def channel(box, **kw) -> LinkedIn:
    s = LinkedInSettings(base_url=box.url("linkedin"), organization=ORG, access_token=kw.pop("token", TOKEN), **kw)
    return LinkedIn("linkedin", s, http=httpx.Client(timeout=5))


def creates(box) -> list[dict]:
    return [r for r in box.requests("linkedin") if r["method"] == "POST" and r["path"].endswith(CREATE)]


def live(box) -> list[dict]:
    return [p for p in box.posts("linkedin") if not p["deleted"]]


def text_post(text: str) -> Post:
    return Post(channel="linkedin", kind="incident", title="t", text=text, parts=(text,))


# ---------------------------------------------------------------- the adapter against the stand-in


def test_adapter_posts_what_the_stand_in_accepts(box):
    text = "Login errors (EU) — we're on it: #incident @ops [details] <soon> a_b *c* ~d~ {e} | \\ done"
    receipt = channel(box).send(text_post(text), key="k1")
    [req] = creates(box)
    assert req["status"] == 201
    assert req["headers"]["linkedin-version"] == "202601" and req["headers"]["x-restli-protocol-version"] == "2.0.0"
    assert req["headers"]["authorization"] == "Bearer ***"
    [p] = live(box)
    assert p["text"] == text, "every reserved character arrived escaped and reads back as written"
    assert receipt.remote_id == p["id"] and receipt.url.endswith(f"/feed/update/{p['id']}/")


def test_adapter_check_and_retract(box):
    ch = channel(box)
    assert "Example Inc" in ch.check()
    receipt = ch.send(text_post("to be retracted"), key="k")
    ch.retract(receipt)
    assert live(box) == []
    ch.retract(receipt)  # already gone: still fine


def test_identical_text_is_reported_as_the_earlier_post(box):
    ch = channel(box)
    first = ch.send(text_post("same words"), key="a")
    again = ch.send(text_post("same words"), key="b")
    assert again.remote_id == first.remote_id and again.extra["duplicate"] is True
    assert len(live(box)) == 1


def test_stand_in_refusals_map_to_our_errors(box):
    with pytest.raises(AuthError):
        channel(box, token="wrong").send(text_post("x"), key="k")
    with pytest.raises(PermanentError, match="426"):
        channel(box, api_version="202001").send(text_post("x"), key="k")
    with pytest.raises(AuthError, match="403"):
        LinkedIn("li", LinkedInSettings(base_url=box.url("linkedin"), organization="999", access_token=TOKEN),
                 http=httpx.Client(timeout=5)).send(text_post("x"), key="k")
    box.set_fault("linkedin", "4xx", count=1, status=422, path=CREATE)
    with pytest.raises(PermanentError):
        channel(box).send(text_post("x"), key="k")
    assert live(box) == []


def test_stand_in_refuses_unescaped_or_too_long_commentary(box):
    body = {"author": f"urn:li:organization:{ORG}", "commentary": "50% (off)", "visibility": "PUBLIC",
            "distribution": {"feedDistribution": "MAIN_FEED"}, "lifecycleState": "PUBLISHED"}
    headers = {"Authorization": f"Bearer {TOKEN}", "LinkedIn-Version": "202601", "X-Restli-Protocol-Version": "2.0.0"}
    with httpx.Client(timeout=5) as client:
        resp = client.post(box.url("linkedin") + CREATE, json=body, headers=headers)
        assert resp.status_code == 422 and "must be escaped" in resp.json()["message"]
        resp = client.post(box.url("linkedin") + CREATE, json={**body, "commentary": "x" * 3001}, headers=headers)
        assert resp.status_code == 422
        resp = client.post(box.url("linkedin") + CREATE, json={**body, "commentary": "ok"},
                           headers={k: v for k, v in headers.items() if k != "LinkedIn-Version"})
        assert resp.status_code == 400
    # the adapter's own rule keeps a long text under the stand-in's limit
    from broadcaster.models import Announcement, Message

    ch = channel(box)
    post = ch.render(Message(Announcement(id="a", kind="incident", title="Long", body="(x) " * 1000)))
    ch.send(post, key="long")
    assert len(live(box)) == 1


def test_too_long_is_refused_before_sending_when_policy_rejects(box):
    from broadcaster.models import Announcement, Message

    ch = channel(box)
    ch.on_too_long = "reject"
    with pytest.raises(ContentRejected):
        ch.render(Message(Announcement(id="a", kind="incident", title="Long", body="x " * 2000)))
    assert creates(box) == []


# ---------------------------------------------------------------- the whole engine, with faults

POLICY = {"defaults": {"attempts": 5, "backoff": {"base": 0.2, "max": 1}, "timeout": 5,
                       "breaker": {"failures": 5, "cooldown": 1}}}


@pytest.fixture(scope="module")
def system(box, tmp_path_factory):
    redis = PrivateRedis().start()
    tmp = tmp_path_factory.mktemp("linkedin-sandbox")
    channels = {"linkedin": {"kind": "linkedin", "base_url": box.url("linkedin"), "organization": ORG,
                             "access_token": TOKEN}}
    sys_ = System(settings_for(f"sqlite:///{tmp}/ledger.db", redis.url, channels, policy=POLICY))
    try:
        with sys_.worker(concurrency=2):
            sys_.start_scheduler()
            yield sys_
    finally:
        sys_.stop()
        redis.stop()


@pytest.fixture
def engine(system):
    system.runtime.breaker.reset("linkedin")
    return system


def submit(system, **fields) -> str:
    data = {"kind": "incident", "title": f"Incident {next(_titles)}: API errors",
            "body": "We are investigating elevated error rates (EU).", "channels": ["linkedin"], **fields}
    return service.submit(system.runtime, data, principal=service.SYSTEM).id


def reasons(system, delivery_id: str) -> list[str]:
    return [f"{e.to_state}: {e.reason}" for e in system.runtime.ledger.events_of(delivery_id)]


@pytest.mark.slow
def test_delivers_and_the_update_is_a_second_page_post(engine, box):
    ann = submit(engine)
    [d] = engine.wait_settled(ann)
    assert str(d.state) == "delivered", reasons(engine, d.id)
    service.add_update(engine.runtime, ann, {"status": "resolved", "body": "Fixed."}, principal=service.SYSTEM)
    ds = engine.wait_settled(ann, count=2)
    upd = next(x for x in ds if x.update_id)
    assert str(upd.state) == "delivered", reasons(engine, upd.id)
    posts = live(box)
    assert len(posts) == 2 and posts[1]["text"].startswith("[Resolved]")
    assert d.remote_id == posts[0]["id"] and d.remote_url.endswith(f"{posts[0]['id']}/")


@pytest.mark.slow
def test_a_burst_of_server_errors_is_retried_and_delivered_once(engine, box):
    box.set_fault("linkedin", "5xx", count=3, path=CREATE)
    [d] = engine.wait_settled(submit(engine))
    assert str(d.state) == "delivered", reasons(engine, d.id)
    assert [r["status"] for r in creates(box)] == [500, 500, 500, 201]
    assert d.attempts == 4 and len(live(box)) == 1


@pytest.mark.slow
def test_rate_limit_waits_as_the_provider_asked(engine, box):
    seconds = 2.0
    box.set_fault("linkedin", "429", count=1, seconds=seconds, path=CREATE)
    [d] = engine.wait_settled(submit(engine))
    assert str(d.state) == "delivered", reasons(engine, d.id)
    first, second = creates(box)
    assert first["status"] == 429 and second["status"] == 201
    # Retry-After is whole seconds, rounded by the stand-in
    assert second["time"] - first["time"] >= math.floor(seconds) - 0.06
    assert len(live(box)) == 1


@pytest.mark.slow
def test_a_refused_token_fails_at_once(engine, box):
    box.set_fault("linkedin", "bad_token", path=CREATE)
    [d] = engine.wait_settled(submit(engine))
    assert str(d.state) == "failed" and d.attempts == 1, reasons(engine, d.id)
    assert len(creates(box)) == 1 and live(box) == []


@pytest.mark.slow
def test_accepted_then_dropped_goes_to_unknown_and_is_never_reposted(engine, box):
    box.set_fault("linkedin", "accept_then_drop", count=1, path=CREATE)
    [d] = engine.wait_settled(submit(engine))
    log = reasons(engine, d.id)
    assert str(d.state) == "unknown", log
    assert d.maybe_sent and "not re-sent" in log[-1]
    assert len(creates(box)) == 1 and len(live(box)) == 1


@pytest.mark.slow
def test_a_duplicate_refusal_means_already_posted(engine, box):
    box.set_fault("linkedin", "duplicate", count=1, path=CREATE)
    [d] = engine.wait_settled(submit(engine))
    assert str(d.state) == "delivered", reasons(engine, d.id)
    assert d.receipt.extra.get("duplicate") is True and live(box) == []


@pytest.mark.slow
def test_retract_deletes_the_page_post(engine, box):
    ann = submit(engine)
    [d] = engine.wait_settled(ann)
    assert str(d.state) == "delivered"
    service.retract(engine.runtime, ann, principal=service.SYSTEM)
    deadline = time.time() + 20
    while live(box) and time.time() < deadline:
        time.sleep(0.1)
    assert live(box) == []
    [delete] = [r for r in box.requests("linkedin") if r["method"] == "DELETE"]
    assert delete["status"] == 204 and d.remote_id in unquote(delete["path"])
