"""The ledger's delivery port: exactly what the delivery engine, the drain and the sweep need.

Two implementations keep the same promises:

- :class:`~broadcaster.ledger.repository.Ledger` — SQLite or PostgreSQL, the running system;
- :class:`~broadcaster.ledger.memory.MemoryLedger` — plain Python, optionally journalled to an
  fsynced JSON-lines file (break-glass runs the engine over it while the database is down).

``tests/contract/test_delivery_port.py`` runs the same assertions on all of them. The promises:

- **at most once per (message, channel)**: one delivery per :func:`once_key`; a fallback to a
  channel that already has the message adds nothing and says so in the event's reason;
- **claims are conditional**: a delivery is claimed only from a claimable state
  (:data:`~broadcaster.models.CLAIMABLE`) and when due, by one owner, under a lease;
- **a single claim starts its attempt; a batch claim only leases**: each delivery of a batch
  is started by :meth:`DeliveryLedger.start_send` just before its remote call, only under its
  owner's unexpired lease;
- **outcomes with an owner are conditional on its lease**: a worker whose lease expired records
  nothing; the sweep turns an expired lease into ``retrying`` with ``maybe_sent`` — unless the
  delivery was batch-claimed and never started, which goes back to being due as it was, attempts
  and ``maybe_sent`` unchanged;
- **every state change writes an event** in the same transaction; item progress and lease
  renewal are one write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ..models import Announcement, Delivery, DeliveryEvent, DeliveryState, Receipt, Update

#: ``(items, state, detail)``: per-item progress of a delivery (mail recipients, thread parts)
ItemMark = tuple[Iterable[str], str, str | None]
#: ``(delivery, to, reason, options)``: one outcome of a batch, ``options`` being
#: :meth:`DeliveryLedger.transition`'s keyword arguments
Outcome = tuple[Delivery, DeliveryState, str, dict[str, Any]]


def once_key(announcement_id: str, update_id: str | None, channel: str) -> str:
    """The message a delivery carries (the announcement, or one of its updates) and where to.
    Ids never contain ``/`` and ``-`` is never an update id, so the key is unambiguous."""
    return f"{announcement_id}/{update_id or '-'}/{channel}"


class DeliveryLedger(Protocol):
    """What one attempt (``engine.attempt``) and a drain (``drain.drain``) read and write."""

    #: the ledger's clock: leases, due times and events are on it
    clock: Callable[[], float]

    # -- look-ups (NotFound when missing)

    def get_announcement(self, ann_id: str) -> Announcement: ...

    def get_update(self, upd_id: str) -> Update: ...

    def get_delivery(self, delivery_id: str) -> Delivery: ...

    def deliveries_of(self, ann_id: str) -> list[Delivery]:
        """Oldest first (created, then id)."""
        ...

    def events_of(self, delivery_id: str) -> list[DeliveryEvent]:
        """The attempt log, in the order written."""
        ...

    def thread_receipts(self, ann_id: str, channel: str, before: float | None = None) -> list[Receipt]:
        """Receipts of delivered posts of this announcement on this channel, oldest first."""
        ...

    # -- claims

    def claim_with_announcement(self, delivery_id: str, owner: str,
                                lease: float) -> tuple[Delivery, Announcement] | None:
        """pending/retrying and due → sending, leased to ``owner``; None when someone else has
        it, it is settled or not yet due."""
        ...

    def claim_batch(self, channel: str, owner: str, lease: float, limit: int, *,
                    start_first: bool = False) -> list[tuple[Delivery, Announcement]]:
        """Up to ``limit`` due deliveries of ``channel``, each leased as by
        :meth:`claim_with_announcement` but not started (see :meth:`start_send`), oldest due
        first. ``start_first``: the first of them (the one sent first) is started by the claim
        itself, as a single claim is — its send needs no :meth:`start_send` of its own."""
        ...

    def start_send(self, delivery_id: str, owner: str, outcomes: Sequence[Outcome] = ()) -> tuple[bool, list[bool]]:
        """The durable write just before a batch-claimed delivery's remote call: ``outcomes``
        (as :meth:`transition_many` with ``owner``), then ``delivery_id``'s send marked started
        — only while ``owner`` holds its unexpired lease — in ONE transaction. Returns whether
        the send may start, and per outcome whether it was recorded."""
        ...

    # -- outcomes

    def transition(self, delivery: Delivery, to: DeliveryState, reason: str, *, owner: str | None = None,
                   attempted: bool = False, due_at: float | None = None, receipt: Receipt | None = None,
                   response: str | None = None, error: str | None = None, maybe_sent: bool | None = None,
                   fallbacks: list[dict] | None = None) -> bool:
        """Move ``delivery`` to ``to`` and log it; with ``owner``, only while that owner holds
        the lease. ``fallbacks`` become deliveries of the same message, except on channels
        that already have it."""
        ...

    def transition_many(self, outcomes: list[Outcome], *, owner: str) -> list[bool]:
        """Several :meth:`transition` calls with ``owner`` in one transaction."""
        ...

    def pinned(self) -> AbstractContextManager[None]:
        """Meanwhile, the write transactions of this thread share one connection (a drain's
        batch: its claim, start marks and outcomes) instead of each checking one out. Each is
        still its own transaction; only the connection's round trip through the pool is saved."""
        ...

    def force(self, delivery_id: str, to: DeliveryState, reason: str, *, actor: str,
              from_states: Iterable[DeliveryState], due_at: float | None = None, maybe_sent: bool | None = None,
              deadline_at: float | None = None, remote_url: str | None = None, note: str | None = None,
              set_note: bool = False) -> bool:
        """An action from outside the attempt (operator, retraction, sweep feature): move only
        from ``from_states``; NotFound for a missing delivery."""
        ...

    # -- per-item progress

    def item_states(self, delivery_id: str) -> dict[str, tuple[str, str | None]]: ...

    def mark_items_and_extend(self, delivery_id: str, owner: str | None, marks: Iterable[ItemMark],
                              lease: float | None = None) -> bool | None:
        """Item marks (later marks of an item win) and, with ``lease``, the owner's lease
        renewed — one write. Returns whether the lease was renewed (None: not asked)."""
        ...


class SweepLedger(Protocol):
    """What the scheduler's sweep (``scheduler.Sweeper.tick``) needs besides its feature hooks."""

    def expire_leases(self) -> list[str]:
        """sending past its lease → retrying with ``maybe_sent`` and one more attempt counted; a
        batch-claimed delivery whose send never started → due again, pending (or retrying after
        earlier attempts) with attempts and ``maybe_sent`` as they were."""
        ...

    def forget_enqueued(self) -> int: ...

    def open_incidents(self) -> int: ...

    def promote_scheduled(self, *, hold_kinds: Iterable[str] = (), limit: int = 500) -> list[str]: ...

    def take_due(self, requeue_after: float, limit: int = 500) -> list[tuple[str, str, float]]:
        """Due, claimable and not enqueued within ``requeue_after``: ``(id, channel, due_at)``,
        marked enqueued."""
        ...


class DeliveryPort(DeliveryLedger, SweepLedger, Protocol):
    """The whole port: what a :class:`~broadcaster.runtime.Runtime` hands the engine, the drain
    and the sweep as ``runtime.deliveries``."""
