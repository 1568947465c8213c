"""A Runtime is fixed at construction: its collaborators are typed and handed in, nothing is
assigned later, and a different collaborator means another runtime (``Runtime.replaced``)."""

from __future__ import annotations

import pytest

from broadcaster.channels.ports import ChannelPorts
from broadcaster.config import load_settings
from broadcaster.ledger.opt_outs import OptOutStore
from broadcaster.runtime import Runtime, standard_ports
from broadcaster.subscribers.endpoints import Source
from broadcaster.wakeup import NoEnqueuer
from tests.support.runtime import memory_runtime

CHANNELS = {"hook": {"kind": "webhook", "url": "https://hooks.example.test/a"}}


@pytest.fixture
def rt(tmp_path):
    runtime = memory_runtime(load_settings({"ledger": f"sqlite:///{tmp_path}/l.db", "channels": CHANNELS}, env={}))
    yield runtime
    runtime.close()
    runtime.ledger.close()


@pytest.mark.parametrize("name", ["settings", "ledger", "limiter", "enqueuer", "http", "ports", "clock",
                                  "confirmation_sender", "anything_new"])
def test_nothing_is_assigned_after_construction(rt, name):
    with pytest.raises(AttributeError, match="fixed at construction"):
        setattr(rt, name, None)


def test_replaced_is_another_runtime_with_one_collaborator_changed(rt):
    sender = []
    other = rt.replaced(confirmation_sender=lambda *mail: sender.append(mail), enqueuer=NoEnqueuer())
    assert other is not rt and other.ledger is rt.ledger and other.limiter is rt.limiter
    assert rt.confirmation_sender is None and other.confirmation_sender is not None
    assert isinstance(other.enqueuer, NoEnqueuer) and not isinstance(rt.enqueuer, NoEnqueuer)
    assert other.channel("hook") is not rt.channel("hook"), "adapters are the new runtime's own"


def test_each_runtime_renews_credentials_through_itself(rt):
    assert rt.ports.credentials == rt.credential
    other = rt.replaced()
    assert other.ports.credentials == other.credential and other.ports.credentials != rt.credential


def test_the_running_systems_ports_read_that_runtimes_ledger(rt):
    wired = Runtime(rt.settings, ledger=rt.ledger, breaker=rt.breaker, limiter=rt.limiter, ports=standard_ports)
    ports = wired.ports
    assert isinstance(ports.opt_outs, OptOutStore) and isinstance(ports.endpoints, Source)
    assert ports.endpoints.runtime is wired
    assert ports.subscribers is not None and ports.trust_files is not None
    assert ports.smtp_factory is None and ports.resolver is None, "left to the adapters' defaults"


def test_given_ports_reach_the_adapters(rt):
    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    other = rt.replaced(ports=ChannelPorts(resolver=resolver))
    assert other.channel("hook").resolver is resolver and rt.channel("hook").resolver is None
