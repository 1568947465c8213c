"""Incident templates and update commitments (docs/commitments.md).

``templates``: named, prepared wordings per lifecycle phase (a body per status), with the
title, severity, components and "next update" promise they usually come with — chosen in the
compose form, ``broadcaster post/update --template`` or the API's ``template`` field.

``commitments``: what happens when an incident's promised "next update by" time passes without
an update — who is reminded, and whether a holding statement is proposed or posted.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..models import INCIDENT_STATUSES, MAINTENANCE_STATUSES
from .base import Strict
from .scalars import Duration

#: the statuses a template may word, per kind (its lifecycle phases)
PHASES = {"incident": INCIDENT_STATUSES, "maintenance": MAINTENANCE_STATUSES}
#: where ``{next_update}`` in a template or a holding statement puts the promised time
NEXT_UPDATE = "{next_update}"


class TemplateSettings(Strict):
    kind: Literal["incident", "maintenance"] = "incident"
    title: str = Field(..., min_length=1, max_length=300)
    severity: Literal["minor", "major", "critical"] | None = None
    components: tuple[str, ...] = ()
    #: the promise a post from this template makes unless its author gives one (incidents only)
    next_update: Duration | None = None
    #: status → the body posted in that phase (``{next_update}`` becomes the promised time)
    phases: dict[str, str] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _phases(self) -> TemplateSettings:
        known = PHASES[self.kind]
        for status, body in self.phases.items():
            if status not in known:
                raise ValueError(f"phases.{status}: not a status of {self.kind}s (one of {', '.join(known)})")
            if not body.strip():
                raise ValueError(f"phases.{status}: empty")
        if self.next_update is not None and self.kind != "incident":
            raise ValueError("next_update: only incidents promise their next update (maintenance has its window)")
        return self


class CommitmentsSettings(Strict):
    #: channels told when an incident's promised update is overdue (e.g. the on-call chat)
    remind: tuple[str, ...] = ()
    #: ``propose``: the announcement page offers the holding statement, ready to post with one
    #: click; ``post``: the scheduler posts it (at most ``holding_limit`` times in a row)
    holding: Literal["propose", "post"] = "propose"
    holding_text: str = Field("We are still working on this. Next update by {next_update}.", min_length=1,
                              max_length=2000)
    #: the next promise a holding statement makes
    holding_interval: Duration = Field(1800.0, ge=60.0)
    holding_limit: int = Field(3, ge=1, le=100)
