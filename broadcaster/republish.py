"""Every status site written again now — after a key is revoked, readers must not wait for the
next announcement to learn it — with our own announcements signed again by the active key.

Its own module because it sits above the halves it joins: the status-site channel
(:mod:`broadcaster.channels.statuspage`) publishes the trust files :mod:`broadcaster.official`
builds, and ``official`` knows nothing of the channel; the ledger vouches for what is signed
again (:mod:`broadcaster.signing.resign` says what is and what is not).

The ledger vouches for a signed document when it holds exactly that announcement or update:
every field of the canonical document equal, but an announcement's ``components``, which a later
update may have changed (the ledger keeps the latest) — those must be names the announcement
or the configuration knows. A retracted announcement is never vouched for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import components as component_names, signing
from .channels.statuspage import Statuspage
from .config import Settings
from .errors import NotFound
from .ledger import Ledger
from .ledger.readable import open_readable
from .official import site_files
from .signing.resign import Resigned, Sign, Vouch, resign, stale


@dataclass
class Republished:
    sites: list[str] = field(default_factory=list)  # the status sites written
    resigned: Resigned = field(default_factory=Resigned)


def vouch_with(ledger: Ledger, settings: Settings) -> Callable[[dict[str, Any]], str | None]:
    """None when ``ledger`` holds exactly the signed document (see the module docstring), else why not."""
    known = set(component_names.known(settings))

    def vouch(doc: dict[str, Any]) -> str | None:
        what = f"{doc.get('type')} {doc.get('id')}"
        try:
            if doc.get("type") == "update":
                upd = ledger.get_update(str(doc.get("id")))
                ann = ledger.get_announcement(upd.announcement_id)
                ours = signing.update_document(upd, ann)
            else:
                ann = ledger.get_announcement(str(doc.get("id")))
                ours = signing.announcement_document(ann)
                named = doc.get("components")
                if isinstance(named, list) and all(isinstance(c, str) and (c in known or c in ann.components)
                                                   for c in named):
                    ours["components"] = named  # as it was signed, before an update changed them
        except NotFound:
            return (f"{what} is not in the ledger (a break-glass post not reconciled yet? `broadcaster reconcile`, "
                    "then `broadcaster keys publish`)")
        if ann.retracted_at:
            return f"announcement {ann.id} was retracted"
        if signing.canonical(ours) != signing.canonical(doc):
            return f"{what}: the signed text is not what the ledger holds"
        return None

    return vouch


class _Vouching:
    """The ledger and the active key, reached once and only when something needs signing again."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.ledger: Ledger | None = None
        self.ready = False
        self.blocked: str | None = None
        self.key_id: str | None = None
        self.sign: Sign | None = None
        self.vouch: Vouch | None = None

    def reach(self) -> None:
        if self.ready:
            return
        self.ready = True
        try:
            self.key_id, self.sign = signing.active_signer(self.settings)
        except signing.SigningError as exc:
            self.blocked = f"no key to sign with here: {exc}"
            return
        self.ledger, why = open_readable(self.settings.ledger)
        if self.ledger is None:
            self.blocked = f"nothing can vouch for the texts: {why}"
            return
        self.vouch = vouch_with(self.ledger, self.settings)

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None


def republish(settings: Settings) -> Republished:
    """Write every enabled status site again — pages, key list, signature files — and copy it to
    its mirrors; records of revoked keys signed again where the ledger vouches for them. Raises
    the channel's DeliveryError when a site or a mirror cannot be written."""
    out = Republished()
    vouching = _Vouching(settings)
    try:
        for name, ch in settings.channels.items():
            if getattr(ch, "kind", None) != "statuspage" or not ch.enabled:
                continue
            site = Statuspage(name, ch, trust_files=lambda state: site_files(settings, state))
            with site.locked() as state:
                keys = _keys(settings)
                if stale(state.get("signatures") or {}, keys):
                    vouching.reach()
                    out.resigned.add(resign(state["signatures"], keys, retracted=state.get("retracted") or {},
                                            sign=vouching.sign, key_id=vouching.key_id, vouch=vouching.vouch,
                                            blocked=vouching.blocked, now=site.clock()))
                site.save_and_publish(state)
            out.sites.append(name)
    finally:
        vouching.close()
    return out


def _keys(settings: Settings) -> dict[str, signing.KeyInfo]:
    cfg = signing.config_of(settings)
    if cfg is None:
        return {}
    try:
        return signing.Keyring(cfg.key_dir).keys()
    except signing.SigningError:
        return {}
