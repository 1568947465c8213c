"""After a revoke: our own announcements are signed again by the active key; nothing else is.

A revoked key may be in someone else's hands, so nothing it signed is trusted on its word any
more — ``verify`` and the verify page refuse every record it signed. Readers must still be able
to check what we really said, so when the status site is written again after a revoke
(``keys revoke``, ``keys publish``: ``republish.py``) each record a revoked key signed is signed
again, over the very same canonical text, with the active key — only when:

- its announcement is not retracted (a retracted one stays RETRACTED, whatever its key), and
- our ledger vouches for the text (``vouch``: the signed document is what the ledger holds for
  that announcement or update — see ``republish.py``).

Per announcement, all or nothing: one record the ledger does not vouch for leaves every record
of that announcement as it was, so it keeps failing as revoked. That is what happens to a text
that is not in the ledger (forged with the leaked key into the site's state — or a break-glass
post not reconciled yet: reconcile, then ``keys publish``) or differs from it.

A retired key (rotation) is not revoked: what it signed keeps verifying and is left alone.
A re-signed record says which key it replaces (``resigned``: ``{"from_key", "at"}``, not part of
what is signed), so ``verify`` can tell the reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

from .canonical import iso
from .keyring import KeyInfo

#: a document → its new signature record (``sign_document`` with the active key)
Sign = Callable[[dict[str, Any]], dict[str, Any]]
#: a signed document → None when the ledger holds exactly it, else why not
Vouch = Callable[[dict[str, Any]], str | None]


@dataclass
class Resigned:
    """What one republication did with the records of revoked keys."""

    key_id: str | None = None  # the key that signed again
    announcements: list[str] = field(default_factory=list)  # now carried by ``key_id``
    retracted: list[str] = field(default_factory=list)  # left as they are: still RETRACTED
    refused: dict[str, str] = field(default_factory=dict)  # announcement → why it stays revoked (fails)
    blocked: str | None = None  # why nothing could be signed again (no active key here, the ledger unreachable)
    waiting: list[str] = field(default_factory=list)  # what ``blocked`` left signed by a revoked key only

    def add(self, other: Resigned) -> None:
        """Another site's outcome (the same records when sites share a state; listed once)."""
        self.key_id = self.key_id or other.key_id
        self.blocked = self.blocked or other.blocked
        for mine, theirs in ((self.announcements, other.announcements), (self.retracted, other.retracted),
                             (self.waiting, other.waiting)):
            mine.extend(x for x in theirs if x not in mine)
        for ann_id, why in other.refused.items():
            self.refused.setdefault(ann_id, why)


def stale(signatures: dict[str, dict[str, Any]], keys: dict[str, KeyInfo]) -> dict[str, list[str]]:
    """Announcement → ids of its records signed by a revoked key (those only verify once signed again)."""
    out: dict[str, list[str]] = {}
    for ann_id, entries in signatures.items():
        if not isinstance(entries, dict):
            continue
        ids = [eid for eid, r in entries.items() if isinstance(r, dict)
               and (k := keys.get(str(r.get("key_id")))) is not None and k.status == "revoked"]
        if ids:
            out[ann_id] = ids
    return out


def resign(signatures: dict[str, dict[str, Any]], keys: dict[str, KeyInfo], *, retracted: Container[str],
           sign: Sign | None, key_id: str | None, vouch: Vouch | None, blocked: str | None, now: float) -> Resigned:
    """Sign again, in ``signatures`` (the status site's ``state["signatures"]``, changed in
    place), what revoked keys signed and may be signed again (see the module docstring)."""
    out = Resigned(key_id=key_id)
    todo = stale(signatures, keys)
    out.retracted = [a for a in todo if a in retracted]
    todo = {a: ids for a, ids in todo.items() if a not in retracted}
    if not todo:
        return out
    if sign is None or vouch is None or blocked:
        out.blocked, out.waiting = blocked or "nothing to sign with", list(todo)
        return out
    for ann_id, ids in todo.items():
        entries = signatures[ann_id]
        redone: dict[str, dict[str, Any]] = {}
        why: str | None = None
        for eid in ids:
            old = entries[eid]
            try:
                doc = json.loads(old["canonical"])
            except (KeyError, TypeError, ValueError):
                why = f"record {eid}: its signed text is not a document"
                break
            why = vouch(doc) if isinstance(doc, dict) else f"record {eid}: its signed text is not a document"
            if why:
                break
            new = sign(doc)
            if new["canonical"] != old["canonical"]:  # the text signed before was not canonical: not ours
                why = f"record {eid}: its signed text is not in canonical form"
                break
            redone[eid] = {**new, "resigned": {"from_key": old.get("key_id"), "at": iso(now)}}
        if why:
            out.refused[ann_id] = why
            continue
        entries.update(redone)
        out.announcements.append(ann_id)
    return out
