"""Web page sessions in the ledger: one row per signed-in browser.

The browser holds a random session secret; the ledger holds only its SHA-256 (like API tokens),
the name of the token it was exchanged for, and its clock: when it began, when it was last seen
(idle expiry) and when it ends regardless (absolute expiry). Signing out or revoking the token
sets ``revoked_at``. Rows past their end are deleted by :meth:`SessionStore.prune`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row

from . import schema as t

if TYPE_CHECKING:
    from .repository import Ledger


@dataclass(frozen=True)
class WebSession:
    id: str
    token_name: str
    created_at: float
    last_seen_at: float
    expires_at: float
    revoked_at: float | None

    def live(self, now: float, idle: float) -> bool:
        """Not revoked, not past its absolute end, and used within ``idle`` seconds."""
        return self.revoked_at is None and now < self.expires_at and now - self.last_seen_at < idle


def _session(row: Row) -> WebSession:
    return WebSession(row.id, row.token_name, row.created_at, row.last_seen_at, row.expires_at, row.revoked_at)


class SessionStore:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def create(self, session_id: str, secret_hash: str, token_name: str, *, now: float,
               expires_at: float) -> WebSession:
        with self.ledger.tx() as conn:
            conn.execute(insert(t.web_sessions).values(id=session_id, secret_hash=secret_hash, token_name=token_name,
                                                       created_at=now, last_seen_at=now, expires_at=expires_at))
        return WebSession(session_id, token_name, now, now, expires_at, None)

    def find(self, secret_hash: str) -> WebSession | None:
        """The session whose secret hashes to ``secret_hash`` (live or not), else None."""
        with self.ledger.read() as conn:
            row = conn.execute(select(t.web_sessions).where(t.web_sessions.c.secret_hash == secret_hash)).first()
        return _session(row) if row is not None else None

    def touch(self, session_id: str, now: float) -> None:
        s = t.web_sessions
        with self.ledger.tx() as conn:
            conn.execute(update(s).where(s.c.id == session_id, s.c.revoked_at.is_(None)).values(last_seen_at=now))

    def revoke(self, secret_hash: str, now: float) -> bool:
        """End one session (sign-out); False when there was no live row."""
        s = t.web_sessions
        with self.ledger.tx() as conn:
            return conn.execute(update(s).where(s.c.secret_hash == secret_hash, s.c.revoked_at.is_(None))
                                .values(revoked_at=now)).rowcount > 0

    def revoke_for_token(self, token_name: str, now: float) -> int:
        """End every session exchanged for the token ``token_name`` (it was revoked)."""
        s = t.web_sessions
        with self.ledger.tx() as conn:
            return conn.execute(update(s).where(s.c.token_name == token_name, s.c.revoked_at.is_(None))
                                .values(revoked_at=now)).rowcount

    def prune(self, now: float, idle: float) -> int:
        """Delete sessions that can never be used again: revoked, or past either expiry."""
        s = t.web_sessions
        with self.ledger.tx() as conn:
            return conn.execute(delete(s).where(s.c.revoked_at.is_not(None) | (s.c.expires_at <= now)
                                                | (s.c.last_seen_at <= now - idle))).rowcount
