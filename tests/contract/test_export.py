"""Export everything as JSON Lines and restore it into an empty ledger (SQLite and PostgreSQL);
subscribers CSV that round-trips and reports bad rows by line number."""

from __future__ import annotations

import hashlib
import io
import json
import random

import pytest
from click.testing import CliRunner

from broadcaster import export, service, subscribers as subs
from broadcaster.config import load_settings
from broadcaster.errors import Conflict, InvalidRequest
from broadcaster.ledger import Ledger
from broadcaster.ledger.endpoints import EndpointRequest, EndpointStore
from broadcaster.ledger.opt_outs import OptOutStore
from broadcaster.models import DeliveryState as S, Receipt
from tests.support.ledger import claim
from tests.support.runtime import Clock, memory_runtime

T0 = 1_800_000_000.123456


def populate(url: str) -> Ledger:
    clock = Clock(T0, tick=0.001234567)  # distinct, non-round times: float precision must survive the trip
    settings = load_settings({"ledger": url, "channels": {
        "hook": {"kind": "webhook", "url": "https://hooks.example.test/a"},
        "chat": {"kind": "webhook", "format": "slack", "url": "https://hooks.example.test/b"},
        "site": {"kind": "statuspage", "output_dir": "unused-site", "components": ["db", "api"]}},  # not routed
        "routes": {"incident": ["hook", "chat"], "notice": ["hook"], "maintenance": ["chat"]}}, env={})
    ledger = Ledger.open(url, clock=clock)
    rt = memory_runtime(settings, ledger=ledger, clock=clock)
    inc = service.submit(rt, {"kind": "incident", "title": "Datenbank »down« 🔥", "body": "Line 1\n\nLine \"2\"",
                              "severity": "critical", "components": ["db", "api"], "tags": ["ops"],
                              "variants": {"chat": {"title": "DB down"}}}, principal=service.SYSTEM,
                         idempotency_key="k1").id
    for status in ("identified", "monitoring", "resolved"):
        service.add_update(rt, inc, {"status": status, "body": f"now {status}"}, principal=service.SYSTEM)
    for i, d in enumerate(ledger.deliveries_of(inc)):
        claimed = claim(ledger, d.id, "worker-1", 30)
        if i % 3 == 0:
            ledger.transition(claimed, S.RETRYING, "HTTP 503", owner="worker-1", attempted=True, due_at=clock.t + 5,
                              error="provider error (HTTP 503)", response='{"error":"unavailable"}')
        else:
            ledger.transition(claimed, S.DELIVERED, "delivered", owner="worker-1", attempted=True,
                              receipt=Receipt("remote-" + d.id, f"https://example.test/p/{i}", {"n": i, "x": [1, 2]}))
        ledger.mark_items(d.id, ["a@example.test", "b@example.test"], "done", "250 ok")
    service.submit(rt, {"kind": "maintenance", "title": "Window", "window": {"starts_at": T0 + 3600,
                                                                            "ends_at": T0 + 7200},
                        "publish_at": T0 + 60}, principal=service.SYSTEM)
    note = service.submit(rt, {"kind": "notice", "title": "Retracted"}, principal=service.SYSTEM).id
    service.retract(rt, note, principal=service.SYSTEM, reason="oops")
    subs.add(ledger, "news", "alice@example.test", name="Alice, \"A\"", components=["db"], state="confirmed",
             actor="test")
    subs.add(ledger, "news", "bob@example.test", marketing=False, actor="test")
    sub, _ = subs.add(ledger, "ops", "carol@example.test", state="confirmed", actor="test")
    subs.set_state(ledger, sub.id, "opted_out", actor="test")
    endpoints = EndpointStore(ledger)
    for i, (fmt, url) in enumerate((("slack", "https://hooks.example.test/services/T/B/S3CR3T"),
                                    ("generic", "https://ops.example.test/hook?k=1"),
                                    ("discord", "https://discord.example.test/api/webhooks/1/tok"))):
        ep = endpoints.request(EndpointRequest("news", fmt, url, hashlib.sha256(url.encode()).hexdigest(),
                                               "owner@example.test" if i else None, ("db",) if i == 1 else ()),
                               stale_before=0, actor="test")
        if i:  # confirmed by its owner's code; the second fails once, the third is disabled by an admin
            code = f"{i}" * 64
            assert endpoints.claim_challenge(ep.id, code, not_since=0) is not None
            assert endpoints.confirm(code, requested_after=0) is not None
        if i == 1:
            endpoints.failed(ep.id, "HTTP 500 from the endpoint", max_failures=5)
        if i == 2:
            endpoints.set_state(ep.id, "disabled", actor="test")
    opt_outs = OptOutStore(ledger)
    opt_outs.opt_out("+15550001111", channel="sms", reason="STOP")
    opt_outs.opt_out("+4915112345678", channel="sms", reason="replied \"STOPP\" 🙅")
    return ledger


def export_text(ledger, page: int = export.PAGE) -> str:
    return "".join(export.export_lines(ledger, page=page))


# ---------------------------------------------------------------- JSON Lines


def test_export_import_export_is_identical(ledger_url, tmp_path):
    source = populate(f"sqlite:///{tmp_path}/source.db")
    first = export_text(source, page=3)  # several pages of every table
    assert first == export_text(source)  # paging changes nothing
    target = Ledger.open(ledger_url)
    counts = export.import_lines(target, io.StringIO(first))
    assert counts == {"announcement": 3, "update": 3, "delivery": 10, "subscriber": 3, "subscriber_endpoint": 3,
                      "sms_opt_out": 2, "audit": counts["audit"]} and counts["audit"] > 10
    second = export_text(target, page=2)
    assert second == first
    # and the restored ledger works as a ledger
    inc = next(a for a in target.list_announcements() if a.kind == "incident")
    assert inc.title == "Datenbank »down« 🔥" and inc.variants == {"chat": {"title": "DB down"}}
    ds = target.deliveries_of(inc.id)
    assert sum(d.state == S.DELIVERED for d in ds) == 5
    assert target.events_of(ds[0].id)[-1].attempt >= 1
    assert target.item_states(ds[0].id) == {"a@example.test": ("done", "250 ok"), "b@example.test": ("done", "250 ok")}
    target.audit("after-import", "test.action")  # the audit log's id sequence still works (PostgreSQL)
    # subscribers' own webhooks and SMS opt-outs came along, and work as stored
    before = {e.id: e for e in EndpointStore(source).page(limit=10)}
    after = {e.id: e for e in EndpointStore(target).page(limit=10)}
    assert after == before and {e.state for e in after.values()} == {"pending", "confirmed", "disabled"}
    assert [e.url for e in EndpointStore(target).confirmed(["news"], ["generic"])] == ["https://ops.example.test/hook?k=1"]
    assert OptOutStore(target).opted_out(["+15550001111", "+4915112345678", "+15550002222"]) == {
        "+15550001111", "+4915112345678"}
    source.close()
    target.close()


def test_export_lines_have_a_stable_shape(tmp_path):
    ledger = populate(f"sqlite:///{tmp_path}/l.db")
    lines = [json.loads(x) for x in export_text(ledger).splitlines()]
    assert lines[0] == {"type": "meta", "format": "broadcaster-export", "version": 1}
    assert lines[-1]["type"] == "end"
    types = [x["type"] for x in lines[1:-1]]
    assert types == sorted(types, key=["announcement", "update", "delivery", "subscriber", "subscriber_endpoint",
                                       "sms_opt_out", "audit"].index)
    delivery = next(x for x in lines if x["type"] == "delivery")
    assert {"events", "items", "state", "attempts", "receipt", "last_error"} <= set(delivery)
    assert delivery["events"][0]["to_state"] == "pending"
    assert lines[-1]["counts"]["delivery"] == types.count("delivery")
    assert not any(x["type"] in ("token", "idempotency_key") for x in lines)
    ledger.close()


def test_import_refuses_a_ledger_that_is_not_empty(ledger_url, tmp_path):
    data = export_text(populate(f"sqlite:///{tmp_path}/a.db"))
    target = Ledger.open(ledger_url)
    subs.add(target, "news", "someone@example.test", actor="test")
    with pytest.raises(Conflict, match="not empty"):
        export.import_lines(target, io.StringIO(data))
    assert export.export_lines(target) is not None and len(target.list_announcements()) == 0
    target.close()


@pytest.mark.parametrize("holds", ["endpoint", "opt_out"])
def test_a_ledger_holding_only_an_endpoint_or_an_opt_out_is_not_empty(ledger_url, tmp_path, holds):
    data = export_text(populate(f"sqlite:///{tmp_path}/a.db"))
    target = Ledger.open(ledger_url)
    if holds == "endpoint":
        url = "https://elsewhere.example.test/h"
        EndpointStore(target).request(EndpointRequest("news", "generic", url, hashlib.sha256(url.encode()).hexdigest(),
                                                      None, ()), stale_before=0)
    else:
        OptOutStore(target).opt_out("+15559990000", channel="sms", reason="STOP")
    with pytest.raises(Conflict, match="not empty"):
        export.import_lines(target, io.StringIO(data))
    assert target.list_announcements() == []
    target.close()


def test_an_export_made_before_endpoints_and_opt_outs_were_exported_still_imports(ledger_url, tmp_path):
    lines = [json.loads(x) for x in export_text(populate(f"sqlite:///{tmp_path}/a.db")).splitlines()]
    old = [x for x in lines if x["type"] not in ("subscriber_endpoint", "sms_opt_out")]
    old[-1]["counts"] = {k: v for k, v in old[-1]["counts"].items() if k not in ("subscriber_endpoint", "sms_opt_out")}
    target = Ledger.open(ledger_url)
    counts = export.import_lines(target, [json.dumps(x) + "\n" for x in old])
    assert counts["subscriber_endpoint"] == counts["sms_opt_out"] == 0 and counts["subscriber"] == 3
    target.close()


@pytest.mark.parametrize("mangle, message", [
    (lambda lines: lines[:-1], "without its end line"),
    (lambda lines: lines[: len(lines) // 2], "without its end line"),
    (lambda lines: lines[1:], "not a broadcaster export"),
    (lambda lines: [*lines[:3], "{not json\n", *lines[3:]], "line 4: not JSON"),
    (lambda lines: [*lines[:2], json.dumps({"type": "martian"}) + "\n", *lines[2:]], "unknown type"),
    (lambda lines: [lines[0].replace('"version":1', '"version":99'), *lines[1:]], "version 99"),
    (lambda lines: lines[:-2] + lines[-1:], "end line counts"),
    (lambda lines: lines[:1] + lines[2:-1] + [lines[-1].replace('"announcement":3', '"announcement":2')],
     "do not fit together"),
])
def test_a_damaged_file_imports_nothing(ledger_url, tmp_path, mangle, message):
    data = export_text(populate(f"sqlite:///{tmp_path}/a.db")).splitlines(keepends=True)
    target = Ledger.open(ledger_url)
    with pytest.raises(InvalidRequest, match=message):
        export.import_lines(target, mangle(data), batch=2)
    assert export.is_empty(target)  # all or nothing, even after several batches were written
    target.close()


def test_a_row_without_a_required_column_names_its_line(ledger_url, tmp_path):
    lines = export_text(populate(f"sqlite:///{tmp_path}/a.db")).splitlines(keepends=True)
    n, first = next((n, json.loads(x)) for n, x in enumerate(lines) if '"type":"update"' in x)
    del first["announcement_id"]
    lines[n] = json.dumps(first) + "\n"
    target = Ledger.open(ledger_url)
    with pytest.raises(InvalidRequest, match=f"line {n + 1}: update lacks 'announcement_id'"):
        export.import_lines(target, lines)
    assert export.is_empty(target)
    target.close()


def test_an_export_made_before_the_once_key_gets_it_on_import(ledger_url, tmp_path):
    lines = export_text(populate(f"sqlite:///{tmp_path}/a.db")).splitlines(keepends=True)
    old = [json.dumps({k: v for k, v in json.loads(x).items() if k != "once_key"}) + "\n" for x in lines]
    target = Ledger.open(ledger_url)
    export.import_lines(target, old)
    assert "".join(lines) == export_text(target)
    target.close()


# ---------------------------------------------------------------- subscribers CSV


def csv_with_bad_rows(n: int, bad_every: int, seed: int = 7) -> tuple[str, list[int]]:
    """``n`` data rows; every ``bad_every``-th is wrong in some way. Returns (text, bad line numbers)."""
    rnd = random.Random(seed)
    lines = ["address,name,components,marketing"]
    bad: list[int] = []
    problems = ["not-an-address,X,,true", "ok{i}@example.test,X,,maybe", "ok{i}@example.test,X,a;b",  # 3 fields
                "ok{i}@example.test,\"x\"\"y\",,true,extra", "dup@example.test,,,true"]
    lines.append("dup@example.test,,,true")
    for i in range(1, n):
        line_no = len(lines) + 1
        if (i + 1) % bad_every == 0:
            lines.append(rnd.choice(problems).format(i=i))
            bad.append(line_no)
        else:
            comps = ";".join(rnd.sample(["api", "db", "web", "cdn"], rnd.randint(0, 2)))
            lines.append(f"user{i}@example.test,User {i},{comps},{rnd.choice(['true', 'false'])}")
    return "\n".join(lines) + "\n", bad


def test_ten_thousand_rows_with_twenty_bad_ones(ledger_url, tmp_path):
    text, bad = csv_with_bad_rows(10_000, 500)
    assert len(bad) == 20
    ledger = Ledger.open(ledger_url)
    report = export.import_subscribers_csv(ledger, io.StringIO(text), list_name="news")
    assert report.inserted == 9_980 and report.updated == 0
    assert [line for line, _ in report.errors] == bad
    assert len(subs.list_subscribers(ledger, list_name="news", limit=20_000)) == 9_980

    # export → import into a fresh ledger → export gives identical files
    out1 = io.StringIO()
    export.export_subscribers_csv(ledger, out1, list_name="news")
    fresh = Ledger.open(f"sqlite:///{tmp_path}/fresh.db")
    again = export.import_subscribers_csv(fresh, io.StringIO(out1.getvalue()), list_name="news")
    assert again.errors == [] and again.inserted == 9_980
    out2 = io.StringIO()
    export.export_subscribers_csv(fresh, out2, list_name="news")
    assert out2.getvalue() == out1.getvalue()
    ledger.close()
    fresh.close()


def test_csv_round_trip_keeps_every_field(ledger_url, tmp_path):
    ledger = populate(f"sqlite:///{tmp_path}/a.db")
    out1 = io.StringIO()
    export.export_subscribers_csv(ledger, out1)
    fresh = Ledger.open(ledger_url)
    assert export.import_subscribers_csv(fresh, io.StringIO(out1.getvalue())).errors == []
    before = {(s.list, s.address): s for s in subs.list_subscribers(ledger)}
    after = {(s.list, s.address): s for s in subs.list_subscribers(fresh)}
    assert set(before) == set(after)
    for key, s in before.items():
        a = after[key]
        assert (a.name, a.components, a.state, a.marketing) == (s.name, s.components, s.state, s.marketing)
        for f in ("created_at", "confirmed_at", "unsubscribed_at"):
            x, y = getattr(s, f), getattr(a, f)
            assert (x is None and y is None) or abs(x - y) < 1e-6
    out2 = io.StringIO()
    export.export_subscribers_csv(fresh, out2)
    assert out2.getvalue() == out1.getvalue()
    ledger.close()
    fresh.close()


def test_line_numbers_count_multi_line_fields_and_blank_lines(ledger_url):
    text = ('address,name\n'
            'a@example.test,"two\nlines"\n'
            '\n'
            'broken,x\n'
            'b@example.test,"three\n\nlines"\n'
            'also broken,y\n'
            'c@example.test,one line\n')
    ledger = Ledger.open(ledger_url)
    report = export.import_subscribers_csv(ledger, io.StringIO(text), list_name="news")
    # a name is one line (it goes into mail headers): multi-line cells are reported where they start
    assert [line for line, _ in report.errors] == [2, 5, 6, 9]
    assert report.errors[0][1] == "name: must be one line (no line breaks or tabs)"
    assert report.inserted == 1
    assert subs.find(ledger, "news", "c@example.test").name == "one line"
    ledger.close()


def test_import_updates_existing_rows_and_checks_the_list(ledger_url):
    ledger = Ledger.open(ledger_url)
    subs.add(ledger, "news", "a@example.test", state="pending", actor="test")
    text = "list,address,state\nnews,A@example.test,confirmed\nother,b@example.test,confirmed\n,c@example.test,\n"
    report = export.import_subscribers_csv(ledger, io.StringIO(text), list_name="news")
    assert (report.inserted, report.updated) == (1, 1)
    assert report.errors == [(3, "list is 'other' but --list is 'news'")]
    assert subs.find(ledger, "news", "a@example.test").state == "confirmed"
    assert subs.find(ledger, "news", "c@example.test").state == "confirmed"
    no_list = export.import_subscribers_csv(ledger, io.StringIO("address\nd@example.test\n"))
    assert no_list.errors == [(2, "no list: give a list column or --list")]
    with pytest.raises(InvalidRequest, match="unknown: email"):
        export.import_subscribers_csv(ledger, io.StringIO("email\nx@example.test\n"), list_name="news")
    ledger.close()


# ---------------------------------------------------------------- the commands


def test_cli_commands(tmp_path):
    import broadcaster.cli.data  # noqa: F401 - registers the commands on main
    from broadcaster.cli import main

    src = f"sqlite:///{tmp_path}/src.db"
    populate(src).close()
    cfg = tmp_path / "a.yaml"
    cfg.write_text(f"ledger: {src}\n")
    runner = CliRunner()
    dump = tmp_path / "all.jsonl"
    r = runner.invoke(main, ["--config", str(cfg), "export", "--output", str(dump)])
    assert r.exit_code == 0, r.output
    cfg2 = tmp_path / "b.yaml"
    cfg2.write_text(f"ledger: sqlite:///{tmp_path}/dst.db\n")
    r = runner.invoke(main, ["--config", str(cfg2), "import", str(dump)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["--config", str(cfg2), "export"])
    assert r.exit_code == 0 and r.stdout == dump.read_text()
    r = runner.invoke(main, ["--config", str(cfg2), "import", str(dump)])
    assert r.exit_code == 1 and "not empty" in r.stderr

    csv_file = tmp_path / "in.csv"
    csv_file.write_text("address,name\nnew@example.test,New\nbad-address,X\n")
    r = runner.invoke(main, ["--config", str(cfg2), "subscribers", "import", str(csv_file), "--list", "news"])
    assert r.exit_code == 1
    assert f"{csv_file}:3: address: not an email address" in r.stderr and "1 stored" in r.stderr
    r = runner.invoke(main, ["--config", str(cfg2), "subscribers", "export", "--list", "news"])
    assert r.exit_code == 0
    assert r.stdout.splitlines()[0] == ",".join(export.CSV_FIELDS)
    assert [ln.split(",")[1] for ln in r.stdout.splitlines()[1:]] == [
        "alice@example.test", "bob@example.test", "new@example.test"]


def test_an_imported_subscriber_has_no_marketing_consent_unless_a_column_or_flag_gives_it(tmp_path):
    """The outside trial: ``alice@example.com,customers,Alice`` was imported with marketing=true."""
    from broadcaster.cli import main

    cfg = tmp_path / "a.yaml"
    cfg.write_text(f"ledger: sqlite:///{tmp_path}/subs.db\n")
    runner = CliRunner()
    r = runner.invoke(main, ["--config", str(cfg), "subscribers", "import", "-"],
                      input="address,list,name\nalice@example.com,customers,Alice\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["--config", str(cfg), "subscribers", "import", "-"],
                      input="address,list,marketing\nyes@example.com,customers,true\nno@example.com,customers,false\n"
                            "blank@example.com,customers,\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["--config", str(cfg), "subscribers", "import", "--marketing", "-"],
                      input="address,list,marketing\nall@example.com,customers,\nrefused@example.com,customers,no\n")
    assert r.exit_code == 0, r.output
    ledger = Ledger.open(f"sqlite:///{tmp_path}/subs.db")
    consent = {s.address: s.marketing for s in subs.list_subscribers(ledger, list_name="customers")}
    ledger.close()
    assert consent == {"alice@example.com": False, "yes@example.com": True, "no@example.com": False,
                       "blank@example.com": False, "all@example.com": True, "refused@example.com": False}
    help_text = runner.invoke(main, ["subscribers", "import", "--help"]).output
    assert "never assumed" in help_text and "--marketing" in help_text
