"""The click options client commands share, and the request body ``post``/``preview`` build.

Inputs are checked here with the API's own models where that is cheap (a maintenance window),
so a mistake is a usage error (exit 2) before any request is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from ..models import COMPONENT_STATES
from ..requests import WindowIn

DEFAULT_URL = "http://127.0.0.1:8080"


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
        click.option("--title", default=None, help="Required unless --template gives one."),
        click.option("--template", default=None, metavar="NAME",
                     help="A configured template (templates:): fills the title, the text of the status, severity, "
                          "components and next update you leave out."),
        click.option("--next-update", "next_update", default=None, metavar="WHEN",
                     help="Incidents: promise the next update — in 30m, 1h… or at an ISO 8601 time. Every channel "
                          "says \"Next update by …\"; if it passes, the team is reminded."),
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
                  tags, starts_at=None, ends_at=None, template=None, next_update=None) -> dict:
    if body is not None and body_file is not None:
        raise click.UsageError("give --body or --body-file, not both")
    if body_file is not None:
        body = body_file.read()
    if not title and not template:
        raise click.UsageError("give --title (or --template NAME, whose title is used)")
    payload: dict[str, Any] = {"kind": kind, "title": title or "", "body": body or ""}
    optional = {"severity": severity, "status": ann_status, "url": link, "publish_at": publish_at,
                "template": template, "next_update_at": next_update}
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


def wait_options(fn: Callable) -> Callable:
    fn = click.option("--interval", type=float, default=1.0, hidden=True)(fn)
    fn = click.option("--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True,
                      help="Seconds --wait waits before giving up (exit 1).")(fn)
    fn = click.option("--wait", is_flag=True, help="Wait until every channel is settled; show progress.")(fn)
    return fn
