"""The base every config section derives from, and the fields every channel has."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class ChannelSettings(Strict):
    """Fields every channel has; each kind extends this with its own (see ``channels/``)."""

    kind: str
    enabled: bool = True
    description: str | None = None
