"""An incident's "next update by" promise: when it is, whether it may be made, and the sentence
every channel carries.

Why the sentence lives in the body: the promise must reach every channel (a chat, a toot, a mail,
the status page) and be covered by the post's signature, and the body is what every channel
posts and what is signed. So the service writes "Next update by 30 Nov 2026, 05:00 UTC." into
the body (and each variant's) once, when the post is accepted; ``next_update_at`` keeps the time
itself for the scheduler's reminder (``commitments.py``). A template or holding statement may
place the time itself with ``{next_update}``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from . import wording
from .config import parse_duration
from .config.commitments import NEXT_UPDATE
from .errors import InvalidRequest
from .requests import NEXT_UPDATE_MAX

#: statuses after which no update is promised
FINAL = frozenset({"resolved", "completed", "cancelled"})


def moment(ts: float) -> str:
    """``30 Nov 2026, 05:00 UTC``: how the status site writes a time, too."""
    d = datetime.fromtimestamp(ts, UTC)
    return f"{d.day} {d:%b %Y, %H:%M} UTC"


def resolve(value: float | str | None, now: float) -> float | None:
    """The promised time: an absolute time as given, a duration (``30m``) counted from ``now``."""
    if value is None:
        return None
    if isinstance(value, str):
        return now + parse_duration(value)
    return float(value)


def check(kind: str, status: str | None, at: float | None, now: float) -> None:
    """Refuse a promise that cannot be kept or means nothing, naming ``next_update_at``."""
    if at is None:
        return
    if kind != "incident":
        raise InvalidRequest("next_update_at: only incidents promise their next update (a maintenance has its "
                             "window)", field="next_update_at")
    if status in FINAL:
        raise InvalidRequest(f"next_update_at: {wording.a(str(status))} incident promises no further update",
                             field="next_update_at")
    if at <= now:
        raise InvalidRequest("next_update_at: must be in the future", field="next_update_at")
    if at > now + NEXT_UPDATE_MAX:
        raise InvalidRequest("next_update_at: at most 7 days ahead (a next update, not a plan)",
                             field="next_update_at")


def line(at: float) -> str:
    return f"Next update by {moment(at)}."


def with_promise(body: str, at: float | None) -> str:
    """``body`` stating the promise: ``{next_update}`` becomes the time; otherwise the sentence is
    added as the last paragraph. Without a promise, a ``{next_update}`` is refused: the text
    would promise a time nobody gave."""
    if at is None:
        if NEXT_UPDATE in body:
            raise InvalidRequest("next_update_at: the text promises a next update ({next_update}); give its time",
                                 field="next_update_at")
        return body
    if NEXT_UPDATE in body:
        return body.replace(NEXT_UPDATE, moment(at))
    return f"{body.rstrip()}\n\n{line(at)}" if body.strip() else line(at)
