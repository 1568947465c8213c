"""Several pipelining SMTP connections driven by one thread, in rounds.

Why: with a thread per connection (:mod:`._lanes`), every message costs thread wake-ups — its
durable mark is written by the writer thread while the connection's thread waits — and a contest
for the interpreter lock; against a fast relay that costs more CPU than the SMTP exchange itself.
A server that offers PIPELINING (RFC 2920) lets one thread keep N connections busy instead. Each
round:

1. **read** every connection's answers: to the body it sent, and to the envelope (MAIL, RCPT,
   DATA) of the address after it;
2. **write** what they say — the outcomes, and a ``sending`` mark for each address whose
   envelope was accepted — in ONE durable write;
3. **send** on every connection the body of its accepted address (its ``sending`` mark and the
   same connection's previous outcome are now durable) together with the envelope of the next
   address, in one write.

So the promise is the one of the threaded lanes: a body goes out only after its ``sending`` mark
and its connection's previous outcome are durable — each connection has at most one address in
flight, and a crash leaves at most one uncertain address per connection. A round costs one
ledger write, one socket write and one or two reads per connection, and no thread wake-ups.

The error rules are the threaded lanes' too: a connection that cannot open, or is lost before a
body, ends; the address it could not hand over goes to the other connections (once). A connection
lost after a body leaves that address ``sending`` and reconnects; an address whose envelope was
sent behind that body was certainly not delivered and goes back to the front of the list.
"""

from __future__ import annotations

import collections
import select
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AmbiguousDelivery, DeliveryError, TransientError
from . import _lanes, _mail
from .base import Progress

if TYPE_CHECKING:
    from .email import SmtpSender

Entry = tuple[str, str, str | None]  # (item, address, unsubscribe URL)


@dataclass
class _Conn:
    """One connection and the addresses it has in hand, at most one in each stage."""

    sender: SmtpSender | None = None
    used: int = 0  # messages started since it was opened
    body: Entry | None = None  # body sent, answer not read
    envelope: Entry | None = None  # pipelined envelope sent, answers not read
    accepted: Entry | None = None  # envelope accepted: ``sending`` goes in this round's write
    error: DeliveryError | None = None  # ended

    def idle(self) -> bool:
        return self.body is None and self.envelope is None and self.accepted is None


class Rounds:
    """One pass of a mailing over ``connections`` connections (the first already open)."""

    def __init__(self, *, todo: list[Entry], progress: Progress, template: _mail.Template, first: SmtpSender,
                 connections: int, open_sender: Callable[[], SmtpSender], batch_size: int, name: str,
                 timeout: float):
        self.queue: collections.deque[Entry] = collections.deque(todo)
        self.given_back: set[str] = set()
        self.progress = progress
        self.template = template
        self.open_sender = open_sender
        self.batch_size = batch_size
        self.name = name
        self.timeout = timeout
        self.conns = [_Conn(first)] + [_Conn() for _ in range(connections - 1)]
        self.outcomes: list[_lanes.Mark] = []  # read, not yet written
        self.accepted = 0

    def run(self) -> tuple[int, list[DeliveryError]]:
        """Send until nothing is left (or no connection is); returns (accepted, errors)."""
        with _lanes.pinned(self.progress):
            return self._run()

    def _run(self) -> tuple[int, list[DeliveryError]]:
        try:
            while True:
                live = [c for c in self.conns if c.error is None]
                for conn in self._answering([c for c in live if c.body is not None or c.envelope is not None]):
                    self._read(conn)
                self._write_marks([c.accepted for c in live if c.accepted is not None])
                for conn in live:
                    if conn.error is None:
                        self._send(conn)
                if all(c.idle() for c in self.conns) and (not self.queue or all(c.error for c in self.conns)):
                    break
        finally:
            try:
                if self.outcomes:  # read when the pass stopped, like the threaded lanes' last held outcome
                    self._write_marks([])
            finally:
                for conn in self.conns:
                    if conn.sender is not None:
                        conn.sender.close()
        return self.accepted, [c.error for c in self.conns if c.error is not None]

    def left(self) -> int:
        return len(self.queue)

    def _answering(self, waiting: list[_Conn]) -> list[_Conn]:
        """The connections among ``waiting`` whose answers have begun to arrive — so one slow
        answer does not hold up the others (a connection whose body waits for its answer still
        lets the others be read, marked and sent). Nothing within the SMTP timeout: all of them,
        each read then waiting up to its own socket timeout. A connection without a socket (a
        scripted one in tests) counts as answering: its reads do not block."""
        if not waiting:
            return []
        by_fd: dict[int, _Conn] = {}
        poller = select.poll()  # not select(): no limit on descriptor numbers in a busy worker
        for conn in waiting:
            sock = getattr(getattr(conn.sender, "conn", None), "sock", None)
            if not isinstance(sock, socket.socket):
                return waiting
            if isinstance(sock, ssl.SSLSocket) and sock.pending():  # decrypted already, poll would not see it
                return [conn]
            by_fd[sock.fileno()] = conn
            poller.register(sock, select.POLLIN)
        ready = poller.poll(self.timeout * 1000)  # readable, or hung up / failed: the read says which
        return [by_fd[fd] for fd, _ in ready] or waiting

    # ------------------------------------------------------------ the three steps

    def _read(self, conn: _Conn) -> None:
        sender = conn.sender
        if conn.body is not None:
            entry, conn.body = conn.body, None
            try:
                outcome, detail = sender.read_body()  # type: ignore[union-attr]
            except AmbiguousDelivery:  # lost after the body: it stays `sending`; a new connection goes on
                self._unsent(conn)
                conn.sender = None
                return
            except DeliveryError as exc:  # 421: not accepted, and the server hangs up
                self._failed(conn, entry, exc)
                self._unsent(conn)
                return
            state = {"done": "done", "refused": "refused"}.get(outcome, "failed")
            self.outcomes.append(([entry[0]], state, detail))
            self.accepted += state == "done"
        if conn.envelope is not None:
            entry, conn.envelope = conn.envelope, None
            try:
                refused = sender.read_envelope()  # type: ignore[union-attr]
            except DeliveryError as exc:
                self._failed(conn, entry, exc)
                return
            self._answered(conn, entry, refused)

    def _write_marks(self, sending: list[Entry]) -> None:
        marks = self.outcomes + [([entry[0]], "sending", None) for entry in sending]
        self.outcomes = []  # cleared first: a failed write is not tried again
        if marks:
            _lanes.write_marks(self.progress, marks)

    def _send(self, conn: _Conn) -> None:
        if conn.accepted is not None:
            entry, conn.accepted = conn.accepted, None
            nxt, rcpt = self._next_pipelined(conn)
            sender: Any = conn.sender
            try:
                sender.send_body(self.template.payload(entry[1], entry[2]),
                                 sender.envelope_bytes(rcpt) if nxt is not None else b"")
            except AmbiguousDelivery:  # it stays `sending`; the next one certainly did not go
                if nxt is not None:
                    self.queue.appendleft(nxt)
                conn.sender = None
                return
            conn.body, conn.envelope = entry, nxt
            return
        if conn.idle() and self.queue:
            self._start(conn)

    # ------------------------------------------------------------ helpers

    def _next_pipelined(self, conn: _Conn) -> tuple[Entry | None, str]:
        """The next address, when its envelope can follow this body in the same write."""
        if not self.queue or conn.used >= self.batch_size:
            return None, ""
        rcpt = conn.sender.pipelined_rcpt(self.queue[0][1])  # type: ignore[union-attr]
        if rcpt is None:
            return None, ""
        conn.used += 1
        return self.queue.popleft(), rcpt

    def _start(self, conn: _Conn) -> None:
        """An idle connection takes the next address: (re)opened when needed, then its envelope."""
        if conn.sender is None or conn.sender.conn is None or conn.used >= self.batch_size:
            if conn.sender is not None:
                conn.sender.close()
            conn.sender, conn.used = None, 0
            try:
                conn.sender = self.open_sender()
            except DeliveryError as exc:
                conn.error = exc
                return
        sender = conn.sender
        entry = self.queue.popleft()
        conn.used += 1
        rcpt = sender.pipelined_rcpt(entry[1])
        try:
            if rcpt is not None:
                sender.send_envelope(rcpt)
                conn.envelope = entry
                return
            refused = sender.envelope(entry[1])  # one command at a time (an address that is not plain)
        except DeliveryError as exc:
            self._failed(conn, entry, exc)
            return
        self._answered(conn, entry, refused)

    def _answered(self, conn: _Conn, entry: Entry, refused: tuple[str, str | None] | None) -> None:
        if refused is None:
            conn.accepted = entry
            return
        outcome, detail = refused
        self.outcomes.append(([entry[0]], {"refused": "refused"}.get(outcome, "failed"), detail))
        if conn.sender is None or conn.sender.conn is None:  # dropped without ambiguity: this one ends
            conn.error = TransientError(f"{self.name}: connection closed by the server")

    def _failed(self, conn: _Conn, entry: Entry, exc: DeliveryError) -> None:
        """``entry`` certainly did not go: marked failed, given to another connection (once);
        this connection ends."""
        self.outcomes.append(([entry[0]], "failed", str(exc)[:200]))
        if entry[0] not in self.given_back:
            self.given_back.add(entry[0])
            self.queue.append(entry)
        conn.error = exc

    def _unsent(self, conn: _Conn) -> None:
        """The envelope written behind a lost body: its address was never handed over."""
        if conn.envelope is not None:
            self.queue.appendleft(conn.envelope)
            conn.envelope = None
