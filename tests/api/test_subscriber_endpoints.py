"""Endpoints subscribers bring (issue 18): registration through the real app stack, the challenge
posted to a real loopback receiver, deliveries through the real engine on a real SQLite ledger.

Loopback receivers speak plain http on 127.0.0.1, so the channel here allows both
(``allow_http``/``allow_private``); the refusals are tested on a channel that allows neither.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from broadcaster import engine
from broadcaster.channels import _outbound
from broadcaster.channels.ports import ChannelPorts
from broadcaster.channels.webhook import verify
from broadcaster.errors import PermanentError
from broadcaster.ledger import Ledger
from broadcaster.subscribers import endpoints as eps
from tests.support.receiver import Receiver, Seen

from .conftest import Env, assert_error, config

SIGNING_KEY = "endpoint-test-signing-key-0123456789"
OWNER = "owner@example.test"


class Outbox:
    def __init__(self):
        self.sent: list[tuple[str, str, str]] = []

    def __call__(self, address, subject, text, unsubscribe=None):
        self.sent.append((address, subject, text))


def endpoint_config(tmp_path, *, lab: bool = True, max_failures: int = 3) -> dict:
    subs = {"kind": "subscriber_webhooks", "lists": ["ops"], "max_failures": max_failures}
    if lab:
        subs.update(allow_http=True, allow_private=True)
    cfg = config()
    cfg["channels"] = {"subs": subs,
                       "status": {"kind": "statuspage", "output_dir": str(tmp_path / "site"),
                                  "components": ["API", "Web"]}}
    cfg["routes"] = {"incident": ["subs"], "maintenance": ["subs"], "promotion": ["subs"]}
    cfg["policy"] = {"channels": {"subs": {"backoff": {"base": 0, "max": 0}, "attempts": 50,
                                           "breaker": {"failures": 1000}}}}
    return cfg


def make(tmp_path, ledger_url: str | None = None, resolver: _outbound.Resolver | None = None, **kw) -> Env:
    """An API whose endpoint source tells owners through an outbox (and resolves names with
    ``resolver``, else DNS)."""
    cfg = {**endpoint_config(tmp_path, **kw), "subscribers": {"secret_key": SIGNING_KEY}}
    outbox = Outbox()
    e = Env(tmp_path, cfg, Ledger.open(ledger_url) if ledger_url else None,
            ports=lambda rt: ChannelPorts(endpoints=eps.Source(rt, notify=outbox), resolver=resolver))
    e.outbox = outbox
    return e


@pytest.fixture
def env(tmp_path):
    e = make(tmp_path)
    yield e
    e.runtime.close()
    e.client.close()
    e.ledger.close()


@pytest.fixture
def env_any(tmp_path, ledger_url):
    """On SQLite and on PostgreSQL."""
    e = make(tmp_path, ledger_url)
    yield e
    e.runtime.close()
    e.client.close()
    e.ledger.close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def one() -> Receiver:
        r = Receiver().start()
        made.append(r)
        return r

    yield one
    for r in made:
        r.stop()


def register(env, url, fmt="slack", **extra):
    r = env.client.post("/api/v1/subscribe/endpoint",
                        json={"list": "ops", "endpoint": {"format": fmt, "url": url}, **extra})
    assert eps.flush(env.runtime, timeout=10)
    return r


def code_from(receiver: Receiver) -> str:
    seen = receiver.requests[-1]
    data = seen.json()
    if data.get("type") == "endpoint.challenge":
        return data["data"]["code"]
    return re.search(r"[0-9a-f]{32}", json.dumps(data)).group(0)


def confirm(env, receiver: Receiver) -> dict:
    r = env.client.post("/api/v1/subscribe/endpoint/confirm", json={"code": code_from(receiver)})
    assert r.status_code == 200, r.text
    return r.json()


def deliver(env, components, *, title="Database is down") -> list[str]:
    """Submit an incident and run its delivery to ``subs`` through the engine until it settles."""
    ann = env.submit(components=components, title=title)
    (d,) = [d for d in env.ledger.deliveries_of(ann["id"]) if d.channel == "subs"]
    outcomes = []
    for _ in range(10):
        outcomes.append(engine.attempt(env.runtime, d.id))
        if outcomes[-1] != "retrying":
            break
        time.sleep(0.15)  # the engine waits at least 100 ms before a retry (backoff set to its floor here)
    return outcomes


def announcements(receiver: Receiver) -> list[Seen]:
    return [s for s in receiver.requests if "Database" in s.body.decode() or "Checkout" in s.body.decode()]


def test_endpoint_is_confirmed_by_challenge_gets_only_its_components_and_is_disabled_after_failures(
        env_any, receivers):
    env = env_any
    api, web = receivers(), receivers()
    assert register(env, api.url + "/slack", "slack", components=["api"], owner=OWNER).status_code == 202
    assert register(env, web.url + "/hook", "generic", components=["Web"]).status_code == 202
    assert len(api.requests) == 1 and "code" in api.requests[0].body.decode()  # the challenge, to the endpoint
    assert web.requests[0].json()["type"] == "endpoint.challenge"

    # pending: nothing but the challenge arrives
    assert deliver(env, ["API"]) == ["delivered"]
    assert len(api.requests) == 1 and len(web.requests) == 1

    assert confirm(env, api)["status"] == "confirmed"
    confirm(env, web)
    assert deliver(env, ["API"]) == ["delivered"]
    assert len(announcements(api)) == 1 and announcements(web) == []  # only its components
    assert "Database is down" in announcements(api)[0].json()["text"]

    # the owner's Slack stops answering: three failed attempts in a row disable it, and the owner hears
    api.script(503, 503, 503)
    outcomes = deliver(env, ["API"], title="Checkout is down")
    assert outcomes == ["retrying", "retrying", "retrying", "delivered"]
    assert len(announcements(api)) == 1 + 3, "no post after the endpoint was disabled"
    (mail,) = env.outbox.sent
    assert mail[0] == OWNER and "disabled" in mail[2] and "3 times in a row" in mail[2]
    assert api.url + "/slack" not in mail[2], "the endpoint's URL (a credential) is not mailed in full"

    listing = env.get("/subscribers/endpoints?state=disabled").json()["items"]
    (row,) = listing
    assert row["failures"] == 3 and row["notice"] == "mailed" and row["url"].endswith("/…")
    assert "/slack" not in json.dumps(listing)

    # an admin enables it again; it receives the next one
    enabled = env.post(f"/subscribers/endpoints/{row['id']}/enable").json()
    assert enabled["state"] == "confirmed" and enabled["failures"] == 0
    assert deliver(env, ["api"], title="Database is down again") == ["delivered"]
    assert len(announcements(api)) == 5


def test_a_disabled_endpoint_without_owner_is_recorded_for_the_admin(env, receivers):
    hook = receivers()
    register(env, hook.url + "/x", "discord")
    confirm(env, hook)
    hook.script(*([404] * 5))
    assert deliver(env, []) == ["delivered"], "a 404 is permanent: not retried"
    (row,) = env.get("/subscribers/endpoints").json()["items"]
    assert row["state"] == "confirmed" and row["failures"] == 1
    deliver(env, [], title="Checkout is down")
    deliver(env, [], title="Checkout is down again")
    (row,) = env.get("/subscribers/endpoints").json()["items"]
    assert row["state"] == "disabled" and row["notice"] == "none" and env.outbox.sent == []


def test_generic_posts_are_signed_with_the_secret_shown_once(env, receivers):
    hook = receivers()
    register(env, hook.url + "/in", "generic")
    code = code_from(hook)
    r = env.client.post("/api/v1/subscribe/endpoint/confirm", json={"code": code})
    secret = r.json()["secret"]
    assert secret.startswith("whsec_")
    again = env.client.post("/api/v1/subscribe/endpoint/confirm", json={"code": code})
    assert_error(again, 422, "invalid_request")
    assert secret not in again.text

    assert deliver(env, []) == ["delivered"]
    (seen,) = announcements(hook)
    assert verify(secret, seen.headers, seen.body)
    assert not verify("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", seen.headers, seen.body)
    assert not verify(secret, seen.headers, seen.body.replace(b"Database", b"Databank"))
    (row,) = env.get("/subscribers/endpoints").json()["items"]
    assert seen.headers["webhook-id"].endswith("_" + row["id"]), "receivers dedupe per delivery and endpoint"
    assert seen.json()["data"]["title"] == "Database is down"
    assert secret not in json.dumps(env.get("/subscribers/endpoints").json())


def test_a_retry_after_a_partial_fan_out_never_posts_twice_to_one_endpoint(env, receivers):
    first, flaky, last = receivers(), receivers(), receivers()
    for r, fmt in ((first, "slack"), (flaky, "teams"), (last, "generic")):
        register(env, r.url + "/p", fmt)
        confirm(env, r)
    flaky.script(503)
    assert deliver(env, []) == ["retrying", "delivered"]
    assert len(announcements(first)) == 1 and len(announcements(last)) == 1
    assert [s.status for s in announcements(flaky)] == [503, 200]
    assert announcements(flaky)[1].json()["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    failures = {e["format"]: e["failures"] for e in env.get("/subscribers/endpoints").json()["items"]}
    assert failures == {"slack": 0, "teams_workflow": 0, "generic": 0}, "a success ends the run of failures"


def test_the_answer_is_the_same_whatever_the_endpoint_state(env, receivers):
    hook = receivers()
    url = hook.url + "/same"
    new = register(env, url)
    pending = register(env, url)
    confirm(env, hook)
    confirmed = register(env, url)
    assert new.status_code == pending.status_code == confirmed.status_code == 202
    assert new.json() == pending.json() == confirmed.json()
    assert len(hook.requests) == 1, "at most one challenge per interval; none to a confirmed endpoint"


@pytest.mark.parametrize("url", [
    "http://hooks.example.test/plain-http",
    "https://127.0.0.1/loopback",
    "https://10.1.2.3/private",
    "https://192.168.0.10/private",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/loopback6",
    "https://[::ffff:127.0.0.1]/mapped",
    "https://[fd00:ec2::254]/metadata6",
    "https://user:password@hooks.example.test/creds",
    "https://rebind.example.test/inside",
    "https://nowhere.example.test/unresolvable",
    "ftp://hooks.example.test/x",
])
def test_urls_that_would_reach_inside_are_refused_at_registration(tmp_path, url):
    names = {"rebind.example.test": ["93.184.216.34", "127.0.0.1"], "hooks.example.test": ["93.184.216.34"]}

    def resolver(host: str, port: int) -> list[str]:
        if host not in names:
            raise OSError("no such name")
        return names[host]

    e = make(tmp_path, lab=False, resolver=resolver)
    try:
        r = e.client.post("/api/v1/subscribe/endpoint", json={"list": "ops", "endpoint": {"format": "generic",
                                                                                            "url": url}})
        err = assert_error(r, 422, "invalid_request")
        assert "endpoint.url" in err["message"]
        assert e.get("/subscribers/endpoints").json()["items"] == [], "nothing recorded, nothing posted"
    finally:
        e.client.close()
        e.ledger.close()


def test_bad_registrations_name_the_field(env):
    r = env.client.post("/api/v1/subscribe/endpoint", json={"list": "ops", "endpoint": {"format": "irc",
                                                                                          "url": "https://a.test/"}})
    assert "endpoint.format" in assert_error(r, 422, "invalid_request")["message"]
    r = env.client.post("/api/v1/subscribe/endpoint", json={"list": "nope", "endpoint": {"format": "slack",
                                                                                           "url": "https://a.test/"}})
    assert assert_error(r, 422, "invalid_request")["details"]
    r = env.client.post("/api/v1/subscribe/endpoint/confirm", json={"code": "0" * 32})
    assert "code" in assert_error(r, 422, "invalid_request")["message"]
    r = env.client.get("/api/v1/subscribers/endpoints")
    assert r.status_code == 401


# ---------------------------------------------------------------- the guard at send time (DNS rebinding)


def test_a_name_that_now_resolves_inside_is_not_posted_to():
    seen: list[httpx.Request] = []
    client = httpx.Client(transport=httpx.MockTransport(lambda req: seen.append(req) or httpx.Response(200)))
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    def resolver(host: str, port: int) -> list[str]:
        return next(answers)

    rules = _outbound.Rules()
    _outbound.target("https://hooks.example.test/x", rules, resolver)  # registration: public
    with pytest.raises(PermanentError, match="private, loopback or link-local"):
        _outbound.pinned_post(client, "https://hooks.example.test/x", rules, content=b"{}", headers={},
                              what="t", resolver=resolver)
    assert seen == []


def test_the_post_goes_to_the_address_that_was_checked():
    seen: list[httpx.Request] = []
    client = httpx.Client(transport=httpx.MockTransport(lambda req: seen.append(req) or httpx.Response(200)))
    _outbound.pinned_post(client, "https://hooks.example.test:8443/in?x=1", _outbound.Rules(), content=b"{}",
                          headers={}, what="t", resolver=lambda host, port: ["93.184.216.34"])
    (req,) = seen
    assert req.url.host == "93.184.216.34" and req.url.port == 8443 and req.url.query == b"x=1"
    assert req.headers["host"] == "hooks.example.test:8443"
    assert req.extensions["sni_hostname"] == "hooks.example.test"


def test_an_endpoint_for_an_unknown_component_is_refused(env, receiver):
    r = register(env, receiver.url + "/slack", "slack", components=["Nope"], owner=OWNER)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["details"]["field"] == "components" and err["details"]["known"] == ["API", "Web"]
    assert receiver.requests == []  # no challenge went out


# ---------------------------------------------------------------- the pages people use (status site "By webhook")


def unsubscribe_link(text: str) -> str:
    m = re.search(r"https://status\.example\.test(/api/v1/unsubscribe/endpoint\?token=[A-Za-z0-9_.%-]+)", text)
    assert m, text
    return m.group(1)


def test_subscribe_by_webhook_from_the_form_choose_components_and_stop_with_one_click(env, receivers):
    hook = receivers()
    form = env.client.get("/api/v1/subscribe/endpoint/form?list=ops")
    assert form.status_code == 200
    for expected in ('name="url"', 'name="format"', 'value="slack"', 'value="generic"',
                     'type="checkbox" name="components" value="API"', 'value="Web"'):
        assert expected in form.text, expected

    html = {"Accept": "text/html"}
    r = env.client.post("/api/v1/subscribe/endpoint/form", headers=html,
                        data={"list": "ops", "format": "slack", "url": hook.url + "/slack", "components": ["API"]})
    assert r.status_code == 200 and "confirmation code is on its way" in r.text
    assert 'name="code"' in r.text, "the answer page takes the code too"
    assert eps.flush(env.runtime, timeout=10)
    (challenge,) = hook.requests
    text = challenge.json()["text"]
    code = code_from(hook)
    assert f"https://status.example.test/api/v1/subscribe/endpoint/confirm?code={code}" in text
    assert "To cancel the request" in text and unsubscribe_link(text)

    # the challenge's link opens a page with a button; opening it confirms nothing
    page = env.client.get(f"/api/v1/subscribe/endpoint/confirm?code={code}", headers=html)
    assert page.status_code == 200 and "about API" in page.text and "Slack" in page.text
    assert hook.url + "/slack" not in page.text and "/…" in page.text, "the URL (a credential) is shown masked"
    assert env.get("/subscribers/endpoints").json()["items"][0]["state"] == "pending"
    done = env.client.post("/api/v1/subscribe/endpoint/confirm/form", headers=html, data={"code": code})
    assert done.status_code == 200 and "We will post the announcements of ops about API" in done.text
    assert env.client.post("/api/v1/subscribe/endpoint/confirm/form", headers={**html, "Origin": "https://evil.test"},
                           data={"code": code}).status_code == 403

    # only its component's incidents, each carrying the one-click link
    assert deliver(env, ["Web"], title="Checkout is slow") == ["delivered"]
    assert announcements(hook) == []
    assert deliver(env, ["API"]) == ["delivered"]
    (post,) = announcements(hook)
    link = unsubscribe_link(post.json()["text"])
    assert post.json()["text"].rstrip().endswith(f"Stop these posts: https://status.example.test{link}")

    # opening the link (as a chat app's preview does) changes nothing; its button stops the posts
    page = env.client.get(link, headers=html)
    assert page.status_code == 200 and "Stop these posts" in page.text
    assert env.get("/subscribers/endpoints").json()["items"][0]["state"] == "confirmed"
    stopped = env.client.post(link, headers=html)
    assert stopped.status_code == 200 and "Nothing more" in stopped.text
    assert env.client.post(link).json()["status"] == "unsubscribed", "repeating it is harmless"
    (row,) = env.get("/subscribers/endpoints").json()["items"]
    assert row["state"] == "unsubscribed"
    assert deliver(env, ["API"], title="Database is down again") == ["delivered"]
    assert len(announcements(hook)) == 1, "nothing after the unsubscribe"

    # an administrator cannot override the owner's choice; the owner registering again can
    assert env.post(f"/subscribers/endpoints/{row['id']}/enable").json()["state"] == "unsubscribed"
    register(env, hook.url + "/slack", "slack", components=["API"])
    assert env.get("/subscribers/endpoints").json()["items"][0]["state"] == "pending"
    assert len(hook.requests) == 3 and "To confirm" in hook.requests[-1].json()["text"], "a new challenge"

    forged = env.client.post("/api/v1/unsubscribe/endpoint?token=" + link.split("=", 1)[1][:-3] + "abc")
    assert_error(forged, 422, "invalid_request")


def test_a_generic_endpoint_confirmed_on_the_page_sees_its_secret_and_an_unsubscribe_url(env, receivers):
    hook = receivers()
    html = {"Accept": "text/html"}
    r = env.client.post("/api/v1/subscribe/endpoint/form", headers=html,
                        data={"list": "ops", "format": "generic", "url": hook.url + "/in"})
    assert r.status_code == 200
    assert eps.flush(env.runtime, timeout=10)
    data = hook.requests[0].json()["data"]
    assert data["confirm_page"].endswith(f"?code={data['code']}") and "/unsubscribe/endpoint?token=" in data[
        "unsubscribe_url"]
    done = env.client.post("/api/v1/subscribe/endpoint/confirm/form", headers=html, data={"code": data["code"]})
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", done.text).group(0)
    assert deliver(env, []) == ["delivered"]
    (seen,) = announcements(hook)
    assert verify(secret, {k.lower(): v for k, v in seen.headers.items()}, seen.body)
    assert seen.json()["data"]["unsubscribe_url"] == data["unsubscribe_url"]


def test_the_form_refuses_what_the_api_refuses(env):
    html = {"Accept": "text/html"}
    r = env.client.post("/api/v1/subscribe/endpoint/form", headers=html,
                        data={"list": "ops", "format": "slack", "url": "http://127.0.0.1:9/x",
                              "components": ["Nope"]})
    assert r.status_code == 422 and "unknown component" in r.text
    r = env.client.post("/api/v1/subscribe/endpoint/form", headers=html,
                        data={"list": "ops", "format": "fax", "url": "http://127.0.0.1:9/x"})
    assert r.status_code == 422 and "endpoint.format" in r.text
    assert env.get("/subscribers/endpoints").json()["items"] == []
