"""Opening the ledger only to read it, for tools that must carry on without it (break-glass,
re-signing after a revoke): never created (a missing SQLite file is unreachable), never migrated,
and any failure to read it now is a reason, not an exception."""

from __future__ import annotations

from .engine import missing_sqlite_file
from .repository import Ledger
from .subscribers import SubscriberStore


def open_readable(url: str) -> tuple[Ledger | None, str]:
    """``(ledger, "")`` when the ledger at ``url`` can be read now, else ``(None, why not)``."""
    missing = missing_sqlite_file(url)
    if missing:
        return None, f"ledger unreachable (no file {missing})"
    ledger: Ledger | None = None
    try:
        ledger = Ledger.open(url, migrate_schema=False)
        SubscriberStore(ledger).page(limit=1)  # can it be read at all (its tables too)?
    except Exception as exc:  # noqa: BLE001 - any failure to read it means: not reachable now
        if ledger is not None:
            ledger.close()
        return None, f"ledger unreachable ({type(exc).__name__})"
    return ledger, ""
