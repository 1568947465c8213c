"""Admin commands on the ledger's data: subscribers CSV, full export/import, retention.

    broadcaster subscribers import FILE.csv [--list NAME]
    broadcaster subscribers export [--list NAME] [--output FILE]
    broadcaster subscribers endpoints list [--list NAME] [--state STATE] [--json]
    broadcaster subscribers endpoints enable|disable ID
    broadcaster export [--output FILE]
    broadcaster import FILE
    broadcaster prune [--events-older-than 90d] [--announcements-older-than 730d]

Data goes to stdout (or ``--output``); reports and errors to stderr. ``subscribers import``
exits 1 when some rows were bad (the good ones are stored), 2 when the file cannot be read.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click

from . import EXIT_FAILED, EXIT_USAGE, load, main
from .admin import _actor


@contextmanager
def _ledger(ctx):
    from ..ledger import Ledger

    ledger = Ledger.open(load(ctx).ledger)
    try:
        yield ledger
    finally:
        ledger.close()


@contextmanager
def _output(path: str | None):
    if not path or path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8", newline="") as fp:
        yield fp


@main.group()
def subscribers():
    """Subscriber lists: import and export CSV."""


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--list", "list_name", metavar="NAME", help="List for rows without a list column.")
@click.option("--marketing", is_flag=True,
              help="Everyone in FILE consented to promotions: rows with an empty or no marketing cell get "
                   "consent (a cell saying false still wins). Default: no consent unless the row says true.")
@click.pass_context
def subscribers_import(ctx, file, list_name, marketing):
    """Import subscribers from a CSV FILE (header: address and any of list, name, components,
    state, marketing, created_at, confirmed_at, unsubscribed_at). Bad rows are reported by line
    number; the others are stored.

    Consent to promotions (marketing) is never assumed: a row without a marketing value gets
    announcements only, unless --marketing says everyone in the file consented. An address
    already on the list is updated to what its row says."""
    from .. import export
    from ..errors import InvalidRequest

    try:
        fp = sys.stdin if file == "-" else open(file, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below, unless stdin
    except OSError as exc:
        click.echo(f"error: cannot read {file}: {exc.strerror}", err=True)
        ctx.exit(EXIT_USAGE)
    with fp, _ledger(ctx) as ledger:
        try:
            report = export.import_subscribers_csv(ledger, fp, list_name=list_name, actor=_actor(),
                                                   settings=load(ctx), marketing=marketing)
        except InvalidRequest as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except UnicodeDecodeError:
            click.echo("error: the file is not UTF-8 text", err=True)
            ctx.exit(EXIT_USAGE)
    for line, message in report.errors:
        click.echo(f"{file}:{line}: {message}", err=True)
    click.echo(f"{report.stored} stored ({report.inserted} new, {report.updated} updated), "
               f"{len(report.errors)} bad rows", err=True)
    if report.errors:
        ctx.exit(EXIT_FAILED)


@subscribers.command("export")
@click.option("--list", "list_name", metavar="NAME", help="Only this list (default: every list).")
@click.option("--output", "-o", metavar="FILE", help="Write here instead of stdout.")
@click.pass_context
def subscribers_export(ctx, list_name, output):
    """Write subscribers as CSV (re-importable without loss)."""
    from .. import export

    with _ledger(ctx) as ledger, _output(output) as fp:
        export.export_subscribers_csv(ledger, fp, list_name=list_name)


@subscribers.group("endpoints")
def endpoints():
    """Webhooks subscribers brought: list them, enable a disabled one, disable one."""


@endpoints.command("list")
@click.option("--list", "list_name", metavar="NAME", help="Only this list.")
@click.option("--state", type=click.Choice(["pending", "confirmed", "disabled", "unsubscribed"]),
              help="Only this state.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines instead of a table.")
@click.pass_context
def endpoints_list(ctx, list_name, state, as_json):
    """Endpoints by id; URLs as scheme and host only (a webhook URL is a credential)."""
    import json

    from ..subscribers import endpoints as eps

    with _ledger(ctx) as ledger:
        after = None
        while True:
            page = eps.list_endpoints(ledger, list_name=list_name, state=state, after=after, limit=500)
            for ep in page:
                row = ep.to_dict()
                if as_json:
                    click.echo(json.dumps(row))
                else:
                    click.echo(f"{ep.id}  {ep.state:<12}  {ep.format:<14}  {ep.list}  {row['url']}  "
                               f"failures={ep.failures}  notice={ep.notice or '-'}")
            if len(page) < 500:
                break
            after = page[-1].id


def _set_endpoint(ctx, endpoint_id: str, enabled: bool) -> None:
    from ..errors import NotFound
    from ..subscribers import endpoints as eps

    with _ledger(ctx) as ledger:
        try:
            ep = eps.set_state(ledger, endpoint_id, enabled=enabled, actor=_actor())
        except NotFound:
            click.echo(f"error: no endpoint {endpoint_id}", err=True)
            ctx.exit(EXIT_USAGE)
    why = {"pending": " (pending: only its owner's challenge code confirms it)",
           "unsubscribed": " (its owner unsubscribed: only the owner registering it again brings it back)"}
    click.echo(f"{ep.id}: {ep.state}" + why.get(ep.state, ""))


@endpoints.command("enable")
@click.argument("endpoint_id")
@click.pass_context
def endpoints_enable(ctx, endpoint_id):
    """Post to a disabled endpoint again (its run of failures starts at 0)."""
    _set_endpoint(ctx, endpoint_id, True)


@endpoints.command("disable")
@click.argument("endpoint_id")
@click.pass_context
def endpoints_disable(ctx, endpoint_id):
    """Stop posting to an endpoint (its owner may register it again)."""
    _set_endpoint(ctx, endpoint_id, False)


@main.command("export")
@click.option("--output", "-o", metavar="FILE", help="Write here instead of stdout.")
@click.pass_context
def export_cmd(ctx, output):
    """Write everything (announcements, updates, deliveries with their attempts, subscribers,
    subscribers' own webhooks, SMS opt-outs, audit log) as JSON Lines. Keep the file as you keep
    the ledger: it holds subscribers' addresses and webhook URLs (credentials)."""
    from .. import export

    with _ledger(ctx) as ledger, _output(output) as fp:
        counts = export.write_export(ledger, fp)
    click.echo("exported " + ", ".join(f"{n} {k}" for k, n in counts.items()), err=True)


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_context
def import_cmd(ctx, file):
    """Restore a `broadcaster export` FILE into an empty ledger (all or nothing)."""
    from .. import export
    from ..errors import Conflict, InvalidRequest

    try:
        fp = sys.stdin if file == "-" else open(file, encoding="utf-8")  # noqa: SIM115 - closed below, unless stdin
    except OSError as exc:
        click.echo(f"error: cannot read {file}: {exc.strerror}", err=True)
        ctx.exit(EXIT_USAGE)
    with fp, _ledger(ctx) as ledger:
        try:
            counts = export.import_lines(ledger, fp)
        except (InvalidRequest, Conflict) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_FAILED)
    click.echo("imported " + ", ".join(f"{n} {k}" for k, n in counts.items()), err=True)


@main.command("prune")
@click.option("--events-older-than", metavar="AGE", help="Attempt history age to keep (default: retention.keep_events).")
@click.option("--announcements-older-than", metavar="AGE",
              help="Also delete settled announcements older than AGE (never without this or retention.keep_announcements).")
@click.pass_context
def prune_cmd(ctx, events_older_than, announcements_older_than):
    """Apply retention now."""
    from .. import retention
    from ..config import parse_duration

    cfg = retention.settings_of(load(ctx))
    try:
        changes = {}
        if events_older_than:
            changes["keep_events"] = parse_duration(events_older_than)
        if announcements_older_than:
            changes["keep_announcements"] = parse_duration(announcements_older_than)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    cfg = cfg.model_copy(update=changes)
    with _ledger(ctx) as ledger:
        res = retention.prune(ledger, cfg)
    click.echo(f"pruned {res.events} attempt records and {res.announcements} announcements", err=True)
