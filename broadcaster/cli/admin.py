"""Admin commands that work on the ledger directly: ``broadcaster tokens create|list|revoke``.

The token is printed once, on stdout alone (so ``TOKEN=$(broadcaster tokens create ci ...)``
works); everything else goes to stderr. Only its hash is stored. Each create and revoke lands in
the audit log with the operating-system user who ran it.
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime

import click

from . import EXIT_USAGE, load, main


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


def _store(ctx):
    from ..ledger import Ledger
    from ..tokens import TokenStore

    settings = load(ctx)
    return TokenStore(Ledger.open(settings.ledger), settings)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


@main.group()
def tokens():
    """API tokens: create (shown once), list, revoke."""


@tokens.command("create")
@click.argument("name")
@click.option("--kinds", metavar="A,B", help="Kinds it may post (default: any), e.g. deploy,maintenance.")
@click.option("--channels", metavar="X,Y", help="Channels it may post to (default: any).")
@click.option("--admin", is_flag=True, help="May do everything, whatever --kinds/--channels say.")
@click.pass_context
def create(ctx, name, kinds, channels, admin):
    """Create token NAME and print it once (only its hash is stored)."""
    from ..errors import InvalidRequest

    store = _store(ctx)
    try:
        raw, info = store.create(name, kinds=_csv(kinds), channels=_csv(channels), admin=admin, actor=_actor())
    except InvalidRequest as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    finally:
        store.ledger.close()
    scope = "admin" if info.admin else (
        f"kinds: {', '.join(info.kinds) or 'any'}; channels: {', '.join(info.channels) or 'any'}")
    click.echo(f"created token {info.name!r} ({scope}). It is shown only now — store it safely:", err=True)
    click.echo(raw)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--active", is_flag=True, help="Leave revoked tokens out.")
@click.pass_context
def list_(ctx, as_json, active):
    """List tokens (never their values)."""
    store = _store(ctx)
    try:
        items = store.list(include_revoked=not active)
    finally:
        store.ledger.close()
    if as_json:
        for info in items:
            click.echo(json.dumps(info.to_dict()))
        return
    if not items:
        click.echo("no tokens yet: broadcaster tokens create NAME --kinds ... --channels ...", err=True)
        return
    click.echo(f"{'NAME':24} {'SCOPE':40} {'SOURCE':7} {'CREATED':21} {'LAST USED':21} REVOKED")
    for i in items:
        scope = "admin" if i.admin else f"kinds={','.join(i.kinds) or '*'} channels={','.join(i.channels) or '*'}"
        click.echo(f"{i.name:24} {scope:40} {i.source:7} {_when(i.created_at):21} {_when(i.last_used_at):21} "
                   f"{_when(i.revoked_at)}")


@tokens.command("revoke")
@click.argument("name")
@click.pass_context
def revoke(ctx, name):
    """Revoke token NAME at once (its requests get 401 from now on)."""
    from ..errors import InvalidRequest, NotFound

    store = _store(ctx)
    try:
        info = store.revoke(name, actor=_actor())
    except (InvalidRequest, NotFound) as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    finally:
        store.ledger.close()
    click.echo(f"revoked token {info.name!r}", err=True)


@tokens.command("hash")
@click.option("--stdin", "from_stdin", is_flag=True, help="Hash a token read from standard input instead of a new one.")
def hash_(from_stdin):
    """Print a token and the `hash:` line for a static token in the config's `tokens:` list.

    The raw token goes to CI or a password manager; only the hash goes into the YAML file."""
    from ..tokens import generate, hash_token

    raw = sys.stdin.read().strip() if from_stdin else generate()
    if not raw:
        click.echo("error: no token on standard input", err=True)
        raise SystemExit(2)
    if not from_stdin:
        click.echo(f"token: {raw}")
    click.echo(f"hash: {hash_token(raw)}")
