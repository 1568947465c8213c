"""Ids of ledger rows, and the name a worker's leases carry."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time

_id_lock = threading.Lock()
_id_last = [0, 0]  # (millisecond, sequence within it) of the last id made in this process


def new_id(prefix: str) -> str:
    """Short, time-sortable ids: ``dlv_18c2f0a1b2c0001a3f9c2e1``. Within one process they are
    strictly increasing, so rows written together (an announcement's deliveries, in route
    order) list in the order they were made; the random tail keeps processes apart."""
    ms = int(time.time() * 1000)
    with _id_lock:
        if ms <= _id_last[0]:
            ms, seq = _id_last[0], _id_last[1] + 1
            if seq > 0xFFFF:  # 65,536 ids in one millisecond: borrow the next one
                ms, seq = ms + 1, 0
        else:
            seq = 0
        _id_last[:] = [ms, seq]
    return f"{prefix}_{ms:x}{seq:04x}{secrets.token_hex(4)}"


def default_owner() -> str:
    """This worker thread, as lease owner: host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"
