"""An operator who finds an `unknown` post on the channel settles it as delivered (no re-send)."""

from __future__ import annotations

from broadcaster.models import DeliveryState as S
from tests.api.conftest import assert_error
from tests.support.ledger import audit_entries


def test_confirm_unknown_as_delivered(env):
    r = env.client.post("/api/v1/announcements", json={"kind": "incident", "title": "x"}, headers=env.admin)
    assert r.status_code == 202, r.text
    d = r.json()["deliveries"][0]
    env.ledger.force(d["id"], S.UNKNOWN, "test: outcome lost", actor="test", from_states=[S.PENDING])
    ok = env.client.post(f"/api/v1/deliveries/{d['id']}/confirm", json={"url": "https://social.example/@us/1"},
                         headers=env.admin)
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "delivered"
    row = env.ledger.get_delivery(d["id"])
    assert str(row.state) == "delivered" and row.remote_url == "https://social.example/@us/1"
    assert any(a["action"] == "delivery.confirm" for a in audit_entries(env.ledger, limit=1000))
    again = env.client.post(f"/api/v1/deliveries/{d['id']}/confirm", headers=env.admin)
    assert_error(again, 422, "invalid_request")
