"""Cachet v2 and v3 over httpx.MockTransport: paths, auth headers, bodies, meta lookup, errors."""

from __future__ import annotations

import json

import httpx
import pytest

from broadcaster.channels.cachet import Cachet, CachetSettings
from broadcaster.errors import AuthError, PermanentError, RateLimited, TransientError
from broadcaster.models import Announcement, Message, Receipt, Update

A = Announcement(id="a1", kind="incident", title="API slow", body="Looking *now*", severity="minor",
                 components=("api", "db"))


def make(handler, version=3):
    s = CachetSettings.model_validate({"kind": "cachet", "base_url": "https://status.example.com",
                                       "token": "ct-secret", "version": version, "components": {"api": 7}})
    return Cachet("cachet", s, http=httpx.Client(transport=httpx.MockTransport(handler)), clock=lambda: 1e9)


def recorder(reply):
    seen = []

    def handler(req):
        seen.append(req)
        return reply(req)

    return seen, handler


def test_v3_create_sets_component_first_then_incident_with_meta():
    seen, handler = recorder(lambda r: httpx.Response(200, json={"data": {"id": 12, "type": "incidents"}}))
    ch = make(handler)
    receipt = ch.send(ch.render(Message(announcement=A)), key="key-1")
    comp, inc = seen
    assert (comp.method, str(comp.url)) == ("PUT", "https://status.example.com/api/components/7")
    assert json.loads(comp.content) == {"status": 2}
    assert (inc.method, inc.url.path) == ("POST", "/api/incidents")
    assert inc.headers["Authorization"] == "Bearer ct-secret" and "X-Cachet-Token" not in inc.headers
    assert json.loads(inc.content) == {"name": "API slow", "message": "Looking *now*", "status": 1,
                                       "visible": True, "notifications": False, "meta": {"broadcaster_key": "key-1"}}
    assert receipt == Receipt(remote_id="12", url="https://status.example.com/incidents/12")


def test_v2_create_and_update():
    seen, handler = recorder(lambda r: httpx.Response(200, json={"data": {"id": 5}}))
    ch = make(handler, version=2)
    first = ch.send(ch.render(Message(announcement=A)), key="key-1")
    upd = Update(id="u", announcement_id="a1", status="resolved", body="Fixed")
    second = ch.send(ch.render(Message(announcement=A, update=upd, thread=(first,))), key="key-2")
    paths = [(r.method, r.url.path) for r in seen]
    assert paths == [("PUT", "/api/v1/components/7"), ("POST", "/api/v1/incidents"),
                     ("PUT", "/api/v1/components/7"), ("POST", "/api/v1/incidents/5/updates")]
    assert all(r.headers["X-Cachet-Token"] == "ct-secret" and "Authorization" not in r.headers for r in seen)
    assert json.loads(seen[1].content) == {"name": "API slow", "message": "Looking *now*", "status": 1,
                                           "visible": 1, "notify": False}
    assert json.loads(seen[2].content) == {"status": 1}  # resolved → component operational
    assert json.loads(seen[3].content) == {"status": 4, "message": "Fixed"}
    assert second.remote_id == "5" and second.extra == {"update_id": "5"}
    assert not ch.can_lookup


def test_v3_lookup_by_meta_filter():
    seen, handler = recorder(lambda r: httpx.Response(200, json={"data": [{"id": 12}]}
                                                      if r.url.params.get("filter[meta][broadcaster_key]") == "key-1"
                                                      else {"data": []}))
    ch = make(handler)
    post = ch.render(Message(announcement=A))
    assert ch.lookup(post, key="key-1").remote_id == "12"
    assert ch.lookup(post, key="key-2") is None
    assert seen[0].url.path == "/api/incidents" and ch.can_lookup


def test_v3_lookup_of_update_compares_newest_message():
    ch = make(lambda r: httpx.Response(200, json={"data": [{"id": 3, "attributes": {"message": "Fixed"}}]}))
    thread = (Receipt(remote_id="12"),)
    upd = Update(id="u", announcement_id="a1", status="resolved", body="Fixed")
    assert ch.lookup(ch.render(Message(announcement=A, update=upd, thread=thread)), key="k").extra == {"update_id": "3"}
    other = Update(id="u", announcement_id="a1", status="resolved", body="Else")
    assert ch.lookup(ch.render(Message(announcement=A, update=other, thread=thread)), key="k") is None


@pytest.mark.parametrize(
    "status, cls",
    [(400, PermanentError), (401, AuthError), (403, AuthError), (422, PermanentError), (429, RateLimited),
     (500, TransientError), (502, TransientError)],
)
def test_error_table(status, cls):
    ch = make(lambda r: httpx.Response(status, headers={"Retry-After": "9"}, json={"errors": []}))
    with pytest.raises(cls) as err:
        ch.send(ch.render(Message(announcement=A)), key="k")
    assert type(err.value) is cls and "ct-secret" not in str(err.value)


def test_failed_component_call_creates_no_incident():
    seen, handler = recorder(lambda r: httpx.Response(503) if r.method == "PUT" else httpx.Response(200, json={}))
    ch = make(handler)
    with pytest.raises(TransientError):
        ch.send(ch.render(Message(announcement=A)), key="k")
    assert [r.method for r in seen] == ["PUT"]


def test_missing_id_and_retract():
    ch = make(lambda r: httpx.Response(200, json={"data": {}}))
    with pytest.raises(TransientError, match="without an incident id"):
        ch.send(ch.render(Message(announcement=Announcement(id="x", kind="notice", title="t"))), key="k")
    seen, handler = recorder(lambda r: httpx.Response(404))
    make(handler, version=2).retract(Receipt(remote_id="5", extra={"update_id": "9"}))
    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/api/v1/incidents/5/updates/9")
