"""Which rule an alert falls under, and the rule's text filled in from the alert.

Templates are plain text with ``{name}`` or ``{labels.x}`` / ``{annotations.x}`` places, filled
in one pass by a regular expression — not ``str.format`` and not a template engine, so alert
text (which anyone who can make an alert fire controls) can neither reach attributes nor be
expanded a second time. Unknown places become empty.
"""

from __future__ import annotations

import re

from ..config import InboundRule, InboundSettings
from .signals import Signal

_PLACE = re.compile(r"\{([a-z_]+)(?:\.([A-Za-z0-9_.-]+))?\}")


def match(settings: InboundSettings, receiver: str, source: str, signal: Signal) -> InboundRule | None:
    """The first rule whose every condition holds (``"*"`` as a label value: the label is set)."""
    for rule in settings.rules:
        m = rule.match
        if m.receiver and m.receiver != receiver:
            continue
        if m.source and m.source != source:
            continue
        if m.severity and signal.labels.get("severity") != m.severity:
            continue
        if all((signal.labels.get(k) is not None) if v == "*" else signal.labels.get(k) == v
               for k, v in m.labels.items()):
            return rule
    return None


def fill(template: str, signal: Signal, *, receiver: str, source: str) -> str:
    flat = {"title": signal.title, "summary": signal.summary, "url": signal.url or "", "receiver": receiver,
            "source": source, "status": "firing" if signal.firing else "resolved", "count": str(signal.count)}

    def one(m: re.Match[str]) -> str:
        name, key = m.group(1), m.group(2)
        if key is None:
            return flat.get(name, "")
        if name == "labels":
            return signal.labels.get(key, "")
        if name == "annotations":
            return signal.annotations.get(key, "")
        return ""

    return _PLACE.sub(one, template).strip()
