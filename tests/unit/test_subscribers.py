"""Subscribers on a real SQLite ledger: double opt-in, signed links, opt-outs and who gets what."""

from __future__ import annotations

import pytest

from broadcaster import service, subscribers as subs
from broadcaster.config import SubscribersSettings, load_settings
from broadcaster.errors import ConfigError, InvalidRequest
from broadcaster.ledger import Ledger
from broadcaster.ledger import schema as t
from broadcaster.models import Post
from broadcaster.resilience import MemoryBreaker, MemoryRateLimiter
from broadcaster.runtime import Runtime

SECRET = "test-signing-key-0123456789abcdef"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_runtime(tmp_path, *, sub_cfg: dict | None = None, clock: Clock | None = None, io: dict | None = None):
    clock = clock or Clock()
    cfg = {
        "ledger": "sqlite:///unused.db",
        "public_url": "https://status.example.test",
        "channels": {
            "mail": {"kind": "email", "smtp": {"host": "smtp.example.test", "security": "none"},
                     "from_address": "news@example.test", "lists": ["news", "ops"]},
            "hook": {"kind": "webhook", "url": "https://hooks.example.test/x"},
        },
        "routes": {"incident": ["mail"], "promotion": ["mail"], "maintenance": ["mail"], "notice": ["mail"]},
    }
    settings = load_settings(cfg, env={})
    settings = settings.model_copy(update={"subscribers": SubscribersSettings(secret_key=SECRET, **(sub_cfg or {}))})
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db", clock=clock)
    rt = Runtime(settings, ledger=ledger, breaker=MemoryBreaker(), limiter=MemoryRateLimiter(), clock=clock,
                 channel_io=io)
    return rt


class Outbox:
    def __init__(self):
        self.sent: list[tuple[str, str, str]] = []

    def __call__(self, address: str, subject: str, text: str) -> None:
        self.sent.append((address, subject, text))

    def token(self) -> str:
        text = self.sent[-1][2]
        line = next(ln for ln in text.splitlines() if "token=" in ln)
        from urllib.parse import parse_qs, urlsplit

        return parse_qs(urlsplit(line.strip()).query)["token"][0]


@pytest.fixture
def rt(tmp_path):
    r = make_runtime(tmp_path)
    yield r
    r.ledger.close()


def post(kind="incident", ann_id=None) -> Post:
    return Post(channel="mail", kind=kind, title="t", text="x", meta={"announcement_id": ann_id})


def announce(rt, **fields) -> str:
    body = {"kind": "incident", "title": "Database down", "channels": ["mail"], **fields}
    return service.submit(rt, body, principal=service.SYSTEM).id


def confirmed(rt, address, lst="news", **kw):
    sub, _ = subs.add(rt.ledger, lst, address, state="confirmed", actor="test", **kw)
    return sub


def addresses(rt, lists, p) -> list[str]:
    return [a for a, _ in subs.subscribers_for(rt.ledger, lists, p, "https://status.example.test", rt.settings)]


# ---------------------------------------------------------------- double opt-in


def test_subscribe_mails_a_link_and_only_the_link_confirms(rt):
    out = Outbox()
    sub = subs.subscribe(rt, "news", "  Alice@Example.TEST ", components=["api"], sender=out)
    assert sub.state == "pending" and sub.address == "alice@example.test" and sub.components == ("api",)
    assert [s[0] for s in out.sent] == ["alice@example.test"]
    assert out.sent[0][2].count("https://status.example.test/api/v1/subscribe/confirm?token=") == 1
    assert addresses(rt, ["news"], post()) == []  # pending gets nothing

    done = subs.confirm(rt.ledger, rt.settings, out.token())
    assert done.state == "confirmed" and done.confirmed_at == T0
    assert addresses(rt, ["news"], post()) == ["alice@example.test"]
    # the link works again without harm (mail clients prefetch)
    assert subs.confirm(rt.ledger, rt.settings, out.token()).state == "confirmed"


def test_a_tampered_or_foreign_token_is_refused(rt):
    out = Outbox()
    sub = subs.subscribe(rt, "news", "bob@example.test", sender=out)
    token = out.token()
    body, sig = token.split(".")
    forged = subs._b64(subs._unb64(body).replace(b"sub_", b"sux_")) + "." + sig
    for bad in (forged, body + "." + sig[:-2] + ("AA" if not sig.endswith("AA") else "BB"), "", "x.y", token + "x"):
        with pytest.raises(InvalidRequest):
            subs.confirm(rt.ledger, rt.settings, bad)
    # an unsubscribe token cannot confirm, a confirmation token cannot unsubscribe
    with pytest.raises(InvalidRequest):
        subs.confirm(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id))
    with pytest.raises(InvalidRequest):
        subs.unsubscribe(rt.ledger, rt.settings, token)
    # a token signed with another key is worthless
    other = rt.settings.model_copy(update={"subscribers": SubscribersSettings(secret_key="another-key-0123456789abcdef")})
    with pytest.raises(InvalidRequest):
        subs.confirm(rt.ledger, rt.settings, subs.confirm_token(other, sub.id, T0))
    assert subs.get(rt.ledger, sub.id).state == "pending"


def test_confirmation_links_expire(tmp_path):
    clock = Clock()
    rt = make_runtime(tmp_path, sub_cfg={"confirm_within": "1h"}, clock=clock)
    out = Outbox()
    subs.subscribe(rt, "news", "carol@example.test", sender=out)
    clock.t += 3601
    with pytest.raises(InvalidRequest, match="expired"):
        subs.confirm(rt.ledger, rt.settings, out.token())
    # subscribing again sends a fresh link that works
    subs.subscribe(rt, "news", "carol@example.test", sender=out)
    assert subs.confirm(rt.ledger, rt.settings, out.token()).state == "confirmed"
    rt.ledger.close()


def test_no_secret_means_no_subscriptions_and_the_env_key_is_used(tmp_path, monkeypatch):
    rt = make_runtime(tmp_path)
    rt.settings = rt.settings.model_copy(update={"subscribers": SubscribersSettings()})
    monkeypatch.delenv(subs.SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match="secret_key"):
        subs.subscribe(rt, "news", "dave@example.test", sender=Outbox())
    assert subs.list_subscribers(rt.ledger) == []  # refused before anything was written
    monkeypatch.setenv(subs.SECRET_ENV, "env-key-0123456789abcdef")
    out = Outbox()
    subs.subscribe(rt, "news", "dave@example.test", sender=out)
    assert subs.confirm(rt.ledger, rt.settings, out.token()).state == "confirmed"
    rt.ledger.close()


def test_unknown_lists_and_bad_addresses_are_refused(rt):
    with pytest.raises(InvalidRequest, match="no such list"):
        subs.subscribe(rt, "secret-list", "eve@example.test", sender=Outbox())
    for bad in ("not-an-address", "a@b", "two@@example.test", ""):
        with pytest.raises(InvalidRequest):
            subs.subscribe(rt, "news", bad, sender=Outbox())
    with pytest.raises(InvalidRequest, match="components"):
        subs.subscribe(rt, "news", "eve@example.test", components=["a;b"], sender=Outbox())


def test_subscribing_a_confirmed_address_again_changes_nothing_and_mails_nobody(rt):
    confirmed(rt, "frank@example.test", components=["api"])
    out = Outbox()
    sub = subs.subscribe(rt, "news", "frank@example.test", components=["db"], sender=out)
    assert out.sent == [] and sub.state == "confirmed" and sub.components == ("api",)


def test_confirmation_goes_through_the_configured_email_channel(tmp_path):
    sessions: list[FakeSMTP] = []

    def factory(settings):
        s = FakeSMTP()
        sessions.append(s)
        return s

    rt = make_runtime(tmp_path, io={"smtp_factory": factory})
    subs.subscribe(rt, "news", "gina@example.test")
    assert len(sessions) == 1
    rcpt, data = sessions[0].messages[0]
    assert rcpt == "gina@example.test"
    assert b"Subject: Please confirm your subscription to news" in data
    assert b"/api/v1/subscribe/confirm?token=3D" in data or b"/api/v1/subscribe/confirm?token=" in data
    rt.ledger.close()


class FakeSMTP:
    """Just enough of smtplib.SMTP for the email channel's sender."""

    def __init__(self):
        self.messages: list[tuple[str, bytes]] = []
        self._rcpt = None

    def ehlo(self):
        return 250, b"ok"

    def mail(self, a):
        return 250, b"ok"

    def rcpt(self, a):
        self._rcpt = a
        return 250, b"ok"

    def docmd(self, cmd):
        return 354, b"go"

    def send(self, data):
        self.messages.append((self._rcpt, data))

    def getreply(self):
        return 250, b"queued"

    def rset(self):
        return 250, b"ok"

    def quit(self):
        return 221, b"bye"

    def close(self):
        pass


# ---------------------------------------------------------------- who gets what


def test_promotions_need_marketing_consent_and_carry_one_click_links(rt):
    yes = confirmed(rt, "yes@example.test", marketing=True)
    confirmed(rt, "no@example.test", marketing=False)
    promo = announce(rt, kind="promotion", title="Sale")
    pairs = subs.subscribers_for(rt.ledger, ["news"], post("promotion", promo), "https://status.example.test",
                                 rt.settings)
    assert [a for a, _ in pairs] == ["yes@example.test"]
    url = pairs[0][1]
    assert url.startswith("https://status.example.test/api/v1/unsubscribe?token=")
    token = url.split("token=")[1]
    assert subs.verify(rt.settings, token, "unsubscribe") == [yes.id, "marketing"]
    # non-promotional mail goes to both, with a leave-the-list link
    inc = announce(rt)
    pairs = dict(subs.subscribers_for(rt.ledger, ["news"], post("incident", inc), "https://s.example.test", rt.settings))
    assert set(pairs) == {"yes@example.test", "no@example.test"}
    assert subs.verify(rt.settings, pairs["no@example.test"].split("token=")[1], "unsubscribe")[1] == "list"


def test_one_click_from_a_promotion_is_an_opt_out_that_only_critical_incidents_may_override(tmp_path):
    for overrides in (False, True):
        rt = make_runtime(tmp_path / str(overrides), sub_cfg={"critical_overrides_optout": overrides})
        sub = confirmed(rt, "opt@example.test")
        stays = confirmed(rt, "stay@example.test")
        subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id, "marketing"))
        assert subs.get(rt.ledger, sub.id).state == "opted_out" and not subs.get(rt.ledger, sub.id).marketing
        minor = announce(rt, severity="minor")
        critical = announce(rt, severity="critical")
        promo = announce(rt, kind="promotion", title="Sale")
        assert addresses(rt, ["news"], post("incident", minor)) == [stays.address]
        assert addresses(rt, ["news"], post("promotion", promo)) == [stays.address]
        expected = {stays.address, sub.address} if overrides else {stays.address}
        assert set(addresses(rt, ["news"], post("incident", critical))) == expected
        rt.ledger.close()


def test_a_full_unsubscribe_is_never_overridden(tmp_path):
    rt = make_runtime(tmp_path, sub_cfg={"critical_overrides_optout": True})
    sub = confirmed(rt, "gone@example.test")
    subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id, "list"))
    again = subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id, "marketing"))
    assert again.state == "unsubscribed"  # a later one-click does not soften it
    critical = announce(rt, severity="critical")
    assert addresses(rt, ["news"], post("incident", critical)) == []
    rt.ledger.close()


def test_component_subscriptions(rt):
    api = confirmed(rt, "api@example.test", components=["api"])
    every = confirmed(rt, "all@example.test")
    db_minor = announce(rt, components=["db"], severity="minor")
    api_minor = announce(rt, components=["api", "web"], severity="minor")
    no_component = announce(rt)
    db_critical = announce(rt, components=["db"], severity="critical")
    assert addresses(rt, ["news"], post("incident", db_minor)) == [every.address]
    assert set(addresses(rt, ["news"], post("incident", api_minor))) == {api.address, every.address}
    assert set(addresses(rt, ["news"], post("incident", no_component))) == {api.address, every.address}
    assert set(addresses(rt, ["news"], post("incident", db_critical))) == {api.address, every.address}


def test_lists_are_separate_and_an_address_on_two_lists_is_mailed_once(rt):
    confirmed(rt, "both@example.test", "news")
    confirmed(rt, "both@example.test", "ops")
    confirmed(rt, "ops@example.test", "ops")
    assert addresses(rt, ["news"], post()) == ["both@example.test"]
    assert sorted(addresses(rt, ["news", "ops"], post())) == ["both@example.test", "ops@example.test"]


def test_runtime_source_feeds_the_email_channel(rt):
    confirmed(rt, "reader@example.test", marketing=True)
    promo = announce(rt, kind="promotion", title="Sale")
    ch = rt.build_channel("mail", subscribers=subs.source(rt))
    audience = ch.audience(post("promotion", promo))
    (address, url), = audience.values()
    assert address == "reader@example.test" and url.startswith("https://status.example.test/api/v1/unsubscribe?")


def test_without_a_secret_mail_goes_out_without_links(tmp_path, monkeypatch):
    monkeypatch.delenv(subs.SECRET_ENV, raising=False)
    rt = make_runtime(tmp_path)
    confirmed(rt, "x@example.test")
    rt.settings = rt.settings.model_copy(update={"subscribers": SubscribersSettings()})
    assert subs.subscribers_for(rt.ledger, ["news"], post(), "https://s", rt.settings) == [("x@example.test", None)]
    rt.ledger.close()


# ---------------------------------------------------------------- re-subscribing and bounces


def test_an_unsubscribed_address_can_come_back_only_through_confirmation(rt):
    sub = confirmed(rt, "back@example.test")
    subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id))
    out = Outbox()
    again = subs.subscribe(rt, "news", "back@example.test", sender=out)
    assert again.id == sub.id and again.state == "pending" and len(out.sent) == 1
    assert addresses(rt, ["news"], post()) == []
    subs.confirm(rt.ledger, rt.settings, out.token())
    assert addresses(rt, ["news"], post()) == ["back@example.test"]


def test_bounces_stop_mail_to_the_address_on_every_list(rt):
    confirmed(rt, "dead@example.test", "news")
    confirmed(rt, "dead@example.test", "ops")
    assert subs.mark_bounced(rt.ledger, "DEAD@example.test", reason="550 no such user") == 2
    assert addresses(rt, ["news", "ops"], post()) == []
    assert subs.mark_bounced(rt.ledger, "dead@example.test") == 0  # already


def test_refused_recipients_of_email_deliveries_are_marked_bounced(rt):
    confirmed(rt, "gone@example.test")
    keep = confirmed(rt, "fine@example.test")
    ann = announce(rt)
    (d,) = rt.ledger.deliveries_of(ann)
    rt.ledger.mark_items(d.id, ["gone@example.test"], "refused", "550 5.1.1 no such user")
    rt.ledger.mark_items(d.id, ["fine@example.test"], "done", "250 ok")
    watcher = subs.BounceWatcher(every=0)
    assert watcher(rt) == 1
    assert addresses(rt, ["news"], post()) == [keep.address]
    assert watcher(rt) == 0  # already read
    with rt.ledger.read() as conn:
        actions = [r.action for r in conn.execute(t.audit_log.select())]
    assert "subscriber.bounced" in actions


def test_admin_listing_pages_by_id(rt):
    for i in range(5):
        confirmed(rt, f"user{i}@example.test")
    first = subs.list_subscribers(rt.ledger, limit=3)
    rest = subs.list_subscribers(rt.ledger, limit=3, after=first[-1].id)
    assert len(first) == 3 and len(rest) == 2
    assert len({s.id for s in first + rest}) == 5


def test_the_config_section_keeps_its_secret(tmp_path):
    rt = make_runtime(tmp_path)
    rt.settings = rt.settings.model_copy(update={"subscribers": SubscribersSettings(
        secret_key=SECRET, critical_overrides_optout=True)})
    cfg = subs.settings_of(rt.settings)
    assert cfg.secret_key.reveal() == SECRET and cfg.critical_overrides_optout
    token = subs.unsubscribe_token(rt.settings, "sub_x")
    assert subs.verify(rt.settings, token, "unsubscribe") == ["sub_x", "list"]
    assert SECRET not in repr(cfg) and SECRET not in token
    rt.ledger.close()
