"""Signing keys and verification: ``broadcaster keys create|list|revoke|publish`` and ``broadcaster verify``.

Keys live in ``signing.key_dir`` (or ``--key-dir`` / ``$BROADCASTER_KEY_DIR``), never in the
ledger. ``revoke`` republishes the status site at once, so readers learn of it before the next
announcement; ``publish`` does that by hand. A revoked key may be in someone else's hands, so
nothing it signed verifies on its word: republishing signs our own announcements again with the
active key — those the ledger holds exactly as signed, and not retracted — and says which it
could not (``signing/resign.py``). ``verify`` checks an announcement the way a reader
would: the signature records the status site publishes, against our public keys (the local
keyring when there is one — the strongest check — else the site's ``keys.json``).

The first line ``verify`` prints is the verdict: ``OK: …`` only for an announcement signed by a
key that is not revoked, not retracted, and — given ``--text`` — a pasted post that is exactly
what was signed; otherwise ``NOT GENUINE: …`` (what differs), ``RETRACTED: …`` or ``NOT FOUND: …``.

Exit codes: 0 genuine, 1 not genuine (tampered, partial, revoked, retracted or not found),
2 usage or configuration error, 3 the status site could not be reached.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, load, main

if TYPE_CHECKING:
    from ..signing.resign import Resigned

KEY_DIR_HELP = "Key directory (default: signing.key_dir from the config; env BROADCASTER_KEY_DIR)."


def _settings_or_none(ctx: click.Context):
    from ..errors import ConfigError

    try:
        return load(ctx)
    except ConfigError:
        return None


def _key_dir(ctx: click.Context, key_dir: str | None) -> str:
    from .. import signing

    if key_dir:
        return key_dir
    settings = load(ctx)  # a config error here exits 2 with its key paths
    cfg = signing.config_of(settings)
    if cfg is None:
        click.echo("error: signing is not configured: add `signing: {key_dir: ...}` to the config, "
                   "or pass --key-dir", err=True)
        ctx.exit(EXIT_USAGE)
    return cfg.key_dir


@main.group()
def keys():
    """Ed25519 keys that sign announcements: create (rotate), list, revoke, publish."""


@keys.command("create")
@click.option("--id", "key_id", metavar="ID", help="Key id (default: k<YYYYMMDD>-<random>).")
@click.option("--key-dir", envvar="BROADCASTER_KEY_DIR", metavar="DIR", help=KEY_DIR_HELP)
@click.pass_context
def create(ctx, key_id, key_dir):
    """Create a key and make it the active one; the previous key is retired (its signatures stay valid)."""
    from .. import signing

    ring = signing.Keyring(_key_dir(ctx, key_dir))
    try:
        previous = [k.id for k in ring.keys().values() if k.status == "active"]
        info = ring.create(key_id)
    except signing.SigningError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    click.echo(f"created key {info.id} (fingerprint {signing.fingerprint(info.public)}); it signs from now on.",
               err=True)
    if previous:
        click.echo(f"retired: {', '.join(previous)} (still published; old signatures keep verifying)", err=True)
    click.echo(f"private key: {ring.private_path(info.id)} — keep it off the ledger host's backups and "
               "copy it only to the workers that publish the status page.", err=True)
    click.echo(info.id)


@keys.command("list")
@click.option("--key-dir", envvar="BROADCASTER_KEY_DIR", metavar="DIR", help=KEY_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="The public key list as published (keys.json).")
@click.pass_context
def list_(ctx, key_dir, as_json):
    """List keys: id, status, created, fingerprint, whether the private key is on this machine."""
    from .. import signing

    ring = signing.Keyring(_key_dir(ctx, key_dir))
    try:
        found = ring.keys()
    except signing.SigningError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    if as_json:
        click.echo(json.dumps(signing.keys_document(found.values()), indent=1))
        return
    if not found:
        click.echo(f"no keys in {ring.dir} (run `broadcaster keys create`)", err=True)
        return
    for k in sorted(found.values(), key=lambda k: k.created_at):
        private = "private key here" if ring.private_path(k.id).exists() else "public only"
        click.echo(f"{k.id}\t{k.status}\t{k.created_at}\t{signing.fingerprint(k.public)}\t{private}")


@keys.command("revoke")
@click.argument("key_id")
@click.option("--key-dir", envvar="BROADCASTER_KEY_DIR", metavar="DIR", help=KEY_DIR_HELP)
@click.pass_context
def revoke(ctx, key_id, key_dir):
    """Mark a leaked key revoked and republish the status site at once: nothing signed only by
    it verifies any more; our own announcements (as the ledger holds them, not retracted) are
    signed again by the active key and keep verifying. Create a new key first."""
    from .. import signing

    directory = _key_dir(ctx, key_dir)
    try:
        signing.Keyring(directory).set_status(key_id, "revoked")
    except signing.SigningError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    click.echo(f"revoked {key_id} in {directory}", err=True)
    ctx.exit(_publish(_settings_or_none(ctx), directory))


@keys.command("publish")
@click.option("--key-dir", envvar="BROADCASTER_KEY_DIR", metavar="DIR", help=KEY_DIR_HELP)
@click.pass_context
def publish(ctx, key_dir):
    """Republish every status site now: key list, signature files, pages (and their mirrors);
    what a revoked key signed is signed again by the active key where the ledger vouches for it."""
    settings = load(ctx)  # a config error exits 2 with its key paths
    if not _statuspages(settings):
        click.echo("error: no enabled statuspage channel in the config: nothing publishes the key list", err=True)
        ctx.exit(EXIT_USAGE)
    ctx.exit(_publish(settings, _key_dir(ctx, key_dir)))


def _statuspages(settings: Any) -> list[str]:
    return [name for name, ch in (getattr(settings, "channels", None) or {}).items()
            if getattr(ch, "kind", None) == "statuspage" and getattr(ch, "enabled", True)]


def _publish(settings: Any, key_dir: str) -> int:
    """Rewrite the status sites with the key list of ``key_dir``; an exit code."""
    from .. import signing
    from ..errors import DeliveryError
    from ..republish import republish

    if settings is None or not _statuspages(settings):
        click.echo("warning: no status site in the configuration, so nothing was republished; wherever you "
                   "publish keys.json, replace it with `broadcaster keys list --json`", err=True)
        return EXIT_OK
    cfg = signing.config_of(settings)
    if cfg is None or Path(cfg.key_dir).resolve() != Path(key_dir).resolve():
        where = cfg.key_dir if cfg is not None else "(signing is not configured)"
        click.echo(f"error: the status site publishes the keyring in {where}, not {key_dir}: copy "
                   f"{Path(key_dir) / 'keyring.json'} there, then run `broadcaster keys publish`", err=True)
        return EXIT_FAILED
    try:
        done = republish(settings)
    except (DeliveryError, OSError) as exc:
        click.echo(f"error: the key list is NOT yet published: {exc}; fix that and run `broadcaster keys publish`",
                   err=True)
        return EXIT_FAILED
    click.echo(f"published the key list on {', '.join(done.sites)} (copy {cfg.key_dir}/keyring.json to every "
               "worker that publishes the status page, or they will publish their old copy)", err=True)
    return _report_resigned(done.resigned)


#: at most this many announcements are named one by one in the report
SHOWN = 20


def _report_resigned(r: Resigned) -> int:
    """What happened to the records of revoked keys; exit 1 when some could not be signed again
    here and now (no key, no ledger): readers see our own announcements as not genuine until then."""
    if r.announcements:
        click.echo(f"signed again with key {r.key_id}: {len(r.announcements)} announcement(s) the ledger holds as "
                   "signed — they keep verifying", err=True)
    if r.retracted:
        click.echo(f"left as they are: {len(r.retracted)} retracted announcement(s) (they stay RETRACTED)", err=True)
    for ann_id, why in list(r.refused.items())[:SHOWN]:
        click.echo(f"NOT signed again: {ann_id}: {why} — it no longer verifies", err=True)
    if len(r.refused) > SHOWN:
        click.echo(f"NOT signed again: {len(r.refused) - SHOWN} more", err=True)
    if r.blocked:
        click.echo(f"error: {len(r.waiting)} announcement(s) signed by a revoked key were NOT signed again "
                   f"({r.blocked}): they do not verify until `broadcaster keys publish` runs where the active key "
                   "and the ledger are", err=True)
        return EXIT_FAILED
    return EXIT_OK


# ---------------------------------------------------------------- verify


class Unreachable(Exception):
    pass


def _site_base(settings: Any) -> str | None:
    from .. import signing

    page = signing.verify_page_url(settings) if settings is not None else None
    return page.rsplit("/", 1)[0] if page else None


def _local_site(settings: Any) -> Path | None:
    for ch in (getattr(settings, "channels", None) or {}).values():
        if getattr(ch, "kind", None) == "statuspage" and getattr(ch, "enabled", True):
            return Path(ch.output_dir)
    return None


def _fetch_json(site: str | None, local: Path | None, rel: str) -> Any | None:
    """``rel`` from the local status-site output, else from the site over HTTP; None if absent."""
    if local is not None and (local / rel).is_file():
        return json.loads((local / rel).read_text(encoding="utf-8"))
    if not site:
        return None
    import httpx

    try:
        resp = httpx.get(f"{site.rstrip('/')}/{rel}", timeout=10, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise Unreachable(f"{site}: {type(exc).__name__}") from exc
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise Unreachable(f"{site}/{rel}: HTTP {resp.status_code}")
    return resp.json()


def _read_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    return Path(source).read_text(encoding="utf-8")


def _verdict(ctx: click.Context, first_line: str, code: int, details: Sequence[str] = ()) -> NoReturn:
    """The verdict first — the only line that may say OK — then what it rests on."""
    click.echo(first_line)
    for line in details:
        click.echo(line)
    ctx.exit(code)


def _signatures_path(ann_id: str) -> str:
    from .. import signing

    return f"{signing.WELL_KNOWN}/signatures/{ann_id}.json"


def _retracted(doc: Any) -> str | None:
    return doc.get("retracted_at") if isinstance(doc, dict) else None


@main.command()
@click.option("--id", "ann_id", metavar="ANN_ID", help="The announcement id (a post's Verify link carries it).")
@click.option("--text", "text_source", metavar="FILE|-", help="A post's text as you saw it, whole (or, with "
              "--signature, the exact signed canonical document). A thread: every part, in order.")
@click.option("--signature", metavar="KEYID:SIG", help="Check --text as a canonical document against this signature.")
@click.option("--site", metavar="URL", help="The status site (default: from the config).")
@click.option("--key-dir", envvar="BROADCASTER_KEY_DIR", metavar="DIR",
              help="Trust the keys in this keyring instead of the site's keys.json.")
@click.pass_context
def verify(ctx, ann_id, text_source, signature, site, key_dir):
    """Check that an announcement (or a pasted post) is signed by us, unaltered and not retracted."""
    from .. import signing

    if not ann_id and not text_source:
        click.echo("error: give --id ANN_ID or --text FILE|-", err=True)
        ctx.exit(EXIT_USAGE)
    settings = _settings_or_none(ctx)
    try:
        text = _read_text(text_source) if text_source else None
    except OSError as exc:
        click.echo(f"error: cannot read {text_source}: {exc.strerror or exc}", err=True)
        ctx.exit(EXIT_USAGE)
    local = None if site else _local_site(settings)  # an explicit --site is the only source
    site = site or _site_base(settings)
    cfg = signing.config_of(settings) if settings is not None else None
    key_dir = key_dir or (cfg.key_dir if cfg else None)
    try:
        if key_dir and signing.Keyring(key_dir).keys():
            keys, where = signing.Keyring(key_dir).keys(), f"keyring {key_dir}"
        else:
            published = _fetch_json(site, local, "/".join((signing.WELL_KNOWN, "keys.json")))
            if published is None:
                click.echo("error: no public keys found (give --key-dir or --site)", err=True)
                ctx.exit(EXIT_USAGE)
            keys, where = signing.keys_from_json(published), f"{site or local} keys.json"
        if signature:
            _verify_document(ctx, text, signature, keys, site, local)
        ann_id = ann_id or (signing.id_from_text(text) if text else None)
        if not ann_id:
            click.echo("error: the text has no Verify link; give --id ANN_ID", err=True)
            ctx.exit(EXIT_USAGE)
        if not signing.KEY_ID_RE.match(ann_id):
            click.echo(f"error: {ann_id!r} is not an announcement id", err=True)
            ctx.exit(EXIT_USAGE)
        doc = _fetch_json(site, local, _signatures_path(ann_id))
    except Unreachable as exc:
        click.echo(f"error: status site unreachable: {exc}", err=True)
        ctx.exit(EXIT_UNREACHABLE)
    except (signing.SigningError, ValueError) as exc:
        _verdict(ctx, f"NOT GENUINE: {exc}", EXIT_FAILED)
    source = [f"  (keys from {where})"]
    if not isinstance(doc, dict) or not doc.get("entries"):
        _verdict(ctx, f"NOT FOUND: no signed announcement {ann_id} is published — treat it as not from us", EXIT_FAILED,
                 source)
    if _retracted(doc):
        _verdict(ctx, f"RETRACTED: we withdrew announcement {ann_id} on {_retracted(doc)}; it no longer stands "
                 "— do not act on it", EXIT_FAILED, source)
    details, good, bad = list(source), [], []
    for entry in doc["entries"]:
        verdict = signing.verify_record(entry, keys)
        label = f"{entry.get('type')} {entry.get('id')}" if isinstance(entry, dict) else "entry"
        if verdict.ok and verdict.document is not None:
            good.append(verdict.document)
            status = verdict.document.get("status")
            details.append(f"  signed    {label}{f' ({status})' if status else ''}: "
                           f"{verdict.document.get('title')!r} — {verdict.reason}{_resigned(entry)}")
        else:
            bad.append(verdict.reason)
            details.append(f"  BAD       {label}: {verdict.reason}")
    if bad or not good:
        _verdict(ctx, f"NOT GENUINE: {bad[0] if bad else 'nothing is signed'} — treat it as not from us", EXIT_FAILED,
                 details)
    if text is None:
        shown = [f"  --- {d.get('type')} {d.get('id')}:\n  " + "\n  ".join(_signed_text(d).splitlines()) for d in good]
        _verdict(ctx, f"OK: announcement {ann_id} is signed by us and not retracted — compare what you saw with the "
                 "signed text below, word for word", EXIT_OK, details + shown)
    page = (signing.verify_page_url(settings) if settings is not None else None) or doc.get("verify_url") or (
        f"{site.rstrip('/')}/{signing.VERIFY_PAGE}" if site else None)
    match = signing.match_text(text, good, page)
    if match.ok:
        _verdict(ctx, f"OK: {match.reason}", EXIT_OK, details)
    _verdict(ctx, f"NOT GENUINE: {match.reason} — treat it as not from us", EXIT_FAILED, details)


def _resigned(entry: dict[str, Any]) -> str:
    """What a record signed again after a revoke says of the key it replaces (not itself signed)."""
    again = entry.get("resigned")
    if not isinstance(again, dict):
        return ""
    return f", signed again on {again.get('at')} after key {again.get('from_key')!r} was revoked"


def _signed_text(doc: dict[str, Any]) -> str:
    parts = [doc.get("title") or "", doc.get("body") or "", doc.get("url") or ""]
    return "\n\n".join(p for p in parts if p)


def _verify_document(ctx: click.Context, text: str | None, signature: str, keys: dict[str, Any],
                     site: str | None, local: Path | None) -> NoReturn:
    """``--signature``: ``text`` must be exactly the signed canonical document."""
    from .. import signing

    key_id, sig = signing.parse_signature_arg(signature)
    if text is None:
        click.echo("error: --signature needs --text (the signed document)", err=True)
        ctx.exit(EXIT_USAGE)
    record = {"canonical": text.rstrip("\n"), "key_id": key_id, "signature": sig, "alg": signing.ALG}
    verdict = signing.verify_record(record, keys)
    if not verdict.ok or verdict.document is None:
        _verdict(ctx, f"NOT GENUINE: {verdict.reason}", EXIT_FAILED)
    ann_id = str(verdict.document.get("announcement_id") or verdict.document.get("id"))
    note = "retraction not checked: no status site known"
    if signing.KEY_ID_RE.match(ann_id) and (site or local):
        try:
            published = _fetch_json(site, local, _signatures_path(ann_id))
        except (Unreachable, ValueError) as exc:
            note = f"retraction not checked: {exc}"
        else:
            if _retracted(published):
                _verdict(ctx, f"RETRACTED: we withdrew announcement {ann_id} on {_retracted(published)}; it no "
                         "longer stands — do not act on it", EXIT_FAILED)
            note = "not retracted"
    _verdict(ctx, f"OK: the document is exactly what was {verdict.reason} ({note})", EXIT_OK)
