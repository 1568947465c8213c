"""RabbitMQ as the broker: the core promise holds the same as on Redis.

The broker is ``amqp://``; breakers and rate limits still live in Redis (``redis:``), here a
private one. Each run uses its own channel name, so its queue cannot meet messages left in the
shared RabbitMQ by an earlier run, and deletes that queue at the end.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from broadcaster import service
from broadcaster.channels.webhook import verify
from broadcaster.runtime import queue_name
from tests.conftest import unavailable
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow
AMQP_URL = os.environ.get("BROADCASTER_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLXdlYmhvb2tzLTEyMzQ1Ng=="


@pytest.fixture(scope="module")
def amqp_url() -> str:
    from kombu import Connection

    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001
        unavailable(f"RabbitMQ at {AMQP_URL} ({type(exc).__name__})")
    return AMQP_URL


@pytest.fixture
def rabbit_system(amqp_url, private_redis, ledger_url, receiver):
    channel = f"hook-{uuid.uuid4().hex[:8]}"
    settings = settings_for(ledger_url, amqp_url, {channel: {"kind": "webhook", "format": "generic",
                                                            "url": receiver.url + "/hook", "secret": SECRET}},
                            redis=private_redis.url)
    system = System(settings)
    yield system, channel
    system.stop()
    try:
        with system.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue_name(channel))
    except Exception:  # noqa: BLE001 - cleanup is best effort
        pass


def test_receiver_failing_three_times_gets_it_exactly_once_over_rabbitmq(rabbit_system, receiver, private_redis):
    system, _channel = rabbit_system
    assert system.app.conf.broker_url.startswith("amqp://")
    receiver.script(503, 503, 503)
    with system.worker():
        system.start_scheduler()
        ann = service.submit(system.runtime, {"kind": "incident", "title": "API errors", "body": "Investigating."},
                             principal=service.SYSTEM).id
        [d] = system.wait_settled(ann, timeout=60)
    assert str(d.state) == "delivered"
    assert d.attempts == 4
    assert [r.status for r in receiver.requests] == [503, 503, 503, 200]
    assert len(receiver.unique_ids()) == 1 and len(receiver.ok()) == 1
    ok = receiver.ok()[0]
    assert ok.headers["webhook-id"].endswith(d.id), "the webhook-id is derived from the delivery id"
    assert verify(SECRET, ok.headers, ok.body)
    # breakers and rate limits use the private Redis; the broker is RabbitMQ
    assert system.runtime.redis.connection_pool.connection_kwargs["port"] == private_redis.port
    reasons = [e.to_state for e in system.runtime.ledger.events_of(d.id)]
    assert reasons.count("retrying") == 3 and reasons[-1] == "delivered"


def test_an_unreachable_rabbitmq_does_not_fail_a_submit(private_redis, sqlite_url, receiver):
    """The broker is only a wake-up call: with RabbitMQ down, submit still commits to the ledger."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed again before the submit: nothing listens there
    settings = settings_for(sqlite_url, f"amqp://guest:guest@127.0.0.1:{dead}//",
                            {"hook": {"kind": "webhook", "format": "generic", "url": receiver.url + "/hook"}},
                            redis=private_redis.url)
    system = System(settings)
    try:
        ann = service.submit(system.runtime, {"kind": "incident", "title": "t", "body": "b"}, principal=service.SYSTEM)
        [d] = system.runtime.ledger.deliveries_of(ann.id)
        assert str(d.state) == "pending"
    finally:
        system.stop()
