"""Cachet stand-ins: v2 (``/api/v1``, ``X-Cachet-Token``, ``{"data": ...}``) and v3
(``/api``, Sanctum Bearer token, JSON:API-style resources, ``meta`` + ``filter[meta][key]``).
Both answer as provider ``cachet``: a real host runs one of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .base import Call, Provider, bearer

V2_STATUS = {0: "Scheduled", 1: "Investigating", 2: "Identified", 3: "Watching", 4: "Fixed"}


def ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def truthy(value: Any, default: bool) -> bool:
    if value is None:
        return default
    return str(value).lower() in ("1", "true", "yes", "on")


class _Cachet(Provider):
    name = "cachet"
    version = ""  # "v2" or "v3", set by each flavour
    limit, window = 300, 60.0

    def reset(self) -> None:
        super().reset()
        self.incidents: dict[int, dict[str, Any]] = {}
        self.updates: dict[int, list[dict[str, Any]]] = {}

    def rate_limited(self, reset_at: float) -> Response:
        wait = max(1, round(reset_at - self.state.clock()))
        return self.json({"message": "Too Many Attempts."}, 429, headers={"Retry-After": str(wait)})

    def rate_headers(self, limit: int, remaining: int, reset_at: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(int(reset_at))}

    def _new(self, fields: dict[str, Any]) -> int:
        with self.state.lock:
            iid = len(self.incidents) + 1
            now = ts(self.state.clock())
            self.incidents[iid] = {"id": iid, **fields, "created_at": now, "updated_at": now}
            self.updates[iid] = []
        self.state.add_post(self.name, id=str(iid), text=str(fields.get("name", "")), api=self.version, meta=fields.get("meta"))
        return iid

    def _add_update(self, iid: int, status: int, message: str) -> dict[str, Any]:
        upd = {"id": sum(map(len, self.updates.values())) + 1, "incident_id": iid, "status": status,
               "message": message, "created_at": ts(self.state.clock())}
        self.updates[iid].append(upd)
        self.incidents[iid]["status"] = status
        return upd


class CachetV2(_Cachet):
    version = "v2"

    def routes(self):
        return [
            self.route("/api/v1/incidents", self.create, create=True),
            self.route("/api/v1/incidents", self.list, ("GET",), auth=False),
            self.route("/api/v1/incidents/{id:int}", self.get, ("GET",), auth=False),
            self.route("/api/v1/incidents/{id:int}", self.update, ("PUT",)),
            self.route("/api/v1/incidents/{id:int}", self.delete, ("DELETE",)),
            self.route("/api/v1/incidents/{id:int}/updates", self.add_update, create=True),
            self.route("/api/v1/ping", self.ping, ("GET",), auth=False),
        ]

    def token(self, request: Request, data: Any) -> str | None:
        return request.headers.get("x-cachet-token") or bearer(request, "basic")

    def error(self, status: int, message: str, **extra: Any) -> Response:
        titles = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
        return self.json({"errors": [{"id": "sandbox", "status": status, "title": titles.get(status, "Error"), "detail": message}]}, status, **extra)

    def unauthorized(self) -> Response:
        return self.error(401, "You are not authorized to view this content.")

    def view(self, inc: dict[str, Any]) -> dict[str, Any]:
        return {**inc, "human_status": V2_STATUS.get(inc.get("status", -1), "Unknown"), "updates": self.updates.get(inc["id"], [])}

    def create(self, call: Call) -> Response:
        name, message, status = call.field("name"), call.field("message"), as_int(call.field("status"))
        if not name or (not message and not call.field("template")) or status not in V2_STATUS:
            return self.error(400, "The given data was invalid: name, message and status (0-4) are required.")
        iid = self._new({"name": name, "message": message, "status": status, "visible": int(truthy(call.field("visible"), True)),
                         "component_id": as_int(call.field("component_id")) or 0, "stickied": truthy(call.field("stickied"), False),
                         "notify": truthy(call.field("notify"), True)})
        return self.json({"data": self.view(self.incidents[iid])})

    def list(self, call: Call) -> Response:
        return self.json({"data": [self.view(i) for i in self.incidents.values() if not i.get("deleted")]})

    def get(self, call: Call) -> Response:
        inc = self.incidents.get(call.params["id"])
        return self.json({"data": self.view(inc)}) if inc and not inc.get("deleted") else self.error(404, "Resource not found")

    def update(self, call: Call) -> Response:
        inc = self.incidents.get(call.params["id"])
        if not inc or inc.get("deleted"):
            return self.error(404, "Resource not found")
        for key in ("name", "message", "visible", "component_id", "stickied"):
            if call.field(key) is not None:
                inc[key] = call.field(key)
        if as_int(call.field("status")) in V2_STATUS:
            inc["status"] = as_int(call.field("status"))
        return self.json({"data": self.view(inc)})

    def add_update(self, call: Call) -> Response:
        inc = self.incidents.get(call.params["id"])
        if not inc or inc.get("deleted"):
            return self.error(404, "Resource not found")
        status, message = as_int(call.field("status")), call.field("message")
        if status not in V2_STATUS or not message:
            return self.error(400, "The given data was invalid: status and message are required.")
        return self.json({"data": self._add_update(inc["id"], status, str(message))})

    def delete(self, call: Call) -> Response:
        inc = self.incidents.get(call.params["id"])
        if inc:
            inc["deleted"] = True
            self.state.mark_deleted(self.name, str(inc["id"]))
        return Response(status_code=204)

    def ping(self, call: Call) -> Response:
        return self.json({"data": "Pong!"})


class CachetV3(_Cachet):
    version = "v3"

    def routes(self):
        return [
            self.route("/api/incidents", self.create, create=True),
            self.route("/api/incidents", self.list, ("GET",), auth=False),
            self.route("/api/incidents/{id:int}", self.get, ("GET",), auth=False),
            self.route("/api/incidents/{id:int}", self.update, ("PUT", "PATCH")),
            self.route("/api/incidents/{id:int}", self.delete, ("DELETE",)),
            self.route("/api/incidents/{id:int}/updates", self.add_update, create=True),
            self.route("/api/ping", self.ping, ("GET",), auth=False),
        ]

    def error(self, status: int, message: str, **extra: Any) -> Response:
        return self.json({"message": message, **extra}, status)

    def unauthorized(self) -> Response:
        return self.error(401, "Unauthenticated.")

    def invalid(self, errors: dict[str, str]) -> Response:
        first = next(iter(errors.values()))
        return self.error(422, first, errors={k: [v] for k, v in errors.items()})

    def resource(self, inc: dict[str, Any]) -> dict[str, Any]:
        attrs = {k: v for k, v in inc.items() if k not in ("id", "deleted")}
        attrs["updates"] = self.updates.get(inc["id"], [])
        return {"id": inc["id"], "type": "incidents", "attributes": attrs}

    def create(self, call: Call) -> Response:
        name, status, message = call.field("name"), as_int(call.field("status")), call.field("message")
        errors = {}
        if not name:
            errors["name"] = "The name field is required."
        elif len(str(name)) > 255:
            errors["name"] = "The name field must not be greater than 255 characters."
        if status not in V2_STATUS:
            errors["status"] = "The selected status is invalid."
        if not message and not call.field("template"):
            errors["message"] = "The message field is required when template is not present."
        meta = call.field("meta")
        if meta is not None and not isinstance(meta, dict):
            errors["meta"] = "The meta field must be an array."
        if errors:
            return self.invalid(errors)
        iid = self._new({"name": name, "status": status, "message": message, "visible": truthy(call.field("visible"), False),
                         "stickied": truthy(call.field("stickied"), False), "notifications": truthy(call.field("notifications"), False),
                         "meta": meta or {}, "components": call.field("components") or []})
        return self.json({"data": self.resource(self.incidents[iid])}, 201)

    def list(self, call: Call) -> Response:
        rows = [i for i in self.incidents.values() if not i.get("deleted")]
        for key, value in call.request.query_params.items():
            if key.startswith("filter[meta][") and key.endswith("]"):
                mkey = key[len("filter[meta]["):-1]
                rows = [i for i in rows if str((i.get("meta") or {}).get(mkey)) == value]
        return self.json({"data": [self.resource(i) for i in rows]})

    def get(self, call: Call) -> Response:
        inc = self.incidents.get(call.params["id"])
        return self.json({"data": self.resource(inc)}) if inc and not inc.get("deleted") else self.error(404, "Not Found")

    def update(self, call: Call) -> Response:
        inc = self.incidents.get(call.params["id"])
        if not inc or inc.get("deleted"):
            return self.error(404, "Not Found")
        for key in ("name", "message", "visible", "stickied", "meta"):
            if call.field(key) is not None:
                inc[key] = call.field(key)
        if as_int(call.field("status")) in V2_STATUS:
            inc["status"] = as_int(call.field("status"))
        return self.json({"data": self.resource(inc)})

    def add_update(self, call: Call) -> Response:
        inc = self.incidents.get(call.params["id"])
        if not inc or inc.get("deleted"):
            return self.error(404, "Not Found")
        status, message = as_int(call.field("status")), call.field("message")
        if status not in V2_STATUS or not message:
            return self.invalid({"message": "The message and status fields are required."})
        upd = self._add_update(inc["id"], status, str(message))
        return self.json({"data": {"id": upd["id"], "type": "incident_updates", "attributes": upd}}, 201)

    def delete(self, call: Call) -> Response:
        inc = self.incidents.get(call.params["id"])
        if not inc or inc.get("deleted"):
            return self.error(404, "Not Found")
        inc["deleted"] = True
        self.state.mark_deleted(self.name, str(inc["id"]))
        return Response(status_code=204)

    def ping(self, call: Call) -> Response:
        return self.json({"data": "Pong!"})
