"""Two ways past a token's limits, closed (issue 13, item 12):

- a token limited to some channels must not land its text on another channel through a
  fallback: the intake refuses it, naming the channel, and the engine never makes such a
  fallback for an announcement whose author was limited;
- a ``broadcaster.retract`` task message is only a request: unless the ledger shows the
  announcement retracted, the live post stays (the task function is called with a real ledger).
"""

from __future__ import annotations

import httpx
import pytest

from broadcaster import engine, service
from broadcaster.config import load_settings
from broadcaster.errors import Forbidden
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S, Receipt
from broadcaster.principal import Principal
from broadcaster.tasks import create_app
from tests.support.ledger import claim
from tests.support.runtime import memory_runtime


def hook(path: str) -> dict:
    return {"kind": "webhook", "format": "generic", "url": f"https://hooks.example{path}", "secret": "whsec_dGVzdA=="}


CHANNELS = {
    "x-main": hook("/x"), "ops-slack": hook("/slack"), "mastodon-main": hook("/mastodon"),
    "toot": {"kind": "mastodon", "base_url": "https://social.example", "access_token": "tok"},
}
POLICY = {"defaults": {"attempts": 2, "backoff": {"base": "1s", "max": "1s"}},
          "channels": {"x-main": {"fallback": ["ops-slack"]}, "mastodon-main": {"fallback": ["x-main"]}}}
X_ONLY = Principal("x-only", channels=("x-main",))


@pytest.fixture
def sent() -> list[httpx.Request]:
    """Every request the adapters made."""
    return []


@pytest.fixture
def rt(tmp_path, sent):
    def provider(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/x":
            return httpx.Response(400, json={"error": "bad payload"})
        return httpx.Response(200, json={"id": "1"})

    settings = load_settings({"channels": CHANNELS, "routes": {"incident": ["x-main"]}, "policy": POLICY}, env={})
    http = httpx.Client(transport=httpx.MockTransport(provider))
    runtime = memory_runtime(settings, ledger=Ledger.open(f"sqlite:///{tmp_path}/l.db"), http=http)
    yield runtime
    runtime.close()
    http.close()
    runtime.ledger.close()


def test_a_token_limited_to_x_is_refused_when_x_falls_back_outside_it(rt):
    with pytest.raises(Forbidden) as info:
        service.submit(rt, {"kind": "incident", "title": "API errors", "channels": ["x-main"]}, principal=X_ONLY)
    assert "ops-slack" in str(info.value) and "x-main falls back" in str(info.value)
    assert rt.ledger.list_announcements() == [], "nothing was accepted"
    # a chain counts too: mastodon-main → x-main → ops-slack
    chain = Principal("two", channels=("mastodon-main", "x-main"))
    with pytest.raises(Forbidden, match="ops-slack"):
        service.submit(rt, {"kind": "incident", "title": "t", "channels": ["mastodon-main"]}, principal=chain)
    # a token that covers the whole reach posts as before
    ok = Principal("wide", channels=("x-main", "ops-slack"))
    assert service.submit(rt, {"kind": "incident", "title": "t", "channels": ["x-main"]}, principal=ok).created


def test_the_refusal_is_a_403_json_error_naming_the_channel(tmp_path):
    from tests.api.conftest import Env, config

    env = Env(tmp_path, config(policy={"channels": {"hook": {"fallback": ["ops-chat"]}}}))
    try:
        limited = env.token("hook-only", channels=["hook"])
        resp = env.client.post("/api/v1/announcements", headers=limited,
                               json={"kind": "incident", "title": "t", "channels": ["hook"]})
        assert resp.status_code == 403, resp.text
        err = resp.json()["error"]
        assert err["code"] == "forbidden" and "ops-chat" in err["message"] and "hook falls back" in err["message"]
        assert env.enqueued == [] and env.ledger.list_announcements() == []
    finally:
        env.client.close()
        env.ledger.close()


def test_the_engine_keeps_fallbacks_inside_what_the_author_could_reach(rt, sent):
    """An announcement accepted from a limited token before the intake checked (or under a
    configuration that gained a fallback since) still never reaches ops-slack."""
    res = rt.ledger.accept({"kind": "incident", "title": "t", "channels": ["x-main"], "allowed_channels": ["x-main"]},
                           [{"channel": "x-main"}], actor="x-only")
    [d] = res.deliveries
    assert engine.attempt(rt, d.id) == "failed", "with its one fallback out of reach, it simply fails"
    assert [x.channel for x in rt.ledger.deliveries_of(res.announcement.id)] == ["x-main"]
    assert "not falling back to ops-slack" in rt.ledger.events_of(d.id)[-1].reason
    assert [r.url.path for r in sent] == ["/x"]
    # without a limit (an admin's announcement) the fallback works as configured
    res = rt.ledger.accept({"kind": "incident", "title": "t", "channels": ["x-main"]}, [{"channel": "x-main"}],
                           actor="admin")
    assert engine.attempt(rt, res.deliveries[0].id) == "fallen_back"
    assert sorted(x.channel for x in rt.ledger.deliveries_of(res.announcement.id)) == ["ops-slack", "x-main"]


def _delivered_toot(rt) -> str:
    res = rt.ledger.accept({"kind": "incident", "title": "t", "channels": ["toot"]}, [{"channel": "toot"}], actor="a")
    d = claim(rt.ledger, res.deliveries[0].id, "w", 30)
    rt.ledger.transition(d, S.DELIVERED, "sent", owner="w", attempted=True,
                         receipt=Receipt(remote_id="109", url="https://social.example/@s/109"))
    return d.id


def test_a_retract_task_for_an_announcement_nobody_retracted_deletes_nothing(rt, sent):
    app = create_app(rt.settings, rt)
    retract_task = app.tasks["broadcaster.retract"]
    did = _delivered_toot(rt)
    assert retract_task(did) == "skipped"
    assert rt.ledger.get_delivery(did).state == S.DELIVERED
    assert not [r for r in sent if r.method == "DELETE"], "the live post must stay"
    # once the announcement is retracted through the service, the same task deletes it
    service.retract(rt, rt.ledger.get_delivery(did).announcement_id, principal=service.SYSTEM)
    assert retract_task(did) == "retracted"
    assert [(r.method, r.url.path) for r in sent] == [("DELETE", "/api/v1/statuses/109")]
    assert rt.ledger.get_delivery(did).state == S.RETRACTED
