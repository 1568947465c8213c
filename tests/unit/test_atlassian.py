"""Atlassian Statuspage adapter over httpx.MockTransport: request shapes, lookup by metadata,
and the response → error-class table."""

from __future__ import annotations

import json

import httpx
import pytest

from broadcaster.channels.atlassian import AtlassianSettings, AtlassianStatuspage
from broadcaster.errors import AmbiguousDelivery, AuthError, PermanentError, RateLimited, TransientError
from broadcaster.models import Announcement, Message, Receipt, Update, Window

A = Announcement(id="a1", kind="incident", title="API <down>", body="We are **on it**", severity="critical",
                 components=("api", "unknown"))


def make(handler):
    s = AtlassianSettings.model_validate({
        "kind": "atlassian_statuspage", "page_id": "pg1", "api_key": "sk-secret", "components": {"api": "c1"}})
    return AtlassianStatuspage("sp", s, http=httpx.Client(transport=httpx.MockTransport(handler)), clock=lambda: 1e9)


def test_create_request_shape():
    seen = []

    def handler(req):
        seen.append(req)
        return httpx.Response(201, json={"id": "inc9", "shortlink": "http://stspg.io/x", "status": "investigating"})

    ch = make(handler)
    receipt = ch.send(ch.render(Message(announcement=A)), key="key-1")
    (req,) = seen
    assert (req.method, str(req.url)) == ("POST", "https://api.statuspage.io/v1/pages/pg1/incidents")
    assert req.headers["Authorization"] == "OAuth sk-secret"
    body = json.loads(req.content)["incident"]
    assert body == {
        "name": "API <down>", "status": "investigating", "body": "We are on it", "deliver_notifications": True,
        "component_ids": ["c1"], "components": {"c1": "major_outage"}, "impact_override": "critical",
        "metadata": {"broadcaster": {"key": "key-1"}},
    }
    assert receipt == Receipt(remote_id="inc9", url="http://stspg.io/x", extra={"status": "investigating"})


def test_update_patches_the_incident():
    seen = []

    def handler(req):
        seen.append(req)
        return httpx.Response(200, json={"id": "inc9", "status": "resolved"})

    ch = make(handler)
    upd = Update(id="u", announcement_id="a1", status="resolved", body="Fixed.")
    original = Receipt(remote_id="inc9", url="http://stspg.io/x")
    receipt = ch.send(ch.render(Message(announcement=A, update=upd, thread=(original,))), key="key-2")
    (req,) = seen
    assert (req.method, req.url.path) == ("PATCH", "/v1/pages/pg1/incidents/inc9")
    assert json.loads(req.content) == {"incident": {
        "status": "resolved", "body": "Fixed.", "deliver_notifications": True,
        "component_ids": ["c1"], "components": {"c1": "operational"}}}
    assert receipt.remote_id == "inc9" and receipt.url == "http://stspg.io/x"


def test_maintenance_window_and_status():
    m = Announcement(id="m", kind="maintenance", title="DB", window=Window(1.8e9, 1.8e9 + 60))
    seen = []
    ch = make(lambda r: seen.append(json.loads(r.content)) or httpx.Response(201, json={"id": "m1"}))
    ch.send(ch.render(Message(announcement=m)), key="k")
    body = seen[0]["incident"]
    assert body["status"] == "scheduled" and body["scheduled_for"] == "2027-01-15T08:00:00Z"
    assert body["scheduled_until"] == "2027-01-15T08:01:00Z" and "impact_override" not in body


def test_lookup_finds_our_incident_by_metadata():
    paths = []

    def handler(req):
        paths.append(req.url.path)
        return httpx.Response(200, json=[
            {"id": "other", "metadata": {}},
            {"id": "inc9", "shortlink": "http://stspg.io/x", "metadata": {"broadcaster": {"key": "key-1"}}},
        ])

    ch = make(handler)
    post = ch.render(Message(announcement=A))
    assert ch.lookup(post, key="key-1").remote_id == "inc9"
    assert ch.lookup(post, key="key-2") is None
    assert paths == ["/v1/pages/pg1/incidents/unresolved"] * 2


def test_lookup_of_an_update_compares_the_newest_update():
    ch = make(lambda r: httpx.Response(200, json={"id": "inc9", "incident_updates": [{"body": "Fixed."}, {"body": "x"}]}))
    upd = Update(id="u", announcement_id="a1", status="resolved", body="Fixed.")
    thread = (Receipt(remote_id="inc9"),)
    assert ch.lookup(ch.render(Message(announcement=A, update=upd, thread=thread)), key="k").remote_id == "inc9"
    other = Update(id="u", announcement_id="a1", status="resolved", body="Other")
    assert ch.lookup(ch.render(Message(announcement=A, update=other, thread=thread)), key="k") is None


@pytest.mark.parametrize(
    "status, headers, cls",
    [
        (400, {}, PermanentError), (401, {}, AuthError), (404, {}, PermanentError), (422, {}, PermanentError),
        (420, {"Retry-After": "60"}, RateLimited), (429, {"Retry-After": "30"}, RateLimited),
        (500, {}, TransientError), (503, {}, TransientError),
    ],
)
def test_error_table(status, headers, cls):
    ch = make(lambda r: httpx.Response(status, json={"message": "nope"}, headers=headers))
    with pytest.raises(cls) as err:
        ch.send(ch.render(Message(announcement=A)), key="k")
    assert type(err.value) is cls and "sk-secret" not in str(err.value)
    if cls is RateLimited:
        assert err.value.retry_after == float(headers["Retry-After"])


def test_timeout_is_ambiguous_and_missing_id_is_not_success():
    def timeout(req):
        raise httpx.ReadTimeout("slow", request=req)

    with pytest.raises(AmbiguousDelivery):
        make(timeout).send(make(timeout).render(Message(announcement=A)), key="k")
    ch = make(lambda r: httpx.Response(201, json={}))
    with pytest.raises(TransientError, match="without an incident id"):
        ch.send(ch.render(Message(announcement=A)), key="k")


def test_check_and_retract():
    seen = []

    def handler(req):
        seen.append((req.method, req.url.path))
        return httpx.Response(404 if req.method == "DELETE" else 200, json={"name": "Acme"})

    ch = make(handler)
    assert "Acme" in ch.check()
    ch.retract(Receipt(remote_id="inc9"))  # already deleted: fine
    assert seen == [("GET", "/v1/pages/pg1"), ("DELETE", "/v1/pages/pg1/incidents/inc9")]
    assert "sk-secret" not in repr(ch.settings)
