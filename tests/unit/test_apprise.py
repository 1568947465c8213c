"""Apprise channel with an injected Apprise-like fake (the real library is an optional extra)."""

from __future__ import annotations

import builtins
from typing import ClassVar

import pytest

from broadcaster.channels.apprise import Apprise, AppriseSettings, item
from broadcaster.channels.base import MemoryProgress
from broadcaster.config import Secret
from broadcaster.errors import PermanentError, TransientError
from broadcaster.models import Announcement, Message

A = Announcement(id="a1", kind="incident", title="Outage", body="Details")


class FakeApprise:
    """Mimics ``apprise.Apprise``: ``add`` → bool, ``notify`` → True / False / None."""

    #: shared by every instance, as the test reads them after the adapter made its own
    results: ClassVar[dict[str, object]] = {}
    sent: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self):
        self.url = None

    def add(self, url):
        if not url.startswith(("tgram://", "matrix://", "boom://", "none://")):
            return False
        self.url = url
        return True

    def notify(self, **kw):
        if self.url.startswith("boom://"):
            raise RuntimeError(f"plugin crashed for {self.url}")
        result = self.results.get(self.url, True)
        if result:
            self.sent.append((self.url, kw))
        if self.url.startswith("none://"):
            return None
        return result


@pytest.fixture(autouse=True)
def reset():
    FakeApprise.results = {}
    FakeApprise.sent = []


def make(*urls):
    s = AppriseSettings.model_validate({"kind": "apprise", "urls": list(urls)})
    return Apprise("ap", s, apprise_factory=FakeApprise)


def test_notifies_each_url_once():
    ch = make("tgram://bot-token/chat", "matrix://user:pw@host/room")
    receipt = ch.send(ch.render(Message(announcement=A)), key="k")
    assert [u for u, _ in FakeApprise.sent] == ["tgram://bot-token/chat", "matrix://user:pw@host/room"]
    kw = FakeApprise.sent[0][1]
    assert kw["title"] == "Outage" and "Details" in kw["body"] and kw["notify_type"] == "failure"
    assert receipt.remote_id == "apprise:k" and receipt.extra == {"sent": 2, "skipped": 0}


def test_false_is_transient_and_retry_skips_done_urls():
    ch = make("tgram://bot-token/chat", "matrix://user:pw@host/room")
    FakeApprise.results = {"matrix://user:pw@host/room": False}
    progress = MemoryProgress()
    post = ch.render(Message(announcement=A))
    with pytest.raises(TransientError) as err:
        ch.send(post, key="k", progress=progress)
    assert "urls[1]" in str(err.value) and "pw" not in str(err.value)
    FakeApprise.results = {}
    receipt = ch.send(post, key="k", progress=progress)
    assert [u for u, _ in FakeApprise.sent] == ["tgram://bot-token/chat", "matrix://user:pw@host/room"]
    assert receipt.extra == {"sent": 1, "skipped": 1}
    assert all("pw" not in k for k in progress.states())


def test_invalid_url_is_permanent_and_nothing_is_sent():
    ch = make("tgram://bot-token/chat", "nonsense://secret-token")
    with pytest.raises(PermanentError, match=r"urls\[1\]") as err:
        ch.send(ch.render(Message(announcement=A)), key="k")
    assert "secret-token" not in str(err.value)
    assert FakeApprise.sent == []


def test_exception_and_none_results():
    ch = make("boom://token-xyz")
    with pytest.raises(TransientError) as err:
        ch.send(ch.render(Message(announcement=A)), key="k")
    assert "token-xyz" not in str(err.value) and type(err.value) is TransientError
    with pytest.raises(PermanentError, match="no service"):
        make("none://x").send(ch.render(Message(announcement=A)), key="k")


def test_missing_library_gives_a_clear_permanent_error(monkeypatch):
    real_import = builtins.__import__

    def no_apprise(name, *args, **kw):
        if name == "apprise":
            raise ImportError("No module named 'apprise'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_apprise)
    ch = Apprise("ap", AppriseSettings.model_validate({"kind": "apprise", "urls": ["tgram://t/c"]}))
    with pytest.raises(PermanentError, match=r"pip install 'broadcaster\[apprise\]'"):
        ch.send(ch.render(Message(announcement=A)), key="k")
    with pytest.raises(PermanentError, match="optional extra"):
        ch.check()


def test_settings_mask_urls_and_require_one():
    s = AppriseSettings.model_validate({"kind": "apprise", "urls": ["tgram://bot-token/chat"]})
    assert "bot-token" not in repr(s) and isinstance(s.urls[0], Secret)
    assert item(s.urls[0]).startswith("url:") and "bot" not in item(s.urls[0])
    with pytest.raises(ValueError):
        AppriseSettings.model_validate({"kind": "apprise", "urls": []})
    assert "understood" in make("tgram://a/b").check()
