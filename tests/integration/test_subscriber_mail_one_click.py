"""Every mail to a subscriber — the confirmation request included — carries one-click
unsubscribe (issue 16 item 5): a real SMTP sink (the sandbox's aiosmtpd), the real confirmation
sender and email channel, a real SQLite ledger.

The confirmation's link lets someone who never asked stop any further mail; an incident mailed to
the list carries ``List-Unsubscribe``/``List-Unsubscribe-Post`` (RFC 8058) with a leave-the-list
link, and posting ``List-Unsubscribe=One-Click`` to it ends the subscription.
"""

from __future__ import annotations

import email
import email.policy
import html
from urllib.parse import parse_qs, urlsplit

import pytest

from broadcaster import engine, service, subscribers as subs
from broadcaster.channels.ports import ChannelPorts
from broadcaster.config import load_settings
from broadcaster.errors import InvalidRequest
from tests.support.runtime import memory_runtime

SECRET = "one-click-test-signing-key-0123456789"


@pytest.fixture
def smtp():
    from broadcaster.sandbox import Sandbox

    sb = Sandbox(port=0, smtp_port=0, rate_limits=False).start()
    yield sb
    sb.stop()


@pytest.fixture
def rt(smtp, tmp_path):
    settings = load_settings({
        "ledger": f"sqlite:///{tmp_path}/ledger.db",
        "public_url": "https://status.example.test",
        "subscribers": {"secret_key": SECRET},
        "channels": {"mail": {"kind": "email", "from_address": "status@example.test", "lists": ["customers"],
                              "smtp": {"host": "127.0.0.1", "port": smtp.smtp_port, "security": "none"}}},
        "routes": {"incident": ["mail"]},
    }, env={})
    runtime = memory_runtime(settings, ports=lambda rt: ChannelPorts(subscribers=subs.source(rt)))
    yield runtime
    runtime.close()
    runtime.ledger.close()


def mails(smtp, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m["body"].encode(), policy=email.policy.default)
            for m in smtp.messages() if address in m["rcpt_tos"]]


def token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def test_the_confirmation_and_every_notification_carry_one_click_unsubscribe(rt, smtp):
    subs.subscribe(rt, "customers", "reader@example.test")
    assert subs.flush(rt, timeout=10)
    (confirmation,) = mails(smtp, "reader@example.test")
    leave = confirmation["List-Unsubscribe"].strip("<>")
    assert leave.startswith("https://status.example.test/api/v1/unsubscribe?token=")
    assert confirmation["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = confirmation.get_body(("plain",)).get_content()
    assert "/api/v1/subscribe/confirm?token=" in text and leave in text
    page = confirmation.get_body(("html",)).get_content()  # every link a link, not text to copy
    confirm_link = next(w for w in text.split() if "/subscribe/confirm?token=" in w)
    assert f'<a href="{html.escape(confirm_link, quote=True)}">{html.escape(confirm_link)}</a>' in page
    assert f'<a href="{html.escape(leave, quote=True)}">' in page

    # the reader confirms; an incident mailed to the list carries its own one-click link
    confirm_url = next(w for w in text.split() if "/subscribe/confirm?token=" in w)
    subs.confirm(rt.ledger, rt.settings, token(confirm_url))
    ann = service.submit(rt, {"kind": "incident", "title": "Checkout is down", "body": "On it."},
                         principal=service.SYSTEM)
    (d,) = rt.ledger.deliveries_of(ann.id)
    assert engine.attempt(rt, d.id) == "delivered"
    incident = mails(smtp, "reader@example.test")[-1]
    assert incident["Subject"] == "Checkout is down"
    link = incident["List-Unsubscribe"].strip("<>")
    assert incident["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in incident.get_body(("plain",)).get_content()

    # the mail client's one-click: the address leaves the list, and gets nothing more
    sub, stopped = subs.unsubscribe(rt.ledger, rt.settings, token(link))
    assert (sub.state, stopped) == ("unsubscribed", "everything")
    again = service.submit(rt, {"kind": "incident", "title": "Search is slow", "body": "On it."},
                           principal=service.SYSTEM)
    (d2,) = rt.ledger.deliveries_of(again.id)
    engine.attempt(rt, d2.id)
    assert [m["Subject"] for m in mails(smtp, "reader@example.test")] == [confirmation["Subject"],
                                                                          "Checkout is down"]


def test_someone_who_never_asked_stops_the_confirmation_mails(rt, smtp):
    subs.subscribe(rt, "customers", "victim@example.test")
    assert subs.flush(rt, timeout=10)
    (confirmation,) = mails(smtp, "victim@example.test")
    sub, _ = subs.unsubscribe(rt.ledger, rt.settings, token(confirmation["List-Unsubscribe"].strip("<>")))
    assert sub.state == "unsubscribed"
    text = confirmation.get_body(("plain",)).get_content()
    confirm_url = next(w for w in text.split() if "/subscribe/confirm?token=" in w)
    with pytest.raises(InvalidRequest, match="was ended"):
        subs.confirm(rt.ledger, rt.settings, token(confirm_url))
