"""Client commands over the HTTP API: post, update, retract, cancel, status, list, retry, preview.

They talk only to the API (``BROADCASTER_URL``, ``BROADCASTER_TOKEN``), never to the ledger, so a
CI runner needs nothing but a URL and a scoped token. Exit codes: 0 all
delivered / ok, 1 some channel failed or unknown (or ``--wait`` timed out), 2 usage, config or a
refused request, 3 server unreachable.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import click
import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from ..models import SETTLED as SETTLED_STATES, current_error, overall
from . import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main

DEFAULT_URL = "http://127.0.0.1:8080"
SETTLED = {str(s) for s in SETTLED_STATES}
BAD = {"failed", "unknown"}
#: ``overall`` words that end a ``--wait``, and the exit code each maps to
WAIT_DONE = {"delivered": EXIT_OK, "cancelled": EXIT_OK, "retracted": EXIT_OK, "attention": EXIT_FAILED}
UNREACHABLE_STATUS = {502, 503, 504}


class ClientError(Exception):
    """A failure to report in one line, with the exit code it maps to."""

    def __init__(self, message: str, code: int, payload: Any = None):
        super().__init__(message)
        self.code = code
        self.payload = payload


# ---------------------------------------------------------------- the HTTP side


class IdParam(click.ParamType):
    """An id given on the command line: it becomes one path segment of a request, so an id with
    ``/`` (or one that is ``.`` or ``..``) is refused as a usage error (exit 2) before any request —
    ``ann_../../x`` used to reach ``/api/v1/x``."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text or "/" in text or text in (".", ".."):
            self.fail(f"{text!r} is not an id (an id has no '/' and is not '.' or '..')", param, ctx)
        return text


ID = IdParam()


def seg(value: str) -> str:
    """``value`` as one URL path segment: every reserved character percent-encoded."""
    return quote(value, safe="")


def _transient(exc: BaseException) -> bool:
    # only failures where the request cannot have been processed, or POSTs carrying a key
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError))


class Api:
    """A thin httpx wrapper: auth header, JSON errors → :class:`ClientError`, short connect retries."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 10.0, attempts: int = 3,
                 transport: httpx.BaseTransport | None = None):
        self.base = url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "broadcaster-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=f"{self.base}/api/v1", headers=headers, timeout=timeout,
                                 transport=transport)
        self.attempts = attempts

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, *, json_body: Any = None, params: dict | None = None,
             headers: dict | None = None) -> Any:
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=wait_exponential(multiplier=0.2, max=1.0),
                            retry=retry_if_exception(_transient), reraise=True)
        try:
            resp = retrying(self.http.request, method, path, json=json_body, params=params, headers=headers)
        except httpx.TimeoutException:
            raise ClientError(f"server at {self.base} did not answer in time", EXIT_UNREACHABLE) from None
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the server at {self.base} ({type(exc).__name__})",
                              EXIT_UNREACHABLE) from None
        return self._result(resp)

    def _result(self, resp: httpx.Response) -> Any:
        try:
            data = resp.json() if resp.content else None
        except ValueError:
            data = None
        if resp.is_success:
            return data
        err = (data or {}).get("error") if isinstance(data, dict) else None
        message = (err or {}).get("message") or resp.reason_phrase or "request failed"
        details = (err or {}).get("details")
        field = details.get("field") if isinstance(details, dict) else None
        text = f"{resp.status_code} {message}" + (f" (field: {field})" if field and field not in message else "")
        if resp.status_code in UNREACHABLE_STATUS:
            raise ClientError(f"server unavailable: {text}", EXIT_UNREACHABLE, data)
        if resp.status_code == 429:
            retry = resp.headers.get("Retry-After")
            raise ClientError(f"rate limited: {text}" + (f"; retry after {retry}s" if retry else ""), EXIT_FAILED, data)
        if 400 <= resp.status_code < 500:
            raise ClientError(text, EXIT_USAGE, data)
        raise ClientError(f"server error: {text}", EXIT_FAILED, data)


# ---------------------------------------------------------------- shapes (tolerant of envelope choices)


def announcement_of(data: dict) -> dict:
    """The announcement fields whether the API nests them under ``announcement`` or not."""
    inner = data.get("announcement")
    return {**data, **inner} if isinstance(inner, dict) else data


def items_of(data: Any, *keys: str) -> list:
    if isinstance(data, list):
        return data
    for key in keys:
        if isinstance(data, dict) and isinstance(data.get(key), list):
            return data[key]
    return []


def preview_rows(data: Any) -> list[dict]:
    """Per-channel preview entries as a list of dicts that each carry ``channel``."""
    chans = data.get("channels", data) if isinstance(data, dict) else data
    if isinstance(chans, dict):
        return [{"channel": name, **(v or {})} for name, v in chans.items()]
    return [dict(v) for v in (chans or [])]


def overall_of(data: dict, deliveries: list[dict] | None = None) -> str:
    """The shared :func:`broadcaster.models.overall` over (a selection of) an API answer's deliveries."""
    rows = data.get("deliveries") or [] if deliveries is None else deliveries
    return overall([d.get("state") or "" for d in rows], retracted=bool(announcement_of(data).get("retracted_at")))


# ---------------------------------------------------------------- output


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _iso_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _error_now(d: dict) -> str | None:
    """The API's ``current_error`` (the shared rule), computed alike from an older server's answer."""
    if "current_error" in d:
        return d["current_error"]
    return current_error(str(d.get("state") or ""), d.get("last_error"))


def note_of(d: dict, held: list[dict], now: datetime | None = None) -> str:
    """The LINK / NOTE cell: the post's link; why it waits; or an error that still matters.

    A delivery settled as delivered (by a later attempt or an operator's ``confirm``) keeps its
    old ``last_error`` in the API for the record, but showing it here would read as a failure."""
    state = d.get("state")
    if state == "retracted" and _error_now(d):  # retracted, but the post is still up: say so first
        return str(_error_now(d))
    if d.get("remote_url"):
        return str(d["remote_url"])
    if state == "scheduled":
        if d.get("due_at") is None:  # two-person review holds it without a due time
            return "awaiting a second person's approval (broadcaster approvals list)"
        due = _iso_time(d.get("due_at"))
        if due is not None and due > (now or datetime.now(UTC)):
            return f"until {d.get('due_at')}"
        if held:
            return "held: " + ", ".join(f"incident {h.get('id')} is open" for h in held)
        return "due; waiting for the scheduler"
    return _error_now(d) or ""


def delivery_rows(deliveries: list[dict], held: list[dict] | None = None) -> list[list[Any]]:
    return [[d.get("channel"), d.get("state"), d.get("attempts"), note_of(d, held or []), d.get("id")]
            for d in deliveries]


def delivery_blocks(data: dict) -> list[tuple[str, list[dict]]]:
    """Deliveries grouped by what they carry: the announcement first, then each update in order."""
    deliveries = data.get("deliveries") or []
    blocks: list[tuple[str, list[dict]]] = []
    original = [d for d in deliveries if not d.get("update_id")]
    if original:
        blocks.append(("announcement", original))
    known = set()
    for u in data.get("updates") or []:
        known.add(u.get("id"))
        rows = [d for d in deliveries if d.get("update_id") == u.get("id")]
        if rows:
            blocks.append((f"update {u.get('id')} ({u.get('status')}, {u.get('created_at') or '?'})", rows))
    for upd_id in dict.fromkeys(d.get("update_id") for d in deliveries if d.get("update_id") not in known | {None}):
        blocks.append((f"update {upd_id}", [d for d in deliveries if d.get("update_id") == upd_id]))
    return blocks


def show_status(data: dict) -> None:
    ann = announcement_of(data)
    held = data.get("held_by") or []
    click.echo(f"{ann.get('id')}  {ann.get('kind')}  {ann.get('status') or ''}  {ann.get('title')}")
    word = overall_of(data)
    why = ""
    if word == "scheduled" and held:
        why = " (held while " + ", ".join(f"incident {h.get('id')} \"{h.get('title')}\"" for h in held) + " is open)"
    elif word == "scheduled" and ann.get("publish_at"):
        why = f" (publish at {ann.get('publish_at')})"
    click.echo(f"overall: {word}{why}")
    for label, rows in delivery_blocks(data):
        click.echo(f"\n{label}:")
        click.echo(table(delivery_rows(rows, held), ["CHANNEL", "STATE", "TRIES", "LINK / NOTE", "DELIVERY"]))


# ---------------------------------------------------------------- shared options and plumbing


def connection_options(fn: Callable) -> Callable:
    fn = click.option("--token", envvar="BROADCASTER_TOKEN", metavar="TOKEN",
                      help="API token (env BROADCASTER_TOKEN).")(fn)
    # --api-url, not --url: on post/preview --url is the announcement's link (the API field name)
    fn = click.option("--api-url", "api_url", envvar="BROADCASTER_URL", default=DEFAULT_URL, show_default=True,
                      metavar="URL", help="API base URL (env BROADCASTER_URL).")(fn)
    return fn


def json_option(fn: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def compose_options(fn: Callable) -> Callable:
    """The announcement inputs shared by ``post`` and ``preview``."""
    opts = [
        click.option("--kind", required=True, type=click.Choice(["incident", "maintenance", "promotion", "deploy",
                                                                   "notice"])),
        click.option("--title", required=True),
        click.option("--body", default=None, help="Body text (Markdown subset)."),
        click.option("--body-file", type=click.File("r", encoding="utf-8"), default=None,
                     help="Read the body from a file, or '-' for standard input."),
        click.option("--severity", type=click.Choice(["minor", "major", "critical"]), default=None),
        click.option("--status", "ann_status", default=None, help="Initial status (e.g. investigating)."),
        click.option("--component", "components", multiple=True, metavar="NAME[=STATE]",
                     help="Affected component (repeatable); NAME=STATE sets its state on the status page "
                          "(operational, degraded_performance, partial_outage, major_outage, under_maintenance) "
                          "instead of the severity's."),
        click.option("--channel", "channels", multiple=True, help="Channel (repeatable; default: the route)."),
        click.option("--url", "link", default=None, help="Link to include (http/https)."),
        click.option("--publish-at", default=None, metavar="ISO", help="Publish later (ISO 8601)."),
        click.option("--tag", "tags", multiple=True, help="Tag (repeatable)."),
        click.option("--starts-at", default=None, metavar="ISO",
                     help="Maintenance window start (ISO 8601; UTC unless it names an offset). With --ends-at."),
        click.option("--ends-at", default=None, metavar="ISO", help="Maintenance window end (after --starts-at)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def window_payload(kind: str, starts_at: str | None, ends_at: str | None) -> dict[str, str] | None:
    """``--starts-at``/``--ends-at`` → the request's ``window``, checked by the same model the API
    uses (so a bad time or an end not after the start is a usage error before anything is sent)."""
    if starts_at is None and ends_at is None:
        return None
    if kind != "maintenance":
        raise click.UsageError("--starts-at/--ends-at give a maintenance window: use them with --kind maintenance")
    if starts_at is None or ends_at is None:
        raise click.UsageError("a maintenance window needs both --starts-at and --ends-at")
    from pydantic import ValidationError

    from ..requests import WindowIn

    window = {"starts_at": starts_at, "ends_at": ends_at}
    try:
        WindowIn.model_validate(window)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = {"starts_at": "--starts-at", "ends_at": "--ends-at"}.get(str(err["loc"][0]) if err["loc"] else "",
                                                                        "--ends-at")
        msg = str(err["msg"]).removeprefix("Value error, ")
        if "must be after" in msg:
            msg = f"must be after --starts-at ({starts_at})"
        raise click.BadParameter(msg, param_hint=f"'{flag}'") from None
    return window


def component_args(values: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """``--component API`` and ``--component API=major_outage``: the names, and the states given.
    A value whose part after ``=`` is no component state stays a plain name (the API judges it)."""
    from ..models import COMPONENT_STATES

    names: list[str] = []
    states: dict[str, str] = {}
    for value in values:
        name, sep, state = value.rpartition("=")
        if sep and state.strip() in COMPONENT_STATES and name.strip():
            names.append(name.strip())
            states[name.strip()] = state.strip()
        else:
            names.append(value)
    return names, states


def build_payload(kind, title, body, body_file, severity, ann_status, components, channels, link, publish_at,
                  tags, starts_at=None, ends_at=None) -> dict:
    if body is not None and body_file is not None:
        raise click.UsageError("give --body or --body-file, not both")
    if body_file is not None:
        body = body_file.read()
    payload: dict[str, Any] = {"kind": kind, "title": title, "body": body or ""}
    optional = {"severity": severity, "status": ann_status, "url": link, "publish_at": publish_at}
    payload.update({k: v for k, v in optional.items() if v})
    names, states = component_args(components)
    if states:
        payload["component_states"] = states
    for key, values in (("components", names), ("channels", channels), ("tags", tags)):
        if values:
            payload[key] = list(values)
    window = window_payload(kind, starts_at, ends_at)
    if window:
        payload["window"] = window
    return payload


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


def wait_options(fn: Callable) -> Callable:
    fn = click.option("--interval", type=float, default=1.0, hidden=True)(fn)
    fn = click.option("--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True,
                      help="Seconds --wait waits before giving up (exit 1).")(fn)
    fn = click.option("--wait", is_flag=True, help="Wait until every channel is settled; show progress.")(fn)
    return fn


# ---------------------------------------------------------------- commands


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
def post(ctx, kind, title, body, body_file, severity, ann_status, components, channels, link, publish_at, tags,
         starts_at, ends_at, idempotency_key, direct, journal, subscribers_file, wait, quiet, timeout, interval,
         as_json, api_url, token):
    """Submit an announcement once; the workers deliver it to every channel."""
    payload = build_payload(kind, title, body, body_file, severity, ann_status, components, channels, link,
                            publish_at, tags, starts_at, ends_at)
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
@click.option("--idempotency-key", default=None)
@wait_options
@json_option
@connection_options
@click.pass_context
def update(ctx, announcement_id, upd_status, body, body_file, title, idempotency_key, wait, timeout, interval,
           as_json, api_url, token):
    """Post a follow-up (threaded under the original on every channel)."""
    if body is not None and body_file is not None:
        raise click.UsageError("give --body or --body-file, not both")
    text = body_file.read() if body_file is not None else body
    if not text:
        raise click.UsageError("an update needs text: --body or --body-file")
    payload: dict[str, Any] = {"status": upd_status, "body": text}
    if title:
        payload["title"] = title
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
        visible = [d for d in final.get("deliveries") or [] if d.get("state") == "retracted" and _error_now(d)]
        if visible and code == EXIT_OK:
            code = EXIT_FAILED
        if as_json:
            emit_json({**final, "exit_code": code, "accepted": res,
                       "still_visible": [{"channel": d.get("channel"), "id": d.get("id"), "note": _error_now(d)}
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
def preview(ctx, kind, title, body, body_file, severity, ann_status, components, channels, link, publish_at, tags,
            starts_at, ends_at, as_json, api_url, token):
    """Render the announcement for each channel without sending; exit 1 if a channel refuses it."""
    payload = build_payload(kind, title, body, body_file, severity, ann_status, components, channels, link,
                            publish_at, tags, starts_at, ends_at)

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

