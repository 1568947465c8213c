"""``broadcaster approvals list|approve|reject``: two-person review over the API, as the token."""

from __future__ import annotations

import uuid

import click

from . import EXIT_OK, main
from .apiclient import ID, Api, seg
from .options import connection_options, json_option
from .output import emit_json
from .running import run


@main.group()
def approvals() -> None:
    """Posts waiting for a second person's approval."""


@approvals.command("list")
@json_option
@connection_options
@click.pass_context
def list_(ctx: click.Context, as_json: bool, api_url: str, token: str | None) -> None:
    """Each waiting post with the exact text every channel would post."""

    def action(api: Api) -> int:
        data = api.call("GET", "/approvals")
        if as_json:
            emit_json(data)
            return EXIT_OK
        items = data.get("items", [])
        if not items:
            click.echo("nothing waits for approval")
        for a in items:
            click.echo(f"{a['id']}  {a['kind']}  by {a['author']}  {a['title']}")
            for p in a.get("preview", []):
                click.echo(f"  -- {p['channel']}" + (f" (error: {p['error']})" if p.get("error") else ""))
                for part in p.get("parts") or []:
                    for line in part.splitlines():
                        click.echo(f"     | {line}")
        return EXIT_OK

    run(ctx, api_url, token, action)


def _decide(verb: str, help_text: str) -> None:
    @approvals.command(verb, help=help_text)
    @click.argument("announcement_id", type=ID)
    @click.option("--reason", default="", help="Why (kept in the audit log).")
    @json_option
    @connection_options
    @click.pass_context
    def command(ctx: click.Context, announcement_id: str, reason: str, as_json: bool, api_url: str,
                token: str | None) -> None:
        def action(api: Api) -> int:
            body = {"reason": reason} if reason else {}
            data = api.call("POST", f"/announcements/{seg(announcement_id)}/{verb}", json_body=body,
                            headers={"Idempotency-Key": str(uuid.uuid4())})
            done = {"approve": "approved", "reject": "rejected"}[verb]
            emit_json(data) if as_json else click.echo(f"{done} {announcement_id}")
            return EXIT_OK

        run(ctx, api_url, token, action)


_decide("approve", "Approve a waiting post: its deliveries become due (at its publish time, if later).")
_decide("reject", "Reject a waiting post: its deliveries are cancelled, nothing is posted.")
