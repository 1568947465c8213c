"""The subscriber store's contract, on SQLite AND PostgreSQL: a public request never changes a
pending or confirmed subscription, one confirmation mail per address per interval (two claims
racing for it: one wins), confirmation only for the request its link was made for."""

from __future__ import annotations

import threading

import pytest

from broadcaster.ledger import Ledger
from broadcaster.ledger.subscribers import Request, SubscriberStore
from tests.support.runtime import Clock


@pytest.fixture
def store(ledger_url):
    clock = Clock()
    ledger = Ledger.open(ledger_url, clock=clock)
    yield SubscriberStore(ledger)
    ledger.close()


def ask(store, address="reader@example.test", lst="news", **kw) -> Request:
    return Request(list=lst, address=address, name=kw.get("name"), components=tuple(kw.get("components", ())),
                   marketing=kw.get("marketing", False))


def test_a_request_never_changes_a_live_pending_or_a_confirmed_subscription(store):
    clock = store.ledger.clock
    first = store.request(ask(store, name="Owner"), stale_before=clock() - 3600)
    again = store.request(ask(store, name="Mallory", marketing=True, components=["db"]), stale_before=clock() - 3600)
    assert (again.id, again.requested_at, again.name, again.marketing, again.components) == \
        (first.id, first.requested_at, "Owner", False, ())
    assert store.confirm(first.id, first.requested_at, None).state == "confirmed"
    after = store.request(ask(store, name="Mallory", marketing=True), stale_before=clock() + 1)
    assert after.state == "confirmed" and after.name == "Owner" and not after.marketing


def test_a_stale_or_ended_subscription_starts_over_and_voids_older_links(store):
    clock = store.ledger.clock
    first = store.request(ask(store), stale_before=0)
    clock.advance(10)
    restarted = store.request(ask(store, marketing=True), stale_before=clock() - 5)  # its links expired
    assert restarted.id == first.id and restarted.marketing and restarted.requested_at == clock()
    assert store.confirm(first.id, first.requested_at, None).state == "pending"  # the old link: nothing
    assert store.confirm(first.id, restarted.requested_at, False).state == "confirmed"
    assert store.set_state(first.id, "unsubscribed", keep=("unsubscribed",), actor="t").state == "unsubscribed"
    clock.advance(1)
    back = store.request(ask(store), stale_before=0)
    assert back.state == "pending" and back.requested_at == clock()


def test_one_confirmation_mail_per_address_per_interval_even_when_racing(store):
    clock = store.ledger.clock
    a = store.request(ask(store, lst="news"), stale_before=0)
    b = store.request(ask(store, lst="ops"), stale_before=0)
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def claim(sid: str) -> None:
        barrier.wait()
        results.append(store.claim_confirmation_mail(sid, "reader@example.test", not_since=clock() - 600))

    threads = [threading.Thread(target=claim, args=(sid,)) for sid in (a.id, a.id, a.id, b.id)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [False, False, False, True]
    assert store.claim_confirmation_mail(a.id, "reader@example.test", not_since=clock() - 600) is False
    sent_at = store.get(a.id).confirm_sent_at or store.get(b.id).confirm_sent_at
    assert sent_at == clock()
    clock.advance(601)
    assert store.claim_confirmation_mail(a.id, "reader@example.test", not_since=clock() - 600) is True
    store.release_confirmation_mail(a.id, clock())  # the mail failed: the address may ask again at once
    assert store.claim_confirmation_mail(a.id, "reader@example.test", not_since=clock() - 600) is True
