"""Signature records: signing a canonical document, checking one, and the per-announcement file.

A record, as published at ``/.well-known/broadcaster/signatures/<announcement>.json``::

    {"v": 1, "type": "announcement" | "update", "id": ..., "announcement_id": ...,
     "canonical": "<the exact signed JSON text>", "alg": "Ed25519", "key_id": ..., "signature": "<base64url>"}

The file holds every record of one announcement (``entries``) plus what the site adds for
readers: ``verify_url`` (our verify link for it), per entry ``readable`` (the texts a genuine
post can have, see ``textmatch``) and, on an entry signed again after its key was revoked,
``resigned`` (``{"from_key", "at"}``, see ``resign``; not part of what is signed), and, once it
was retracted, ``retracted_at`` — after which nothing of it verifies.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..models import Message
from . import textmatch
from .canonical import VERSION, canonical, document_for, signed_bytes
from .keyring import ALG, KeyInfo, Keyring, SigningError, b64u, public_raw, unb64u
from .links import SigningConfig, config_of

log = logging.getLogger(__name__)


def sign_document(doc: dict[str, Any], private: Ed25519PrivateKey, key_id: str) -> dict[str, Any]:
    """A signature record for ``doc``."""
    text = canonical(doc)
    return {"v": VERSION, "type": doc["type"], "id": doc["id"],
            "announcement_id": doc.get("announcement_id", doc["id"]),
            "canonical": text, "alg": ALG, "key_id": key_id,
            "signature": b64u(private.sign(signed_bytes(text)))}


def verify_signature(canonical_text: str, signature: str, public: Ed25519PublicKey) -> bool:
    try:
        public.verify(unb64u(signature), signed_bytes(canonical_text))
        return True
    except (InvalidSignature, ValueError):
        return False


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    key_id: str | None = None
    document: dict[str, Any] | None = field(default=None, compare=False)


def verify_record(record: dict[str, Any], keys: dict[str, KeyInfo]) -> Verdict:
    """Is ``record`` signed by one of ``keys`` (not revoked), over exactly its canonical text?"""
    if not isinstance(record, dict):
        return Verdict(False, "not a signature record")
    key_id, sig, text = record.get("key_id"), record.get("signature"), record.get("canonical")
    if record.get("alg", ALG) != ALG or not isinstance(sig, str) or not isinstance(text, str):
        return Verdict(False, "incomplete or unsupported signature record", key_id)
    key = keys.get(str(key_id))
    if key is None:
        return Verdict(False, f"signed with unknown key {key_id!r}", key_id)
    if key.status == "revoked":
        return Verdict(False, f"key {key_id!r} has been revoked", key_id)
    if not verify_signature(text, sig, key.public_key()):
        return Verdict(False, "the signature does not match the text", key_id)
    try:
        doc = json.loads(text)
    except ValueError:
        return Verdict(False, "the signed text is not a document", key_id)
    if not isinstance(doc, dict) or canonical(doc) != text:
        return Verdict(False, "the signed text is not in canonical form", key_id)
    for name in ("id", "type"):
        if name in record and record[name] != doc.get(name):
            return Verdict(False, f"the record's {name} differs from the signed document", key_id)
    return Verdict(True, f"signed by key {key_id!r} ({key.status})", key_id, doc)


def parse_signature_arg(value: str) -> tuple[str, str]:
    """``KEYID:SIGNATURE`` (as printed by the verify page and ``broadcaster verify``)."""
    key_id, sep, sig = value.partition(":")
    if not sep or not key_id or not sig:
        raise SigningError("a signature is written KEYID:SIGNATURE")
    return key_id, sig


def signatures_document(announcement_id: str, records: Iterable[dict[str, Any]], *, verify_page: str | None = None,
                        retracted_at: str | None = None) -> dict[str, Any]:
    """The published file of one announcement (see the module docstring)."""
    entries = sorted(records, key=lambda r: (r.get("type") != "announcement",
                                             json.loads(r["canonical"]).get("created_at") or "", r["id"]))
    docs = [json.loads(r["canonical"]) for r in entries]
    readable = textmatch.readable_texts(docs, verify_page)
    out: dict[str, Any] = {"version": VERSION, "announcement_id": announcement_id}
    if retracted_at:
        out["retracted_at"] = retracted_at
    if verify_page:
        out["verify_url"] = verify_page
    out["entries"] = [{**r, "readable": [text for entry, text in readable if entry == r["id"]]} for r in entries]
    return out


# ---------------------------------------------------------------- signing inside the engine

_cache_lock = threading.Lock()
_cache: dict[tuple[str, str | None], tuple[tuple[int, int, int], KeyInfo, Ed25519PrivateKey]] = {}


def _signer(cfg: SigningConfig) -> tuple[KeyInfo, Ed25519PrivateKey]:
    ring = Keyring(cfg.key_dir)
    try:
        st = ring.index_path.stat()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError as exc:
        raise SigningError(f"no keyring in {cfg.key_dir} (run `broadcaster keys create`)") from exc
    cache_key = (str(ring.dir.resolve()), cfg.key_id)
    with _cache_lock:
        hit = _cache.get(cache_key)
        if hit and hit[0] == stamp:
            return hit[1], hit[2]
    info = ring.active(cfg.key_id)
    private = ring.private(info.id)
    if b64u(public_raw(private.public_key())) != info.public:
        raise SigningError(f"the private key file of {info.id!r} does not match its public key")
    with _cache_lock:
        _cache[cache_key] = (stamp, info, private)
    return info, private


def sign_message(settings: Any, message: Message) -> dict[str, Any] | None:
    """The signature record of what ``message`` announces, or None when signing is off. A key
    problem is logged and yields None: a missing signature must never stop an incident post."""
    cfg = config_of(settings)
    if cfg is None:
        return None
    try:
        info, private = _signer(cfg)
        return sign_document(document_for(message), private, info.id)
    except SigningError as exc:
        log.warning("announcement %s not signed: %s", message.announcement.id, exc)
        return None


def signing_problem(settings: Any) -> str | None:
    """Why this process cannot sign now (no keyring, no active key, its private key not here),
    or None when it can — or when signing is off. For tools that must say so up front
    (break-glass): the engine itself only logs it."""
    cfg = config_of(settings)
    if cfg is None:
        return None
    try:
        _signer(cfg)
    except SigningError as exc:
        return str(exc)
    return None


def active_signer(settings: Any) -> tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    """The active key's id and a function that signs a document with it (re-signing after a
    revoke, ``resign.py``). SigningError when signing is off or this process cannot sign."""
    cfg = config_of(settings)
    if cfg is None:
        raise SigningError("signing is not configured (no `signing:` section)")
    info, private = _signer(cfg)
    return info.id, lambda doc: sign_document(doc, private, info.id)
