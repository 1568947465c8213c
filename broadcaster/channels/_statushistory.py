"""How each component did over time, from the incidents and maintenance in the site's state:
the 90-day bar (each day coloured by its worst state) and the uptime percentage.

Why from the timeline and not from the current state: an incident's updates record when its
status changed, and a maintenance its window, so the past can be rebuilt at every build without
storing anything more. Uptime counts the time a component was in a partial or major outage or
under maintenance; degraded performance is shown on the bar but counts as up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from . import _statustime as when

DAYS = 90
ORDER = ("operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage")
DOWN = frozenset({"under_maintenance", "partial_outage", "major_outage"})
Segment = tuple[float, float, str]


def worse(a: str, b: str) -> str:
    return a if ORDER.index(a) >= ORDER.index(b) else b


def segments(inc: dict, name: str, now: float, state_of: Callable[[dict, str, str], str]) -> list[Segment]:
    """(start, end, state) spans during which ``inc`` held component ``name`` in ``state``;
    ``state_of(incident, status, component)`` is the page's own rule for one status."""
    out: list[Segment] = []
    updates = inc.get("updates") or []
    window = inc.get("window") or None
    if inc.get("kind") == "maintenance" and window:
        final = next((u["created_at"] for u in updates if u["status"] in ("completed", "cancelled")), None)
        if not any(u["status"] == "cancelled" and u["created_at"] <= window["starts_at"] for u in updates):
            end = min(window["ends_at"], final if final is not None else window["ends_at"], now)
            if end > window["starts_at"]:
                out.append((window["starts_at"], end, "under_maintenance"))
        return out
    for i, u in enumerate(updates):
        end = updates[i + 1]["created_at"] if i + 1 < len(updates) else now
        st = state_of(inc, u["status"], name)
        if st != "operational" and end > u["created_at"]:
            out.append((u["created_at"], end, st))
    return out


def day_start(ts: float) -> float:
    d = datetime.fromtimestamp(ts, UTC)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def bar(spans: list[Segment], now: float, days: int = DAYS) -> list[dict]:
    """``days`` days ending today (UTC): each with its worst state and the time spent in each
    non-operational state."""
    first = day_start(now) - (days - 1) * when.DAY
    out = []
    for i in range(days):
        lo, hi = first + i * when.DAY, first + (i + 1) * when.DAY
        worst, spent = "operational", dict[str, float]()
        for s, e, st in spans:
            overlap = min(e, hi) - max(s, lo)
            if overlap > 0:
                worst = worse(worst, st)
                spent[st] = spent.get(st, 0.0) + overlap
        out.append({"start": lo, "state": worst, "spent": spent})
    return out


def merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def uptime(spans: list[Segment], now: float, days: int = DAYS) -> float:
    """Percentage of the last ``days`` days not spent down (overlapping incidents count once)."""
    lo = now - days * when.DAY
    down = merged([(max(s, lo), min(e, now)) for s, e, st in spans if st in DOWN and min(e, now) > max(s, lo)])
    total = days * when.DAY
    return round(100.0 * (total - sum(e - s for s, e in down)) / total, 2)
