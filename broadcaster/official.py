"""Where we post, published where people can check it: the official-channel list.

During an outage people look for news anywhere, and look-alike accounts post fake "updates".
The status site therefore publishes, from the configuration:

- ``/.well-known/broadcaster/channels.json`` — machine-readable: every enabled *public* channel
  with its kind, handle and page URL, and each e-mail channel's From address;
- ``/where-we-post.html`` — the same for people;
- ``/.well-known/broadcaster/keys.json`` — the public keys that sign our announcements (every key,
  retired ones included, so old signatures keep verifying);
- ``/.well-known/broadcaster/signatures/<announcement>.json`` — the signature records;
- ``/verify.html`` — checks a pasted post or an announcement id in the browser (``signing/verify.js``).

Private destinations (chat webhooks, Apprise URLs) are never listed: their URLs are credentials.
A channel can be hidden, relabelled or given its public URL/handle with the optional
``official:`` section (see :class:`OfficialConfig`). Everything here is pure: it returns bytes
by relative path and the status page channel writes them with the rest of the site.
"""

from __future__ import annotations

import dataclasses
import email.utils
import html
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from . import signing

SCHEMA_VERSION = 1
CHANNELS_PATH = f"{signing.WELL_KNOWN}/channels.json"
KEYS_PATH = f"{signing.WELL_KNOWN}/keys.json"
SIGNATURES_DIR = f"{signing.WELL_KNOWN}/signatures"
WHERE_PAGE = "where-we-post.html"
#: kinds that post to places only we and our team read, or whose URL is a secret
PRIVATE_KINDS = frozenset({"webhook", "apprise", "matrix", "twilio_sms", "google_chat", "mattermost"})
KIND_LABELS = {"mastodon": "Mastodon", "bluesky": "Bluesky", "x": "X", "facebook": "Facebook", "linkedin": "LinkedIn",
               "email": "E-mail", "statuspage": "Status page", "atlassian_statuspage": "Status page",
               "cachet": "Status page"}


# ---------------------------------------------------------------- optional settings (duck-typed)


@dataclass(frozen=True)
class ListingOverride:
    label: str | None = None
    handle: str | None = None
    url: str | None = None
    hide: bool = False


@dataclass(frozen=True)
class ExtraListing:
    label: str
    kind: str = "other"
    handle: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class OfficialConfig:
    organization: str | None = None
    channels: dict[str, ListingOverride] = field(default_factory=dict)
    extra: tuple[ExtraListing, ...] = ()


def _obj(value: Any, cls: type) -> Any:
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**value)
    return cls(**{f.name: getattr(value, f.name) for f in dataclasses.fields(cls) if hasattr(value, f.name)})


def config_of(settings: Any) -> OfficialConfig:
    raw = getattr(settings, "official", None)
    if raw is None:
        return OfficialConfig()
    get = raw.get if isinstance(raw, dict) else (lambda k, d=None: getattr(raw, k, d))
    return OfficialConfig(
        organization=get("organization"),
        channels={name: _obj(v, ListingOverride) for name, v in (get("channels") or {}).items()},
        extra=tuple(_obj(e, ExtraListing) for e in (get("extra") or ())),
    )


# ---------------------------------------------------------------- the list


def _derive(kind: str, ch: Any) -> dict[str, Any]:
    """What the channel's own settings tell about its public presence."""
    def get(name: str) -> Any:
        return getattr(ch, name, None)

    if kind == "bluesky" and get("handle"):
        web = (get("web_url") or "https://bsky.app").rstrip("/")
        return {"handle": f"@{get('handle')}", "url": f"{web}/profile/{get('handle')}"}
    if kind == "x" and get("username"):
        return {"handle": f"@{get('username')}", "url": f"https://x.com/{get('username')}"}
    if kind == "facebook" and get("page_id"):
        return {"url": f"{(get('web_url') or 'https://www.facebook.com').rstrip('/')}/{get('page_id')}"}
    if kind == "linkedin" and get("organization"):
        web = (get("web_url") or "https://www.linkedin.com").rstrip("/")
        return {"url": get("page_url") or f"{web}/company/{get('organization')}/"}
    if kind == "mastodon" and get("base_url"):
        return {"instance": get("base_url").rstrip("/")}
    if kind == "email" and get("from_address"):
        name, addr = email.utils.parseaddr(get("from_address"))
        return {"from": addr, "from_name": name or None}
    if kind == "statuspage" and get("site_url"):
        return {"url": get("site_url").rstrip("/") + "/"}
    if kind == "telegram" and str(get("chat_id") or "").startswith("@"):
        return {"handle": get("chat_id"), "url": f"https://t.me/{get('chat_id')[1:]}"}
    return {}


def channel_list(settings: Any, *, now: float | None = None) -> dict[str, Any]:
    """The machine-readable official-channel list (``channels.json``)."""
    cfg = config_of(settings)
    out = []
    for name, ch in (getattr(settings, "channels", None) or {}).items():
        kind = getattr(ch, "kind", None)
        if not kind or kind in PRIVATE_KINDS or not getattr(ch, "enabled", True):
            continue
        over = cfg.channels.get(name) or ListingOverride()
        if over.hide:
            continue
        entry: dict[str, Any] = {"name": name, "kind": kind, "label": over.label or getattr(ch, "description", None)
                                 or KIND_LABELS.get(kind, kind)}
        entry.update({k: v for k, v in _derive(kind, ch).items() if v is not None})
        if over.handle:
            entry["handle"] = over.handle
        if over.url:
            entry["url"] = over.url
        if kind == "mastodon" and "handle" in entry and "url" not in entry and entry.get("instance"):
            user = entry["handle"].lstrip("@").split("@")[0]
            entry["url"] = f"{entry['instance']}/@{user}"
        out.append(entry)
    for extra in cfg.extra:
        out.append({k: v for k, v in {"name": None, "kind": extra.kind, "label": extra.label, "handle": extra.handle,
                                      "url": extra.url}.items() if v is not None})
    doc: dict[str, Any] = {"version": SCHEMA_VERSION, "organization": cfg.organization, "channels": out,
                           "keys": KEYS_PATH, "verify": signing.VERIFY_PAGE}
    if now is not None:
        doc["generated_at"] = signing.iso(now)
    public = getattr(settings, "public_url", None)
    if public:
        doc["public_url"] = public
    return doc


def validate_channel_list(doc: Any) -> list[str]:
    """Problems with a ``channels.json`` document (empty when it is well-formed)."""
    problems = []
    if not isinstance(doc, dict) or doc.get("version") != SCHEMA_VERSION or not isinstance(doc.get("channels"), list):
        return ["not a version-1 channel list with a 'channels' array"]
    for i, entry in enumerate(doc["channels"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str) or not entry.get("label"):
            problems.append(f"channels[{i}]: needs kind and label")
            continue
        for key in ("url",):
            if key in entry and not str(entry[key]).startswith(("https://", "http://")):
                problems.append(f"channels[{i}].{key}: not an http(s) URL")
        if entry["kind"] == "email" and "@" not in str(entry.get("from", "")):
            problems.append(f"channels[{i}].from: not an e-mail address")
    return problems


# ---------------------------------------------------------------- pages

_STYLE = ("body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}"
          "li{margin:.4rem 0}code{background:#f4f4f4;padding:0 .2rem}.ok{color:#2e7d32}.bad{color:#c62828}"
          "textarea{width:100%;min-height:8rem}pre{white-space:pre-wrap;background:#f7f7f7;padding:.6rem}")


def _page(title: str, body: str) -> bytes:
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            f"<p><a href=\"index.html\">← Status</a></p>\n{body}\n</body></html>\n").encode()


def where_we_post_page(doc: dict[str, Any], title: str = "Where we post") -> bytes:
    """The human page: every official place, with ``rel="me"`` on profile links (Mastodon shows
    a profile link as verified when that profile links back here)."""
    items = []
    for entry in doc["channels"]:
        label = html.escape(entry["label"])
        bits = []
        if entry.get("handle"):
            bits.append(f"<code>{html.escape(entry['handle'])}</code>")
        if entry.get("url"):
            url = html.escape(entry["url"], quote=True)
            rel = ' rel="me"' if entry["kind"] in ("mastodon", "bluesky", "x", "facebook", "linkedin") else ""
            bits.append(f'<a href="{url}"{rel}>{html.escape(entry["url"])}</a>')
        if entry.get("from"):
            bits.append(f"e-mail from <code>{html.escape(entry['from'])}</code>")
        items.append(f"<li><strong>{label}</strong>: {' · '.join(bits) or 'no public address'}</li>")
    org = html.escape(doc.get("organization") or "We")
    body = (f"<h1>{html.escape(title)}</h1>\n<p>{org} post announcements only in these places. "
            "Anything else claiming to speak for us — a look-alike account, a different e-mail sender — "
            "is not us.</p>\n"
            f"<ul>\n{''.join(items)}\n</ul>\n"
            "<p>Every post carries a <em>Verify</em> link. To check a post, open it, or paste the post on "
            f'<a href="{signing.VERIFY_PAGE}">the verify page</a>. The machine-readable list is '
            f'<a href="{CHANNELS_PATH}">{CHANNELS_PATH}</a>; our signing keys are at '
            f'<a href="{KEYS_PATH}">{KEYS_PATH}</a>.</p>')
    return _page(title, body)


def verify_script() -> str:
    """The verify page's script (``signing/verify.js``: the JavaScript twin of ``signing.textmatch``)."""
    return resources.files("broadcaster.signing").joinpath("verify.js").read_text(encoding="utf-8")


def verify_page(title: str = "Verify an announcement") -> bytes:
    body = (f"<h1>{html.escape(title)}</h1>\n<p>Paste a post you saw, whole — from its first word to its "
            "<em>Verify</em> link (which finds the announcement) — or give the announcement id. For a thread, paste "
            "every part in order, each with its (1/3) marker. Only an exact, complete copy of what we signed is "
            "shown as genuine. The check runs in your browser against our published public keys.</p>\n"
            '<form id="f"><p><label>Announcement id<br><input id="id" size="40" autocomplete="off"></label></p>'
            '<p><label>Post text<br><textarea id="text"></textarea></label></p><p><button>Verify</button></p></form>\n'
            '<div id="out" aria-live="polite"></div>\n'
            "<noscript><p>This page needs JavaScript; or run <code>broadcaster verify</code>.</p></noscript>\n"
            f"<script>{verify_script()}</script>")
    return _page(title, body)


# ---------------------------------------------------------------- every file, for the status site


def _dump(data: Any) -> bytes:
    text = json.dumps(data, ensure_ascii=False, indent=1)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n").encode()


def signature_records(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Signature records kept in the status page state: ``state["signatures"][ann_id][entry_id]``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for ann_id, entries in (state.get("signatures") or {}).items():
        if isinstance(entries, dict) and entries:
            out[ann_id] = [e for e in entries.values() if isinstance(e, dict) and "canonical" in e]
    return out


def remember_signature(state: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
    """Store ``record`` in the status page ``state`` (in place; returns it). Idempotent."""
    if record:
        state.setdefault("signatures", {}).setdefault(record["announcement_id"], {})[record["id"]] = record
    return state


def mark_retracted(state: dict[str, Any], announcement_id: str | None, now: float) -> dict[str, Any]:
    """Record in the status page ``state`` (in place; returns it) that ``announcement_id`` was
    retracted: its signature file then says so, and nothing of it verifies any more."""
    if announcement_id:
        state.setdefault("retracted", {}).setdefault(announcement_id, signing.iso(now))
    return state


def site_files(settings: Any, state: dict[str, Any] | None = None, *, keys: Iterable[signing.KeyInfo] | None = None,
               now: float | None = None) -> dict[str, bytes]:
    """Every trust file of the status site, by relative path. ``keys`` default to the keyring in
    ``signing.key_dir`` (public parts only; a missing keyring publishes no key files)."""
    doc = channel_list(settings, now=now)
    files = {CHANNELS_PATH: _dump(doc), WHERE_PAGE: where_we_post_page(doc)}
    cfg = signing.config_of(settings)
    if keys is None and cfg is not None:
        try:
            keys = signing.Keyring(cfg.key_dir).keys().values()
        except signing.SigningError:
            keys = None
    if cfg is not None or keys:
        files[KEYS_PATH] = _dump(signing.keys_document(keys or ()))
        files[signing.VERIFY_PAGE] = verify_page()
    retracted = (state or {}).get("retracted") or {}
    page = signing.verify_page_url(settings)
    for ann_id, records in signature_records(state or {}).items():
        if signing.KEY_ID_RE.match(ann_id):  # ids are path-safe; anything else is not published
            sigs = signing.signatures_document(ann_id, records, verify_page=page, retracted_at=retracted.get(ann_id))
            files[f"{SIGNATURES_DIR}/{ann_id}.json"] = _dump(sigs)
    return files
