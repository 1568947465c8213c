"""Waking workers: the port between what the ledger decided and the broker that carries it.

The ledger is the truth; a wake-up only says "look now". Losing one costs a sweep interval
(the scheduler re-enqueues what is due and unclaimed), so an :class:`Enqueuer` may raise on
broker trouble and callers log and carry on (``Runtime.enqueue``) — a submit never fails
because the broker is down.

A wake-up names a channel: the worker that takes it drains whatever of that channel is due
(``broadcaster/drain.py``). So a wake-up may be **coalesced**: while a drain of the channel is
queued and has not started yet, another one would find nothing the first will not take, and is
left out (``wakeup_redis.py`` does this in the same round trip as the publish). Three kinds:

* immediate (no ``countdown``): coalesced;
* delayed (``countdown`` > 0): always published, and it marks nothing — a drain due in five
  seconds is no reason to leave out one that is due now;
* ``force`` (the scheduler's sweep, the safety net): always published, past any mark — a mark
  whose message was lost must not swallow the wake-up that replaces it — and it marks the
  channel, so the intake's wake-ups coalesce into it.

A drain calls :meth:`Enqueuer.started` before it claims anything: from then on the next
wake-up for its channel is published again (it may find rows committed after this drain's
claims).

Implementations: the Celery one in ``tasks.py`` (publishes ``broadcaster.drain`` and
``broadcaster.retract`` on each channel's own queue; coalesced on a Redis broker),
:class:`MemoryEnqueuer` (records, for tests and in-process tools) and :class:`NoEnqueuer` (for
processes that never wake anyone: ``check``, break-glass, the preview).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class Enqueuer(Protocol):
    def deliver(self, items: Sequence[tuple[str, str]], countdown: float | None = None, *,
                force: bool = False) -> None:
        """Wake a worker for the channel of each ``(delivery_id, channel)``, after ``countdown``
        seconds if given; ``force`` publishes past a pending drain (see the module docstring).

        Publishes as many as it can and raises on the first broker error."""

    def started(self, channel: str) -> None:
        """A drain of ``channel`` is about to claim: the next wake-up for it is published again."""

    def retract(self, delivery_id: str, channel: str) -> None:
        """Wake a worker to delete delivery ``delivery_id``'s remote post on ``channel``."""


class MemoryEnqueuer:
    """Records every wake-up in order; the twin tests read instead of a broker (it coalesces
    nothing: a test sees every wake-up its code asked for)."""

    def __init__(self) -> None:
        #: ``(delivery_id, channel, countdown)`` per wake-up
        self.deliveries: list[tuple[str, str, float | None]] = []
        #: the ``force`` flag of each entry in :attr:`deliveries`
        self.forced: list[bool] = []
        #: channels whose drain said it started, in order
        self.started_drains: list[str] = []
        #: ``(delivery_id, channel)`` per retraction
        self.retractions: list[tuple[str, str]] = []
        #: called after each recorded wake-up (a test standing in for a worker settles the row)
        self.on_deliver: Callable[[str, str, float | None], None] | None = None

    def deliver(self, items: Sequence[tuple[str, str]], countdown: float | None = None, *,
                force: bool = False) -> None:
        for delivery_id, channel in items:
            self.deliveries.append((delivery_id, channel, countdown))
            self.forced.append(force)
            if self.on_deliver is not None:
                self.on_deliver(delivery_id, channel, countdown)

    def started(self, channel: str) -> None:
        self.started_drains.append(channel)

    def retract(self, delivery_id: str, channel: str) -> None:
        self.retractions.append((delivery_id, channel))


class NoEnqueuer:
    """Wakes nobody: for processes without a broker. What they commit is found by the sweeper."""

    def deliver(self, items: Sequence[tuple[str, str]], countdown: float | None = None, *,
                force: bool = False) -> None:
        return None

    def started(self, channel: str) -> None:
        return None

    def retract(self, delivery_id: str, channel: str) -> None:
        return None
