"""Several connections sending one mailing: the shared work list, the progress marks of one
connection, and the group commit that makes all their marks durable.

Why several connections: over one SMTP connection every message waits for its round trips (and
for its durable ``sending`` mark); N connections overlap those waits. Why the promise still
holds per connection: each connection marks an address ``sending`` durably before handing its
body over, and records that address's outcome in the same write as its next ``sending`` mark —
so each connection has at most one address whose outcome is unknown. A crash therefore leaves at
most one uncertain address per connection, and only those are re-sent, with the same Message-ID.

Why a group commit: the connections' marks meet in one writer thread (:class:`Committer`) that
writes them in one transaction — N connections cost about one commit per round of messages, not
N, and a single-writer ledger (SQLite) never sees them compete. The writer waits briefly until
every connection still sending has a mark waiting (each has at most one: it waits for it before
its next body), so a round is one commit rather than two or three.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from .base import Progress

Mark = tuple[list[str], str, str | None]  # (items, state, detail)
T = TypeVar("T")


class Committer:
    """One writer thread for the progress marks of every connection of a pass.

    :meth:`submit` queues a connection's marks and returns a future that completes once they are
    durable (or fails with the write's error). The thread writes the marks waiting in one
    ``mark_all`` (one ledger transaction, :class:`~broadcaster.engine.LedgerProgress`), or one
    ``mark`` after the other for a progress without it. Marks of one submission stay in order;
    different connections never mark the same address at the same time.

    Before writing, the thread gathers: it waits until each of the ``lanes`` connections still
    sending (:meth:`lane_ended` counts one off) has a submission waiting, or until ``gather``
    seconds have passed since the first one came — whichever is first. A connection has at most
    one submission waiting, so waiting for more than ``lanes`` is never needed, and the bound keeps
    a connection that is slow (a reconnect, a slow reply) from holding back the others for long."""

    #: the longest the first waiting mark waits for the other connections' (seconds)
    GATHER = 0.002

    def __init__(self, progress: Progress, name: str, lanes: int = 1, gather: float | None = None):
        self.progress = progress
        self.writes = 0
        self.lanes = lanes
        self.gather = self.GATHER if gather is None else gather
        self._cv = threading.Condition()
        self._waiting: list[tuple[tuple[Mark, ...], Future[None]]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-marks", daemon=True)
        self._thread.start()

    def submit(self, marks: tuple[Mark, ...]) -> Future[None]:
        done: Future[None] = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the progress writer is closed")
            self._waiting.append((marks, done))
            self._cv.notify()
        return done

    def lane_ended(self) -> None:
        """A connection stopped sending: the writer no longer waits for its marks."""
        with self._cv:
            self.lanes -= 1
            self._cv.notify()

    def close(self) -> None:
        """Write what is waiting, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    def _run(self) -> None:
        with pinned(self.progress):
            self._loop()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                until = time.monotonic() + self.gather
                while not self._closed and len(self._waiting) < self.lanes:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                group, self._waiting = self._waiting, []
                if not group:
                    return
            try:
                self._write([m for marks, _ in group for m in marks])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting connection, which raises it
                for _, done in group:
                    done.set_exception(exc)
            else:
                for _, done in group:
                    done.set_result(None)

    def _write(self, marks: list[Mark]) -> None:
        self.writes += 1
        write_marks(self.progress, marks)


def pinned(progress: Progress) -> AbstractContextManager[Any]:
    """While it lasts, ``progress`` writes from this thread over one ledger connection
    (``LedgerProgress.pinned``: no pool round trip per write); a progress without it: nothing."""
    pin = getattr(progress, "pinned", None)
    return pin() if pin is not None else contextlib.nullcontext()


def write_marks(progress: Progress, marks: list[Mark]) -> None:
    """``marks`` in one durable write (``mark_all``: one ledger transaction), or one ``mark``
    after the other for a progress without it."""
    many = getattr(progress, "mark_all", None)
    if many is not None:
        many(marks)
        return
    for items, state, detail in marks:
        progress.mark(items, state, detail)


class Marks:
    """The progress writes of one connection, two per address folded into one.

    An address's outcome (``done``/``refused``/``failed``) is held back and written together with
    the connection's next ``sending`` mark — one durable write per message. So a connection has
    only one address in flight: its ``sending`` is durable before its message goes out, and the
    previous outcome is durable no later than that. A crash between an acceptance and the next
    write leaves that address ``sending`` — the connection's one in-flight address, re-sent with
    the same Message-ID. :meth:`flush` writes a held outcome; a connection calls it however it
    ends."""

    def __init__(self, committer: Committer):
        self.committer = committer
        self.held: Mark | None = None

    def hold(self, mark: Mark) -> None:
        if self.held is not None:
            self.flush()
        self.held = mark

    def submit(self, *marks: Mark) -> Future[None]:
        """Queue ``marks`` (after a held outcome) for the writer; the future completes when durable."""
        if self.held is not None:
            marks = (self.held, *marks)
            self.held = None  # cleared first: a failed write is not tried again by flush
        return self.committer.submit(marks)

    def write(self, *marks: Mark) -> None:
        self.submit(*marks).result()

    def flush(self) -> None:
        if self.held is not None:
            self.write()


class Work(Generic[T]):
    """The addresses a pass still has to send, shared by its connections.

    Each connection :meth:`take` s the next one and reports :meth:`finish` when its message is
    settled either way. An address a connection could not hand over (lost before its body, or the
    server closing) is :meth:`give_back` once, for another connection; an address taken just
    before a connection failed to open is :meth:`put_back`. ``take`` waits while other
    connections are still busy, so a given-back address always finds a taker while one is
    alive."""

    def __init__(self, items: Iterable[T], key=lambda x: x):
        self._items: collections.deque[T] = collections.deque(items)
        self._key = key
        self._returned: set = set()
        self._busy = 0
        self._stopped = False
        self._cv = threading.Condition()
        self.accepted = 0

    def take(self) -> T | None:
        with self._cv:
            while not self._items and self._busy and not self._stopped:
                self._cv.wait()
            if self._stopped or not self._items:
                return None
            self._busy += 1
            return self._items.popleft()

    def finish(self, accepted: bool = False) -> None:
        with self._cv:
            self._busy -= 1
            self.accepted += accepted
            self._cv.notify_all()

    def put_back(self, item: T) -> None:
        """``item`` was taken but never tried: to the front, for whoever takes next."""
        with self._cv:
            self._items.appendleft(item)
            self._busy -= 1
            self._cv.notify_all()

    def give_back(self, item: T) -> bool:
        """``item`` was tried and certainly not delivered: once per pass, to the end of the list."""
        with self._cv:
            self._busy -= 1
            again = self._key(item) not in self._returned
            if again:
                self._returned.add(self._key(item))
                self._items.append(item)
            self._cv.notify_all()
            return again

    def stop(self) -> None:
        """Hand out nothing more (a connection hit an error that is not the provider's)."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def left(self) -> int:
        with self._cv:
            return len(self._items)
