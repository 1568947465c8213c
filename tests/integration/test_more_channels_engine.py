"""Issue 18's channel kinds through the whole engine (real SQLite ledger, private Redis, Celery
worker, scheduler) against their sandbox stand-ins: a post and its update, each kind's answer to
a send whose answer was lost, Telegram's exact 429 wait, and SMS STOP kept in the ledger."""

from __future__ import annotations

import itertools

import pytest

from broadcaster import service
from broadcaster.ledger.opt_outs import OptOutStore
from broadcaster.sandbox import Sandbox
from tests.conftest import PrivateRedis
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow

TOKEN = "sandbox-token"
ROOM = "!ops:sandbox.test"
ACCOUNT = "AC" + "7" * 32
PHONES = ["+15550200001", "+15550200002"]
POLICY = {"defaults": {"attempts": 5, "backoff": {"base": 0.2, "max": 1}, "timeout": 5,
                       "breaker": {"failures": 5, "cooldown": 1}}}
_titles = itertools.count(1)

#: channel → (stand-in, a piece of the path of its create endpoint, its method)
CREATE = {
    "telegram": ("telegram", "/sendMessage", "POST"),
    "matrix": ("matrix", "/send/m.room.message/", "PUT"),
    "sms": ("twilio", "/Messages.json", "POST"),
    "gchat": ("googlechat", "/messages", "POST"),
    "mattermost": ("mattermost", "/hooks/", "POST"),
    "teams": ("teams", "/workflows/", "POST"),
}


def channels(box) -> dict:
    return {
        "telegram": {"kind": "telegram", "base_url": box.url("telegram"), "bot_token": "42:" + TOKEN,
                     "chat_id": "@sandbox_status"},
        "matrix": {"kind": "matrix", "homeserver": box.url("matrix"), "access_token": TOKEN, "room_id": ROOM},
        "sms": {"kind": "twilio_sms", "base_url": box.url("twilio"), "account_sid": ACCOUNT, "auth_token": TOKEN,
                "from_number": "+15550299999", "recipients": PHONES},
        "gchat": {"kind": "google_chat", "url": box.url("googlechat") + "/v1/spaces/S1/messages?key=k&token=t"},
        "mattermost": {"kind": "mattermost", "url": box.url("mattermost") + "/hooks/h00k"},
        "teams": {"kind": "webhook", "format": "teams_workflow",
                  "url": box.url("teams") + "/workflows/flow-1/triggers/manual/paths/invoke?sig=s1g"},
    }


@pytest.fixture(scope="module")
def box():
    sandbox = Sandbox(port=0, smtp_port=None).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def system(box, tmp_path_factory):
    redis = PrivateRedis().start()
    tmp = tmp_path_factory.mktemp("more-channels")
    sys_ = System(settings_for(f"sqlite:///{tmp}/ledger.db", redis.url, channels(box), policy=POLICY))
    try:
        with sys_.worker(concurrency=4):
            sys_.start_scheduler()
            yield sys_
    finally:
        sys_.stop()
        redis.stop()


@pytest.fixture(autouse=True)
def clean(box, system):
    box.reset()
    for name in system.settings.channels:
        system.runtime.breaker.reset(name)
    yield


def submit(system, names) -> str:
    data = {"kind": "incident", "title": f"Incident {next(_titles)}: API errors",
            "body": "We are investigating elevated error rates.", "channels": list(names)}
    return service.submit(system.runtime, data, principal=service.SYSTEM).id


def resolve(system, ann: str) -> None:
    service.add_update(system.runtime, ann, {"status": "resolved", "body": "Fixed."}, principal=service.SYSTEM)


def creates(box, channel: str) -> list[dict]:
    provider, path, method = CREATE[channel]
    return [r for r in box.requests(provider) if r["method"] == method and path in r["path"]]


def log_of(system, delivery_id: str) -> list[str]:
    return [f"{e.to_state}: {e.reason}" for e in system.runtime.ledger.events_of(delivery_id)]


def test_every_new_kind_delivers_and_threads_the_update(box, system):
    names = list(CREATE)
    ann = submit(system, names)
    first = {d.channel: d for d in system.wait_settled(ann, timeout=40)}
    assert {c: str(d.state) for c, d in first.items()} == dict.fromkeys(names, "delivered"), \
        {c: d.last_error for c, d in first.items()}
    resolve(system, ann)
    every = system.wait_settled(ann, timeout=40, count=2 * len(names))
    update = {d.channel: d for d in every if d.update_id}
    assert {c: str(d.state) for c, d in update.items()} == dict.fromkeys(names, "delivered"), \
        {c: d.last_error for c, d in update.items()}

    tg = box.posts("telegram")
    assert len(tg) == 2 and tg[1]["reply_to"] == tg[0]["id"] == first["telegram"].remote_id
    mx = box.posts("matrix")
    assert len(mx) == 2 and mx[1]["content"]["m.relates_to"]["event_id"] == mx[0]["id"]
    gc = box.posts("googlechat")
    assert len(gc) == 2 and gc[0]["thread"] == gc[1]["thread"]
    sms = box.posts("twilio")
    assert sorted(p["to"] for p in sms) == sorted(PHONES * 2)
    for provider in ("mattermost", "teams", "twilio"):
        texts = [p["text"] for p in box.posts(provider)]
        assert sum("[Resolved]" in t for t in texts) == len(texts) // 2, (provider, texts)
    assert all(v["duplicate_texts"] == 0 for v in box.state.counts().values())


#: channel → (final state, create requests): Matrix re-sends with the same txnId, the others
#: cannot tell whether it landed and never re-send
AFTER_DROP = {
    "matrix": ("delivered", 2),
    "telegram": ("unknown", 1),
    "sms": ("unknown", 1),
    "gchat": ("unknown", 1),
    "mattermost": ("unknown", 1),
    "teams": ("unknown", 1),
}


@pytest.mark.parametrize("channel", list(AFTER_DROP))
def test_accepted_then_dropped_is_never_posted_twice(box, system, channel):
    provider, path, _ = CREATE[channel]
    state, requests = AFTER_DROP[channel]
    box.set_fault(provider, "accept_then_drop", count=1, path=path)
    ann = submit(system, [channel])
    [d] = system.wait_settled(ann, timeout=30)
    log = log_of(system, d.id)
    assert str(d.state) == state, log
    seen = creates(box, channel)
    assert seen[0]["outcome"] == "accepted_then_dropped"
    if channel == "sms":  # the first number's answer was lost; the second still got its text
        assert sorted(p["to"] for p in box.posts("twilio")) == PHONES and len(seen) == 2
    else:
        assert len(box.posts(provider)) == 1 and len(seen) == requests, [(r["path"], r["outcome"]) for r in seen]
    if state == "unknown":
        assert d.maybe_sent and "not re-sent" in log[-1]
    else:
        assert seen[0]["path"] == seen[1]["path"]  # the same txnId
        assert d.remote_id == box.posts("matrix")[0]["id"]


def test_telegram_429_waits_exactly_retry_after(box, system):
    seconds = 2.0
    box.set_fault("telegram", "429", count=1, seconds=seconds, path="/sendMessage")
    ann = submit(system, ["telegram"])
    [d] = system.wait_settled(ann, timeout=30)
    assert str(d.state) == "delivered", log_of(system, d.id)
    first, second = creates(box, "telegram")
    assert first["status"] == 429 and second["status"] == 200
    assert second["time"] >= first["time"] + seconds - 0.06, "re-sent before retry_after had passed"
    assert any("as the provider asked" in r for r in log_of(system, d.id))


def test_sms_stop_is_remembered_in_the_ledger(box, system):
    box.configure("twilio", unsubscribed=[PHONES[1]])
    ann = submit(system, ["sms"])
    [d] = system.wait_settled(ann, timeout=30)
    assert str(d.state) == "delivered", log_of(system, d.id)
    assert OptOutStore(system.runtime.ledger).opted_out(PHONES) == {PHONES[1]}
    box.configure("twilio", unsubscribed=[])
    ann2 = submit(system, ["sms"])
    [d2] = system.wait_settled(ann2, timeout=30)
    assert str(d2.state) == "delivered"
    assert [p["to"] for p in box.posts("twilio")] == [PHONES[0], PHONES[0]]
    assert len(creates(box, "sms")) == 3  # the opted-out number was asked once, never again
