"""What the client commands print: tables, the status view, the LINK / NOTE cell, JSON.

Pure functions of an API answer (tolerant of envelope choices: ``announcement`` nested or not,
lists under ``items`` or bare). The one-word summary is :func:`broadcaster.models.overall`, the
same function the API and the web page use, so the three never disagree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from ..models import current_error, overall


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


def error_now(d: dict) -> str | None:
    """The API's ``current_error`` (the shared rule), computed alike from an older server's answer."""
    if "current_error" in d:
        return d["current_error"]
    return current_error(str(d.get("state") or ""), d.get("last_error"))


def note_of(d: dict, held: list[dict], now: datetime | None = None) -> str:
    """The LINK / NOTE cell: the post's link; why it waits; or an error that still matters.

    A delivery settled as delivered (by a later attempt or an operator's ``confirm``) keeps its
    old ``last_error`` in the API for the record, but showing it here would read as a failure."""
    state = d.get("state")
    if state == "retracted" and error_now(d):  # retracted, but the post is still up: say so first
        return str(error_now(d))
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
    if state == "unknown" and not error_now(d):  # a row recorded without its reason (older versions)
        return (f"may have been posted: check {d.get('channel') or 'the channel'}, then "
                f"`broadcaster confirm {d.get('id')}` (it is there) or `broadcaster retry {d.get('id')}`")
    return error_now(d) or ""


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
