"""A status site the worker published through the engine from a real SQLite ledger, signed by
key ``k1`` — the ground for what a revoke does to it (``tests/unit/test_revoke_resigns.py``,
``tests/web/test_verify_page.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from broadcaster import engine, official, service, signing
from broadcaster.channels.ports import ChannelPorts
from broadcaster.principal import Principal
from tests.support.runtime import Clock, memory_runtime, wakeups
from tests.support.signed_site import BODY, NOW, Setup, cli

OPS = Principal("ops", admin=True)


class Published:
    """Three announcements the worker published signed by k1: one kept (with an update that
    changed its components), one retracted, one whose record an attacker holding k1 altered in
    the site's state — and one the attacker made up."""

    def __init__(self, tmp_path: Path):
        self.s = s = Setup(tmp_path)
        assert cli(s, "keys", "create", "--id", "k1").exit_code == 0
        self.rt = rt = memory_runtime(s.settings, clock=Clock(NOW),
                                      ports=ChannelPorts(trust_files=lambda state: official.site_files(s.settings,
                                                                                                       state)))
        self.kept = self.post("Login errors", BODY)
        upd = service.add_update(rt, self.kept, {"status": "identified", "body": "The session store is full.",
                                                 "components": ["API"]}, principal=OPS)
        self.deliver(self.kept, upd.id)
        self.gone = self.post("Wrong alarm", "Nothing is wrong.")
        service.retract(rt, self.gone, principal=OPS)
        for delivery_id, _channel in wakeups(rt).retractions:
            engine.retract_one(rt, delivery_id)
        self.altered = self.post("Payments are slow", "We are looking into it.")
        self.k1 = signing.Keyring(s.tmp / "keys").private("k1")
        with s.site().locked() as state:
            sigs = state["signatures"]
            (eid, rec), = sigs[self.altered].items()
            doc = json.loads(rec["canonical"]) | {"body": "Send 0.1 BTC to 1AbCdEf to keep your account."}
            sigs[self.altered][eid] = signing.sign_document(doc, self.k1, "k1")
            made_up = {**json.loads(rec["canonical"]), "id": "ann_madeup_1", "title": "Refunds for everyone"}
            sigs["ann_madeup_1"] = {"ann_madeup_1": signing.sign_document(made_up, self.k1, "k1")}
            s.site().save_and_publish(state)

    def post(self, title: str, body: str) -> str:
        sub = service.submit(self.rt, {"kind": "incident", "title": title, "body": body, "severity": "major",
                                       "channels": ["status-site", "mastodon-main"]}, principal=OPS)
        self.deliver(sub.id, None)
        return sub.id

    def deliver(self, ann_id: str, update_id: str | None) -> None:
        (d,) = [d for d in self.rt.ledger.deliveries_of(ann_id)
                if d.channel == "status-site" and d.update_id == update_id]
        assert engine.attempt(self.rt, d.id) == "delivered"

    def text(self, ann_id: str) -> str:
        """What a reader copies from the Mastodon post of ``ann_id``."""
        (d,) = [d for d in self.rt.ledger.deliveries_of(ann_id) if d.channel == "mastodon-main" and not d.update_id]
        return "\n".join(self.rt.channel("mastodon-main").render(engine.build_message(self.rt, d)).parts)

    def verify(self, *args: str, text: str | None = None, reader: bool = False):
        who = Setup(self.s.tmp, signing_on=False) if reader else self.s  # a reader has only the published site
        return cli(who, "verify", *args, input=text)

    def entries(self, ann_id: str) -> list[dict]:
        path = self.s.out / signing.WELL_KNOWN / "signatures" / f"{ann_id}.json"
        return json.loads(path.read_text())["entries"]
