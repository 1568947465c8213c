"""Signing keys: the key directory on our side, the public key list readers check against.

``signing.key_dir`` holds ``keyring.json`` (every public key with its id and status — the file
that is published) and ``<id>.pem`` (a private key, mode 0600). It is never in the ledger.
``create`` adds a key and makes it the active one; the previous active key becomes ``retired``:
it signs nothing new but stays published, so everything it signed still verifies. A
``revoked`` key (a leaked one) makes every signature it made fail — which only protects readers
once the revised list is published (``broadcaster keys revoke`` does that at once, and signs our
own announcements again with the active key: ``resign.py``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import DOMAIN, VERSION, iso

ALG = "Ed25519"
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STATUSES = ("active", "retired", "revoked")


class SigningError(Exception):
    """A key cannot be created, read or used (the message says which and why)."""


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


def keys_document(keys: Iterable[KeyInfo]) -> dict[str, Any]:
    """The public key list as the status site publishes it (``keys.json``)."""
    return {"version": VERSION, "alg": ALG, "domain": DOMAIN.decode().strip(),
            "keys": [k.to_dict() for k in sorted(keys, key=lambda k: k.created_at)]}


def default_key_id(now: float | None = None) -> str:
    day = datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y%m%d")
    return f"k{day}-{secrets.token_hex(2)}"


class Keyring:
    """The key directory: ``keyring.json`` (public, publishable) and ``<id>.pem`` (private)."""

    def __init__(self, key_dir: str | os.PathLike[str]):
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
        stamp = iso(now) or ""
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
        stamp = iso(time.time() if now is None else now) if status != "active" else None
        keys[key_id] = replace(keys[key_id], status=status, retired_at=keys[key_id].retired_at or stamp)
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
