"""Two-person review with the real scheduler and worker running: a promotion under review does
not leave until a second person approves it — nor does an update of it; a scheduled one approved
early goes out at its time, not before; one not approved by its time is held, with a reminder,
and goes out when approved."""

from __future__ import annotations

import logging
import time

import pytest

from broadcaster import review, service
from broadcaster.principal import Principal
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow

MARKETING = Principal("marketing", kinds=("promotion",))
REVIEWER = Principal("reviewer", kinds=("promotion",))


@pytest.fixture
def running(tmp_path, private_redis, receiver):
    channels = {"social": {"kind": "webhook", "format": "generic", "url": receiver.url + "/social"}}
    settings = settings_for(f"sqlite:///{tmp_path}/l.db", private_redis.url, channels,
                            routes={"promotion": ["social"], "incident": ["social"]},
                            review={"kinds": ["promotion"], "remind_every": "1s"})
    system = System(settings)
    system.start_scheduler()
    with system.worker():
        yield system, receiver
    system.stop()


def promote(system, title: str, **extra) -> str:
    return service.submit(system.runtime, {"kind": "promotion", "title": title, "body": "Today only.", **extra},
                          principal=MARKETING).id


def test_a_held_promotion_and_its_update_leave_only_after_approval(running):
    system, receiver = running
    ann = promote(system, "50% off")
    service.add_update(system.runtime, ann, {"status": "update", "body": "Now 60% off."}, principal=MARKETING)
    time.sleep(2.5)  # ten sweeps and an idle worker: nothing leaves
    assert receiver.ok() == []
    review.approve(system.runtime, ann, principal=REVIEWER)
    system.wait_settled(ann, count=2)
    assert receiver.wait_for(lambda: len(receiver.ok()) == 2)
    bodies = [s.json() for s in receiver.ok()]
    assert "Now 60% off." not in str(bodies[0]) and "Now 60% off." in str(bodies[1])  # the post, then its update


def test_approved_early_goes_out_at_its_time_not_before(running):
    system, receiver = running
    at = time.time() + 3
    ann = promote(system, "Weekend sale", publish_at=at)
    review.approve(system.runtime, ann, principal=REVIEWER)
    time.sleep(1.5)
    assert receiver.ok() == []
    system.wait_settled(ann, timeout=20)
    [seen] = receiver.ok()
    assert seen.at >= at


def test_not_approved_by_its_time_is_held_with_a_reminder(running, caplog):
    system, receiver = running
    at = time.time() + 1
    with caplog.at_level(logging.WARNING, logger="broadcaster.review"):
        ann = promote(system, "Flash sale", publish_at=at)
        assert _wait(lambda: any(ann in r.getMessage() and "second person" in r.getMessage()
                                 for r in caplog.records), 15)
    assert time.time() > at and receiver.ok() == []  # past its time, still held
    review.approve(system.runtime, ann, principal=REVIEWER)
    system.wait_settled(ann)
    assert len(receiver.ok()) == 1


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()
