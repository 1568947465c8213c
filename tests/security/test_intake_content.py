"""Content is checked once, at intake, for what every routed channel and the ledger can hold
(issue 13, item 4): a title with a line break used to be accepted (202), make the email adapter
raise at send time, end ``unknown`` after eight retries and open the email breaker for everyone.

Every refusal is a 422 (the web page: its form again) naming the field with its path, and
leaves nothing behind. The API, the web page's compose form and the CLI share the same checks
(``broadcaster.requests``), so each is walked here.
"""

from __future__ import annotations

import email

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from broadcaster.channels._mail import header_line
from broadcaster.cli import main
from broadcaster.errors import InvalidRequest
from broadcaster.requests import AnnouncementIn, UpdateIn
from broadcaster.tokens import check_name as check_token_name
from tests.cli.conftest import api  # noqa: F401  (the live API fixture)
from tests.web.conftest import web  # noqa: F401  (the web page fixture)

from .conftest import assert_error
from .test_bad_input import GOOD, counts

BREAKS = {"lf": "a\nb", "cr": "a\rb", "crlf": "a\r\nb", "u2028": "a\u2028b", "u2029": "a\u2029b", "tab": "a\tb",
          "nel": "a\x85b", "vt": "a\x0bb", "ff": "a\x0cb"}


def refused(env, resp, field: str) -> dict:
    err = assert_error(resp, 422, "invalid_request")
    assert err["details"]["field"] == field, err
    assert field in err["message"], err
    return err


@pytest.fixture
def e(env):
    _ = env.admin  # its audit row exists before the "nothing written" snapshots
    return env


# ---------------------------------------------------------------- the API


@pytest.mark.parametrize("title", BREAKS.values(), ids=BREAKS.keys())
def test_a_title_with_a_line_break_is_refused_before_anything_is_written(e, title):
    before = counts(e.ledger)
    r = e.client.post("/api/v1/announcements", json={**GOOD, "title": title}, headers=e.admin)
    err = refused(e, r, "title")
    assert "one line" in err["message"] or "control" in err["message"]
    assert counts(e.ledger) == before and e.enqueued == []


@pytest.mark.parametrize("fields, field", [
    ({"variants": {"hook": {"title": "Down\nBcc: everyone@example.test"}}}, "variants.hook.title"),
    ({"variants": {"hook": {"body": "nul \x00 here"}}}, "variants.hook.body"),
    ({"components": ["API", "Data\x1b[2Jbase"]}, "components.1"),
    ({"components": ["two\nlines"]}, "components.0"),
    ({"tags": ["ok", "bell\x07"]}, "tags.1"),
    ({"channels": ["hook", "ops\nchat"]}, "channels.1"),
    ({"url": "https://example.test/a\nb"}, "url"),
    ({"body": "escape \x1b[31m red"}, "body"),
    ({"body": "nul \x00 byte"}, "body"),
    ({"status": "resolved\n"  + "x"}, "status"),
    ({"status": "x" * 21}, "status"),
    ({"status": "fixed"}, "status"),
    ({"kind": "deploy", "status": "resolved"}, "status"),
], ids=["variant-title", "variant-body", "component-esc", "component-lf", "tag-bel", "channel-lf", "url-lf",
        "body-esc", "body-nul", "status-lf", "status-21", "status-unknown", "status-on-a-deploy"])
def test_every_field_and_every_channel_variant_is_held_to_the_same_rules(e, fields, field):
    before = counts(e.ledger)
    refused(e, e.client.post("/api/v1/announcements", json={**GOOD, **fields}, headers=e.admin), field)
    assert counts(e.ledger) == before


def test_bodies_keep_tabs_and_newlines_and_a_browsers_crlf_becomes_lf(e):
    body = "line one\r\n\r\n- item\tone\r- item two\u2028same paragraph"
    a = e.submit(body=body, variants={"hook": {"body": "variant\r\ntext"}})
    stored = e.ledger.get_announcement(a["id"])
    assert stored.body == "line one\n\n- item\tone\n- item two\u2028same paragraph"
    assert stored.variants["hook"]["body"] == "variant\ntext"


UPDATE_CASES = [
    ({"status": "x" * 21, "body": "b"}, "status"),
    ({"status": "fixed", "body": "b"}, "status"),
    ({"status": "resolved", "body": "b", "title": "two\nlines"}, "title"),
    ({"status": "resolved", "body": "nul \x00"}, "body"),
    ({"status": "resol\x00ved", "body": "b"}, "status"),
    ({"status": "resolved", "body": "b", "components": ["a\u2029b"]}, "components.0"),
]


@pytest.mark.parametrize("body, field", UPDATE_CASES,
                         ids=["status-21", "status-unknown", "title-lf", "body-nul", "status-nul", "component-u2029"])
def test_updates_are_held_to_the_same_rules(e, body, field):
    a = e.submit()
    before = counts(e.ledger)
    refused(e, e.client.post(f"/api/v1/announcements/{a['id']}/updates", json=body, headers=e.admin), field)
    assert counts(e.ledger) == before


@pytest.mark.parametrize("status, ok", [("update", True), ("rolled back", True), ("v2.1-hotfix", True),
                                        ("x" * 20, True), ("x" * 21, False), ("[Send BTC", False),
                                        ("done!", False), ("two\nlines", False)])
def test_kinds_without_statuses_take_a_short_label_on_updates(e, status, ok):
    a = e.submit(kind="deploy", title="Release 2.1", channels=["ops-chat"])
    r = e.client.post(f"/api/v1/announcements/{a['id']}/updates", json={"status": status, "body": "b"},
                      headers=e.admin)
    if ok:
        assert r.status_code == 202, r.text
        assert e.ledger.get_announcement(a["id"]).status == status
    else:
        refused(e, r, "status")


def test_the_known_statuses_of_each_kind_are_accepted(e):
    for kind, statuses, channels in (("incident", ("investigating", "identified", "monitoring", "resolved"), None),
                                     ("maintenance", ("scheduled", "in_progress", "completed"), ["hook"])):
        for status in statuses:
            e.submit(kind=kind, status=status, **({"channels": channels} if channels else {}))
        a = e.submit(kind=kind, **({"channels": channels} if channels else {}))
        for status in statuses:
            r = e.client.post(f"/api/v1/announcements/{a['id']}/updates", json={"status": status, "body": "b"},
                              headers=e.admin)
            assert r.status_code == 202, (kind, status, r.text)


def test_a_retraction_reason_refuses_control_characters(e):
    a = e.submit()
    refused(e, e.client.post(f"/api/v1/announcements/{a['id']}/retract", json={"reason": "oops\x00"},
                             headers=e.admin), "reason")
    assert e.ledger.get_announcement(a["id"]).retracted_at is None


def test_the_preview_tells_the_author_before_they_submit(e):
    refused(e, e.client.post("/api/v1/preview", json={**GOOD, "title": "a\nb"}, headers=e.admin), "title")


# ---------------------------------------------------------------- the web page and the CLI


def test_the_web_compose_form_refuses_a_title_with_a_line_break(web):  # noqa: F811
    c, csrf = web.signed_in()
    before = counts(web.runtime.ledger)
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Down\r\nBcc: x@example.test",
                                 "body": "b", "channels": ["hook-a"]}, follow_redirects=False)
    assert r.status_code == 400 and "title" in r.text and "one line" in r.text
    assert counts(web.runtime.ledger) == before and web.enqueued == []


def test_the_web_update_form_refuses_an_unknown_status(web):  # noqa: F811
    c, csrf = web.signed_in()
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Down", "body": "b",
                                 "channels": ["hook-a"]}, follow_redirects=False)
    ann_id = r.headers["location"].split("/")[-1].split("?")[0]
    r = c.post(f"/announcements/{ann_id}/updates", data={"csrf": csrf, "status": "x" * 21, "body": "b"})
    assert r.status_code >= 400 and "status" in r.text
    assert web.runtime.ledger.get_announcement(ann_id).status == "investigating"


def test_the_cli_names_the_field_and_exits_2(api):  # noqa: F811
    res = CliRunner().invoke(main, ["post", "--kind", "incident", "--title", "Down\nBcc: x@example.test",
                                    "--body", "b"], env=api.env(), catch_exceptions=False)
    assert res.exit_code == 2, res.output
    assert "422" in res.stderr and "title" in res.stderr
    assert api.enqueued == []


# ---------------------------------------------------------------- what is accepted can be sent


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(min_size=1, max_size=120))
def test_any_title_the_intake_accepts_makes_one_mail_header(title):
    """The email adapter raised at send time on a title it could not put in a Subject; now any
    title that passes the intake gives exactly one well-formed Subject header."""
    try:
        accepted = AnnouncementIn.model_validate({"kind": "incident", "title": title}).title
    except ValueError:
        return
    raw = header_line("Subject", f"[Investigating] {accepted}")
    msg = email.message_from_bytes(raw + b"\r\n", policy=email.policy.SMTP)
    assert list(msg.keys()) == ["Subject"], raw
    assert b"\n" not in raw.replace(b"\r\n ", b"").replace(b"\r\n\t", b"").rstrip(b"\r\n"), raw


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(max_size=60))
def test_any_update_status_the_intake_accepts_fits_its_column(status):
    try:
        accepted = UpdateIn.model_validate({"status": status, "body": "b"}).status
    except ValueError:
        return
    assert 1 <= len(accepted) <= 20 and accepted.strip() == accepted and accepted.isprintable()


# ---------------------------------------------------------------- hidden and reordered text


HIDDEN = {"rlo": "\u202e", "lro": "\u202d", "rli": "\u2067", "pdi": "\u2069", "lrm": "\u200e", "rlm": "\u200f",
          "alm": "\u061c", "word-joiner": "\u2060", "invisible-times": "\u2062", "bom": "\ufeff"}


@pytest.mark.parametrize("char", HIDDEN.values(), ids=HIDDEN.keys())
@pytest.mark.parametrize("field", ["title", "body"])
def test_bidi_and_invisible_controls_are_refused_in_titles_and_bodies(e, char, field):
    """Trojan-Source-style spoofing: ``ok\\u202ex`` was accepted (202) and delivered, showing a
    reader text in another order than the one stored."""
    before = counts(e.ledger)
    r = e.client.post("/api/v1/announcements", json={"kind": "deploy", "title": "ok", "body": "xy",
                                                     "channels": ["ops-chat"], field: f"ok{char}x"},
                      headers=e.admin)
    err = refused(e, r, field)
    assert f"U+{ord(char):04X}" in err["message"]
    assert counts(e.ledger) == before and e.enqueued == []


def test_a_leading_bom_is_refused_too(e):
    refused(e, e.client.post("/api/v1/announcements", json={**GOOD, "body": "\ufeffbody"}, headers=e.admin),
            "body")


@pytest.mark.parametrize("fields, field", [
    ({"title": "Data\u200bbase down"}, "title"),
    ({"components": ["A\u200bPI"]}, "components.0"),
    ({"tags": ["x\u200cy"]}, "tags.0"),
    ({"variants": {"hook": {"body": "a\u202eb"}}}, "variants.hook.body"),
], ids=["title-zwsp", "component-zwsp", "tag-zwnj", "variant-body-rlo"])
def test_zero_width_characters_are_refused_in_one_line_fields(e, fields, field):
    refused(e, e.client.post("/api/v1/announcements", json={**GOOD, **fields}, headers=e.admin), field)


def test_emoji_sequences_and_flags_still_pass(e):
    """The joiner U+200D, variation selectors, regional-indicator flags and tag-sequence flags
    are what real incident text uses; only the characters that hide or reorder text are refused."""
    title = "\U0001f469\u200d\U0001f4bb on it \U0001f1e9\U0001f1ea \U0001f3f3\ufe0f\u200d\U0001f308 " \
            "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
    body = f"{title}\nzero\u200bwidth space inside a body is text"
    a = e.submit(title=title, body=body)
    stored = e.ledger.get_announcement(a["id"])
    assert stored.title == title and stored.body == body


def test_a_subscriber_name_and_a_token_name_refuse_bidi_controls(e):
    r = e.client.post("/api/v1/subscribe", json={"list": "customers", "address": "y@example.com",
                                                 "name": "Eve\u202egnp.exe"})
    refused(e, r, "name")
    with pytest.raises(InvalidRequest, match="U\\+2066"):
        check_token_name("ci\u2066bot")


# ---------------------------------------------------------------- refused, never cleaned up


@pytest.mark.parametrize("fields, field", [
    ({"kind": "deploy\n", "channels": ["ops-chat"]}, "kind"),
    ({"kind": "\rincident"}, "kind"),
    ({"components": ["API\n"]}, "components.0"),
    ({"severity": "major\r\n"}, "severity"),
    ({"title": "Down\n"}, "title"),
    ({"tags": ["\tops"]}, "tags.0"),
    ({"channels": ["hook\n"]}, "channels.0"),
    ({"url": "https://example.test/\n"}, "url"),
    ({"components": ["API"], "component_states": {"API\n": "major_outage"}}, "component_states.API\n.[key]"),
], ids=["kind-lf", "kind-cr", "component-lf", "severity-crlf", "title-lf", "tag-tab", "channel-lf", "url-lf",
        "state-key-lf"])
def test_a_trailing_line_break_in_a_one_line_field_is_refused_not_stripped(e, fields, field):
    """``"kind": "deploy\\n"`` and ``"components": ["API\\n"]`` used to be accepted and stored
    stripped, while a title with a line break inside was refused."""
    before = counts(e.ledger)
    r = e.client.post("/api/v1/announcements", json={**GOOD, **fields}, headers=e.admin)
    err = assert_error(r, 422, "invalid_request")
    assert err["details"]["field"].startswith(field.split(".")[0]), err
    assert counts(e.ledger) == before


def test_plain_surrounding_spaces_are_still_trimmed(e):
    a = e.submit(kind=" incident ", title="  Down  ", severity=" major ")
    stored = e.ledger.get_announcement(a["id"])
    assert (stored.kind, stored.title, stored.severity) == ("incident", "Down", "major")


def test_an_update_status_with_a_trailing_line_break_is_refused(e):
    a = e.submit()
    refused(e, e.client.post(f"/api/v1/announcements/{a['id']}/updates", json={"status": "resolved\n", "body": "b"},
                             headers=e.admin), "status")
    assert e.ledger.get_announcement(a["id"]).status == "investigating"


@pytest.mark.parametrize("status", ["resolved\r\nX", "resolved\n", "nonsense"])
def test_the_web_forms_never_store_a_status_other_than_the_one_given(web, status):  # noqa: F811
    """``status=resolved\\r\\nX`` on the compose form answered 303 and stored ``investigating``."""
    c, csrf = web.signed_in()
    before = counts(web.runtime.ledger)
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Down", "body": "b", "status": status,
                                 "channels": ["hook-a"]}, follow_redirects=False)
    assert r.status_code == 400 and "status" in r.text, r.status_code
    assert counts(web.runtime.ledger) == before
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Down", "body": "b",
                                 "channels": ["hook-a"]}, follow_redirects=False)
    ann_id = r.headers["location"].split("/")[-1].split("?")[0]
    r = c.post(f"/announcements/{ann_id}/updates", data={"csrf": csrf, "status": status, "body": "b"},
               follow_redirects=False)
    assert r.status_code >= 400 and "status" in r.text
    assert web.runtime.ledger.get_announcement(ann_id).status == "investigating"


@pytest.mark.parametrize("fields, field", [({"components": ["API\n"]}, "components"),
                                           ({"address": "y@example.com\n"}, "address"),
                                           ({"list": "customers\r\n"}, "list")])
def test_a_subscription_with_a_trailing_line_break_is_refused(e, fields, field):
    before = counts(e.ledger)
    r = e.client.post("/api/v1/subscribe", json={"list": "customers", "address": "y@example.com", **fields})
    refused(e, r, field)
    assert counts(e.ledger) == before
