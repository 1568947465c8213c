"""Client commands over the HTTP API: post, update, retract, cancel, status, list, retry, preview.

They talk only to the API (``BROADCASTER_URL``, ``BROADCASTER_TOKEN``), never to the ledger, so a
CI runner needs nothing but a URL and a scoped token. Exit codes: 0 all
delivered / ok, 1 some channel failed or unknown (or ``--wait`` timed out), 2 usage, config or a
refused request, 3 server unreachable.

This module holds the commands only: the HTTP client is :mod:`.apiclient`, what they print
:mod:`.output`, their shared options :mod:`.options`, running and ``--wait`` :mod:`.running`.
"""

from __future__ import annotations

import uuid
from typing import Any

import click

from ..models import COMPONENT_STATES
from . import EXIT_FAILED, EXIT_OK, main
from .apiclient import ID, Api, seg
from .options import build_payload, component_args, compose_options, connection_options, json_option, wait_options
from .output import announcement_of, emit_json, error_now, items_of, overall_of, preview_rows, show_status, table
from .running import run, wait_for


@main.command()
@compose_options
@click.option("--idempotency-key", default=None, help="Key that makes a retried post safe (default: a new UUID).")
@click.option("--direct", is_flag=True,
              help="Break glass: API/broker/ledger down — send straight to the channels in --config and journal it "
                   "for `broadcaster reconcile`.")
@click.option("--journal", default=None,
              help="Break-glass journal file (default $BROADCASTER_JOURNAL or var/breakglass.jsonl).")
@click.option("--subscribers-file", default=None, type=click.Path(dir_okay=False),
              help="Break glass: subscriber lists from this `broadcaster subscribers export` CSV when the ledger "
                   "cannot be read (the ledger is used whenever it can be).")
@wait_options
@click.option("-q", "--quiet", is_flag=True,
              help="Print only the announcement id (for ID=$(broadcaster post …)); the exit code tells the rest.")
@json_option
@connection_options
@click.pass_context
def post(ctx, kind, title, template, next_update, body, body_file, severity, ann_status, components, channels, link,
         publish_at, tags, starts_at, ends_at, idempotency_key, direct, journal, subscribers_file, wait, quiet, timeout,
         interval, as_json, api_url, token):
    """Submit an announcement once; the workers deliver it to every channel."""
    payload = build_payload(kind, title, body, body_file, severity, ann_status, components, channels, link,
                            publish_at, tags, starts_at, ends_at, template, next_update)
    key = idempotency_key or str(uuid.uuid4())
    if direct:
        from .breakglass_cmd import post_direct

        ctx.exit(post_direct(ctx, payload, key, journal, as_json, subscribers_file))
    if subscribers_file:
        raise click.UsageError("--subscribers-file goes with --direct (the workers read the ledger)")

    def action(api: Api) -> int:
        created = api.call("POST", "/announcements", json_body=payload, headers={"Idempotency-Key": key})
        ann_id = str(announcement_of(created).get("id"))
        code, final = EXIT_OK, None
        silent = as_json or quiet
        if quiet and not as_json:
            click.echo(ann_id)
        elif not as_json:
            click.echo(f"accepted {ann_id}" + ("" if created.get("created", True) else " (already submitted)"))
        if wait:
            code, final = wait_for(api, ann_id, timeout=timeout, interval=interval, as_json=silent,
                                   only=lambda d: not d.get("update_id"))
        if as_json:
            # with --wait the top level is the final state (the 202 snapshot would show every
            # channel still pending); the acceptance answer stays under "accepted"
            extra = {"idempotency_key": key}
            emit_json({**created, **extra} if final is None else
                      {**final, **extra, "exit_code": code, "accepted": created})
        elif final is not None and not quiet:
            own = [d for d in final.get("deliveries") or [] if not d.get("update_id")]
            click.echo(f"overall: {overall_of(final, own)}")
        return code

    run(ctx, api_url, token, action)


@main.command()
@click.argument("announcement_id", type=ID)
@click.option("--status", "upd_status", required=True, help="New status (e.g. identified, resolved, completed).")
@click.option("--body", default=None)
@click.option("--body-file", type=click.File("r", encoding="utf-8"), default=None, help="File, or '-' for stdin.")
@click.option("--title", default=None)
@click.option("--template", default=None, metavar="NAME",
              help="A configured template: its text for --status, when --body is left out.")
@click.option("--next-update", "next_update", default=None, metavar="WHEN",
              help="Incidents: promise the next update — in 30m, 1h… or at an ISO 8601 time.")
@click.option("--component", "components", multiple=True, metavar="NAME=STATE",
              help="Set an affected component's state on the status page from now on (repeatable): operational, "
                   "degraded_performance, partial_outage, major_outage, under_maintenance.")
@click.option("--idempotency-key", default=None)
@wait_options
@json_option
@connection_options
@click.pass_context
def update(ctx, announcement_id, upd_status, body, body_file, title, template, next_update, components,
           idempotency_key, wait, timeout, interval, as_json, api_url, token):
    """Post a follow-up (threaded under the original on every channel)."""
    if body is not None and body_file is not None:
        raise click.UsageError("give --body or --body-file, not both")
    text = body_file.read() if body_file is not None else body
    if not text and not template:
        raise click.UsageError("an update needs text: --body, --body-file or --template")
    payload: dict[str, Any] = {"status": upd_status, "body": text or ""}
    for key, value in (("title", title), ("template", template), ("next_update_at", next_update)):
        if value:
            payload[key] = value
    names, states = component_args(components)
    bare = [n for n in names if n not in states]
    if bare:
        raise click.UsageError(f"--component takes NAME=STATE on an update (STATE one of "
                               f"{', '.join(COMPONENT_STATES)}): {', '.join(bare)}")
    if states:
        payload["component_states"] = states
    key = idempotency_key or str(uuid.uuid4())

    def action(api: Api) -> int:
        res = api.call("POST", f"/announcements/{seg(announcement_id)}/updates", json_body=payload,
                       headers={"Idempotency-Key": key})
        upd_id = (res or {}).get("id")
        code, final = EXIT_OK, None
        if not as_json:
            click.echo(f"update {upd_id} accepted")
        if wait:
            code, final = wait_for(api, announcement_id, timeout=timeout, interval=interval, as_json=as_json,
                                   only=lambda d: d.get("update_id") == upd_id if "update_id" in d else True)
        if as_json:
            extra = {"idempotency_key": key}
            emit_json({**(res or {}), **extra} if final is None else
                      {**final, **extra, "update_id": upd_id, "exit_code": code, "accepted": res})
        return code

    run(ctx, api_url, token, action)


def _simple_post(path_fmt: str, done: str):
    def command(ctx, target_id, as_json, api_url, token, **_):
        def action(api: Api) -> int:
            res = api.call("POST", path_fmt.format(id=seg(target_id)), json_body={},
                           headers={"Idempotency-Key": str(uuid.uuid4())})
            if as_json:
                emit_json(res)
            else:
                counts = ", ".join(f"{k} {v}" for k, v in (res or {}).items() if isinstance(v, int))
                click.echo(f"{done} {target_id}" + (f" ({counts})" if counts else ""))
            return EXIT_OK

        run(ctx, api_url, token, action)

    return command


def _register_simple(name: str, path_fmt: str, done: str, help_text: str, arg: str) -> None:
    fn = _simple_post(path_fmt, done)
    fn.__doc__ = help_text
    fn = connection_options(json_option(click.argument("target_id", metavar=arg, type=ID)(click.pass_context(fn))))
    main.command(name)(fn)


@main.command()
@click.argument("target_id", metavar="ID", type=ID)
@wait_options
@json_option
@connection_options
@click.pass_context
def retract(ctx, target_id, wait, timeout, interval, as_json, api_url, token):
    """Retract an announcement everywhere (cancel what has not gone out, delete what has).

    E-mail, Slack and generic webhooks cannot take back what they delivered: those deliveries
    end ``retracted`` with the note "cannot be deleted on …: still visible to readers". With
    --wait: exit 0 when every post is withdrawn, 1 when one is still visible (or --timeout)."""

    def action(api: Api) -> int:
        res = api.call("POST", f"/announcements/{seg(target_id)}/retract", json_body={},
                       headers={"Idempotency-Key": str(uuid.uuid4())})
        if not as_json:
            counts = ", ".join(f"{k} {v}" for k, v in (res or {}).items() if isinstance(v, int))
            click.echo(f"retracting {target_id}" + (f" ({counts})" if counts else ""))
        if not wait:
            if as_json:
                emit_json(res)
            return EXIT_OK
        code, final = wait_for(api, target_id, timeout=timeout, interval=interval, as_json=as_json)
        visible = [d for d in final.get("deliveries") or [] if d.get("state") == "retracted" and error_now(d)]
        if visible and code == EXIT_OK:
            code = EXIT_FAILED
        if as_json:
            emit_json({**final, "exit_code": code, "accepted": res,
                       "still_visible": [{"channel": d.get("channel"), "id": d.get("id"), "note": error_now(d)}
                                         for d in visible]})
        elif visible:
            click.echo("not withdrawn — still visible to readers on: "
                       + ", ".join(sorted({str(d.get("channel")) for d in visible})), err=True)
        return code

    run(ctx, api_url, token, action)


_register_simple("cancel", "/announcements/{id}/cancel", "cancelled",
                 "Cancel a scheduled announcement before its publish time.", "ID")
_register_simple("cancel-window", "/maintenance/{id}/cancel", "window cancelled:",
                 "Cancel a maintenance window: every channel that has it is told (quietly stopped if unpublished).",
                 "ID")
_register_simple("retry", "/deliveries/{id}/retry", "retrying",
                 "Send a failed or unknown delivery again (after checking the channel).", "DELIVERY_ID")
_register_simple("confirm", "/deliveries/{id}/confirm", "confirmed as delivered",
                 "Settle an unknown delivery as delivered: you found the post on the channel.", "DELIVERY_ID")


@main.command()
@click.argument("announcement_id", type=ID)
@wait_options
@json_option
@connection_options
@click.pass_context
def status(ctx, announcement_id, wait, timeout, interval, as_json, api_url, token):
    """Show an announcement and every delivery; exit 1 if a channel failed or is unknown."""

    def action(api: Api) -> int:
        if wait:
            code, data = wait_for(api, announcement_id, timeout=timeout, interval=interval, as_json=as_json)
        else:
            data = api.call("GET", f"/announcements/{seg(announcement_id)}")
            code = EXIT_FAILED if overall_of(data) == "attention" else EXIT_OK
        if as_json:
            emit_json(data)
        else:
            show_status(data)
        return code

    run(ctx, api_url, token, action)


@main.command("list")
@click.option("--kind", default=None)
@click.option("--state", default=None, help="Only announcements with a delivery in this state.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@json_option
@connection_options
@click.pass_context
def list_(ctx, kind, state, limit, as_json, api_url, token):
    """List recent announcements."""

    def action(api: Api) -> int:
        params = {k: v for k, v in {"kind": kind, "state": state, "limit": limit}.items() if v}
        data = api.call("GET", "/announcements", params=params)
        if as_json:
            emit_json(data)
            return EXIT_OK
        rows = []
        for item in items_of(data, "items", "announcements", "data"):
            a = announcement_of(item)
            rows.append([a.get("id"), a.get("kind"), a.get("status") or "", a.get("overall") or a.get("state") or "",
                         a.get("created_at") or "", (a.get("title") or "")[:60]])
        click.echo(table(rows, ["ID", "KIND", "STATUS", "DELIVERY", "CREATED", "TITLE"]) if rows
                   else "no announcements")
        return EXIT_OK

    run(ctx, api_url, token, action)


@main.command()
@compose_options
@json_option
@connection_options
@click.pass_context
def preview(ctx, kind, title, template, next_update, body, body_file, severity, ann_status, components, channels,
            link, publish_at, tags, starts_at, ends_at, as_json, api_url, token):
    """Render the announcement for each channel without sending; exit 1 if a channel refuses it."""
    payload = build_payload(kind, title, body, body_file, severity, ann_status, components, channels, link,
                            publish_at, tags, starts_at, ends_at, template, next_update)

    def action(api: Api) -> int:
        data = api.call("POST", "/preview", json_body=payload)
        rows = preview_rows(data)
        if as_json:
            emit_json(data)
        else:
            for r in rows:
                lengths = r.get("lengths") or []
                limit = r.get("limit")
                head = f"== {r['channel']}: " + (f"ERROR {r['error']}" if r.get("error") else
                                                 f"{len(r.get('parts') or [])} part(s), lengths "
                                                 f"{', '.join(map(str, lengths)) or '-'}"
                                                 + (f" / limit {limit}" if limit else ""))
                click.echo(head)
                parts = r.get("parts") or []
                for i, part in enumerate(parts, 1):
                    if len(parts) > 1:
                        click.echo(f"-- part {i}")
                    click.echo(part)
        return EXIT_FAILED if any(r.get("error") for r in rows) else EXIT_OK

    run(ctx, api_url, token, action)
