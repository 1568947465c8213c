"""Signed announcements: proof that a post claiming to be ours is ours.

Each announcement and each update has a *canonical document* — a small JSON object of the facts
a reader sees (id, kind, title, body, link, status, time, per-channel wording) serialized one way
only (sorted keys, no spaces, NFC text, times as ISO strings, no floats). We sign
``"broadcaster-signed-v1\\n" + canonical`` with Ed25519. The prefix keeps our signatures from
ever being valid for anything else that may be signed with the same key.

Keys live in ``signing.key_dir`` (never in the ledger): ``keyring.json`` lists every public key
with its id and status, and ``<id>.pem`` holds a private key (mode 0600). ``broadcaster keys
create`` adds a key and makes it the active one; the previous active key becomes ``retired`` —
it signs nothing new, but stays published on the status page, so everything it signed still
verifies. A ``revoked`` key (a leaked one) makes its signatures fail.

A signature record, as published at ``/.well-known/broadcaster/signatures/<announcement>.json``::

    {"v": 1, "type": "announcement" | "update", "id": ..., "announcement_id": ...,
     "canonical": "<the exact signed JSON text>", "alg": "Ed25519", "key_id": ..., "signature": "<base64url>"}

Everything here is pure except :class:`Keyring`'s file I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import render
from .models import Announcement, Message, Update

log = logging.getLogger(__name__)

ALG = "Ed25519"
VERSION = 1
DOMAIN = b"broadcaster-signed-v1\n"
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STATUSES = ("active", "retired", "revoked")
WELL_KNOWN = ".well-known/broadcaster"
VERIFY_PAGE = "verify.html"


class SigningError(Exception):
    """A key cannot be created, read or used (the message says which and why)."""


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class SigningConfig:
    """The ``signing:`` section (read duck-typed, so it works before and after config.py has it)."""

    key_dir: str = "var/keys"
    key_id: str | None = None  # sign with this key; default: the keyring's active key
    verify_url: str | None = None  # the status site's verify page; default: <statuspage site_url>/verify.html
    embed_link: bool = True  # add the short verification link to every post


def config_of(settings: Any) -> SigningConfig | None:
    """The signing settings, or None when signing is not configured."""
    raw = getattr(settings, "signing", None)
    if raw is None:
        return None
    if isinstance(raw, SigningConfig):
        return raw
    if isinstance(raw, dict):
        return SigningConfig(**raw)
    return SigningConfig(**{f: getattr(raw, f) for f in SigningConfig.__dataclass_fields__ if hasattr(raw, f)})


def _statuspage_site(settings: Any) -> str | None:
    for ch in (getattr(settings, "channels", None) or {}).values():
        if getattr(ch, "kind", None) == "statuspage" and getattr(ch, "enabled", True) and getattr(ch, "site_url", None):
            return ch.site_url.rstrip("/")
    return None


def verify_page_url(settings: Any) -> str | None:
    cfg = config_of(settings)
    if cfg is None:
        return None
    if cfg.verify_url:
        return cfg.verify_url
    site = _statuspage_site(settings)
    return f"{site}/{VERIFY_PAGE}" if site else None


def verification_url(settings: Any, announcement_id: str) -> str | None:
    """``https://status.example.com/verify.html?id=<id>`` — a query, not a fragment, so it has
    no character LinkedIn's little text reserves (``#``)."""
    page = verify_page_url(settings)
    if page is None:
        return None
    sep = "&" if "?" in page else "?"
    return f"{page}{sep}id={quote(announcement_id, safe='')}"


def verification_suffix(settings: Any, announcement_id: str) -> str | None:
    """What to append to a post's text (before length fitting), or None when signing is off or
    there is no public verify page to link to."""
    cfg = config_of(settings)
    if cfg is None or not cfg.embed_link:
        return None
    url = verification_url(settings, announcement_id)
    return f"\n\nVerify: {url}" if url else None


# ---------------------------------------------------------------- canonical documents


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
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


# ---------------------------------------------------------------- keys


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_b64: str) -> str:
    """A short, human-comparable fingerprint: SHA-256 of the raw key, first 16 bytes, hex pairs."""
    digest = hashlib.sha256(unb64u(public_b64)).hexdigest()[:32]
    return ":".join(digest[i:i + 4] for i in range(0, 32, 4))


@dataclass(frozen=True)
class KeyInfo:
    id: str
    public: str  # base64url of the raw 32-byte Ed25519 public key
    created_at: str
    status: str = "active"
    retired_at: str | None = None
    alg: str = ALG

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "alg": self.alg, "public": self.public, "fingerprint": fingerprint(self.public),
                "created_at": self.created_at, "status": self.status, "retired_at": self.retired_at}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeyInfo:
        status = d.get("status", "active")
        if status not in STATUSES:
            raise SigningError(f"key {d.get('id')!r}: unknown status {status!r}")
        if d.get("alg", ALG) != ALG:
            raise SigningError(f"key {d.get('id')!r}: unsupported algorithm {d.get('alg')!r}")
        return cls(id=str(d["id"]), public=str(d["public"]), created_at=str(d.get("created_at") or ""),
                   status=status, retired_at=d.get("retired_at"))

    def public_key(self) -> Ed25519PublicKey:
        try:
            return Ed25519PublicKey.from_public_bytes(unb64u(self.public))
        except ValueError as exc:
            raise SigningError(f"key {self.id!r}: the public key is not a valid Ed25519 key") from exc


def keys_from_json(data: Any) -> dict[str, KeyInfo]:
    """``keyring.json`` or the published ``keys.json`` → {id: KeyInfo}."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise SigningError("not a key list (expected {\"keys\": [...]})")
    return {k.id: k for k in (KeyInfo.from_dict(d) for d in data["keys"])}


def default_key_id(now: float | None = None) -> str:
    day = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).strftime("%Y%m%d")
    return f"k{day}-{secrets.token_hex(2)}"


class Keyring:
    """The key directory: ``keyring.json`` (public, publishable) and ``<id>.pem`` (private)."""

    def __init__(self, key_dir: str | os.PathLike):
        self.dir = Path(key_dir)

    @property
    def index_path(self) -> Path:
        return self.dir / "keyring.json"

    def private_path(self, key_id: str) -> Path:
        return self.dir / f"{key_id}.pem"

    def keys(self) -> dict[str, KeyInfo]:
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SigningError(f"{self.index_path}: unreadable ({type(exc).__name__})") from exc
        return keys_from_json(data)

    def _save(self, keys: Iterable[KeyInfo]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"version": VERSION, "keys": [k.to_dict() for k in keys]}, indent=1) + "\n"
        tmp = self.index_path.with_suffix(".json.tmp")
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, self.index_path)

    def active(self, key_id: str | None = None) -> KeyInfo:
        keys = self.keys()
        if key_id is not None:
            if key_id not in keys:
                raise SigningError(f"no key {key_id!r} in {self.index_path}")
            if keys[key_id].status == "revoked":
                raise SigningError(f"key {key_id!r} is revoked")
            return keys[key_id]
        actives = [k for k in keys.values() if k.status == "active"]
        if not actives:
            raise SigningError(f"no active signing key in {self.dir} (run `broadcaster keys create`)")
        return max(actives, key=lambda k: k.created_at)

    def create(self, key_id: str | None = None, *, now: float | None = None) -> KeyInfo:
        """A new active key; the previous active key becomes retired (still published and verifiable)."""
        now = time.time() if now is None else now
        key_id = key_id or default_key_id(now)
        if not KEY_ID_RE.match(key_id):
            raise SigningError(f"key id {key_id!r}: use letters, digits, '.', '_' and '-' (at most 64)")
        keys = self.keys()
        if key_id in keys or self.private_path(key_id).exists():
            raise SigningError(f"key {key_id!r} already exists; choose another id")
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.private_path(key_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        stamp = iso(now)
        info = KeyInfo(id=key_id, public=b64u(public_raw(private.public_key())), created_at=stamp)
        updated = [replace(k, status="retired", retired_at=stamp) if k.status == "active" else k for k in keys.values()]
        self._save([*updated, info])
        return info

    def set_status(self, key_id: str, status: str, *, now: float | None = None) -> KeyInfo:
        if status not in STATUSES:
            raise SigningError(f"unknown status {status!r}")
        keys = self.keys()
        if key_id not in keys:
            raise SigningError(f"no key {key_id!r} in {self.index_path}")
        keys[key_id] = replace(keys[key_id], status=status,
                               retired_at=keys[key_id].retired_at or (iso(time.time() if now is None else now)
                                                                      if status != "active" else None))
        self._save(keys.values())
        return keys[key_id]

    def private(self, key_id: str) -> Ed25519PrivateKey:
        path = self.private_path(key_id)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise SigningError(f"the private key of {key_id!r} is not on this machine ({path})") from None
        except (OSError, ValueError, TypeError) as exc:
            raise SigningError(f"{path}: not a readable private key ({type(exc).__name__})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningError(f"{path}: not an Ed25519 key")
        return key


# ---------------------------------------------------------------- sign and verify


def sign_document(doc: dict[str, Any], private: Ed25519PrivateKey, key_id: str) -> dict[str, Any]:
    """A signature record for ``doc``."""
    text = canonical(doc)
    record = {"v": VERSION, "type": doc["type"], "id": doc["id"],
              "announcement_id": doc.get("announcement_id", doc["id"]),
              "canonical": text, "alg": ALG, "key_id": key_id,
              "signature": b64u(private.sign(signed_bytes(text)))}
    return record


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
    if canonical(doc) != text:
        return Verdict(False, "the signed text is not in canonical form", key_id)
    for name in ("id", "type"):
        if name in record and record[name] != doc.get(name):
            return Verdict(False, f"the record's {name} differs from the signed document", key_id)
    return Verdict(True, f"valid signature by key {key_id!r} ({key.status})", key_id, doc)


def parse_signature_arg(value: str) -> tuple[str, str]:
    """``KEYID:SIGNATURE`` (as printed by the verify page and ``broadcaster verify``)."""
    key_id, sep, sig = value.partition(":")
    if not sep or not key_id or not sig:
        raise SigningError("a signature is written KEYID:SIGNATURE")
    return key_id, sig


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


# ---------------------------------------------------------------- pasted text against a signed document

_VERIFY_LINE = re.compile(r"(?im)^[^\S\n]*(verify[^\S\n]*:?[^\S\n]*)?\S*verify\.html\?id=\S*[^\S\n]*$")
_VERIFY_ANY = re.compile(r"(?i)(verify[^\S\n]*:?[^\S\n]*)?\S*verify\.html\?id=\S*")
_THREAD_MARK = re.compile(r"[^\S\n]\(\d{1,3}/\d{1,3}\)(?=\s|$)")
_STATUS_PREFIX = re.compile(r"^\s*\[[^\]\n]{1,20}\]\s*")
_ID_IN_LINK = re.compile(r"verify\.html\?id=([A-Za-z0-9_.%-]+)")


def id_from_text(text: str) -> str | None:
    """The announcement id from a pasted post's verification link."""
    from urllib.parse import unquote

    m = _ID_IN_LINK.search(text)
    return unquote(m.group(1)) if m else None


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def readable_texts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The texts a reader may have seen for ``doc`` (main wording and each variant), normalized:
    ``(with the link, without it)`` — updates and some channels leave the link out."""
    pairs = [(doc.get("title") or "", doc.get("body") or "")]
    pairs += [(v.get("title") or doc.get("title") or "", v["body"] if v.get("body") is not None else doc.get("body") or "")
              for v in (doc.get("variants") or {}).values()]
    out = []
    for title, body in pairs:
        text = normalize(f"{title}\n\n{render.markdown_to_text(body)}")
        out.append((normalize(f"{text} {doc['url']}") if doc.get("url") else text, text))
    return out


@dataclass(frozen=True)
class TextMatch:
    ok: bool
    complete: bool = False
    reason: str = ""


def match_text(pasted: str, docs: Iterable[dict[str, Any]]) -> TextMatch:
    """Does ``pasted`` (a post as a reader copied it) say what one of ``docs`` says?

    Decorations our channels add are ignored: the verification link, a ``[Status]`` prefix,
    thread numbering, an ellipsis where a channel truncated, whitespace and line breaks. What
    remains must appear, in order, in a signed text — one changed character fails.
    """
    text = _VERIFY_LINE.sub("", unicodedata.normalize("NFC", pasted))
    text = _VERIFY_ANY.sub(" ", text)
    text = _THREAD_MARK.sub(" ", text)
    text = _STATUS_PREFIX.sub("", text)
    segments = [s for s in (normalize(part) for part in text.split("…")) if s]
    if not segments:
        return TextMatch(False, reason="no text to compare")
    joined = " ".join(segments)
    for doc in docs:
        for full, short in readable_texts(doc):
            pos = 0
            for seg in segments:
                at = full.find(seg, pos)
                if at < 0:
                    break
                pos = at + len(seg)
            else:
                if joined in (full, short):
                    return TextMatch(True, True, "matches the signed text")
                return TextMatch(True, False, "matches part of the signed text (the post was shortened or split)")
    return TextMatch(False, reason="differs from every signed text of this announcement")


# ---------------------------------------------------------------- what the status site publishes


def keys_document(keys: Iterable[KeyInfo]) -> dict[str, Any]:
    return {"version": VERSION, "alg": ALG, "domain": DOMAIN.decode().strip(),
            "keys": [k.to_dict() for k in sorted(keys, key=lambda k: k.created_at)]}


def signatures_document(announcement_id: str, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    entries = sorted(records, key=lambda r: (r.get("type") != "announcement", json.loads(r["canonical"]).get("created_at") or "", r["id"]))
    return {"version": VERSION, "announcement_id": announcement_id, "entries": entries}
