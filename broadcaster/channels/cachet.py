"""Cachet (self-hosted status page), API v2 (``/api/v1``, ``X-Cachet-Token``) or v3 (``/api``,
Bearer token).

Why components first: setting a component's status is idempotent, creating an incident or an
update is not, so the one non-idempotent request goes last and a failure before it can simply be
retried. v3 stamps our key into the incident's ``meta`` so ``lookup`` can find it; v2 cannot.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import Field

from ..config import ChannelSettings, Secret, Url
from ..errors import PermanentError, TransientError
from ..models import Message, Post, Receipt
from . import _http, _statussite as site
from .base import Channel, Progress
from .registry import register

META_KEY = "broadcaster_key"
#: our status → Cachet incident status (0 scheduled/reported, 1 investigating, 2 identified,
#: 3 watching, 4 fixed); maintenance has no own vocabulary in the incident API
INCIDENT_STATUS = {
    "investigating": 1, "identified": 2, "monitoring": 3, "resolved": 4,
    "scheduled": 0, "in_progress": 3, "completed": 4, "cancelled": 4,
}
#: component status → Cachet int; v2 has no "under maintenance", so it shows performance issues
COMPONENT_STATUS = {
    2: {"operational": 1, "degraded_performance": 2, "partial_outage": 3, "major_outage": 4, "under_maintenance": 2},
    3: {"operational": 1, "degraded_performance": 2, "partial_outage": 3, "major_outage": 4, "under_maintenance": 6},
}


class CachetSettings(ChannelSettings):
    kind: Literal["cachet"] = "cachet"
    base_url: Url
    token: Secret
    version: Literal[2, 3] = 3
    components: dict[str, int] = Field(default_factory=dict)  # our component name → Cachet component id
    visible: bool = True
    notify: bool = False


def incident_json(post: Post, key: str, version: int, visible: bool, notify: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": post.title[:255],
        "message": post.meta.get("body") or post.text or post.title,
        "status": INCIDENT_STATUS.get(site.status_of(post), 1),
    }
    if version == 2:
        body.update(visible=1 if visible else 0, notify=notify)
    else:
        body.update(visible=visible, notifications=notify, meta={META_KEY: key})
    return body


def update_json(post: Post) -> dict[str, Any]:
    return {"status": INCIDENT_STATUS.get(site.status_of(post), 1), "message": post.meta.get("body") or post.text}


def component_changes(post: Post, components: dict[str, int], version: int) -> list[tuple[int, int]]:
    status = site.component_status(post.kind, site.status_of(post), post.meta.get("severity"))
    return [(components[c], COMPONENT_STATUS[version][status]) for c in post.meta.get("components") or []
            if c in components]


def data_id(payload: Any) -> str | None:
    data = payload.get("data") if isinstance(payload, dict) else None
    if isinstance(data, list):
        data = data[0] if data else None
    return str(data["id"]) if isinstance(data, dict) and data.get("id") is not None else None


@register
class Cachet(Channel[CachetSettings]):
    kind = "cachet"
    Settings = CachetSettings
    can_retract = True

    @property
    def can_lookup(self) -> bool:  # type: ignore[override]
        return self.settings.version == 3

    def render(self, message: Message) -> Post:
        return site.status_post(self.name, message)

    @property
    def api(self) -> str:
        return f"{self.settings.base_url}/api/v1" if self.settings.version == 2 else f"{self.settings.base_url}/api"

    def _call(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        token = self.settings.token.reveal()
        auth = {"X-Cachet-Token": token} if self.settings.version == 2 else {"Authorization": f"Bearer {token}"}
        resp = _http.request(self.http, method, self.api + path, headers={"Accept": "application/json", **auth},
                             what=what, **kw)
        _http.raise_for_status(resp, what, now=self.clock)
        return resp

    def _receipt(self, incident_id: str, **extra: Any) -> Receipt:
        return Receipt(remote_id=incident_id, url=f"{self.settings.base_url}/incidents/{incident_id}", extra=extra)

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        st = self.settings
        for component_id, status in component_changes(post, st.components, st.version):
            self._call("PUT", f"/components/{component_id}", f"{self.name} (component status)", json={"status": status})
        incident_id = post.reply_to.remote_id if post.meta.get("update") and post.reply_to else None
        if incident_id:
            what = f"{self.name} (incident update)"
            resp = self._call("POST", f"/incidents/{incident_id}/updates", what, json=update_json(post))
            update_id = data_id(_http.json_or_none(resp))
            return self._receipt(incident_id, update_id=update_id)
        what = f"{self.name} (create incident)"
        resp = self._call("POST", "/incidents", what, json=incident_json(post, key, st.version, st.visible, st.notify))
        new_id = data_id(_http.json_or_none(resp))
        if new_id is None:
            raise TransientError(f"{what}: answer without an incident id", response=_http.short(resp))
        return self._receipt(new_id)

    def lookup(self, post: Post, *, key: str) -> Receipt | None:
        if self.settings.version != 3:
            return super().lookup(post, key=key)
        incident_id = post.reply_to.remote_id if post.meta.get("update") and post.reply_to else None
        if incident_id:  # did our update land? compare the newest one
            what = f"{self.name} (look up updates)"
            data = (_http.json_or_none(self._call("GET", f"/incidents/{incident_id}/updates", what,
                                                  params={"sort": "-created_at"})) or {}).get("data") or []
            newest = data[0] if data else {}
            newest = newest.get("attributes", newest)
            if newest.get("message") == update_json(post)["message"]:
                return self._receipt(incident_id, update_id=data_id({"data": data}))
            return None
        what = f"{self.name} (look up incident)"
        resp = self._call("GET", "/incidents", what, params={f"filter[meta][{META_KEY}]": key})
        found = data_id(_http.json_or_none(resp))
        return self._receipt(found) if found else None

    def check(self) -> str:
        what = f"{self.name} (check)"
        if self.settings.version == 2:
            self._call("GET", "/ping", what)
            return "Cachet v2 API reachable (the token is only verified by a write)"
        self._call("GET", "/incidents", what, params={"per_page": 1})
        return "Cachet v3 API reachable"

    def retract(self, receipt: Receipt) -> None:
        if not receipt.remote_id:
            raise PermanentError(f"{self.name}: nothing to retract (no incident id)")
        update_id = receipt.extra.get("update_id")
        path = f"/incidents/{receipt.remote_id}" + (f"/updates/{update_id}" if update_id else "")
        try:
            self._call("DELETE", path, f"{self.name} (delete)")
        except PermanentError as exc:
            if exc.status != 404:
                raise
