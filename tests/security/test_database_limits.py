"""What reaches the database, on SQLite and PostgreSQL alike (issue 13, item 11).

PostgreSQL refuses a NUL byte in any text parameter and a value longer than its ``VARCHAR(n)``;
both used to surface as 500s (a NUL in a path id or a filter — even without a token on some
routes —, in a subscriber field, a 21-character update status, a 100-character token name that
overflows the audit log's target column), while SQLite quietly stored a 100,000-character status.
Every one of these is now refused before the database with a 4xx JSON error naming the field,
and leaves nothing behind. Each attack runs against both engines.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from broadcaster.errors import InvalidRequest
from broadcaster.ledger import Ledger
from broadcaster.limits import STATUS, TOKEN_NAME
from broadcaster.tokens import TokenStore

from .conftest import Env, config
from .test_bad_input import counts

BIG = 256 * 1024


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def __call__(self, address: str, subject: str, text: str, unsubscribe: str | None = None) -> None:
        self.sent.append((address, subject, text))


@pytest.fixture
def e(ledger_url, tmp_path):
    cfg = config(api={"max_body_bytes": BIG, "rate_limit": "100000/m", "anonymous_rate_limit": "100000/m"})
    cfg["channels"] = {**cfg["channels"], "mail": {
        "kind": "email", "smtp": {"host": "smtp.example.test"}, "from_address": "news@example.test",
        "lists": ["news"]}}
    cfg["subscribers"] = {"secret_key": "db-limits-signing-key-0123456789"}
    ledger = Ledger.open(ledger_url.replace("postgresql://", "postgresql+psycopg://"))
    env = Env(tmp_path, cfg, ledger=ledger, confirmation_sender=Outbox())
    env.incident = env.submit()["id"]
    env.deploy = env.submit(kind="deploy", title="Release", channels=["ops-chat"])["id"]
    env.delivery = env.ledger.deliveries_of(env.incident)[0].id
    yield env
    env.client.close()
    ledger.close()


def no_token(_e: Env) -> dict[str, str]:
    return {}


def admin(e: Env) -> dict[str, str]:
    return e.admin


#: (label, method, path, JSON body, headers, expected status, field named)
ATTACKS = [
    ("retry-nul-id-no-token", "POST", "/api/v1/deliveries/d%00/retry", None, no_token, 401, None),
    ("retry-nul-id", "POST", "/api/v1/deliveries/d%00/retry", None, admin, 422, "delivery_id"),
    ("confirm-nul-id", "POST", "/api/v1/deliveries/d%00/confirm", None, admin, 422, "delivery_id"),
    ("confirm-nul-url", "POST", "/api/v1/deliveries/{delivery}/confirm", {"url": "https://x.test/\x00"}, admin, 422,
     "url"),
    ("any-api-path-param", "GET", "/api/v1/drafts/d%00", None, admin, 422, "draft_id"),
    ("status-filter-nul", "GET", "/api/v1/announcements?status=%00", None, admin, 422, "status"),
    ("status-filter-long", "GET", "/api/v1/announcements?status=" + "x" * 100, None, admin, 422, "status"),
    ("before-nul", "GET", "/api/v1/announcements?before=%00", None, admin, 422, "before"),
    ("kind-nul", "GET", "/api/v1/announcements?kind=inc%00ident", None, admin, 422, "kind"),
    ("show-nul-id", "GET", "/api/v1/announcements/ann%00x", None, admin, 422, "ann_id"),
    ("show-long-id", "GET", "/api/v1/announcements/" + "a" * 41, None, admin, 422, "ann_id"),
    ("show-odd-id", "GET", "/api/v1/announcements/ann%20x%3B", None, admin, 422, "ann_id"),
    ("update-nul-id", "POST", "/api/v1/announcements/a%00/updates", {"status": "resolved", "body": "b"}, admin, 422,
     "ann_id"),
    ("retract-nul-id", "POST", "/api/v1/announcements/a%00/retract", None, admin, 422, "ann_id"),
    ("retract-nul-reason", "POST", "/api/v1/announcements/{incident}/retract", {"reason": "r\x00"}, admin, 422,
     "reason"),
    ("cancel-window-nul-reason", "POST", "/api/v1/maintenance/{incident}/cancel", {"reason": "r\x00"}, admin, 422,
     "reason"),
    ("cancel-window-nul-id", "POST", "/api/v1/maintenance/a%00/cancel", None, admin, 422, "ann_id"),
    ("subscribers-after-nul", "GET", "/api/v1/subscribers?after=%00", None, admin, 422, "after"),
    ("subscribers-list-nul", "GET", "/api/v1/subscribers?list=%00", None, admin, 422, "list"),
    ("csv-list-nul", "GET", "/api/v1/export/subscribers.csv?list=n%00", None, admin, 422, "list"),
    ("confirm-link-nul", "GET", "/api/v1/subscribe/confirm?token=%00", None, no_token, 422, "token"),
    ("subscribe-nul-name", "POST", "/api/v1/subscribe", {"list": "news", "address": "r@example.test",
                                                          "name": "Mal\x00lory"}, no_token, 422, "name"),
    ("subscribe-nul-address", "POST", "/api/v1/subscribe", {"list": "news", "address": "r\x00@example.test"},
     no_token, 422, "address"),
    ("subscribe-nul-component", "POST", "/api/v1/subscribe", {"list": "news", "address": "r@example.test",
                                                               "components": ["a\x00"]}, no_token, 422, "components"),
    ("update-status-21", "POST", "/api/v1/announcements/{deploy}/updates", {"status": "x" * 21, "body": "b"}, admin,
     422, "status"),
    ("update-status-100k", "POST", "/api/v1/announcements/{deploy}/updates", {"status": "x" * 100_000, "body": "b"},
     admin, 422, "status"),
    ("incident-status-21", "POST", "/api/v1/announcements/{incident}/updates", {"status": "x" * 21, "body": "b"},
     admin, 422, "status"),
    ("submit-nul-title", "POST", "/api/v1/announcements", {"kind": "incident", "title": "a\x00b"}, admin, 422,
     "title"),
    ("submit-long-channel", "POST", "/api/v1/announcements", {"kind": "incident", "title": "t",
                                                               "channels": ["c" * 65]}, admin, 422, "channels.0"),
]


@pytest.mark.parametrize("label, method, path, body, headers, status, field", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attacks_are_refused_before_the_database(e, label, method, path, body, headers, status, field):
    path = path.format(incident=e.incident, deploy=e.deploy, delivery=e.delivery)
    before = counts(e.ledger)
    r = e.client.request(method, path, json=body, headers=headers(e))
    assert r.status_code == status, (label, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert set(err) == {"code", "message", "details"} and "Traceback" not in r.text
    if field is not None:
        assert err["details"].get("field") == field, err
        assert field.split(".")[0] in err["message"], err
    assert counts(e.ledger) == before, f"{label}: a refused request left rows behind"
    assert e.runtime.confirmation_sender.sent == []


def test_a_100000_character_status_is_never_stored(e):
    r = e.client.post(f"/api/v1/announcements/{e.deploy}/updates", json={"status": "x" * 100_000, "body": "b"},
                      headers=e.admin)
    assert r.status_code == 422
    assert all(len(a.status or "") <= STATUS for a in e.ledger.list_announcements(limit=50))


@pytest.mark.parametrize("name", ["t" * 100, "t" * (TOKEN_NAME + 1), "nul\x00name", "esc\x1bname"],
                         ids=["100-chars", "over-the-audit-column", "nul", "esc"])
def test_a_token_name_that_the_audit_log_cannot_hold_is_refused(e, name):
    store = TokenStore(e.ledger, e.settings)
    before = counts(e.ledger)
    with pytest.raises(InvalidRequest) as caught:
        store.create(name, admin=True, actor="test")
    assert caught.value.field == "name"
    assert counts(e.ledger) == before and name not in [t.name for t in store.list()]


def test_the_longest_token_name_fits_every_column_it_lands_in(e):
    name = "n" * TOKEN_NAME
    raw, _ = TokenStore(e.ledger, e.settings).create(name, kinds=["incident"], actor="test")
    r = e.client.post("/api/v1/announcements", json={"kind": "incident", "title": "by a long name"},
                      headers={"Authorization": f"Bearer {raw}", "Idempotency-Key": "k" * 255})
    assert r.status_code == 202, r.text
    assert r.json()["author"] == name


def test_the_cli_names_the_field_of_a_bad_token_name(e, tmp_path, monkeypatch):
    from broadcaster.cli import main

    res = CliRunner().invoke(main, ["tokens", "create", "t" * 100, "--admin"], catch_exceptions=False,
                             env={"BROADCASTER_CONFIG": str(_config_file(tmp_path, e))})
    assert res.exit_code != 0 and "name" in res.output + (res.stderr or ""), res.output
    assert "Traceback" not in res.output


def _config_file(tmp_path, e: Env):
    import yaml

    url = str(e.ledger.engine.url.render_as_string(hide_password=False))
    path = tmp_path / "broadcaster.yaml"
    path.write_text(yaml.safe_dump({"ledger": url, "channels": {"hook": {"kind": "webhook",
                                                                         "url": "https://hooks.example.test/x"}}}))
    return path


@pytest.mark.parametrize("path", ["/announcements/ann%00x", "/ui/announcements/ann%00x",
                                  "/announcements/ann%0Ax/updates"])
def test_a_nul_in_a_web_page_path_is_refused_too(e, path):
    c, _ = _signed_in(e)
    r = c.request("POST" if path.endswith("updates") else "GET", path)
    assert r.status_code == 404 and "Traceback" not in r.text


def _signed_in(e: Env):
    from tests.web.conftest import field

    c = e.client
    pre = field(c.get("/signin").text, "csrf")
    r = c.post("/signin", data={"csrf": pre, "token": e.tokens.get("admin") or _raw_admin(e)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c, field(c.get("/compose").text, "csrf")


def _raw_admin(e: Env) -> str:
    _ = e.admin
    return e.tokens["admin"]


@pytest.mark.parametrize("key", ["k\x00", "k" * 300], ids=["nul", "300-chars"])
def test_the_web_forms_idempotency_key_cannot_reach_the_database_unchecked(e, key):
    c, csrf = _signed_in(e)
    before = counts(e.ledger)
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Down", "body": "b",
                                 "channels": ["hook"], "idempotency_key": key}, follow_redirects=False)
    assert r.status_code in (303, 400), r.text[:300]
    if r.status_code == 400:
        assert counts(e.ledger) == before


@pytest.mark.parametrize("url", ["https://example.test/\x00", "https://example.test/" + "x" * 2001],
                         ids=["nul", "long"])
def test_confirm_checks_the_url_in_the_service_every_caller_shares(e, url):
    from broadcaster import service
    from tests.cli.live import settle

    settle(e.runtime, e.delivery, "unknown")
    with pytest.raises(InvalidRequest) as caught:
        service.confirm_delivered(e.runtime, e.delivery, principal=service.SYSTEM, url=url)
    assert caught.value.field == "url"
    assert str(e.ledger.get_delivery(e.delivery).state) == "unknown"
