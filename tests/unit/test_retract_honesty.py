"""A retraction says what readers still see. Mastodon deletes: the delivery is ``retracted``
with no note. E-mail, Slack and generic webhooks cannot delete, and a provider may refuse a
delete: those deliveries end ``retracted`` too (nothing more will be sent), but their note —
``last_error``, the API's ``current_error`` — says "still visible to readers" (it once said
nothing, and the docs called the announcement "all withdrawn")."""

from __future__ import annotations

import httpx
import pytest

from broadcaster import engine, service
from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S, Receipt, current_error
from broadcaster.schemas import delivery_out
from tests.support.ledger import claim
from tests.support.runtime import memory_runtime

CHANNELS = {
    "toot": {"kind": "mastodon", "base_url": "https://social.example", "access_token": "tok"},
    "gone": {"kind": "mastodon", "base_url": "https://refuses.example", "access_token": "tok"},
    "ops-slack": {"kind": "webhook", "format": "slack", "url": "https://hooks.example/slack"},
    "mail": {"kind": "email", "transport": "smtp", "smtp": {"host": "127.0.0.1", "port": 8025},
             "from_address": "status@example.com", "recipients": ["oncall@example.com"]},
}


@pytest.fixture
def rt(tmp_path):
    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.host == "refuses.example":
            return httpx.Response(403, json={"error": "This action is not allowed"})
        return httpx.Response(200, json={"id": "1"})

    settings = load_settings({"channels": CHANNELS}, env={})
    http = httpx.Client(transport=httpx.MockTransport(provider))
    runtime = memory_runtime(settings, ledger=Ledger.open(f"sqlite:///{tmp_path}/l.db"), http=http)
    yield runtime
    runtime.close()
    http.close()
    runtime.ledger.close()


def _delivered_everywhere(rt) -> dict[str, str]:
    res = rt.ledger.accept({"kind": "incident", "title": "t", "channels": list(CHANNELS)},
                           [{"channel": c} for c in CHANNELS], actor="a")
    for d in res.deliveries:
        claimed = claim(rt.ledger, d.id, "w", 30)
        # an old error from an earlier attempt must not read as the retraction's note
        rt.ledger.transition(claimed, S.DELIVERED, "sent", owner="w", attempted=True, error="timeout once",
                             receipt=Receipt(remote_id="109", url=f"https://{d.channel}.example/109"))
    service.retract(rt, res.announcement.id, principal=service.SYSTEM)
    return {d.channel: d.id for d in res.deliveries}


def test_only_a_deleted_post_is_retracted_without_a_note(rt):
    ids = _delivered_everywhere(rt)
    outcomes = {ch: engine.retract_one(rt, did) for ch, did in ids.items()}
    assert outcomes == {"toot": "retracted", "gone": "not_withdrawn", "ops-slack": "not_withdrawn",
                        "mail": "not_withdrawn"}
    rows = {ch: rt.ledger.get_delivery(did) for ch, did in ids.items()}
    assert {ch: d.state for ch, d in rows.items()} == dict.fromkeys(CHANNELS, S.RETRACTED)
    notes = {ch: current_error(d.state, d.last_error) for ch, d in rows.items()}
    assert notes["toot"] is None
    assert notes["mail"] == "cannot be deleted on email: still visible to readers"
    assert notes["ops-slack"] == "cannot be deleted on slack webhook: still visible to readers"
    gone = notes["gone"] or ""
    assert gone.startswith("could not be deleted on mastodon (") and "still visible to readers" in gone
    # the API's delivery carries it, and the attempt log says it too
    assert delivery_out(rows["mail"]).current_error == notes["mail"]
    assert rt.ledger.events_of(ids["mail"])[-1].reason.startswith("cannot be deleted on email: still visible")
