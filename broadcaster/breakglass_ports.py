"""What break-glass hands the channels: the worker's own collaborators, or a clear word per
channel about what it could not give.

A worker builds every adapter with :func:`broadcaster.runtime.standard_ports`: the status site's
trust files, the subscribers to mail, SMS numbers that replied STOP, and the endpoints
subscribers brought. Break-glass gives the very same ports. Those that read the ledger read it
when it can still be read — the API or the broker may be what is down — and otherwise say so,
channel by channel:

- **trust files** need no ledger (the keyring and the site's own state), so the signature of a
  break-glass post is published with it and its ``Verify:`` link answers at once — the outage
  is exactly when readers check. When no usable key is here, the status site's line says the
  posts are NOT signed;
- **e-mail lists**: the ledger, else an export file, else not reached (``breakglass_audience.py``);
- **subscriber endpoints** (``subscriber_webhooks``): the ledger's confirmed endpoints; without it
  the channel sends nothing and its lists are NOT reached (``reconcile`` hands it to the workers);
- **SMS opt-outs** (``twilio_sms``): the ledger's; without it the configured numbers are texted
  (break-glass exists to reach on-call), and the line says opt-outs were not read — Twilio itself
  still refuses a number that replied STOP.

The ledger is opened once, only when a channel that may be posted to (its fallbacks included)
reads it; it is never created (a missing SQLite file is unreachable). Nothing is written to it but
what a worker's ports write (an endpoint's run of failures, an opt-out). The announcement's own
facts (components, severity) come from the twin, ``runtime.deliveries``, where break-glass keeps it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable

from . import signing
from .channels.ports import ChannelPorts, Subscribers
from .channels.registry import channel_class
from .config import Settings
from .ledger import Ledger
from .ledger.readable import open_readable
from .official import site_files
from .runtime import PortsFactory, Runtime, standard_ports

#: channel kinds whose ports read the ledger (e-mail only with ``lists:``)
LEDGER_KINDS = frozenset({"subscriber_webhooks", "twilio_sms"})


def _reads_ledger(settings: Settings, name: str) -> bool:
    cfg = settings.channels[name]
    return cfg.kind in LEDGER_KINDS or bool(cfg.kind == "email" and getattr(cfg, "lists", ()))


class Reach:
    """The ledger this run reads (or why not), the ports it gives, and per channel what those
    ports could not reach. ``given`` are ports a caller supplies (tests); they win."""

    def __init__(self, settings: Settings, channels: Iterable[str], given: ChannelPorts | None = None):
        self.settings, self.given = settings, given or ChannelPorts()
        names = list(channels)
        names += [f for fs in settings.fallback_reach(names).values() for f in fs]
        self.ledger: Ledger | None = None
        self.why = ""
        if any(_reads_ledger(settings, n) for n in dict.fromkeys(names)):
            self.ledger, self.why = open_readable(settings.ledger)
        self._unsigned: str | None = None
        if any(getattr(channel_class(settings.channels[n].kind), "carries_signatures", False) for n in names):
            self._unsigned = signing.signing_problem(settings)

    def ports(self, subscribers: Subscribers | None) -> PortsFactory:
        """The worker's ports (``standard_ports``) when the ledger is read, else those that need
        none; e-mail's ``subscribers`` from break-glass's audience; ``given`` over both."""
        ledger, given = self.ledger, self.given

        def build(runtime: Runtime) -> ChannelPorts:
            if ledger is not None:
                base = standard_ports(runtime)
            else:
                base = ChannelPorts(trust_files=functools.partial(site_files, runtime.settings))
            if subscribers is not None:  # else (a list reached only by a fallback) the worker's own, if any
                base = dataclasses.replace(base, subscribers=subscribers)
            mine = {f.name: getattr(given, f.name) for f in dataclasses.fields(given)}
            return dataclasses.replace(base, **{k: v for k, v in mine.items() if v is not None})

        return build

    def of(self, channel: str) -> tuple[str | None, str | None]:
        """``(note, not_reached)`` for a channel whose ports are not e-mail lists (those are
        ``breakglass._Audience``'s): what the line of ``channel`` says it rests on, and what it
        could not reach (then nothing is sent to it)."""
        cfg = self.settings.channels[channel]
        kind = cfg.kind
        if kind == "subscriber_webhooks":
            lists = ", ".join(cfg.lists)
            if self.given.endpoints is not None:
                return None, None
            if self.ledger is None:
                return None, f"endpoints of {lists} NOT reached: {self.why}"
            return f"endpoints of {lists} from the ledger", None
        if kind == "twilio_sms" and self.ledger is None and self.given.opt_outs is None:
            return (f"SMS opt-outs not checked ({self.why}); Twilio itself still refuses a number that "
                    "replied STOP"), None
        if self._unsigned and getattr(channel_class(kind), "carries_signatures", False):
            return (f"posts NOT signed ({self._unsigned}): their Verify links answer NOT FOUND — run break-glass "
                    "where signing.key_dir holds the active key"), None
        return None, None

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
