"""Every channel kind through its sandbox stand-in, with a real Celery worker, a real Redis and a
real ledger: it delivers, an update threads under the first post, each fault mode ends in the
right state — and no public channel ever sees a second post.

One sandbox serves the whole module (reset before each test). The fault tests share one System
(SQLite ledger, private Redis, worker thread, scheduler thread); the threading test runs first,
on its own System, once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from broadcaster import service
from broadcaster.sandbox import Sandbox
from tests.conftest import PrivateRedis, _reset_pg
from tests.support.sandbox_env import (
    CREATE_PATH,
    MAIL_TO,
    PAGE,
    PROVIDER,
    SECRET,
    TOKEN,
    channel_configs,
    creates,
    get_json,
    header,
    live_posts,
)
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow

POLICY = {
    "defaults": {"attempts": 5, "backoff": {"base": 0.2, "max": 1}, "timeout": 5,
                 "breaker": {"failures": 5, "cooldown": 1}},
    "channels": {
        "mastodon-fragile": {"attempts": 50, "breaker": {"failures": 2, "cooldown": 1}},
        "x-primary": {"attempts": 50, "breaker": {"failures": 2, "cooldown": 1},
                      "fallback": ["slack-backup"], "fallback_after": 2},
    },
}
_titles = itertools.count(1)


def submit(system, channels, **fields) -> str:
    data = {"kind": "incident", "title": f"Incident {next(_titles)}: API errors",
            "body": "We are investigating elevated error rates.", "channels": list(channels), **fields}
    return service.submit(system.runtime, data, principal=service.SYSTEM).id


def resolve(system, ann: str) -> None:
    service.add_update(system.runtime, ann, {"status": "resolved", "body": "Fixed; error rates are back to normal."},
                       principal=service.SYSTEM)


def reasons(system, delivery_id: str) -> list[str]:
    return [f"{e.to_state}: {e.reason}" for e in system.runtime.ledger.events_of(delivery_id)]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def box():
    sandbox = Sandbox(port=0, smtp_port=0).start()
    sandbox.configure("webhook", secrets={"hook1": SECRET})  # the stand-in verifies our signatures
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def clean_box(box):
    # The Bluesky channel keeps its app-password session for the life of the process, as it
    # should; a reset stand-in would forget it, and every test's first create would be a
    # stale-token refusal that swallows the fault under test. Keep the sessions, reset the rest.
    bsky = box.app.provider("bluesky")
    with box.state.lock:
        sessions, handles = dict(bsky.tokens), dict(bsky.handles)
    box.reset()
    with box.state.lock:
        bsky.tokens.update(sessions)
        bsky.handles.update(handles)
    yield


def all_channels(box, tmp: Path) -> dict:
    channels = channel_configs(box, tmp)
    channels["mastodon-fragile"] = dict(channels["mastodon"])
    channels["x-primary"] = dict(channels["x"])
    channels["slack-backup"] = {"kind": "webhook", "format": "slack",
                                "url": box.url("slack") + "/services/T0002/B0002/backupsecret"}
    return channels


@dataclass
class Env:
    box: Sandbox
    system: System
    tmp: Path

    def settle(self, ann: str, timeout: float = 30.0, count: int | None = None):
        return self.system.wait_settled(ann, timeout=timeout, count=count)


@pytest.fixture(scope="module")
def shared(box, tmp_path_factory):
    """One System for the fault tests: SQLite, a private Redis, a worker and the scheduler."""
    redis = PrivateRedis().start()
    tmp = tmp_path_factory.mktemp("channels-sandbox")
    system = System(settings_for(f"sqlite:///{tmp}/ledger.db", redis.url, all_channels(box, tmp), policy=POLICY))
    try:
        with system.worker(concurrency=6):
            system.start_scheduler()
            yield Env(box, system, tmp)
    finally:
        system.stop()
        redis.stop()


@pytest.fixture
def env(shared):
    for name in shared.system.settings.channels:  # no breaker state leaks from one test to the next
        shared.system.runtime.breaker.reset(name)
    yield shared


# ---------------------------------------------------------------- every kind delivers and threads
# (first in the module, so its own worker never runs next to the shared one)

THREADED = [c for c in PROVIDER if c != "facebook"]  # facebook threads as comments: its own test below


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_kind_delivers_and_threads_the_update(backend, box, private_redis, tmp_path, request):
    if backend == "postgres":
        url = request.getfixturevalue("pg_database")
        _reset_pg(url)
    else:
        url = f"sqlite:///{tmp_path}/ledger.db"
    channels = {k: v for k, v in channel_configs(box, tmp_path).items() if k in THREADED}
    system = System(settings_for(url, private_redis.url, channels, policy={"defaults": POLICY["defaults"]}))
    try:
        with system.worker(concurrency=6):
            system.start_scheduler()
            ann = submit(system, THREADED)
            first = {d.channel: d for d in system.wait_settled(ann, timeout=40)}
            assert {c: str(d.state) for c, d in first.items()} == {c: "delivered" for c in THREADED}, \
                {c: d.last_error for c, d in first.items()}
            resolve(system, ann)
            every = system.wait_settled(ann, timeout=40, count=2 * len(THREADED))
    finally:
        system.stop()
    update = {d.channel: d for d in every if d.update_id}
    assert {c: str(d.state) for c, d in update.items()} == {c: "delivered" for c in THREADED}, \
        {c: d.last_error for c, d in update.items()}

    # Mastodon: the reply's in_reply_to_id is the first status
    toots = live_posts(box, "mastodon")
    assert len(toots) == 2 and toots[0]["reply_to"] is None
    assert toots[1]["reply_to"] == toots[0]["id"] == first["mastodon"].remote_id
    assert creates(box, "mastodon")[1]["json"]["in_reply_to_id"] == toots[0]["id"]

    # Bluesky: reply.root and reply.parent are strong refs to the first record
    records = live_posts(box, "bluesky")
    assert len(records) == 2
    reply = creates(box, "bluesky")[1]["json"]["record"]["reply"]
    assert reply["root"] == reply["parent"] == {"uri": records[0]["id"], "cid": records[0]["cid"]}
    assert "reply" not in creates(box, "bluesky")[0]["json"]["record"]

    # X: reply.in_reply_to_tweet_id is the first post
    tweets = live_posts(box, "x")
    assert len(tweets) == 2 and tweets[1]["reply_to"] == tweets[0]["id"] == first["x"].remote_id
    assert creates(box, "x")[1]["json"]["reply"] == {"in_reply_to_tweet_id": tweets[0]["id"]}

    # e-mail: each recipient's update answers that recipient's first mail
    mails = box.messages()
    assert sorted(r for m in mails for r in m["rcpt_tos"]) == sorted(list(MAIL_TO) * 2)
    for rcpt in MAIL_TO:
        original, followup = [m for m in mails if m["rcpt_tos"] == [rcpt]]
        assert header(original, "In-Reply-To") is None
        assert header(followup, "In-Reply-To") == header(original, "Message-ID")
        assert header(original, "Message-ID") in header(followup, "References")
        assert header(followup, "Subject").startswith("[Resolved]")

    # Atlassian Statuspage: one incident, PATCHed to resolved, with both updates
    [incident] = live_posts(box, "statuspage")
    # (the scheduler's readiness check also reads the page: GET /pages/{id}, not an incident call)
    assert [r["method"] for r in box.requests("statuspage") if "/incidents" in r["path"]] == ["POST", "PATCH"]
    seen = get_json(box, "statuspage", f"/v1/pages/{PAGE}/incidents/{incident['id']}", Authorization=f"OAuth {TOKEN}")
    assert seen["status"] == "resolved"
    assert [u["status"] for u in seen["incident_updates"]] == ["resolved", "investigating"]

    # Cachet v3: one incident, and the update added to it (status 4 = fixed)
    [incident] = live_posts(box, "cachet")
    seen = get_json(box, "cachet", f"/api/incidents/{incident['id']}")["data"]["attributes"]
    assert seen["status"] == 4 and [u["status"] for u in seen["updates"]] == [4]

    # our own status page: one incident with two entries in its timeline
    state = json.loads((tmp_path / "site.state" / "state.json").read_text())
    [inc] = state["incidents"].values()
    assert inc["status"] == "resolved" and [u["status"] for u in inc["updates"]] == ["investigating", "resolved"]
    assert (tmp_path / "site" / "incidents" / f"{inc['id']}.html").is_file()

    # generic webhook: signed (the stand-in verified it), the update points at the first message
    hooks = live_posts(box, "webhook")
    assert [h["event"] for h in hooks] == ["announcement.created", "announcement.updated"]
    assert all(h["signed"] for h in hooks)
    assert creates(box, "webhook")[1]["json"]["data"]["in_reply_to"] == hooks[0]["id"]

    # chat webhooks cannot thread: exactly one message each for the post and the update
    for provider in ("slack", "discord", "teams"):
        texts = [p["text"] for p in live_posts(box, provider)]
        assert len(texts) == 2 and "[Resolved]" in texts[1] and "[Resolved]" not in texts[0], (provider, texts)


def test_facebook_update_is_a_comment_on_the_page_post(env):
    ann = submit(env.system, ["facebook"])
    [post] = env.settle(ann)
    assert str(post.state) == "delivered"
    resolve(env.system, ann)
    ds = env.settle(ann, count=2)
    update = next(d for d in ds if d.update_id)
    assert str(update.state) == "delivered", update.last_error
    comment = [r for r in env.box.requests("facebook") if r["method"] == "POST" and r["path"].endswith("/comments")]
    assert len(comment) == 1 and comment[0]["path"] == f"/facebook/v19.0/{post.remote_id}/comments"
    feed = [r for r in env.box.requests("facebook") if r["method"] == "POST" and r["path"].endswith("/feed")]
    assert len(feed) == 1, "the update must not become a second page post"
    assert [p["id"] for p in live_posts(env.box, "facebook") if not p.get("reply_to")] == [post.remote_id]


@pytest.mark.parametrize("channel, delete", [("mastodon", "/api/v1/statuses/{id}"), ("x", "/2/tweets/{id}")])
def test_an_update_whose_first_post_was_deleted_goes_out_unthreaded(env, channel, delete):
    """Someone deleted the first post by hand: the network answers 404 for the reply target. The
    resolve still goes out, on its own, and its delivery's events say why it is not threaded."""
    import httpx

    ann = submit(env.system, [channel])
    [post] = env.settle(ann)
    assert str(post.state) == "delivered"
    gone = httpx.delete(env.box.url(channel) + delete.format(id=post.remote_id),
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert gone.status_code == 200, gone.text
    resolve(env.system, ann)
    ds = env.settle(ann, count=2)
    update = next(d for d in ds if d.update_id)
    assert str(update.state) == "delivered", reasons(env.system, update.id)
    assert any("is gone on" in r and "posted on its own, without the thread" in r
               for r in reasons(env.system, update.id)), reasons(env.system, update.id)
    live = live_posts(env.box, PROVIDER[channel])
    assert [p["reply_to"] for p in live] == [None], "one live post: the update, not threaded"
    assert update.attempts == 1


# ---------------------------------------------------------------- fault modes

HTTP_CHANNELS = ["mastodon", "bluesky", "x", "facebook", "atlassian", "cachet", "slack", "discord", "teams", "webhook"]


@pytest.mark.parametrize("channel", HTTP_CHANNELS)
def test_a_burst_of_server_errors_is_retried_and_delivered_once(env, channel):
    provider = PROVIDER[channel]
    env.box.set_fault(provider, "5xx", count=3, path=CREATE_PATH[provider])
    ann = submit(env.system, [channel])
    [d] = env.settle(ann)
    assert str(d.state) == "delivered", reasons(env.system, d.id)
    assert [r["status"] for r in creates(env.box, provider)] == [500, 500, 500, 201 if provider in (
        "x", "statuspage", "cachet") else 202 if provider == "teams" else 200]
    assert d.attempts == 4
    assert len(live_posts(env.box, provider)) == 1


#: provider → how its 429 says when to come back: an exact time, or whole epoch seconds
RESET_STYLE = {"mastodon": "exact", "discord": "exact", "x": "epoch", "bluesky": "epoch"}


@pytest.mark.parametrize("channel", list(RESET_STYLE))
def test_rate_limit_waits_until_the_reset(env, channel):
    provider, seconds = PROVIDER[channel], 2.0
    env.box.set_fault(provider, "429", count=1, seconds=seconds, path=CREATE_PATH[provider])
    ann = submit(env.system, [channel])
    [d] = env.settle(ann)
    assert str(d.state) == "delivered", reasons(env.system, d.id)
    first, second = creates(env.box, provider)
    assert first["status"] == 429 and 200 <= second["status"] < 300
    # the reset the provider announced (an epoch header has whole seconds, so it may be earlier)
    reset = first["time"] + seconds
    if RESET_STYLE[provider] == "epoch":
        reset = math.floor(reset)
    assert second["time"] >= reset - 0.06, f"re-sent {reset - second['time']:.2f}s before the reset"
    assert second["time"] - first["time"] < seconds + 2.0, "waited far longer than the provider asked"
    assert len(live_posts(env.box, provider)) == 1
    assert any("as the provider asked" in r for r in reasons(env.system, d.id))


@pytest.mark.parametrize("channel", HTTP_CHANNELS)
def test_a_refused_token_fails_at_once(env, channel):
    provider = PROVIDER[channel]
    env.box.set_fault(provider, "bad_token", path=CREATE_PATH[provider])  # until cleared
    ann = submit(env.system, [channel])
    [d] = env.settle(ann)
    assert str(d.state) == "failed", reasons(env.system, d.id)
    assert d.attempts == 1, "a permanent error is not retried"
    assert len(creates(env.box, provider)) == 1
    assert live_posts(env.box, provider) == []
    assert "credentials refused" in (d.last_error or "") or "token" in (d.last_error or "").lower()


#: channel → (final state, create requests the provider sees)
AFTER_DROP = {
    "mastodon": ("delivered", 2),  # re-sent with the same Idempotency-Key: the stand-in returns the first status
    "webhook": ("delivered", 2),  # re-sent with the same webhook-id: the receiver dedupes
    "bluesky": ("delivered", 1),  # getRecord on our own record key finds it: no second request
    "atlassian": ("delivered", 1),  # the unresolved incidents carry our key in metadata
    "cachet": ("delivered", 1),  # v3: filter[meta][broadcaster_key]
    "x": ("unknown", 1),  # no way to tell: never re-posted blindly
    "slack": ("unknown", 1),
    "discord": ("unknown", 1),
    "teams": ("unknown", 1),
    "facebook": ("unknown", 1),
}


@pytest.mark.parametrize("channel", list(AFTER_DROP))
def test_accepted_then_dropped_is_never_posted_twice(env, channel):
    provider = PROVIDER[channel]
    state, requests = AFTER_DROP[channel]
    env.box.set_fault(provider, "accept_then_drop", count=1, path=CREATE_PATH[provider])
    ann = submit(env.system, [channel])
    [d] = env.settle(ann)
    log = reasons(env.system, d.id)
    assert str(d.state) == state, log
    assert len(live_posts(env.box, provider)) == 1, "exactly one post at the provider"
    seen = creates(env.box, provider)
    assert len(seen) == requests, [(r["path"], r["status"], r["outcome"]) for r in seen]
    assert seen[0]["outcome"] == "accepted_then_dropped"
    if state == "unknown":
        assert d.maybe_sent and "not re-sent" in log[-1]
    elif requests == 1:
        assert "found on the channel by look-up" in log[-1]
        assert d.remote_id == live_posts(env.box, provider)[0]["id"]
    else:
        key = "idempotency-key" if provider == "mastodon" else "webhook-id"
        assert seen[0]["headers"][key] == seen[1]["headers"][key]
        assert d.remote_id == live_posts(env.box, provider)[0]["id"]


def test_email_dropped_after_data_resends_only_that_address_with_the_same_message_id(env):
    """SMTP has no look-up: the one address whose 250 was lost is re-sent (a private channel is
    at-least-once for uncertain addresses), with the same Message-ID; nobody else twice."""
    env.box.set_fault("smtp", "accept_then_drop", count=1)
    ann = submit(env.system, ["email"])
    [d] = env.settle(ann)
    assert str(d.state) == "delivered", reasons(env.system, d.id)
    got = {rcpt: [header(m, "Message-ID") for m in env.box.messages() if m["rcpt_tos"] == [rcpt]] for rcpt in MAIL_TO}
    # the first mail the server gets is dropped; over parallel connections either address may be it
    assert sorted(len(ids) for ids in got.values()) == [1, 2], got
    [dropped] = [rcpt for rcpt, ids in got.items() if len(ids) == 2]
    assert got[dropped][0] == got[dropped][1]


def test_email_server_down_for_a_while_then_everyone_gets_one_mail(env):
    env.box.set_fault("smtp", "down", count=3)  # 421 at MAIL on the next three transactions
    ann = submit(env.system, ["email"])
    [d] = env.settle(ann)
    assert str(d.state) == "delivered", reasons(env.system, d.id)
    # the refusals land on whichever of the channel's connections asks next, so how many
    # attempts they cost depends on the connection count; the outage cost one at least
    assert d.attempts >= 2
    assert sorted(r for m in env.box.messages() for r in m["rcpt_tos"]) == sorted(MAIL_TO)


@pytest.mark.parametrize("channel", ["x", "facebook"])
def test_a_duplicate_refusal_means_already_posted(env, channel):
    provider = PROVIDER[channel]
    env.box.set_fault(provider, "duplicate", count=1, path=CREATE_PATH[provider])
    ann = submit(env.system, [channel])
    [d] = env.settle(ann)
    assert str(d.state) == "delivered", reasons(env.system, d.id)
    assert d.attempts == 1 and d.receipt.extra.get("duplicate") is True
    assert len(creates(env.box, provider)) == 1 and live_posts(env.box, provider) == []
    assert "identical earlier post" in reasons(env.system, d.id)[-1]


def test_bluesky_expired_session_is_refreshed_and_posts_once(env):
    env.box.set_fault("bluesky", "expired_token", count=1, path=CREATE_PATH["bluesky"])
    ann = submit(env.system, ["bluesky"])
    [d] = env.settle(ann)
    assert str(d.state) == "delivered" and d.attempts == 1, reasons(env.system, d.id)
    assert any("refreshSession" in r["path"] for r in env.box.requests("bluesky"))
    assert len(live_posts(env.box, "bluesky")) == 1


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_breaker_opens_while_down_and_closes_after_recovery(env):
    channel, cooldown = "mastodon-fragile", 1.0
    breaker = env.system.runtime.breaker
    env.box.set_fault("mastodon", "down", path=CREATE_PATH["mastodon"])  # until cleared
    ann = submit(env.system, [channel])
    _wait_for(lambda: breaker.state(channel, cooldown).state in ("open", "half_open"), 15, "the breaker to open")
    opened = time.time()
    calls_at_open = len(creates(env.box, "mastodon"))
    time.sleep(2.5)
    # while open, only the one probe per cooldown reaches the provider
    probes = len(creates(env.box, "mastodon")) - calls_at_open
    assert probes <= 2.5 / cooldown + 1, f"{probes} requests in 2.5s with the breaker open"
    [d] = env.system.runtime.ledger.deliveries_of(ann)
    assert str(d.state) in ("retrying", "sending", "pending"), "still being worked on while the channel is down"
    assert any("circuit breaker open" in r for r in reasons(env.system, d.id))
    assert live_posts(env.box, "mastodon") == []

    env.box.clear_faults("mastodon")  # the provider comes back
    [d] = env.settle(ann, timeout=20)
    assert str(d.state) == "delivered", reasons(env.system, d.id)
    assert time.time() - opened < 10
    assert breaker.state(channel, cooldown).state == "closed"
    assert len(live_posts(env.box, "mastodon")) == 1


def test_fallback_takes_over_while_the_primary_stays_down(env):
    env.box.set_fault("x", "down", path=CREATE_PATH["x"])  # until cleared
    ann = submit(env.system, ["x-primary"])
    ds = env.settle(ann, timeout=30, count=2)
    by = {d.channel: d for d in ds}
    primary, backup = by["x-primary"], by["slack-backup"]
    assert str(primary.state) == "fallen_back", reasons(env.system, primary.id)
    assert "fallback_after" in reasons(env.system, primary.id)[-1], "fell back because the breaker stayed open"
    assert str(backup.state) == "delivered" and backup.fallback_of == primary.id
    assert live_posts(env.box, "x") == []
    [msg] = live_posts(env.box, "slack")
    assert msg["hook"] == "T0002/B0002/backupsecret"
    env.box.clear_faults("x")
    time.sleep(1.0)  # nothing goes to X once it is back: the delivery is settled
    assert live_posts(env.box, "x") == [] and len(live_posts(env.box, "slack")) == 1
