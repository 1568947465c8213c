"""``broadcaster drafts list|show|publish|discard``: drafts made from alerts, over the API (as
the token's name, so the audit log and any review name the person)."""

from __future__ import annotations

import uuid
from typing import Any

import click

from . import EXIT_OK, main
from .apiclient import ID, Api, seg
from .options import connection_options, json_option
from .output import emit_json, table
from .running import run


@main.group()
def drafts() -> None:
    """Draft incidents proposed by alerts (see docs/alerts.md)."""


def _show(d: dict[str, Any]) -> None:
    f, a = d.get("fields") or {}, d.get("alert") or {}
    click.echo(f"{d['id']}  {d['state']}  {'firing' if d.get('firing') else 'resolved'}"
               f"{'  resolve proposed' if d.get('resolve_proposed') else ''}")
    click.echo(f"  from:     {d.get('source')} / {d.get('receiver')} ({d.get('mode')}; flapped {d.get('flaps', 0)}x)")
    click.echo(f"  title:    {f.get('title')}")
    click.echo(f"  kind:     {f.get('kind')}  severity: {f.get('severity') or '-'}  "
               f"channels: {', '.join(f.get('channels') or []) or 'the route'}")
    for line in (f.get("body") or "").splitlines() or [""]:
        click.echo(f"  | {line}")
    click.echo(f"  alert:    {a.get('title')} — {a.get('summary') or ''}")
    if d.get("announcement_id"):
        click.echo(f"  announcement: {d['announcement_id']}")


@drafts.command("list")
@click.option("--state", default="draft,published", show_default=True, help="Comma-separated states, or ''.")
@json_option
@connection_options
@click.pass_context
def list_(ctx: click.Context, state: str, as_json: bool, api_url: str, token: str | None) -> None:
    """Drafts waiting for a person (and published ones whose alert may resolve)."""

    def action(api: Api) -> int:
        data = api.call("GET", "/drafts", params={"state": state} if state else None)
        if as_json:
            emit_json(data)
            return EXIT_OK
        rows = [[d["id"], d["state"], "firing" if d["firing"] else "resolved", d["source"],
                 "yes" if d["resolve_proposed"] else "", (d["fields"].get("title") or "")[:60]]
                for d in data.get("items", [])]
        click.echo(table(rows, ["ID", "STATE", "ALERT", "SOURCE", "RESOLVE?", "TITLE"]) if rows else "no drafts")
        return EXIT_OK

    run(ctx, api_url, token, action)


@drafts.command("show")
@click.argument("draft_id", type=ID)
@json_option
@connection_options
@click.pass_context
def show(ctx: click.Context, draft_id: str, as_json: bool, api_url: str, token: str | None) -> None:
    """One draft with its source alert."""

    def action(api: Api) -> int:
        data = api.call("GET", f"/drafts/{seg(draft_id)}")
        emit_json(data) if as_json else _show(data)
        return EXIT_OK

    run(ctx, api_url, token, action)


def _post(verb: str, help_text: str) -> None:
    @drafts.command(verb, help=help_text)
    @click.argument("draft_id", type=ID)
    @json_option
    @connection_options
    @click.pass_context
    def command(ctx: click.Context, draft_id: str, as_json: bool, api_url: str, token: str | None) -> None:
        def action(api: Api) -> int:
            data = api.call("POST", f"/drafts/{seg(draft_id)}/{verb}", json_body={},
                            headers={"Idempotency-Key": str(uuid.uuid4())})
            if as_json:
                emit_json(data)
            elif verb == "publish":
                what = f"update {data['update']} on" if data.get("update") else "announcement"
                click.echo(f"published {draft_id}: {what} {data.get('announcement')}")
            else:
                click.echo(f"discarded {draft_id}")
            return EXIT_OK

        run(ctx, api_url, token, action)


_post("publish", "Publish the draft (or, once its alert resolved, post its resolve update).")
_post("discard", "Discard a waiting draft: nothing is posted.")
