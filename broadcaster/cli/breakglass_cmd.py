"""Break-glass commands: ``post --direct`` (straight to the channels) and ``reconcile``."""

from __future__ import annotations

import json
import os

import click

from . import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load, main


def _journal_path(path: str | None) -> str:
    from ..breakglass_journal import DEFAULT_JOURNAL

    return path or os.environ.get("BROADCASTER_JOURNAL") or DEFAULT_JOURNAL


def post_direct(ctx: click.Context, payload: dict, key: str, journal: str | None, as_json: bool,
                subscribers_file: str | None = None) -> int:
    from ..breakglass import publish_direct
    from ..errors import InvalidRequest, LedgerUnavailable
    from ..ledger.journal import Journal

    settings = load(ctx)
    path = _journal_path(journal)

    def banner() -> None:  # once the input is known good: a refused post prints only why
        if not as_json:
            click.echo(f"break glass: sending directly to the channels (journal {path}); "
                       "run `broadcaster reconcile` when the system is back")

    def show(o):
        if not as_json:
            extra = f" {o.receipt.url}" if o.receipt and o.receipt.url else ""
            error = f"  ({o.error})" if o.error and o.state != "delivered" else ""
            click.echo(f"  {o.channel:24} {o.state}{extra}{error}")
            if o.note:
                click.echo(f"  {'':24} {o.note}")

    try:
        result = publish_direct(settings, payload, key=key, journal=Journal(path), on_progress=show,
                                subscribers_file=subscribers_file, on_start=banner)
    except InvalidRequest as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    except LedgerUnavailable as exc:  # the journal cannot be written: nothing more was sent
        click.echo(f"error: {exc}", err=True)
        return EXIT_FAILED
    if as_json:
        click.echo(json.dumps({"id": result.announcement_id, "idempotency_key": key, "journal": path,
                               "deliveries": [{"channel": o.channel, "id": o.delivery_id, "state": o.state,
                                               "remote_url": o.receipt.url if o.receipt else None, "error": o.error,
                                               "note": o.note, "subscribers": o.note}  # the older name
                                              for o in result.outcomes]}, indent=2))
    return EXIT_OK if result.ok else EXIT_FAILED


@main.command()
@click.argument("journal", required=False)
@click.pass_context
def reconcile(ctx, journal):
    """Import a break-glass journal into the ledger (nothing that landed is re-posted)."""
    from ..breakglass_reconcile import reconcile as do_reconcile
    from ..ledger import Ledger
    from ..ledger.journal import Journal

    settings = load(ctx)
    path = _journal_path(journal)
    if not os.path.exists(path):
        click.echo(f"error: no journal at {path}", err=True)
        ctx.exit(EXIT_USAGE)
    ledger = Ledger.open(settings.ledger)
    try:
        counts = do_reconcile(ledger, settings, Journal(path))
    finally:
        ledger.close()
    fallen = f", {counts['fallen_back']} fallen back to another channel" if counts["fallen_back"] else ""
    click.echo(f"reconciled {counts['announcements']} announcement(s): {counts['delivered']} delivered, "
               f"{counts['pending']} handed to the workers, {counts['unknown']} unknown (check those channels)"
               f"{fallen}; {counts['skipped']} already in the ledger")
    if counts["pending"]:
        click.echo("start (or keep running) the workers and scheduler to deliver the rest")
