"""The canonical document: the one way the facts of an announcement or an update are written
down before they are signed.

A reader's post is one channel's rendering of these facts; the signature covers the facts, so
every channel can word, thread or link them its own way and still be checked against them. The
serialization is fixed forever for ``v: 1``: sorted keys, no spaces, NFC text with ``\\n`` line
ends, times as ISO strings with milliseconds, and no floats (their text form is not stable).
"""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

from ..models import Announcement, Message, Update

VERSION = 1
#: signed in front of every canonical text, so our signatures are never valid for anything else
DOMAIN = b"broadcaster-signed-v1\n"


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value.replace("\r\n", "\n"))
    if isinstance(value, dict):
        return {str(k): _nfc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nfc(v) for v in value]
    if isinstance(value, float):
        raise TypeError("floats are not allowed in a canonical document")
    return value


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def announcement_document(ann: Announcement) -> dict[str, Any]:
    variants = {ch: {k: v for k, v in sorted((w or {}).items()) if k in ("title", "body") and v is not None}
                for ch, w in sorted((ann.variants or {}).items())}
    return {
        "v": VERSION,
        "type": "announcement",
        "id": ann.id,
        "kind": ann.kind,
        "title": ann.title,
        "body": ann.body or "",
        "url": ann.url,
        "severity": ann.severity,
        "components": list(ann.components),
        "window": {"starts_at": iso(ann.window.starts_at), "ends_at": iso(ann.window.ends_at)} if ann.window else None,
        "variants": {ch: v for ch, v in variants.items() if v},
        "created_at": iso(ann.created_at),
    }


def update_document(upd: Update, ann: Announcement | None = None) -> dict[str, Any]:
    return {
        "v": VERSION,
        "type": "update",
        "id": upd.id,
        "announcement_id": upd.announcement_id,
        "status": upd.status,
        "title": upd.title or (ann.title if ann is not None else None),
        "body": upd.body or "",
        "created_at": iso(upd.created_at),
    }


def document_for(message: Message) -> dict[str, Any]:
    if message.update is not None:
        return update_document(message.update, message.announcement)
    return announcement_document(message.announcement)


def canonical(doc: dict[str, Any]) -> str:
    """The one serialization that is signed."""
    return json.dumps(_nfc(doc), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def signed_bytes(canonical_text: str) -> bytes:
    return DOMAIN + canonical_text.encode("utf-8")
