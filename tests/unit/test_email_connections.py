"""Email over several SMTP connections: each connection takes its share of the mailing and has at
most one address in flight; a connection that cannot open or is lost before a body hands its
address to the others; nobody is mailed twice for it. Scripted connections, no network (the
real worker killed mid-send against aiosmtpd is tests/integration/test_email_bulk.py)."""

from __future__ import annotations

import smtplib
import threading

import pytest

from broadcaster.channels import _mail
from broadcaster.channels.base import MemoryProgress
from broadcaster.channels.email import DEFAULT_CONNECTIONS, Email
from broadcaster.config import load_settings
from broadcaster.errors import AmbiguousDelivery, ConfigError, TransientError
from tests.unit.test_email import T0, FakeSMTP, RecordingProgress, message, parsed, settings, smtp_mode  # noqa: F401

EVERYONE = [f"u{i:02d}@x.test" for i in range(12)]
#: each test runs against servers without PIPELINING and with it (``smtp_mode`` in test_email.py)
pytestmark = pytest.mark.usefixtures("smtp_mode")


class Killed(BaseException):
    """kill -9 stand-in: nothing of the pass runs on after it."""


class Connections:
    """A factory of scripted connections; ``refuse`` lists the call numbers (1-based) refused."""

    def __init__(self, script=None, refuse=()):
        self.script = script or {}
        self.refuse = set(refuse)
        self.made: list[FakeSMTP] = []
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, _settings):
        with self.lock:
            self.calls += 1
            if self.calls in self.refuse:
                raise ConnectionRefusedError("connection refused")
            conn = FakeSMTP(dict(self.script))
            self.made.append(conn)
            return conn

    def accepted(self) -> list[str]:
        return sorted(to for conn in self.made for to, _ in conn.accepted)


def mailer(factory, n: int, recipients=EVERYONE, **kw) -> Email:
    return Email("mail", settings(recipients=recipients, connections=n, **kw), clock=lambda: T0, smtp_factory=factory)


def states(progress) -> dict[str, str]:
    return {item: state for item, (state, _) in progress.states().items()}


def hold_every_connection(factory: Connections, n: int, then, at: int = 1):
    """A factory whose connections each hold their ``at``-th body (its address: ``held_to``) until
    all ``n`` connections hold one (so they really run side by side: one after the other, the barrier breaks after 5 s);
    ``then`` runs once, at that moment, in one of them. Against a pipelining server one thread
    sends every connection's body of a round before it reads any answer: all ``n`` are held once
    the ``n``-th is sent, so a count replaces the barrier there."""
    barrier = threading.Barrier(n, action=then, timeout=5)
    holding = []

    def make(s):
        conn = factory(s)
        send, count = conn.send, [0]

        def send_held(data):
            if conn.is_envelope(data):
                return send(data)
            count[0] += 1
            if count[0] == at:
                conn.data, conn.held_to = conn.split(data)[0], conn.rcpt_to
                if not conn.pipelining:
                    barrier.wait()
                else:
                    holding.append(conn)
                    if len(holding) == n and then is not None:
                        then()
            send(data)

        conn.send = send_held
        return conn

    return make


def test_the_default_is_several_connections_and_the_key_is_checked_with_its_path():
    base = {"kind": "email", "smtp": {"host": "mx.test"}, "from_address": "s@example.com", "recipients": ["a@x.test"]}
    assert settings(connections=DEFAULT_CONNECTIONS).connections == DEFAULT_CONNECTIONS > 1
    cfg = {"routes": {"incident": ["mail"]}}
    assert load_settings({**cfg, "channels": {"mail": base}}, env={}).channels["mail"].connections == DEFAULT_CONNECTIONS

    def problems(**mail):
        with pytest.raises(ConfigError) as info:
            load_settings({**cfg, "channels": {"mail": {**base, **mail}}}, env={})
        return dict(info.value.problems)

    assert "greater than or equal to 1" in problems(connections=0)["channels.mail.connections"]
    assert "less than or equal to 32" in problems(connections=33)["channels.mail.connections"]
    assert problems(connections="many")["channels.mail.connections"] == "must be a whole number"
    postmark = {"transport": "postmark", "smtp": None, "postmark": {"server_token": "t"}}
    assert "SMTP only" in problems(connections=2, **postmark)["channels.mail.connections"]
    load_settings({**cfg, "channels": {"mail": {**base, **postmark, "connections": 1}}}, env={})


def test_connections_send_side_by_side_each_with_one_address_in_flight():
    factory = Connections()
    progress = RecordingProgress()
    seen = {}

    def at_once():  # every connection holds a body: what is durable now?
        seen["durable"] = states(progress)
        seen["held"] = {conn.held_to for conn in factory.made}

    ch = mailer(hold_every_connection(factory, 3, at_once), 3)
    receipt = ch.send(ch.render(message()), key="k", progress=progress)
    assert len(factory.made) == 3 and all(conn.accepted and conn.closed for conn in factory.made)
    assert factory.accepted() == EVERYONE, "each address once"
    assert receipt.extra["sent"] == 12 and states(progress) == dict.fromkeys(EVERYONE, "done")
    in_flight = {a for a, s in seen["durable"].items() if s == "sending"}
    assert in_flight == seen["held"] and len(in_flight) == 3, "exactly one address per connection in flight"


def test_a_crash_leaves_at_most_one_uncertain_address_per_connection_resent_with_its_message_id():
    factory = Connections()
    progress = RecordingProgress()
    durable = {}
    held = {}

    def at_once():  # kill -9 while every connection holds a body the server has
        durable.update(progress.states())
        held.update({conn.held_to: parsed(conn.data)["Message-ID"] for conn in factory.made})
        raise Killed

    # each connection is killed at its third message: two outcomes each must be durable by then
    ch = mailer(hold_every_connection(factory, 3, at_once, at=3), 3)
    with pytest.raises((Killed, threading.BrokenBarrierError)):
        ch.send(ch.render(message()), key="k", progress=progress)
    assert len(held) == 3
    uncertain = {a for a, (s, _) in durable.items() if s == "sending"}
    assert uncertain == set(held), "the in-flight address of each connection, nothing else"
    assert [s for a, (s, _) in durable.items() if a not in held] == ["done"] * 6
    # the next attempt re-sends exactly those, with the same Message-IDs
    after = MemoryProgress()
    for item, (state, detail) in durable.items():
        after.mark([item], state, detail)
    again = Connections()
    ch2 = mailer(again, 3)
    receipt = ch2.send(ch2.render(message()), key="k", progress=after)
    sent_again = {to: parsed(data)["Message-ID"] for conn in again.made for to, data in conn.accepted}
    done_before = {a for a, (s, _) in durable.items() if s == "done"}
    assert set(sent_again) == set(EVERYONE) - done_before
    assert {a: sent_again[a] for a in held} == held
    assert all(mid == _mail.message_id("k", a, "example.com") for a, mid in sent_again.items())
    assert receipt.extra["sent"] == len(sent_again) and states(after) == dict.fromkeys(EVERYONE, "done")


def test_a_refused_connection_leaves_its_share_to_the_others(caplog):
    factory = Connections(refuse={2})
    progress = RecordingProgress()
    ch = mailer(hold_every_connection(factory, 2, None), 3)  # the two that open run side by side
    receipt = ch.send(ch.render(message()), key="k", progress=progress)
    assert len(factory.made) == 2 and factory.accepted() == EVERYONE, "everyone once, over the two that opened"
    assert receipt.extra["sent"] == 12 and states(progress) == dict.fromkeys(EVERYONE, "done")
    assert "1 of 3 SMTP connections ended early" in caplog.text and "cannot connect" in caplog.text


def test_a_connection_lost_before_the_body_hands_that_address_to_another():
    dropped = []

    class DropsOnce(FakeSMTP):
        def rcpt(self, to):
            if to == "u05@x.test" and not dropped:
                dropped.append(self)
                self.dead = True
                raise smtplib.SMTPServerDisconnected("dropped")
            return super().rcpt(to)

    class Factory(Connections):
        def __call__(self, _settings):
            with self.lock:
                self.made.append(DropsOnce())
                return self.made[-1]

    factory = Factory()
    progress = RecordingProgress()
    ch = mailer(factory, 3)
    receipt = ch.send(ch.render(message()), key="k", progress=progress)
    assert dropped and factory.accepted() == EVERYONE, "u05 sent once, by another connection"
    assert not any(to == "u05@x.test" for to, _ in dropped[0].accepted)
    assert receipt.extra["sent"] == 12 and states(progress) == dict.fromkeys(EVERYONE, "done")
    marks_of_u05 = [state for write in progress.writes for items, state in write if items == ["u05@x.test"]]
    # one command at a time, its `sending` mark is written while the envelope is exchanged
    first_try = ["failed"] if FakeSMTP.pipelining else ["sending", "failed"]
    assert marks_of_u05 == [*first_try, "sending", "done"]


def test_one_connection_cannot_finish_alone_the_pass_says_why_and_nobody_is_mailed_twice():
    # the only connection is dropped before a body: the rest waits for the next attempt
    factory = Connections(script={"u03@x.test": "drop_before_data"})
    progress = MemoryProgress()
    ch = mailer(factory, 1)
    with pytest.raises(TransientError, match="before the message was sent") as err:
        ch.send(ch.render(message()), key="k", progress=progress)
    assert not isinstance(err.value, AmbiguousDelivery)
    assert states(progress) == {"u00@x.test": "done", "u01@x.test": "done", "u02@x.test": "done",
                                "u03@x.test": "failed"}
    # every connection refused: nothing marked, the connect error is the reason
    progress = MemoryProgress()
    ch = mailer(Connections(refuse={1, 2, 3}), 3)
    with pytest.raises(TransientError, match="cannot connect"):
        ch.send(ch.render(message()), key="k", progress=progress)
    assert progress.states() == {}
    # then all of it over connections that open: each address once
    again = Connections()
    ch = mailer(again, 3)
    ch.send(ch.render(message()), key="k", progress=progress)
    assert again.accepted() == EVERYONE


def test_an_ambiguous_loss_on_one_connection_leaves_only_that_address_uncertain():
    factory = Connections(script={"u04@x.test": "drop_after_data"})
    progress = MemoryProgress()
    ch = mailer(factory, 3)
    with pytest.raises(AmbiguousDelivery, match="11 accepted, 0 refused, 0 deferred, 1 uncertain"):
        ch.send(ch.render(message()), key="k", progress=progress)
    assert states(progress) == {**dict.fromkeys(EVERYONE, "done"), "u04@x.test": "sending"}
    assert factory.accepted() == sorted(set(EVERYONE) - {"u04@x.test"})


def test_no_more_connections_than_addresses_and_none_for_nobody():
    factory = Connections()
    ch = mailer(factory, 8, recipients=["a@x.test", "b@x.test"])
    ch.send(ch.render(message()), key="k")
    assert len(factory.made) <= 2 and factory.accepted() == ["a@x.test", "b@x.test"]
    progress = MemoryProgress()
    progress.mark(["a@x.test", "b@x.test"], "done")
    made = len(factory.made)
    ch.send(ch.render(message()), key="k", progress=progress)
    assert len(factory.made) == made, "nothing left to send: no connection opened"
