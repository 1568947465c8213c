"""The email channel against a real SMTP server on loopback (aiosmtpd): per-recipient 4xx/5xx
replies, a second attempt that mails nobody twice, and connections refused or dropped while
others go on."""

from __future__ import annotations

import email
import email.policy
import socket
from collections import Counter

import pytest

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

from broadcaster.channels.base import MemoryProgress  # noqa: E402
from broadcaster.channels.email import Email, EmailSettings  # noqa: E402
from broadcaster.errors import TransientError  # noqa: E402
from broadcaster.models import Announcement, Message  # noqa: E402
from tests.support.smtp import OffersPipelining  # noqa: E402

PIPELINING = pytest.mark.parametrize("pipelining", [False, True], ids=["one-command-at-a-time", "pipelining"])


class Handler(OffersPipelining):
    """Greylists some addresses until ``open_greylist``, refuses others for good."""

    def __init__(self, pipelining: bool = True):
        self.pipelining = pipelining
        self.greylisted = {"grey1@example.net", "grey2@example.net"}
        self.refused = {"gone@example.net"}
        self.received: list[tuple[str, email.message.EmailMessage]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refused:
            return "550 5.1.1 no such mailbox"
        if address in self.greylisted:
            return "450 4.2.0 greylisted, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        for rcpt in envelope.rcpt_tos:
            self.received.append((rcpt, msg))
        return "250 queued"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=[False, True], ids=["one-command-at-a-time", "pipelining"])
def smtp_server(request):
    handler = Handler(pipelining=request.param)
    controller = aiosmtpd_controller.Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def test_second_attempt_mails_nobody_twice(smtp_server):
    handler, port = smtp_server
    recipients = ["ok1@example.net", "grey1@example.net", "gone@example.net", "ok2@example.net", "grey2@example.net"]
    settings = EmailSettings.model_validate({
        "kind": "email",
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5},
        "from_address": "Status <status@example.com>",
        "recipients": recipients,
        "batch_size": 2,
    })
    ch = Email("mail", settings)
    announcement = Announcement(id="a1", kind="incident", title="API down", body="Investigating <now>.")
    post = ch.render(Message(announcement=announcement))
    progress = MemoryProgress()

    with pytest.raises(TransientError) as err:
        ch.send(post, key="delivery-1", progress=progress)
    assert "2 accepted, 1 refused, 2 deferred, 0 uncertain" in str(err.value)
    assert sorted(r for r, _ in handler.received) == ["ok1@example.net", "ok2@example.net"]
    assert progress.states()["gone@example.net"][0] == "refused"
    assert progress.states()["gone@example.net"][1].startswith("550")

    handler.greylisted.clear()  # the greylist opens; the refused mailbox stays gone
    receipt = ch.send(post, key="delivery-1", progress=progress)
    assert receipt.extra == {"message_id_key": "delivery-1", "root_key": "delivery-1",
                             "sent": 2, "refused": 1, "skipped": 3}

    counts = Counter(r for r, _ in handler.received)
    assert counts == {"ok1@example.net": 1, "ok2@example.net": 1, "grey1@example.net": 1, "grey2@example.net": 1}
    ids = {r: m["Message-ID"] for r, m in handler.received}
    assert len(set(ids.values())) == 4 and all(i.endswith("@example.com>") for i in ids.values())
    html = handler.received[0][1].get_body(("html",)).get_content()
    assert "Investigating &lt;now&gt;." in html

    # a third attempt (e.g. a redelivered task) sends nothing at all
    before = len(handler.received)
    third = ch.send(post, key="delivery-1", progress=progress)
    assert len(handler.received) == before and third.extra["sent"] == 0 and third.extra["skipped"] == 5


def test_check_connects_without_sending(smtp_server):
    handler, port = smtp_server
    settings = EmailSettings.model_validate({
        "kind": "email", "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
        "from_address": "status@example.com", "recipients": ["ok1@example.net"],
    })
    assert "accepted EHLO" in Email("mail", settings).check()
    assert handler.received == []


def test_connection_refused_is_transient():
    settings = EmailSettings.model_validate({
        "kind": "email", "smtp": {"host": "127.0.0.1", "port": free_port(), "security": "none", "timeout": 2},
        "from_address": "status@example.com", "recipients": ["ok1@example.net"],
    })
    ch = Email("mail", settings)
    progress = MemoryProgress()
    with pytest.raises(TransientError, match="cannot connect"):
        ch.send(ch.render(Message(announcement=Announcement(id="a", kind="notice", title="t"))), key="k", progress=progress)
    assert progress.states() == {}


class Dropping(Handler):
    """Closes the connection (no reply) at the first RCPT of ``drop``; nobody greylisted."""

    def __init__(self, drop: str, pipelining: bool):
        super().__init__(pipelining)
        self.greylisted, self.refused = set(), set()
        self.drop = drop

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.drop:
            self.drop = ""
            server.transport.close()
            return "421 4.3.0 gone"  # never reaches the client: the connection is closed
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@PIPELINING
def test_a_refused_and_a_dropped_connection_leave_their_share_to_the_others(pipelining):
    """Four connections: the second is refused (nothing listens where it goes), another is
    dropped by the server before a message's body. Both shares go out over the others, in the
    same pass, each address once, with its own stable Message-ID."""
    from broadcaster.channels import _mail
    from broadcaster.channels.email import connect_smtp

    handler = Dropping(drop="r07@example.net", pipelining=pipelining)
    controller = aiosmtpd_controller.Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    recipients = [f"r{i:02d}@example.net" for i in range(40)]
    opened = []

    def factory(s):
        opened.append(s.port)
        if len(opened) == 2:  # a real refusal: nothing listens on this port
            return connect_smtp(s.model_copy(update={"port": free_port()}))
        return connect_smtp(s)

    try:
        settings = EmailSettings.model_validate({
            "kind": "email", "smtp": {"host": "127.0.0.1", "port": controller.port, "security": "none", "timeout": 5},
            "from_address": "Status <status@example.com>", "recipients": recipients, "connections": 4,
        })
        ch = Email("mail", settings, smtp_factory=factory)
        post = ch.render(Message(announcement=Announcement(id="a1", kind="incident", title="API down")))
        progress = MemoryProgress()
        receipt = ch.send(post, key="delivery-1", progress=progress)
    finally:
        controller.stop()
    assert handler.drop == "", "the server dropped a connection"
    assert len(opened) >= 3, "the refused connection was tried"
    assert Counter(r for r, _ in handler.received) == dict.fromkeys(recipients, 1)
    assert receipt.extra["sent"] == 40 and {s for s, _ in progress.states().values()} == {"done"}
    assert all(m["Message-ID"] == _mail.message_id("delivery-1", r, "example.com") for r, m in handler.received)
