"""API tokens in the ledger: every statement on the ``tokens`` table (only hashes are stored).

The rules — what a name may be, which kinds and channels exist, static tokens from the
configuration, constant-time comparison — live in ``broadcaster.tokens``; this module finds,
adds, touches and revokes rows, each change in one transaction with its audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import schema as t

if TYPE_CHECKING:
    from .repository import Ledger

_T = t.tokens


@dataclass(frozen=True)
class TokenRow:
    id: str
    name: str
    hash: str
    kinds: tuple[str, ...]
    channels: tuple[str, ...]
    admin: bool
    created_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> TokenRow:
        m = row._mapping
        return cls(id=m["id"], name=m["name"], hash=m["hash"], kinds=tuple(m["kinds"] or ()),
                   channels=tuple(m["channels"] or ()), admin=bool(m["admin"]), created_at=m["created_at"],
                   revoked_at=m["revoked_at"], last_used_at=m["last_used_at"])


class TokenRecords:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def by_hash(self, digest: str) -> TokenRow | None:
        """The token stored under ``digest`` (revoked or not), by an indexed equality."""
        with self.ledger.read() as conn:
            row = conn.execute(select(_T).where(_T.c.hash == digest)).first()
        return TokenRow.from_row(row) if row is not None else None

    def by_name(self, name: str) -> TokenRow | None:
        with self.ledger.read() as conn:
            row = conn.execute(select(_T).where(_T.c.name == name)).first()
        return TokenRow.from_row(row) if row is not None else None

    def all(self) -> list[TokenRow]:
        with self.ledger.read() as conn:
            rows = conn.execute(select(_T).order_by(_T.c.created_at, _T.c.name)).all()
        return [TokenRow.from_row(r) for r in rows]

    def touch(self, token_id: str, now: float) -> None:
        with self.ledger.tx() as conn:
            conn.execute(update(_T).where(_T.c.id == token_id).values(last_used_at=now))

    def add(self, *, token_id: str, name: str, digest: str, kinds: tuple[str, ...], channels: tuple[str, ...],
            admin: bool, now: float, actor: str) -> bool:
        """Store a new token (audited); False when the name is taken (revoked tokens keep theirs)."""
        try:
            with self.ledger.tx() as conn:
                conn.execute(insert(_T).values(id=token_id, name=name, hash=digest, kinds=list(kinds),
                                               channels=list(channels), admin=admin, created_at=now))
                self.ledger.audit(actor, "token.create", name,
                                  {"kinds": list(kinds), "channels": list(channels), "admin": admin}, conn)
        except IntegrityError:
            return False
        return True

    def revoke(self, name: str, *, now: float, actor: str) -> TokenRow | None:
        """Revoke the token called ``name`` (audited; a second revoke changes nothing). Returns
        the row as it was before, None when there is no such token."""
        with self.ledger.tx() as conn:
            row = conn.execute(select(_T).where(_T.c.name == name)).first()
            if row is None:
                return None
            if row.revoked_at is None:
                conn.execute(update(_T).where(_T.c.id == row.id).values(revoked_at=now))
                self.ledger.audit(actor, "token.revoke", name, {}, conn)
        return TokenRow.from_row(row)
