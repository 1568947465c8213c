"""Bad input at the intake: oversized and deeply nested bodies, invalid UTF-8, control characters,
a 1 MB title, 500 channels, wrong content types, huge headers, numbers JSON allows but time does not.

Promise checked (the "under attack" guarantee and the API error shape, docs/reliability.md): every such request is refused with a
clear ``{"error": {...}}`` answer and leaves nothing behind — no announcement, delivery, update,
idempotency key or audit row is written by a refused request (counted table by table).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from broadcaster.ledger import schema as t

from .conftest import Env, assert_error, config

LIMIT = 256 * 1024  # the shipped default of api.max_body_bytes
GOOD = {"kind": "incident", "title": "Database is down", "body": "We are investigating."}
TABLES = (t.announcements, t.updates, t.deliveries, t.delivery_events, t.delivery_items, t.idempotency_keys,
          t.audit_log, t.subscribers)


def counts(ledger) -> dict[str, int]:
    with ledger.read() as conn:
        return {tbl.name: conn.execute(select(func.count()).select_from(tbl)).scalar_one() for tbl in TABLES}


@pytest.fixture
def big(make_env):
    """The API with the default body limit and limits high enough not to interfere."""
    e = make_env(config(api={"max_body_bytes": LIMIT, "rate_limit": "100000/m", "anonymous_rate_limit": "100000/m"}))
    e.admin  # noqa: B018 - creates the admin token (and its audit row) before the snapshot
    return e


def post_raw(e: Env, body: bytes, content_type: str | None = "application/json", path="/api/v1/announcements",
             headers=None):
    h = {**e.admin, **({"Content-Type": content_type} if content_type else {}), **(headers or {})}
    return e.client.post(path, content=body, headers=h)


def refused(e: Env, resp, status: int, code: str, before: dict) -> dict:
    err = assert_error(resp, status, code)
    assert counts(e.ledger) == before, "a refused request left rows behind"
    return err


# ---------------------------------------------------------------- size


def test_a_1_mb_title_is_413_before_parsing(big):
    before = counts(big.ledger)
    r = big.client.post("/api/v1/announcements", json={**GOOD, "title": "T" * 1_000_000}, headers=big.admin)
    err = refused(big, r, 413, "payload_too_large", before)
    assert err["details"]["limit"] == LIMIT and str(LIMIT) in err["message"]
    assert r.headers.get("connection") == "close"


def test_a_title_under_the_body_limit_but_over_300_characters_names_the_field(big):
    before = counts(big.ledger)
    r = big.client.post("/api/v1/announcements", json={**GOOD, "title": "T" * 100_000}, headers=big.admin)
    err = refused(big, r, 422, "invalid_request", before)
    assert err["details"]["field"] == "title" and "300" in err["message"]


@pytest.mark.parametrize("path", ["/api/v1/announcements", "/api/v1/preview", "/api/v1/subscribe",
                                  "/api/v1/announcements/ann_x/updates", "/api/v1/announcements/ann_x/retract"])
def test_an_oversized_body_is_413_on_every_post(big, path):
    before = counts(big.ledger)
    r = post_raw(big, json.dumps({**GOOD, "body": "x" * (LIMIT + 1)}).encode(), path=path)
    refused(big, r, 413, "payload_too_large", before)


def test_500_channels_are_refused_with_the_field(big):
    before = counts(big.ledger)
    for channels in ([f"ch-{i}" for i in range(500)], ["hook"] * 500):
        r = big.client.post("/api/v1/announcements", json={**GOOD, "channels": channels}, headers=big.admin)
        err = refused(big, r, 422, "invalid_request", before)
        assert err["details"]["field"] == "channels" and "100" in err["message"]


def test_100_unknown_channels_are_refused_not_half_routed(big):
    before = counts(big.ledger)
    r = big.client.post("/api/v1/announcements", json={**GOOD, "channels": ["hook"] + [f"x{i}" for i in range(99)]},
                        headers=big.admin)
    err = refused(big, r, 422, "invalid_request", before)
    assert "unknown channel" in err["message"]


def test_500_variants_and_500_tags_are_refused(big):
    before = counts(big.ledger)
    r = big.client.post("/api/v1/announcements",
                        json={**GOOD, "variants": {f"c{i}": {"title": "x"} for i in range(500)}}, headers=big.admin)
    refused(big, r, 422, "invalid_request", before)
    r = big.client.post("/api/v1/announcements", json={**GOOD, "tags": [f"t{i}" for i in range(500)]},
                        headers=big.admin)
    assert refused(big, r, 422, "invalid_request", before)["details"]["field"] == "tags"


# ---------------------------------------------------------------- structure


@pytest.mark.parametrize("shape", ["list", "object", "unknown-field"])
def test_deeply_nested_bodies_are_400_not_a_crash(big, shape):
    depth = {"list": 50_000, "object": 20_000, "unknown-field": 5_000}[shape]
    nest = {"list": (b"[" * depth, b"]" * depth), "object": (b'{"a":' * depth, b"}" * depth),
            "unknown-field": (b"[" * depth, b"]" * depth)}[shape]
    field = b'"tags"' if shape == "list" else b'"variants"' if shape == "object" else b'"zzz"'
    body = b'{"kind":"incident","title":"x",' + field + b":" + nest[0] + (b"1" if shape == "object" else b"") + nest[1] + b"}"
    assert len(body) < LIMIT
    before = counts(big.ledger)
    r = post_raw(big, body)
    assert r.status_code in (400, 422), r.text
    refused(big, r, r.status_code, "bad_request" if r.status_code == 400 else "invalid_request", before)


@pytest.mark.parametrize("body", [b'{"kind":"incident","title":"\xff\xfe broken"}', b"\xc3\x28", b'{"kind":"incident",'
                                  b'"title":"ok","body":"\xed\xa0\x80"}'], ids=["latin1-bytes", "bad-sequence", "cesu-surrogate"])
def test_invalid_utf8_is_refused(big, body):
    before = counts(big.ledger)
    r = post_raw(big, body)
    if r.status_code == 422:  # decoded leniently by the JSON parser, then refused by field
        assert refused(big, r, 422, "invalid_request", before)["details"]["field"] == "body"
    else:
        refused(big, r, 400, "bad_request", before)


def test_an_escaped_lone_surrogate_is_refused_with_the_field(big):
    before = counts(big.ledger)
    r = post_raw(big, b'{"kind":"incident","title":"\\ud800 lone"}')
    assert refused(big, r, 422, "invalid_request", before)["details"]["field"] == "title"


@pytest.mark.parametrize("body, status, code", [
    (b"", 422, "invalid_request"), (b"null", 422, "invalid_request"), (b"[]", 422, "invalid_request"),
    (b'"just a string"', 422, "invalid_request"), (b"{not json", 400, "invalid_json"),
    (b'{"kind":"incident","title":"x","publish_at":' + b"9" * 5000 + b"}", 400, "bad_request"),
])
def test_bodies_that_are_not_an_object(big, body, status, code):
    before = counts(big.ledger)
    refused(big, post_raw(big, body), status, code, before)


# ---------------------------------------------------------------- content types


@pytest.mark.parametrize("ctype, body", [
    ("text/plain", json.dumps(GOOD).encode()),
    ("application/xml", b"<announcement><title>x</title></announcement>"),
    ("text/html", b"<p>hi</p>"),
    ("application/x-www-form-urlencoded", b"kind=incident&title=x"),
    ("multipart/form-data; boundary=xyz", b'--xyz\r\nContent-Disposition: form-data; name="kind"\r\n\r\nincident\r\n--xyz--\r\n'),
])
def test_wrong_content_types_are_415(big, ctype, body):
    before = counts(big.ledger)
    err = refused(big, post_raw(big, body, ctype), 415, "unsupported_media_type", before)
    assert "application/json" in err["message"]


# ---------------------------------------------------------------- headers


def test_a_huge_authorization_header_is_a_plain_401(big):
    before = counts(big.ledger)
    r = big.client.post("/api/v1/announcements", json=GOOD, headers={"Authorization": "Bearer " + "a" * 100_000})
    refused(big, r, 401, "unauthorized", before)


def test_a_huge_idempotency_key_is_refused_with_the_field(big):
    before = counts(big.ledger)
    r = big.client.post("/api/v1/announcements", json=GOOD, headers={**big.admin, "Idempotency-Key": "k" * 100_000})
    assert refused(big, r, 422, "invalid_request", before)["details"]["field"] == "Idempotency-Key"


@pytest.mark.parametrize("value", ["1e999", "-1e999", "lots", "-1", "1" * 40])
def test_odd_content_lengths(big, value):
    from tests.api.test_intake import _asgi

    before = counts(big.ledger)
    status, body = _asgi(big.app, "POST", "/api/v1/announcements",
                         {**big.admin, "content-type": "application/json", "content-length": value},
                         [json.dumps(GOOD).encode()])
    assert status in (400, 413) and body["error"]["code"] in ("bad_request", "payload_too_large"), (value, body)
    assert counts(big.ledger) == before


# ---------------------------------------------------------------- control characters and odd numbers


CONTROL = ["nul \x00 byte", "escape \x1b[31mred\x1b[0m", "bell \x07", "backspace \x08\x08", "delete \x7f",
           "c1 \x85 \x9b31m"]


@pytest.mark.parametrize("text", CONTROL, ids=["nul", "ansi", "bel", "bs", "del", "c1"])
def test_control_characters_in_text_are_refused(big, text):
    before = counts(big.ledger)
    r = big.client.post("/api/v1/announcements", json={**GOOD, "title": f"Title {text}"}, headers=big.admin)
    err = refused(big, r, 422, "invalid_request", before)
    assert err["details"]["field"] == "title"


def test_tabs_and_newlines_are_ordinary_text(big):
    r = big.client.post("/api/v1/announcements", json={**GOOD, "body": "line one\n\n- item\tone\r\n- item two"},
                        headers=big.admin)
    assert r.status_code == 202, r.text


def test_nul_in_a_title_is_a_clear_422_on_postgresql(make_env, pg_database):
    from broadcaster.ledger import Ledger
    from tests.conftest import _reset_pg

    _reset_pg(pg_database)
    ledger = Ledger.open(pg_database.replace("postgresql://", "postgresql+psycopg://"))
    e = make_env(config(api={"max_body_bytes": LIMIT, "rate_limit": "100000/m", "anonymous_rate_limit": "100000/m"}),
                 ledger=ledger)
    try:
        e.admin  # noqa: B018 - creates the token (and its audit row) before the snapshot
        before = counts(e.ledger)
        r = e.client.post("/api/v1/announcements", json={**GOOD, "title": "a\x00b"}, headers=e.admin)
        refused(e, r, 422, "invalid_request", before)
    finally:
        ledger.close()


TIMES = [
    ('"publish_at": 1e20', "publish_at"),
    ('"publish_at": 1e400', "publish_at"),
    ('"publish_at": -1e20', "publish_at"),
    ('"publish_at": NaN', "publish_at"),
    ('"publish_at": Infinity', "publish_at"),
    ('"kind": "maintenance", "window": {"starts_at": 1e18, "ends_at": 1e19}', "window"),
]


@pytest.mark.parametrize("fragment, field", TIMES, ids=["1e20", "inf-literal", "-1e20", "nan", "infinity", "window"])
def test_times_out_of_range_are_refused_with_the_field(big, fragment, field):
    before = counts(big.ledger)
    body = '{"kind": "incident", "title": "t", ' + fragment + "}"
    body = body.replace('"kind": "incident", "title": "t", "kind": "maintenance"', '"title": "t", "kind": "maintenance"')
    r = post_raw(big, body.encode())
    err = refused(big, r, 422, "invalid_request", before)
    assert (err["details"]["field"] or "").startswith(field)


def test_one_bad_time_does_not_break_the_listing_for_everyone(big):
    big.submit(title="a normal incident")
    post_raw(big, b'{"kind": "incident", "title": "poison", "publish_at": 1e20}')
    assert big.client.get("/api/v1/announcements", headers=big.admin).status_code == 200
    assert big.client.get("/api/v1/incidents", headers=big.admin).status_code == 200


def test_every_refusal_above_was_json_and_the_api_still_works(big):
    """After a burst of bad requests the same app accepts a good one."""
    for body in (b"\xff", b"[" * 10_000, b"{not json", b"null"):
        post_raw(big, body)
    assert big.client.post("/api/v1/announcements", json=GOOD, headers=big.admin).status_code == 202
