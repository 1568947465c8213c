"""Waking workers: the port between what the ledger decided and the broker that carries it.

The ledger is the truth; a wake-up only says "look now". Losing one costs a sweep interval
(the scheduler re-enqueues what is due and unclaimed), so an :class:`Enqueuer` may raise on
broker trouble and callers log and carry on (``Runtime.enqueue``) — a submit never fails
because the broker is down.

Implementations: the Celery one in ``tasks.py`` (publishes ``broadcaster.deliver`` and
``broadcaster.retract`` on each channel's own queue), :class:`MemoryEnqueuer` (records, for tests
and in-process tools) and :class:`NoEnqueuer` (for processes that never wake anyone: ``check``,
break-glass, the preview).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class Enqueuer(Protocol):
    def deliver(self, items: Sequence[tuple[str, str]], countdown: float | None = None) -> None:
        """Wake a worker for each ``(delivery_id, channel)``, after ``countdown`` seconds if given.

        Publishes as many as it can and raises on the first broker error."""

    def retract(self, delivery_id: str, channel: str) -> None:
        """Wake a worker to delete delivery ``delivery_id``'s remote post on ``channel``."""


class MemoryEnqueuer:
    """Records every wake-up in order; the twin tests read instead of a broker."""

    def __init__(self) -> None:
        #: ``(delivery_id, channel, countdown)`` per wake-up
        self.deliveries: list[tuple[str, str, float | None]] = []
        #: ``(delivery_id, channel)`` per retraction
        self.retractions: list[tuple[str, str]] = []
        #: called after each recorded wake-up (a test standing in for a worker settles the row)
        self.on_deliver: Callable[[str, str, float | None], None] | None = None

    def deliver(self, items: Sequence[tuple[str, str]], countdown: float | None = None) -> None:
        for delivery_id, channel in items:
            self.deliveries.append((delivery_id, channel, countdown))
            if self.on_deliver is not None:
                self.on_deliver(delivery_id, channel, countdown)

    def retract(self, delivery_id: str, channel: str) -> None:
        self.retractions.append((delivery_id, channel))


class NoEnqueuer:
    """Wakes nobody: for processes without a broker. What they commit is found by the sweeper."""

    def deliver(self, items: Sequence[tuple[str, str]], countdown: float | None = None) -> None:
        return None

    def retract(self, delivery_id: str, channel: str) -> None:
        return None
