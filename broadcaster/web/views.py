"""Data the web page shows, shaped from the ledger and the channels (no HTML here).

The preview is the one preview use case (``broadcaster.preview``), composed like the post, so
what the page counts is what will be posted.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .. import preview as preview_use_case, service
from ..preview import PreviewIn

UPDATE_STATUSES = {"incident": ("investigating", "identified", "monitoring", "resolved"),
                   "maintenance": ("scheduled", "in_progress", "completed", "cancelled")}
RETRYABLE = {"failed", "unknown", "fallen_back"}


def when(value: float | str | None) -> str:
    """Compact UTC time for people: ``2026-01-02 03:04:05Z``."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value.replace("T", " ").split(".")[0].removesuffix("Z") + "Z"
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def safe_link(url: str | None) -> str | None:
    """Only http(s) links become clickable (a ``javascript:`` URL from a provider must not)."""
    return url if url and url.startswith(("http://", "https://")) else None


# ---------------------------------------------------------------- preview


def preview(runtime, data: dict, author: str) -> list[dict[str, Any]]:
    """Render ``data`` (an unsent announcement) for each of its channels, via the API's preview."""
    try:
        req = PreviewIn.model_validate(data)
    except ValidationError as exc:
        raise service.validation_problem(exc) from None
    return [asdict(row) for row in preview_use_case.preview(runtime, req, author)]


# ---------------------------------------------------------------- announcement page and lists


def detail(runtime, ann_id: str) -> dict[str, Any]:
    """The announcement with deliveries and events, in the API's own JSON shape."""
    from ..schemas import announcement_detail

    return announcement_detail(service.status_of(runtime, ann_id)).model_dump(mode="json", by_alias=True)


def groups(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Deliveries grouped per post: the announcement first, then each update in order."""
    labels = {None: "Announcement"}
    for u in data.get("updates", []):
        labels[u["id"]] = f"Update: {u['status']}"
    out: dict[Any, dict] = {}
    for d in data.get("deliveries", []):
        g = out.setdefault(d.get("update_id"), {"id": d.get("update_id"), "label": labels.get(d.get("update_id"),
                                                                                            "Update"),
                                                "deliveries": []})
        g["deliveries"].append(d)
    return list(out.values())


def overdue(ann, now: float) -> bool:
    """An open incident whose promised update time has passed without an update."""
    return (ann.kind == "incident" and ann.next_update_at is not None and ann.next_update_at <= now
            and ann.status != "resolved" and not ann.retracted_at)


#: the "next update in" choices the forms offer (a duration from the moment of posting)
PROMISES = (("", "no promise"), ("15m", "15 minutes"), ("30m", "30 minutes"), ("1h", "1 hour"), ("2h", "2 hours"),
            ("4h", "4 hours"))


def promise_value(seconds: float) -> str:
    """A duration as the forms write it: ``30m``, ``2h``, ``90s``."""
    s = int(seconds)
    if s % 3600 == 0:
        return f"{s // 3600}h"
    return f"{s // 60}m" if s % 60 == 0 else f"{s}s"


def promise_choices(chosen: str | None = None) -> list[tuple[str, str]]:
    """The choices, with ``chosen`` among them (a template's or the holding interval's duration)."""
    out = list(PROMISES)
    if chosen and chosen not in dict(out):
        n, unit = chosen[:-1], chosen[-1:]
        label = {"m": "minutes", "h": "hours", "s": "seconds"}.get(unit, "")
        out.insert(1, (chosen, f"{n} {label}".strip()))
    return out


def listing(runtime, *, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    anns = runtime.ledger.list_announcements(kind=kind or None, limit=limit)
    deliveries = runtime.ledger.deliveries_for([a.id for a in anns])
    now = runtime.clock()
    return [{"id": a.id, "kind": a.kind, "title": a.title, "status": a.status, "severity": a.severity,
             "created": when(a.created_at), "retracted": bool(a.retracted_at), "overdue": overdue(a, now),
             "overall": service.overall([d.state for d in deliveries[a.id]], retracted=bool(a.retracted_at))}
            for a in anns]


def board(runtime) -> list[dict[str, Any]]:
    """Channel health: breaker state (shared Redis; 'unknown' if unreachable), backlog, last success."""
    settings = runtime.settings
    try:
        stats = runtime.ledger.channel_stats()
    except Exception:  # noqa: BLE001 - the board still lists the channels when the ledger cannot answer
        stats = {}
    rows = []
    for name, cfg in settings.channels.items():
        s = stats.get(name, {})
        try:
            br = runtime.breaker.state(name, settings.policy_for(name).breaker.cooldown)
            breaker, failures = br.state, br.failures
        except Exception:  # noqa: BLE001 - shared state unreachable: shown as unknown, not as an error page
            breaker, failures = "unknown", None
        rows.append({"name": name, "kind": cfg.kind, "enabled": cfg.enabled, "description": cfg.description,
                     "breaker": breaker, "failures": failures, "backlog": s.get("backlog", 0),
                     "last_success": when(s.get("last_success")), "oldest_due": when(s.get("oldest_due")),
                     "counts": s.get("states", {})})
    return rows
