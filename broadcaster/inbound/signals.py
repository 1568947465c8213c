"""Each tool's webhook payload, read into one shape: a :class:`Signal` for an alert group.

Only what a rule or a reviewer needs is kept; a payload that is not what the tool documents is
refused with the field that is wrong (422), and an event that is not about an alert starting or
ending (a test ping, an acknowledgement) is :class:`Ignored` (answered 200, nothing created).

Alert text is cleaned on arrival, by the rules every intake checks (``broadcaster.limits``):
whoever can make an alert fire writes it, and nobody can ask the sender to send it again. So
control characters and hidden ones (bidirectional controls such as U+202E, invisible operators)
and zero-width spaces are removed from every field, and a title is one line (line breaks become
spaces): a draft built from an alert shows what it says and can always be published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest
from ..limits import ZERO_WIDTH, cleaned

#: how much of each text field is kept (a reviewer reads it; a rule template fills from it)
MAX_TEXT = 2000


class Ignored(Exception):
    """A well-formed event that opens or closes nothing."""


@dataclass(frozen=True)
class Signal:
    group: str  # the sender's grouping key: one draft per group
    firing: bool
    title: str
    summary: str = ""
    url: str | None = None
    event_id: str | None = None  # for replay detection where the sender has one
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    count: int = 1

    def excerpt(self) -> dict[str, Any]:
        """What the reviewer sees next to the draft."""
        return {"group": cleaned(self.group[:300], one_line=True), "status": "firing" if self.firing else "resolved", "title": self.title,
                "summary": self.summary, "url": self.url, "labels": self.labels, "annotations": self.annotations,
                "count": self.count}


def _text(value: Any) -> str:
    """A text field as a reviewer and a template may use it (multi-line, cleaned; zero-width
    spaces go too: an alert has no use for them, and a template may put this text in a title)."""
    raw = value[:MAX_TEXT] if isinstance(value, str) else ("" if value is None else str(value)[:MAX_TEXT])
    return ZERO_WIDTH.sub("", cleaned(raw, one_line=False))


def _line(value: Any) -> str:
    """A one-line field (a title, a link, a label's name), cleaned: line breaks become spaces."""
    return cleaned(_text(value), one_line=True)


def _map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {_line(k)[:100]: _text(v) for k, v in list(value.items())[:100]}


def _list(value: Any) -> list[Any]:
    """A list the sender sent, or none: a number or an object where a list belongs is no crash."""
    return value[:100] if isinstance(value, list) else []


def _maybe(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    return value if isinstance(value, dict) else {}


def _obj(payload: Any, key: str, where: str = "") -> dict[str, Any]:
    value = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}{key}: expected an object", field=f"{where}{key}")
    return value


def alertmanager(payload: dict[str, Any]) -> Signal:
    """Alertmanager's webhook (version 4); Grafana's contact point sends the same shape plus more."""
    alerts = payload.get("alerts")
    status = payload.get("status")
    if not isinstance(alerts, list) or not alerts or not all(isinstance(a, dict) for a in alerts):
        raise InvalidRequest("alerts: expected a non-empty list of alerts", field="alerts")
    if status not in ("firing", "resolved"):
        raise InvalidRequest("status: expected 'firing' or 'resolved'", field="status")
    group = payload.get("groupKey")
    if not isinstance(group, str) or not group:
        group = ",".join(sorted(_text(a.get("fingerprint")) for a in alerts))
    if not group.strip(","):
        raise InvalidRequest("groupKey: missing (and no alert has a fingerprint)", field="groupKey")
    first = alerts[0]
    labels = {**_map(first.get("labels")), **_map(payload.get("commonLabels"))}
    notes = {**_map(first.get("annotations")), **_map(payload.get("commonAnnotations"))}
    firing = [a for a in alerts if a.get("status", status) == "firing"]
    return Signal(group=group, firing=status == "firing", title=_line(payload.get("title")) or _line(labels.get(
        "alertname")) or "alert", summary=notes.get("summary") or notes.get("description") or _text(
        payload.get("message")), url=_line(first.get("generatorURL")) or _line(payload.get("externalURL")) or None,
        labels=labels, annotations=notes, count=len(firing) or len(alerts))


def pagerduty(payload: dict[str, Any]) -> Signal:
    """A PagerDuty v3 webhook: ``event`` with ``event_type`` and the incident in ``data``."""
    event = _obj(payload, "event")
    kind = event.get("event_type")
    if kind in ("incident.triggered", "incident.reopened"):
        firing = True
    elif kind == "incident.resolved":
        firing = False
    else:
        raise Ignored(f"event type {_text(kind)!r} opens or closes nothing")
    data = _obj(event, "data", "event.")
    incident = data.get("id")
    if not isinstance(incident, str) or not incident:
        raise InvalidRequest("event.data.id: expected the incident id", field="event.data.id")
    service, priority = _maybe(data, "service"), _maybe(data, "priority")
    labels = {"service": _text(service.get("summary")), "urgency": _text(data.get("urgency")),
              "priority": _text(priority.get("summary")), "severity": _text(priority.get("summary") or
                                                                           data.get("urgency"))}
    return Signal(group=incident, firing=firing, title=_line(data.get("title")) or "PagerDuty incident",
                  summary=_text(data.get("title")), url=_line(data.get("html_url")) or None,
                  event_id=_text(event.get("id")) or None, labels={k: v for k, v in labels.items() if v})


def opsgenie(payload: dict[str, Any]) -> Signal:
    """Opsgenie's webhook integration: ``action`` (Create, Close, …) and the ``alert``."""
    action = payload.get("action")
    if action not in ("Create", "Close"):
        raise Ignored(f"action {_text(action)!r} opens or closes nothing")
    alert = _obj(payload, "alert")
    group = alert.get("alertId") or alert.get("alias")
    if not isinstance(group, str) or not group:
        raise InvalidRequest("alert.alertId: expected the alert id", field="alert.alertId")
    labels = {**_map(alert.get("details")), "priority": _text(alert.get("priority")),
              "severity": _text(alert.get("priority")), "entity": _text(alert.get("entity")),
              "tags": ",".join(_text(t) for t in _list(alert.get("tags")) if isinstance(t, str))}
    return Signal(group=group, firing=action == "Create", title=_line(alert.get("message")) or "Opsgenie alert",
                  summary=_text(alert.get("description")) or _text(alert.get("message")),
                  labels={k: v for k, v in labels.items() if v})


def uptime_kuma(payload: dict[str, Any]) -> Signal:
    """Uptime Kuma's webhook notification: ``heartbeat`` (status 0 down, 1 up) and ``monitor``."""
    beat = payload.get("heartbeat")
    if beat is None:
        raise Ignored("a test notification (no heartbeat)")
    if not isinstance(beat, dict):
        raise InvalidRequest("heartbeat: expected an object", field="heartbeat")
    status = beat.get("status")
    if status not in (0, 1):
        raise Ignored(f"heartbeat status {status!r} is neither down (0) nor up (1)")
    monitor = _maybe(payload, "monitor")
    ident = monitor.get("id", beat.get("monitorID"))
    if ident is None:
        raise InvalidRequest("monitor.id: expected the monitor id", field="monitor.id")
    name = _line(monitor.get("name")) or _line(f"monitor {ident}")
    labels = {"monitor": name, "type": _text(monitor.get("type"))}
    return Signal(group=str(ident), firing=status == 0, title=f"{name} is down" if status == 0 else f"{name} is up",
                  summary=_text(beat.get("msg")) or _text(payload.get("msg")), url=_line(monitor.get("url")) or None,
                  labels={k: v for k, v in labels.items() if v})


PARSERS: dict[str, Callable[[dict[str, Any]], Signal]] = {
    "alertmanager": alertmanager, "grafana": alertmanager, "pagerduty": pagerduty, "opsgenie": opsgenie,
    "uptime-kuma": uptime_kuma,
}


def read(source: str, payload: Any) -> Signal:
    if not isinstance(payload, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    return PARSERS[source](payload)
