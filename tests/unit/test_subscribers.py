"""Subscribers on a real SQLite ledger: double opt-in, signed links, opt-outs and who gets what."""

from __future__ import annotations

import pytest

from broadcaster import service, subscribers as subs
from broadcaster.channels.ports import ChannelPorts
from broadcaster.config import SubscribersSettings, load_settings
from broadcaster.errors import ConfigError, InvalidRequest
from broadcaster.ledger import Ledger, schema as t
from broadcaster.models import Post
from tests.support.runtime import Clock, memory_runtime

SECRET = "test-signing-key-0123456789abcdef"
T0 = 1_800_000_000.0


def make_runtime(tmp_path, *, sub_cfg: dict | None = None, clock: Clock | None = None, secret: str | None = SECRET,
                 **collaborators):
    """A runtime over the mail channel with ``subscribers:`` from ``sub_cfg`` (and the signing
    ``secret`` unless None); ``collaborators`` go to the runtime (``ports``…)."""
    clock = clock or Clock(T0)
    cfg = {
        "ledger": "sqlite:///unused.db",
        "public_url": "https://status.example.test",
        "channels": {
            "mail": {"kind": "email", "smtp": {"host": "smtp.example.test", "security": "none"},
                     "from_address": "news@example.test", "lists": ["news", "ops"]},
            "hook": {"kind": "webhook", "url": "https://hooks.example.test/x"},
            # declares the components announcements may name (not routed)
            "site": {"kind": "statuspage", "output_dir": str(tmp_path / "site"), "components": ["api", "web", "db"]},
        },
        "routes": {"incident": ["mail"], "promotion": ["mail"], "maintenance": ["mail"], "notice": ["mail"]},
        "subscribers": {**({"secret_key": secret} if secret else {}), **(sub_cfg or {})},
    }
    settings = load_settings(cfg, env={})
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db", clock=clock)
    return memory_runtime(settings, ledger=ledger, clock=clock, **collaborators)


class Outbox:
    def __init__(self):
        self.sent: list[tuple[str, str, str]] = []

    def __call__(self, address: str, subject: str, text: str, unsubscribe: str | None = None) -> None:
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
    """A confirmed subscriber who consented to promotions unless ``marketing=False`` is given."""
    sub, _ = subs.add(rt.ledger, lst, address, state="confirmed", actor="test", **{"marketing": True, **kw})
    return sub


def addresses(rt, lists, p) -> list[str]:
    return [a for a, _ in subs.subscribers_for(rt.ledger, lists, p, "https://status.example.test", rt.settings)]


# ---------------------------------------------------------------- double opt-in


def ask(rt, address, out, lst="news", **kw):
    """A public subscribe request, with its confirmation mail (sent in the background) awaited."""
    sub = subs.subscribe(rt, lst, address, sender=out, **kw)
    assert subs.flush(rt, timeout=10)
    return sub


def test_subscribe_mails_a_link_and_only_the_link_confirms(rt):
    out = Outbox()
    sub = ask(rt, "  Alice@Example.TEST ", out, components=["api"])
    assert sub.state == "pending" and sub.address == "alice@example.test" and sub.components == ("api",)
    assert [s[0] for s in out.sent] == ["alice@example.test"]
    assert out.sent[0][2].count("https://status.example.test/api/v1/subscribe/confirm?token=") == 1
    assert addresses(rt, ["news"], post()) == []  # pending gets nothing
    # reading what a link is for (the page a GET shows) changes nothing
    assert subs.pending_of(rt.ledger, rt.settings, out.token()).state == "pending"
    assert subs.get(rt.ledger, sub.id).state == "pending"

    done = subs.confirm(rt.ledger, rt.settings, out.token())
    assert done.state == "confirmed" and done.confirmed_at == T0
    assert addresses(rt, ["news"], post()) == ["alice@example.test"]
    # confirming again is harmless
    assert subs.confirm(rt.ledger, rt.settings, out.token()).state == "confirmed"


def test_a_tampered_or_foreign_token_is_refused(rt):
    out = Outbox()
    sub = ask(rt, "bob@example.test", out)
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
    other = rt.settings.model_copy(
        update={"subscribers": SubscribersSettings(secret_key="another-key-0123456789abcdef")})
    with pytest.raises(InvalidRequest):
        subs.confirm(rt.ledger, rt.settings, subs.confirm_token(other, sub.id, sub.requested_at, T0))
    assert subs.get(rt.ledger, sub.id).state == "pending"


def test_confirmation_links_expire_and_a_stale_request_starts_over(tmp_path):
    clock = Clock(T0)
    rt = make_runtime(tmp_path, sub_cfg={"confirm_within": "1h"}, clock=clock)
    out = Outbox()
    ask(rt, "carol@example.test", out, marketing=True)
    old = out.token()
    clock.advance(3601)
    with pytest.raises(InvalidRequest, match="expired"):
        subs.confirm(rt.ledger, rt.settings, old)
    # every link of the first request expired: a new request starts over with its own choices
    sub = ask(rt, "carol@example.test", out, marketing=False)
    assert len(out.sent) == 2 and sub.marketing is False
    assert subs.confirm(rt.ledger, rt.settings, out.token()).state == "confirmed"
    rt.ledger.close()


def test_no_secret_means_no_subscriptions_and_the_env_key_is_used(tmp_path, monkeypatch):
    rt = make_runtime(tmp_path, secret=None)
    monkeypatch.delenv(subs.SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match="secret_key"):
        subs.subscribe(rt, "news", "dave@example.test", sender=Outbox())
    assert subs.list_subscribers(rt.ledger) == []  # refused before anything was written
    with pytest.raises(InvalidRequest):  # a followed link is simply not valid (not a server error)
        subs.confirm(rt.ledger, rt.settings, "c29tZXRoaW5n.c2lnbmF0dXJl")
    monkeypatch.setenv(subs.SECRET_ENV, "env-key-0123456789abcdef")
    out = Outbox()
    ask(rt, "dave@example.test", out)
    assert subs.confirm(rt.ledger, rt.settings, out.token()).state == "confirmed"
    rt.ledger.close()


def test_unknown_lists_and_bad_addresses_are_refused(rt):
    with pytest.raises(InvalidRequest, match="no such list"):
        subs.subscribe(rt, "secret-list", "eve@example.test", sender=Outbox())
    for bad in ("not-an-address", "a@b", "two@@example.test", "", "nul\x00@example.test"):
        with pytest.raises(InvalidRequest):
            subs.subscribe(rt, "news", bad, sender=Outbox())
    with pytest.raises(InvalidRequest, match="components"):
        subs.subscribe(rt, "news", "eve@example.test", components=["a;b"], sender=Outbox())
    with pytest.raises(InvalidRequest, match="name"):
        subs.subscribe(rt, "news", "eve@example.test", name="Eve\x1b[31m", sender=Outbox())
    assert subs.list_subscribers(rt.ledger) == []


def test_subscribing_a_confirmed_address_again_changes_nothing_and_mails_nobody(rt):
    confirmed(rt, "frank@example.test", components=["api"], marketing=False)
    out = Outbox()
    sub = ask(rt, "frank@example.test", out, components=["db"], marketing=True, name="Someone else")
    assert out.sent == [] and sub.state == "confirmed" and sub.components == ("api",) and not sub.marketing


# ---------------------------------------------------------------- consent belongs to the address's owner


def test_a_second_request_cannot_change_a_pending_subscription(rt):
    """The attack: someone asks again for a pending address with marketing and a new name."""
    out = Outbox()
    first = ask(rt, "owner@example.test", out, components=["api"], name="Owner")
    again = ask(rt, "owner@example.test", out, components=["db"], name="Mallory", marketing=True)
    assert (again.id, again.requested_at) == (first.id, first.requested_at)  # the same request, unchanged
    assert again.marketing is False and again.name == "Owner" and again.components == ("api",)
    assert len(out.sent) == 1, "a repeated request within the interval mails nobody"
    done = subs.confirm(rt.ledger, rt.settings, out.token())
    assert done.marketing is False and done.name == "Owner" and done.components == ("api",)


def test_the_owner_answers_about_promotions_on_the_confirmation_page(rt):
    """Someone asked first with marketing consent: the owner's own answer on the page wins."""
    out = Outbox()
    ask(rt, "victim@example.test", out, marketing=True, name="Mallory")
    assert subs.pending_of(rt.ledger, rt.settings, out.token()).marketing is True  # the page shows it
    done = subs.confirm(rt.ledger, rt.settings, out.token(), marketing=False)
    assert done.state == "confirmed" and done.marketing is False
    promo = announce(rt, kind="promotion", title="Sale")
    assert addresses(rt, ["news"], post("promotion", promo)) == []


def test_at_most_one_confirmation_mail_per_address_per_interval(tmp_path):
    clock = Clock(T0)
    rt = make_runtime(tmp_path, sub_cfg={"confirm_resend_after": "10m"}, clock=clock)
    out = Outbox()
    for _ in range(5):
        ask(rt, "spam-target@example.test", out)
    ask(rt, "spam-target@example.test", out, lst="ops")  # another list, same address
    assert len(out.sent) == 1
    clock.advance(601)
    ask(rt, "spam-target@example.test", out)
    assert len(out.sent) == 2
    # both links are for the same request: either confirms it, with its first choices
    assert subs.confirm(rt.ledger, rt.settings, out.token()).state == "confirmed"
    rt.ledger.close()


def test_a_failed_confirmation_mail_lets_the_address_ask_again(rt):
    def broken(address, subject, text):
        raise OSError("mail server down")

    sub = subs.subscribe(rt, "news", "retry@example.test", sender=broken)
    assert subs.flush(rt, timeout=10)
    assert subs.get(rt.ledger, sub.id).state == "pending"
    out = Outbox()
    ask(rt, "retry@example.test", out)
    assert len(out.sent) == 1
    with rt.ledger.read() as conn:
        actions = [r.action for r in conn.execute(t.audit_log.select())]
    assert "subscriber.confirmation_failed" in actions and "subscriber.confirmation_sent" in actions


def test_an_imported_pending_address_can_confirm_its_link(rt):
    import io

    from broadcaster import export

    csv = io.StringIO("address,list,state\nimp@example.test,news,pending\n")
    report = export.import_subscribers_csv(rt.ledger, csv)
    assert report.inserted == 1
    out = Outbox()
    ask(rt, "imp@example.test", out)
    assert len(out.sent) == 1
    assert subs.confirm(rt.ledger, rt.settings, out.token()).state == "confirmed"


def test_restarting_a_subscription_makes_its_older_links_worthless(rt):
    out = Outbox()
    ask(rt, "again@example.test", out)
    first_link = out.token()
    sub = subs.confirm(rt.ledger, rt.settings, first_link)
    subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id, "list"))
    rt.ledger.clock.advance(601)  # past the mail interval
    restarted = ask(rt, "again@example.test", out, marketing=True)
    assert restarted.state == "pending" and len(out.sent) == 2
    with pytest.raises(InvalidRequest, match="meanwhile"):
        subs.confirm(rt.ledger, rt.settings, first_link)
    assert subs.get(rt.ledger, sub.id).state == "pending"
    assert subs.confirm(rt.ledger, rt.settings, out.token()).state == "confirmed"


def test_confirmation_goes_through_the_configured_email_channel(tmp_path):
    sessions: list[FakeSMTP] = []

    def factory(settings):
        s = FakeSMTP()
        sessions.append(s)
        return s

    rt = make_runtime(tmp_path, ports=ChannelPorts(smtp_factory=factory))
    subs.subscribe(rt, "news", "gina@example.test")
    assert subs.flush(rt, timeout=10)
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
    pairs = dict(subs.subscribers_for(rt.ledger, ["news"], post("incident", inc), "https://s.example.test",
                                      rt.settings))
    assert set(pairs) == {"yes@example.test", "no@example.test"}
    assert subs.verify(rt.settings, pairs["no@example.test"].split("token=")[1], "unsubscribe")[1] == "list"


def test_one_click_from_a_promotion_stops_promotions_only(rt):
    """What the page and the List-Unsubscribe header of a promotion say: promotions stop,
    incident and maintenance notices keep coming."""
    sub = confirmed(rt, "opt@example.test")
    stays = confirmed(rt, "stay@example.test")
    after, stopped = subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id, "marketing"))
    assert stopped == "promotions" and after.state == "confirmed" and not after.marketing
    minor = announce(rt, severity="minor")
    promo = announce(rt, kind="promotion", title="Sale")
    assert set(addresses(rt, ["news"], post("incident", minor))) == {stays.address, sub.address}
    assert addresses(rt, ["news"], post("promotion", promo)) == [stays.address]
    # the same link may leave the list entirely (the page's second button)
    gone, stopped = subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id, "marketing"),
                                     everything=True)
    assert stopped == "everything" and gone.state == "unsubscribed"
    assert addresses(rt, ["news"], post("incident", minor)) == [stays.address]


def test_an_older_opt_out_still_gets_notices_but_no_promotions(rt):
    sub = confirmed(rt, "legacy@example.test")
    subs.set_state(rt.ledger, sub.id, "opted_out", actor="test")  # what older versions wrote
    promo = announce(rt, kind="promotion", title="Sale")
    assert addresses(rt, ["news"], post("incident", announce(rt))) == [sub.address]
    assert addresses(rt, ["news"], post("promotion", promo)) == []


def test_a_full_unsubscribe_stops_everything_and_is_never_softened(tmp_path):
    rt = make_runtime(tmp_path, sub_cfg={"critical_overrides_optout": True})
    sub = confirmed(rt, "gone@example.test")
    left, stopped = subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id, "list"))
    assert stopped == "everything" and left.state == "unsubscribed"
    again, _ = subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id, "marketing"))
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
    upper = confirmed(rt, "upper@example.test", components=["WEB"])  # typed in another case
    assert upper.address in addresses(rt, ["news"], post("incident", api_minor))


def test_lists_are_separate_and_an_address_on_two_lists_is_mailed_once(rt):
    confirmed(rt, "both@example.test", "news")
    confirmed(rt, "both@example.test", "ops")
    confirmed(rt, "ops@example.test", "ops")
    assert addresses(rt, ["news"], post()) == ["both@example.test"]
    assert sorted(addresses(rt, ["news", "ops"], post())) == ["both@example.test", "ops@example.test"]


def test_runtime_source_feeds_the_email_channel(rt):
    confirmed(rt, "reader@example.test", marketing=True)
    promo = announce(rt, kind="promotion", title="Sale")
    ch = rt.build_channel("mail", ChannelPorts(subscribers=subs.source(rt)))
    audience = ch.audience(post("promotion", promo))
    (address, url), = audience.values()
    assert address == "reader@example.test" and url.startswith("https://status.example.test/api/v1/unsubscribe?")


def test_without_a_secret_mail_goes_out_without_links(tmp_path, monkeypatch):
    monkeypatch.delenv(subs.SECRET_ENV, raising=False)
    rt = make_runtime(tmp_path)
    confirmed(rt, "x@example.test")
    rt = rt.replaced(settings=rt.settings.model_copy(update={"subscribers": SubscribersSettings()}))
    assert subs.subscribers_for(rt.ledger, ["news"], post(), "https://s", rt.settings) == [("x@example.test", None)]
    rt.ledger.close()


# ---------------------------------------------------------------- re-subscribing and bounces


def test_an_unsubscribed_address_can_come_back_only_through_confirmation(rt):
    sub = confirmed(rt, "back@example.test")
    subs.unsubscribe(rt.ledger, rt.settings, subs.unsubscribe_token(rt.settings, sub.id))
    out = Outbox()
    again = ask(rt, "back@example.test", out)
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
    rt = make_runtime(tmp_path, sub_cfg={"critical_overrides_optout": True})
    cfg = subs.settings_of(rt.settings)
    assert cfg.secret_key.reveal() == SECRET and cfg.critical_overrides_optout
    token = subs.unsubscribe_token(rt.settings, "sub_x")
    assert subs.verify(rt.settings, token, "unsubscribe") == ["sub_x", "list"]
    assert SECRET not in repr(cfg) and SECRET not in token
    rt.ledger.close()


def test_a_csv_import_with_settings_refuses_unknown_components_and_respells_known_ones(rt):
    import io

    from broadcaster import export

    csv = io.StringIO("address,list,components\na@example.test,news,API;Nope\nb@example.test,news,API;Db\n")
    report = export.import_subscribers_csv(rt.ledger, csv, settings=rt.settings)
    assert report.inserted == 1 and len(report.errors) == 1
    assert report.errors[0][0] == 2 and "Nope" in report.errors[0][1]
    assert subs.find(rt.ledger, "news", "a@example.test") is None
    assert subs.find(rt.ledger, "news", "b@example.test").components == ("api", "db")


def test_the_html_part_of_our_own_mail_makes_every_link_a_link_and_escapes_the_rest():
    from broadcaster.subscribers.confirmation import mail_html

    out = mail_html("Hello <b>&\nopen https://s.example.test/c?token=a&b=1 now.\n\n--\nLeave: http://x.test/u?t=2.")
    assert out == ('<p>Hello &lt;b&gt;&amp;<br>open <a href="https://s.example.test/c?token=a&amp;b=1">'
                   'https://s.example.test/c?token=a&amp;b=1</a> now.</p><p>--<br>Leave: '
                   '<a href="http://x.test/u?t=2">http://x.test/u?t=2</a>.</p>')
