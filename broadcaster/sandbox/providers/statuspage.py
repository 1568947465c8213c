"""Atlassian Statuspage stand-in: ``Authorization: OAuth <key>`` (or ``?api_key=``), bodies
wrapped in ``{"incident": {...}}``, ``metadata`` for the dedupe look-up, 429 + Retry-After."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .base import Call, Provider, bearer

REALTIME = {"investigating", "identified", "monitoring", "resolved"}
SCHEDULED = {"scheduled", "in_progress", "verifying", "completed"}
IMPACTS = {"none", "maintenance", "minor", "major", "critical"}
COMPONENT_STATUSES = {"operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage"}


def now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unflatten(data: dict[str, Any], root: str) -> dict[str, Any]:
    """Form fields ``incident[name]`` / ``incident[metadata][k][j]`` → nested dict."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not key.startswith(root + "["):
            continue
        parts = key[len(root):].strip("[]").split("][")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class Statuspage(Provider):
    name = "statuspage"
    limit, window = 60, 60.0  # 1 request/s measured over a 60 s window

    def reset(self) -> None:
        super().reset()
        self.incidents: dict[str, dict[str, Any]] = {}
        self.components: dict[str, str] = {}

    def routes(self):
        p = "/v1/pages/{page}"
        return [
            self.route(p + "/incidents", self.create, create=True),
            self.route(p + "/incidents", self.list, ("GET",)),
            self.route(p + "/incidents/unresolved", self.unresolved, ("GET",)),
            self.route(p + "/incidents/{id}", self.get, ("GET",)),
            self.route(p + "/incidents/{id}", self.update, ("PATCH", "PUT")),
            self.route(p + "/incidents/{id}", self.delete, ("DELETE",)),
            self.route(p + "/components/{cid}", self.component, ("PATCH", "PUT")),
            self.route(p, self.page, ("GET",)),
        ]

    def token(self, request: Request, data: Any) -> str | None:
        return request.query_params.get("api_key") or bearer(request, "oauth")

    def error(self, status: int, message: str, **extra: Any) -> Response:
        return self.json({"message": message, **extra}, status)

    def unauthorized(self) -> Response:
        return self.error(401, "Could not authenticate")

    def duplicate(self) -> Response:
        return self.error(422, "Incident has already been created")

    def rate_limited(self, reset_at: float) -> Response:
        wait = max(1, round(reset_at - self.state.clock()))
        return self.error(429, "Rate limit exceeded", headers={"Retry-After": str(wait)})

    # -- helpers

    def body(self, call: Call) -> dict[str, Any] | Response:
        data = call.data if isinstance(call.data, dict) else None
        if data is None:
            return self.error(400, "Invalid body")
        incident = data.get("incident") if "incident" in data else unflatten(data, "incident")
        if not isinstance(incident, dict) or not incident:
            return self.error(400, "incident is missing")
        return incident

    def check(self, incident: dict[str, Any], creating: bool) -> str | None:
        name = incident.get("name")
        if creating and not name:
            return "Name can't be blank"
        if name is not None and len(str(name)) > 255:
            return "Name is too long (maximum is 255 characters)"
        if len(str(incident.get("body") or "")) > 25_000:
            return "Body is too long (maximum is 25000 characters)"
        status = incident.get("status")
        if status is not None and status not in REALTIME | SCHEDULED:
            return f"Status {status!r} is not a valid incident status"
        if incident.get("impact_override") not in (None, *IMPACTS):
            return "Impact override is not included in the list"
        meta = incident.get("metadata")
        if meta is not None and (not isinstance(meta, dict) or not all(isinstance(v, dict) for v in meta.values())):
            return "Metadata must be an object whose top-level values are objects"
        return None

    def view(self, iid: str) -> dict[str, Any]:
        return {k: v for k, v in self.incidents[iid].items() if k != "deleted"}

    def _add_update(self, inc: dict[str, Any], status: str, body: str) -> None:
        ts = now_iso(self.state.clock())
        inc["incident_updates"].insert(0, {"id": secrets.token_hex(6), "incident_id": inc["id"], "status": status,
                                           "body": body, "created_at": ts, "updated_at": ts, "display_at": ts})

    # -- endpoints

    def create(self, call: Call) -> Response:
        incident = self.body(call)
        if isinstance(incident, Response):
            return incident
        problem = self.check(incident, creating=True)
        if problem:
            return self.error(422, problem)
        iid, ts = secrets.token_hex(6), now_iso(self.state.clock())
        status = incident.get("status") or "investigating"
        inc = {"id": iid, "page_id": call.params["page"], "name": incident["name"], "status": status,
               "impact": incident.get("impact_override") or "none", "shortlink": f"http://stspg.io/{iid[:6]}",
               "created_at": ts, "updated_at": ts, "resolved_at": ts if status in ("resolved", "completed") else None,
               "metadata": incident.get("metadata") or {}, "components": [], "incident_updates": [],
               "scheduled_for": incident.get("scheduled_for"), "scheduled_until": incident.get("scheduled_until")}
        self._add_update(inc, status, str(incident.get("body") or ""))
        self._components(inc, incident)
        with self.state.lock:
            self.incidents[iid] = inc
        self.state.add_post(self.name, id=iid, text=str(incident["name"]), metadata=inc["metadata"], body=incident.get("body"))
        return self.json(self.view(iid), 201)

    def _components(self, inc: dict[str, Any], incident: dict[str, Any]) -> None:
        comps = incident.get("components") or {}
        for cid in incident.get("component_ids") or []:
            comps.setdefault(cid, self.components.get(cid, "operational"))
        for cid, status in comps.items():
            self.components[cid] = status
            inc["components"] = [c for c in inc["components"] if c["id"] != cid] + [{"id": cid, "status": status}]

    def _find(self, call: Call) -> dict[str, Any] | None:
        inc = self.incidents.get(call.params["id"])
        return inc if inc and inc["page_id"] == call.params["page"] and not inc.get("deleted") else None

    def update(self, call: Call) -> Response:
        inc = self._find(call)
        if inc is None:
            return self.error(404, "The requested resource could not be found.")
        incident = self.body(call)
        if isinstance(incident, Response):
            return incident
        problem = self.check(incident, creating=False)
        if problem:
            return self.error(422, problem)
        for key in ("name", "impact_override", "metadata", "scheduled_for", "scheduled_until"):
            if key in incident:
                inc["impact" if key == "impact_override" else key] = incident[key]
        if "status" in incident or "body" in incident:
            inc["status"] = incident.get("status") or inc["status"]
            self._add_update(inc, inc["status"], str(incident.get("body") or ""))
            if inc["status"] in ("resolved", "completed"):
                inc["resolved_at"] = now_iso(self.state.clock())
        self._components(inc, incident)
        inc["updated_at"] = now_iso(self.state.clock())
        return self.json(self.view(inc["id"]))

    def get(self, call: Call) -> Response:
        inc = self._find(call)
        return self.json(self.view(inc["id"])) if inc else self.error(404, "The requested resource could not be found.")

    def list(self, call: Call) -> Response:
        page = call.params["page"]
        rows = [self.view(i) for i, inc in self.incidents.items() if inc["page_id"] == page and not inc.get("deleted")]
        return self.json(sorted(rows, key=lambda r: r["created_at"], reverse=True))

    def unresolved(self, call: Call) -> Response:
        page = call.params["page"]
        return self.json([self.view(i) for i, inc in self.incidents.items()
                          if inc["page_id"] == page and not inc.get("deleted") and inc["status"] in REALTIME - {"resolved"}])

    def delete(self, call: Call) -> Response:
        inc = self._find(call)
        if inc is None:
            return self.error(404, "The requested resource could not be found.")
        inc["deleted"] = True
        self.state.mark_deleted(self.name, inc["id"])
        return self.json(self.view(inc["id"]))

    def component(self, call: Call) -> Response:
        data = call.data if isinstance(call.data, dict) else {}
        comp = data.get("component") if "component" in data else unflatten(data, "component")
        status = (comp or {}).get("status")
        if status not in COMPONENT_STATUSES:
            return self.error(422, "Status is not included in the list")
        self.components[call.params["cid"]] = status
        return self.json({"id": call.params["cid"], "page_id": call.params["page"], "status": status,
                          "updated_at": now_iso(self.state.clock())})

    def page(self, call: Call) -> Response:
        return self.json({"id": call.params["page"], "name": "Sandbox status page"})
