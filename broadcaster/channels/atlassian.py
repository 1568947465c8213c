"""Atlassian Statuspage (Manage API): an announcement becomes an incident, updates PATCH it.

Why metadata: the API has no idempotency key, so the incident carries our delivery key in
``metadata`` and ``lookup`` searches the open incidents for it before anything is re-created.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import Field

from ..config import ChannelSettings, Secret, Url
from ..errors import PermanentError, RateLimited, TransientError
from ..models import Message, Post, Receipt
from . import _http, _statussite as site
from .base import Channel, Progress
from .registry import register

META = "broadcaster"  # metadata namespace: {"broadcaster": {"key": ...}}
#: maintenance status → Statuspage's (it has no "cancelled")
MAINTENANCE = {"scheduled": "scheduled", "in_progress": "in_progress", "completed": "completed", "cancelled": "completed"}


class AtlassianSettings(ChannelSettings):
    kind: Literal["atlassian_statuspage"] = "atlassian_statuspage"
    base_url: Url = "https://api.statuspage.io"
    page_id: str
    api_key: Secret
    components: dict[str, str] = Field(default_factory=dict)  # our component name → Statuspage component id
    deliver_notifications: bool = True


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def incident_body(post: Post, key: str | None, components: dict[str, str], notify: bool) -> dict[str, Any]:
    """The ``{"incident": ...}`` JSON for a create (``key`` set) or an update (``key`` None)."""
    meta = post.meta
    status = site.status_of(post)
    if post.kind == "maintenance":
        status = MAINTENANCE.get(status, status)
    comp_status = site.component_status(post.kind, site.status_of(post), meta.get("severity"))
    ids = [components[c] for c in meta.get("components") or [] if c in components]
    body: dict[str, Any] = {"status": status, "body": (post.text or post.title)[:25_000],
                            "deliver_notifications": notify}
    if ids:
        body["component_ids"] = ids
        body["components"] = {cid: comp_status for cid in ids}
    if key is not None:
        body["name"] = post.title[:255]
        body["metadata"] = {META: {"key": key}}
        impact = site.impact_of(post.kind, meta.get("severity"))
        if post.kind == "incident":
            body["impact_override"] = impact
        window = meta.get("window")
        if post.kind == "maintenance" and window:
            body["scheduled_for"] = iso(window["starts_at"])
            body["scheduled_until"] = iso(window["ends_at"])
    return {"incident": body}


def find_by_key(incidents: Any, key: str) -> dict | None:
    for inc in incidents if isinstance(incidents, list) else []:
        meta = (inc.get("metadata") or {}).get(META) or {}
        if meta.get("key") == key:
            return inc
    return None


@register
class AtlassianStatuspage(Channel[AtlassianSettings]):
    kind = "atlassian_statuspage"
    Settings = AtlassianSettings
    can_lookup = True
    can_retract = True

    def render(self, message: Message) -> Post:
        return site.status_post(self.name, message)

    def _url(self, path: str) -> str:
        return f"{self.settings.base_url}/v1/pages/{self.settings.page_id}{path}"

    def _call(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"OAuth {self.settings.api_key.reveal()}", "Accept": "application/json"}
        resp = _http.request(self.http, method, self._url(path), headers=headers, what=what, **kw)
        if resp.status_code == 420:  # the old rate-limit code
            wait = _http.parse_retry_after(resp.headers.get("retry-after"), now=self.clock())
            raise RateLimited(f"{what}: rate limited (HTTP 420)", retry_after=wait, response=_http.short(resp), status=420)
        _http.raise_for_status(resp, what, now=self.clock)
        return resp

    def _receipt(self, data: Any, what: str) -> Receipt:
        if not isinstance(data, dict) or not data.get("id"):
            raise TransientError(f"{what}: answer without an incident id")
        return Receipt(remote_id=str(data["id"]), url=data.get("shortlink"),
                       extra={"status": data.get("status")})

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        incident_id = post.reply_to.remote_id if post.meta.get("update") and post.reply_to else None
        if incident_id:
            what = f"{self.name} (update incident)"
            body = incident_body(post, None, self.settings.components, self.settings.deliver_notifications)
            resp = self._call("PATCH", f"/incidents/{incident_id}", what, json=body)
        else:
            what = f"{self.name} (create incident)"
            body = incident_body(post, key, self.settings.components, self.settings.deliver_notifications)
            resp = self._call("POST", "/incidents", what, json=body)
        receipt = self._receipt(_http.json_or_none(resp), what)
        return Receipt(remote_id=receipt.remote_id, url=receipt.url or (post.reply_to.url if post.reply_to else None),
                       extra=receipt.extra)

    def lookup(self, post: Post, *, key: str) -> Receipt | None:
        """Creates: search open incidents for our key. Updates: is the newest update ours?"""
        incident_id = post.reply_to.remote_id if post.meta.get("update") and post.reply_to else None
        if incident_id:
            what = f"{self.name} (look up incident)"
            data = _http.json_or_none(self._call("GET", f"/incidents/{incident_id}", what)) or {}
            latest = (data.get("incident_updates") or [{}])[0] if isinstance(data, dict) else {}
            if latest.get("body") == (post.text or post.title)[:25_000]:
                return self._receipt(data, what)
            return None
        lists = ["/incidents/upcoming", "/incidents/active_maintenance"] if post.kind == "maintenance" else []
        for path in ["/incidents/unresolved", *lists]:
            what = f"{self.name} (look up {path.rsplit('/', 1)[1]})"
            found = find_by_key(_http.json_or_none(self._call("GET", path, what)), key)
            if found:
                return self._receipt(found, what)
        return None

    def check(self) -> str:
        what = f"{self.name} (check)"
        data = _http.json_or_none(self._call("GET", "", what)) or {}
        return f"page {data.get('name') or self.settings.page_id!r} reachable with this API key"

    def retract(self, receipt: Receipt) -> None:
        if not receipt.remote_id:
            raise PermanentError(f"{self.name}: nothing to retract (no incident id)")
        what = f"{self.name} (delete incident)"
        try:
            self._call("DELETE", f"/incidents/{receipt.remote_id}", what)
        except PermanentError as exc:
            if exc.status != 404:  # already gone is fine
                raise
