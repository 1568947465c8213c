"""The scalar types config fields are declared with: durations, rates and URLs.

Each accepts what a person writes in YAML (``30s``, ``300/5m``, ``https://…``) and refuses
anything else with a sentence that says what was expected; the sentence becomes the message
after the key path (see :mod:`.loading`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

from .secrets import Secret

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"250ms"`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("not a duration (use e.g. 30s, 5m, 2h)")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite duration (use e.g. 30s, 5m, 2h)")
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 2h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_rate(value: Any) -> tuple[int, float]:
    """``"300/5m"`` → (300 requests, 300 seconds); ``"1/s"`` → (1, 1.0)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        try:
            limit, per = int(value[0]), float(value[1])
        except (TypeError, ValueError):
            raise ValueError(f"not a rate: {value!r} (use e.g. 300/5m, 1/s)") from None
        if limit <= 0 or not (0 < per < float("inf")):
            raise ValueError(f"not a rate: {value!r} (a positive count per a positive time)")
        return limit, per
    m = re.match(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$", str(value))
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"not a rate: {value!r} (use e.g. 300/5m, 1/s)")
    per = float(m.group(2) or 1) * _UNITS[m.group(3)]
    if per <= 0:
        raise ValueError(f"not a rate: {value!r}")
    return int(m.group(1)), per


def _url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/]+", value):
        raise ValueError("not a URL")
    return value.rstrip("/") if value.count("/") > 3 and value.endswith("/") else value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Rate = Annotated[tuple[int, float], BeforeValidator(parse_rate)]
Url = Annotated[str, BeforeValidator(_url)]
#: a URL that is itself a credential (chat webhook URLs): validated, then masked
SecretUrl = Annotated[Secret, BeforeValidator(_url)]
