"""Signed announcements: proof that a post claiming to be ours is ours.

Read in this order — each module is one idea:

- ``canonical`` — the facts of an announcement or update as one fixed JSON text; we sign
  ``"broadcaster-signed-v1\\n" + canonical`` with Ed25519 (the prefix keeps our signatures
  from ever being valid for anything else signed with the same key);
- ``keyring`` — our keys (``signing.key_dir``: ``keyring.json`` + private ``<id>.pem``), their
  status (active, retired, revoked) and the public list the status site publishes;
- ``records`` — signing a document, checking a record against the keys, the file of records
  published per announcement, and signing inside the engine (never blocks a post);
- ``resign`` — after a revoke, what the active key signs again (our ledger's own texts) and
  what stays refused;
- ``links`` — the ``signing:`` settings and the one official ``Verify:`` link;
- ``textmatch`` — whether a pasted post is exactly a genuine rendering of what was signed.

``broadcaster verify`` (``cli/keys.py``) and the status site's verify page (``official.py``,
``verify.js``) put these together: genuine only for a complete match of what was signed by a key
that is not revoked, for an announcement that was not retracted.
"""

from __future__ import annotations

from .canonical import (
    DOMAIN,
    VERSION,
    announcement_document,
    canonical,
    document_for,
    iso,
    signed_bytes,
    update_document,
)
from .keyring import (
    ALG,
    KEY_ID_RE,
    STATUSES,
    KeyInfo,
    Keyring,
    SigningError,
    b64u,
    default_key_id,
    fingerprint,
    keys_document,
    keys_from_json,
    public_raw,
    unb64u,
)
from .links import (
    VERIFY_PAGE,
    WELL_KNOWN,
    SigningConfig,
    config_of,
    id_from_text,
    link_for,
    verification_suffix,
    verification_url,
    verify_page_url,
)
from .records import (
    Verdict,
    active_signer,
    parse_signature_arg,
    sign_document,
    sign_message,
    signatures_document,
    signing_problem,
    verify_record,
    verify_signature,
)
from .textmatch import TextMatch, compare, match_text, normalize, readable_texts

__all__ = [
    "ALG", "DOMAIN", "KEY_ID_RE", "STATUSES", "VERIFY_PAGE", "VERSION", "WELL_KNOWN",
    "KeyInfo", "Keyring", "SigningConfig", "SigningError", "TextMatch", "Verdict",
    "active_signer", "announcement_document", "b64u", "canonical", "compare", "config_of", "default_key_id", "document_for",
    "fingerprint", "id_from_text", "iso", "keys_document", "keys_from_json", "link_for", "match_text", "normalize",
    "parse_signature_arg", "public_raw", "readable_texts", "sign_document", "sign_message", "signatures_document",
    "signed_bytes", "signing_problem", "unb64u", "update_document", "verification_suffix", "verification_url", "verify_page_url",
    "verify_record", "verify_signature",
]
