"""Running a client command: one :class:`~.apiclient.Api` per invocation, every failure mapped
to one line on stderr and an exit code; ``--wait`` polling until the deliveries settle."""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from ..models import SETTLED as SETTLED_STATES
from . import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from .apiclient import Api, ClientError, seg
from .output import note_of, overall_of

SETTLED = {str(s) for s in SETTLED_STATES}
#: ``overall`` words that end a ``--wait``, and the exit code each maps to
WAIT_DONE = {"delivered": EXIT_OK, "cancelled": EXIT_OK, "retracted": EXIT_OK, "attention": EXIT_FAILED}


def run(ctx: click.Context, api_url: str, token: str | None, action: Callable[[Api], int | None],
        *, need_token: bool = True) -> None:
    """Run ``action`` with a client; map every failure to one line on stderr and an exit code."""
    if need_token and not token:
        click.echo("error: no API token: pass --token or set BROADCASTER_TOKEN", err=True)
        ctx.exit(EXIT_USAGE)
    if not api_url.startswith(("http://", "https://")):
        click.echo(f"error: --api-url must start with http:// or https:// (got {api_url!r})", err=True)
        ctx.exit(EXIT_USAGE)
    api = Api(api_url, token)
    try:
        code = action(api) or EXIT_OK
    except ClientError as exc:
        click.echo(f"error: {exc}", err=True)
        code = exc.code
    finally:
        api.close()
    ctx.exit(code)


# ---------------------------------------------------------------- --wait


def wait_for(api: Api, ann_id: str, *, timeout: float, interval: float, as_json: bool,
             only: Callable[[dict], bool] = lambda d: True) -> tuple[int, dict]:
    """Poll until every selected delivery is settled; print one line per state change."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    data: dict = {}
    while True:
        try:
            data = api.call("GET", f"/announcements/{seg(ann_id)}")
        except ClientError as exc:
            if exc.code != EXIT_UNREACHABLE or time.monotonic() >= deadline:
                raise
            data = data or {}
        deliveries = [d for d in (data.get("deliveries") or []) if only(d)]
        for d in deliveries:
            state = d.get("state")
            if seen.get(d["id"]) != state:
                seen[d["id"]] = state
                if not as_json:
                    extra = note_of(d, [])
                    click.echo(f"  {d.get('channel', '?'):24} {state:12} {extra}".rstrip(), err=False)
        verdict = overall_of(data, deliveries) if deliveries else "in_progress"
        if verdict in WAIT_DONE:
            return WAIT_DONE[verdict], data
        if time.monotonic() >= deadline:
            pending = sorted(d.get("channel", "?") for d in deliveries if d.get("state") not in SETTLED)
            if not as_json:
                click.echo(f"timed out after {timeout:g}s; still waiting on: {', '.join(pending) or 'nothing'}",
                           err=True)
            return EXIT_FAILED, data
        time.sleep(interval)
