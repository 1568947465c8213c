"""Keeping "next update by" promises: when an incident's promised update time passes without an
update, its team is reminded and a holding statement is proposed or posted.

A scheduler hook (``scheduler.feature_hooks``) finds each overdue promise once
(``ledger/commitments.py``) and:

1. **reminds** the channels in ``commitments.remind`` (the on-call chat or mail) with a notice
   naming the incident, the promise, its author and the page to post from. It goes through the
   normal submit path (ledger, retries, audit) with an Idempotency-Key derived from the promise,
   so two schedulers send it once; it is never held by ``quiet_during_incidents`` or review —
   it exists because an incident is open. The author sees the same on the announcement page
   (and the list): the promise, overdue, with the holding statement filled in, one click away.
2. with ``commitments.holding: post``, **posts the holding statement** (``holding_text``, its
   ``{next_update}`` the new promise ``holding_interval`` later) as an update in the incident's
   current status, to every channel — at most ``holding_limit`` in a row, after which only the
   reminders continue until a person posts.

Everything said is a function of the announcement and the promise, never of the moment the
sweep ran, so a racing scheduler's repeat replays instead of posting again.
"""

from __future__ import annotations

import logging
from typing import Any

from . import promises, service
from .errors import Conflict, InvalidRequest
from .ledger.commitments import CommitmentStore
from .models import Announcement
from .principal import Principal
from .runtime import Runtime

log = logging.getLogger(__name__)

#: who writes the reminders and holding statements (audit log, update author)
COMMITMENTS = Principal("commitments", admin=True)


def page_link(runtime: Runtime, ann_id: str) -> str:
    return f"{runtime.settings.public_url.rstrip('/')}/announcements/{ann_id}"


def reminder(runtime: Runtime, ann: Announcement, promise: float) -> dict[str, Any]:
    """The notice to ``commitments.remind`` about ``ann``'s missed promise."""
    cfg = runtime.settings.commitments
    then = ("A holding statement is posted for you in its current status."
            if cfg.holding == "post" else "The page has a holding statement ready to post.")
    body = (f"The next update on the incident \"{ann.title}\" was promised by {promises.moment(promise)}, "
            f"and none has been posted. Post an update, or resolve it: {page_link(runtime, ann.id)}\n\n"
            f"{then} Opened by {ann.author or 'unknown'}.")
    return {"kind": "notice", "title": f"Update overdue: {ann.title}"[:300], "body": body,
            "channels": list(dict.fromkeys(cfg.remind)), "tags": ["reminder"]}


def next_promise(runtime: Runtime, promise: float, now: float) -> float:
    """The promise a holding statement makes: ``holding_interval`` after the missed one — or
    after now, when the sweep comes that late (the scheduler was down)."""
    interval = runtime.settings.commitments.holding_interval
    return (promise if now - promise < interval else now) + interval


def holding_update(runtime: Runtime, ann: Announcement, promise: float, now: float) -> dict[str, Any]:
    """The holding statement for ``ann`` (what the page proposes and ``holding: post`` posts)."""
    nxt = next_promise(runtime, promise, now)
    return {"status": ann.status or "investigating", "body": runtime.settings.commitments.holding_text,
            "next_update_at": nxt}


def automatic_in_a_row(runtime: Runtime, ann_id: str) -> int:
    """Holding statements posted one after the other, with no person's update since."""
    n = 0
    for u in reversed(runtime.ledger.snapshot(ann_id)[1]):
        if u.author != COMMITMENTS.name:
            break
        n += 1
    return n


def handle(runtime: Runtime, ann: Announcement, now: float) -> dict[str, bool]:
    """Remind of one overdue promise and, where configured, post the holding statement."""
    settings = runtime.settings
    cfg = settings.commitments
    promise = ann.next_update_at
    assert promise is not None  # overdue() returns only announcements with a promise
    done = {"reminded": False, "held": False}
    remind = [c for c in cfg.remind if c in settings.channels and settings.channels[c].enabled]
    if remind:
        service.submit(runtime, {**reminder(runtime, ann, promise), "channels": remind}, principal=COMMITMENTS,
                       idempotency_key=f"overdue:{ann.id}:{promise!r}", internal=True)
        done["reminded"] = True
    if not CommitmentStore(runtime.ledger).mark_reminded(ann.id, promise):
        return done  # an update made a new promise meanwhile: nothing is overdue any more
    if cfg.holding == "post" and automatic_in_a_row(runtime, ann.id) < cfg.holding_limit:
        try:
            # the configured text, as the window steps say nothing a person wrote: not held for review
            service.add_update(runtime, ann.id, holding_update(runtime, ann, promise, now), principal=COMMITMENTS,
                               idempotency_key=f"holding:{promise!r}", review_applies=False)
            done["held"] = True
        except Conflict:
            pass  # another scheduler posted it at the same moment
        except InvalidRequest as exc:
            log.warning("incident %s: cannot post the holding statement (%s)", ann.id, exc)
    return done


def overdue_hook(runtime: Runtime, report: Any = None) -> int:
    """Scheduler hook: handle every promise that passed unanswered since the last sweep."""
    now = runtime.clock()
    n = 0
    for ann in CommitmentStore(runtime.ledger).overdue(now):
        try:
            done = handle(runtime, ann, now)
        except Exception:  # one broken announcement must not stop the others
            log.exception("incident %s: could not handle its overdue update", ann.id)
            continue
        n += 1
        log.warning("incident %s: the promised update (by %s) is overdue%s%s", ann.id,
                    promises.moment(ann.next_update_at or now), "; reminded" if done["reminded"] else "",
                    "; holding statement posted" if done["held"] else "")
    if report is not None and n:
        report.extra["overdue_updates"] = n
    return n
