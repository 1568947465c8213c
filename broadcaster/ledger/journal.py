"""An append-only JSON-lines file that survives the crash it is there for.

Each record is one line, written with a single ``write`` on an ``O_APPEND`` descriptor and
fsynced before :meth:`Journal.append` returns: once a caller goes on (say, to post to a
channel), the record is on disk. A crash in the middle of a write leaves at most one torn line
at the end, without its newline; that record never completed, so readers skip it and the next
append cuts it off first (else the next record would be glued to it).

:class:`~broadcaster.ledger.memory.MemoryLedger` journals every transaction here and can be
rebuilt from the file; break-glass keeps its notes (what was asked) in the same file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, LedgerUnavailable

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._checked_tail = False

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line and fsync it. Raises :class:`LedgerUnavailable` when the
        file cannot be written (a full disk): the caller must not act as if it were recorded."""
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self._checked_tail:
                self._cut_torn_tail()
                self._checked_tail = True
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"short write ({written} of {len(line)} bytes)")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise LedgerUnavailable(f"the journal {self.path} cannot be written ({exc})") from exc

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, in order. A torn last line is skipped; a bad line anywhere else
        means the file was damaged or edited, and is refused with its line number."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop()  # after the last newline: empty, or a record whose write never finished
        if torn.strip():
            log.warning("journal %s: skipping an incomplete last record (%d bytes): it was never finished",
                        self.path, len(torn))
        out = []
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                out.append(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise InvalidRequest(f"{self.path}: line {n} is not valid JSON (the file was damaged or edited)") \
                    from None
        return out

    def _cut_torn_tail(self) -> None:
        """Cut an unfinished last record (no newline) off before appending after it."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        with open(self.path, "rb+") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        log.warning("journal %s: cut off an incomplete last record (%d bytes)", self.path, len(data) - keep)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the journal for one process: a second writer would interleave its transactions
        with ours. Refuses at once (InvalidRequest) when another process holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InvalidRequest(f"the journal {self.path} is in use by another break-glass run; "
                                     "wait for it to finish") from None
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
