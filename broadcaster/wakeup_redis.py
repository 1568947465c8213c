"""Wake-ups on a Redis broker: every channel an announcement names, in ONE round trip,
coalesced per channel while a drain of it is already queued.

Why not ``send_task``: kombu publishes one message per call — a Redis client built per publish
and a round trip each, so K channels cost K round trips on the intake's hot path. Here one Lua
script (``EVALSHA``) does, per channel, ``SET bc:wake:<channel> NX PX`` and, only when that
mark was not already set, ``LPUSH`` of the drain message onto the channel's queue.

What is pushed is what kombu's Redis transport pushes for ``send_task(DRAIN, (channel,),
queue=<the channel's queue>)``: a Celery protocol-2 message, built by Celery itself
(``app.amqp.create_task_message``), in kombu's Redis envelope (JSON; base64 body; delivery info
with the queue as routing key on the default exchange, as Celery routes it; a fresh
``delivery_tag``), onto the list the worker pops. A channel's message differs from one wake-up
to the next only in its ids, so Celery builds it once per channel and process, and each wake-up
fills in a fresh task id and delivery tag (:func:`fresh`). ``tests/contract/test_wakeup_redis.py`` compares
it with kombu's own message and has a real worker consume it.

Why coalescing loses nothing (the mark means "a drain of this channel is queued and has not
started"): a drain deletes the mark (:meth:`RedisWakeups.started`) before its first claim. A
publisher that finds the mark set did so after committing its rows, and before that drain
deleted the mark — so before that drain's first claim, which therefore sees the rows, and
claims them or ends for a reason that leaves them to a later wake-up or the sweep (a full
drain's budget re-enqueues; a rate limit or open breaker gives back with a due time). A mark
whose message was lost (a worker killed before it started the drain, a broker failover) only
delays: the marks expire after :data:`MARK_TTL`, and the sweep, which publishes past them,
enqueues every due row that is not claimed within a sweep interval (their ``enqueued_at`` is
empty), exactly as for a lost message before coalescing.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from collections.abc import Sequence
from typing import Any

from .config import Settings
from .runtime import broker_url, connect_redis, queue_name

log = logging.getLogger(__name__)

#: the mark's life: longer than a drain normally waits in its queue; a stale mark (its message
#: lost) costs at most this, and only where no scheduler sweeps
MARK_TTL = 10.0
MARK_PREFIX = "bc:wake:"
#: broker URLs this module can publish to (anything else goes through kombu, uncoalesced)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")

# KEYS: mark_1, queue_1, mark_2, queue_2, …  ARGV: ttl_ms, then mode_i, payload_i per pair.
# mode 'c' (coalesce): push only when the mark was not set, and set it; 'f' (force): push and
# set the mark; 'd' (delayed): push, leave the mark alone. Returns 1/0 per pair: pushed or not.
_WAKE = """
local ttl = ARGV[1]
local out = {}
for i = 1, #KEYS, 2 do
  local mode, payload = ARGV[i + 1], ARGV[i + 2]
  local push = true
  if mode == 'c' then
    push = redis.call('SET', KEYS[i], '1', 'NX', 'PX', ttl) ~= false
  elseif mode == 'f' then
    redis.call('SET', KEYS[i], '1', 'PX', ttl)
  end
  if push then redis.call('LPUSH', KEYS[i + 1], payload) end
  out[#out + 1] = push and 1 or 0
end
return out
"""


def is_redis(url: str) -> bool:
    return url.startswith(REDIS_SCHEMES)


def envelope(app: Any, name: str, args: Sequence[Any], queue: str, countdown: float | None = None) -> dict[str, Any]:
    """kombu's Redis envelope of ``app.send_task(name, args, queue=queue, countdown=countdown)``
    (body base64, as kombu's virtual transport encodes it), its ids left for :func:`fresh`:
    everything else in it depends only on the arguments (and the countdown's moment)."""
    msg = app.amqp.create_task_message("", name, tuple(args), {}, countdown=countdown or None, ignore_result=True)
    body = json.dumps(msg.body).encode()
    properties = {**msg.properties, "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": queue},
                  "priority": 0, "body_encoding": "base64"}
    return {"body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
            "content-type": "application/json", "headers": msg.headers, "properties": properties}


def fresh(env: dict[str, Any]) -> str:
    """``env`` as one message of its own: a new task id (also its root and correlation id) and a
    new ``delivery_tag``, as JSON."""
    task_id = str(uuid.uuid4())
    return json.dumps({**env, "headers": {**env["headers"], "id": task_id, "root_id": task_id},
                       "properties": {**env["properties"], "correlation_id": task_id,
                                      "delivery_tag": str(uuid.uuid4())}})


def task_payload(app: Any, name: str, args: Sequence[Any], queue: str, countdown: float | None = None) -> str:
    """The JSON kombu's Redis transport would push for ``app.send_task(name, args, queue=queue,
    countdown=countdown)``."""
    return fresh(envelope(app, name, args, queue, countdown))


class RedisWakeups:
    """Drain wake-ups for a Celery app whose broker is Redis (see the module docstring)."""

    def __init__(self, app: Any, redis: Any, task: str, *, key_prefix: str = ""):
        self.app = app
        self.redis = redis
        self.task = task
        #: kombu's ``global_keyprefix`` transport option, if one is set: queue lists (and marks) carry it
        self.key_prefix = key_prefix
        self._script = redis.register_script(_WAKE)
        #: per channel, its drain's envelope (no countdown), built by Celery once per process —
        #: building it per wake-up (argsrepr, headers) cost more than the round trip
        self._envelopes: dict[str, dict[str, Any]] = {}
        self._pid = os.getpid()

    @classmethod
    def for_app(cls, app: Any, settings: Settings, task: str) -> RedisWakeups | None:
        """The wake-ups for ``app``'s broker, or None when the broker is not Redis."""
        url = broker_url(settings)
        if not is_redis(url):
            return None
        # connects on first use (redis-py is lazy; its pool reconnects in a forked worker child)
        client = connect_redis(url, settings, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30)
        prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "") or ""
        return cls(app, client, task, key_prefix=prefix)

    def wake(self, channels: Sequence[str], countdown: float | None = None, *, force: bool = False) -> list[str]:
        """Publish a drain for each channel (one round trip); returns the channels published
        (the others were coalesced into a drain already queued)."""
        if not channels:
            return []
        mode = "d" if countdown and countdown > 0 else ("f" if force else "c")
        keys: list[str] = []
        argv: list[Any] = [int(MARK_TTL * 1000)]
        for channel in channels:
            queue = queue_name(channel)
            keys += [self.key_prefix + MARK_PREFIX + channel, self.key_prefix + queue]
            argv += [mode, task_payload(self.app, self.task, (channel,), queue, countdown) if mode == "d"
                     else fresh(self._envelope(channel, queue))]
        pushed = self._script(keys=keys, args=argv)
        return [c for c, p in zip(channels, pushed, strict=True) if int(p)]

    def _envelope(self, channel: str, queue: str) -> dict[str, Any]:
        if os.getpid() != self._pid:  # a forked child: its messages name their own origin (pid)
            self._envelopes, self._pid = {}, os.getpid()
        env = self._envelopes.get(channel)
        if env is None:
            env = self._envelopes[channel] = envelope(self.app, self.task, (channel,), queue)
        return env

    def started(self, channel: str) -> None:
        self.redis.delete(self.key_prefix + MARK_PREFIX + channel)

