"""The CLI client against a real API over HTTP: exit codes 0/1/2/3, --json, stdin bodies, --wait."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from broadcaster.cli import main
from tests.cli.live import settle
from tests.conftest import free_port
from tests.support.ledger import updates_of


def cli(api, *args, input=None, **env):
    return CliRunner().invoke(main, list(args), env=api.env(**env), input=input, catch_exceptions=False)


def post_json(api, *args, input=None):
    res = cli(api, "post", "--json", *args, input=input)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# ---------------------------------------------------------------- post


def test_post_json_is_durable_and_carries_a_generated_idempotency_key(api):
    out = post_json(api, "--kind", "incident", "--title", "Checkout errors", "--body", "We are looking.",
                    "--severity", "major", "--component", "checkout")
    assert out["idempotency_key"] and len(out["idempotency_key"]) == 36
    ann = api.runtime.ledger.get_announcement(out["id"])
    assert (ann.title, ann.severity, ann.components) == ("Checkout errors", "major", ("Checkout",))
    assert sorted(c for _, c in api.wait_enqueued(2)) == ["hook-a", "hook-b"]


def test_component_state_on_the_command_line(api):
    out = post_json(api, "--kind", "incident", "--title", "Checkout down", "--severity", "minor",
                    "--component", "checkout=major_outage", "--component", "checkout")
    ann = api.runtime.ledger.get_announcement(out["id"])
    assert ann.components == ("Checkout",) and ann.component_states == {"Checkout": "major_outage"}
    res = cli(api, "post", "--kind", "incident", "--title", "x", "--component", "checkout=melting")
    assert res.exit_code != 0 and "melting" in res.output  # not a state: the API refuses the name


def test_an_update_sets_a_component_state_on_the_command_line(api):
    out = post_json(api, "--kind", "incident", "--title", "Checkout down", "--severity", "major",
                    "--component", "checkout=major_outage")
    res = cli(api, "update", out["id"], "--status", "identified", "--body", "Found it.",
              "--component", "checkout=degraded_performance")
    assert res.exit_code == 0, res.output
    (u,) = updates_of(api.runtime.ledger, out["id"])
    assert u.component_states == {"Checkout": "degraded_performance"}
    assert api.runtime.ledger.get_announcement(out["id"]).component_states == {"Checkout": "degraded_performance"}
    res = cli(api, "update", out["id"], "--status", "monitoring", "--body", "x", "--component", "checkout")
    assert res.exit_code == 2 and "NAME=STATE" in res.output  # a bare name says nothing on an update
    res = cli(api, "update", out["id"], "--status", "monitoring", "--body", "x", "--component", "nope=major_outage")
    assert res.exit_code != 0 and "unknown component(s) 'nope'" in res.output
    assert len(updates_of(api.runtime.ledger, out["id"])) == 1


def test_template_and_next_update_on_the_command_line(api):
    """Issue 16 item 8: --template fills what is left out, --next-update promises the next update
    (said at the end of the body), and an update takes its text from the template's phase."""
    out = post_json(api, "--kind", "incident", "--template", "checkout", "--next-update", "30m")
    ann = api.runtime.ledger.get_announcement(out["id"])
    assert (ann.title, ann.severity, ann.components) == ("Checkout is failing", "major", ("Checkout",))
    assert ann.body.startswith("Payments fail; we are looking.\n\nNext update by ")
    assert out["next_update_at"] and ann.next_update_at is not None
    res = cli(api, "update", out["id"], "--status", "resolved", "--template", "checkout")
    assert res.exit_code == 0, res.output
    (u,) = updates_of(api.runtime.ledger, out["id"])
    assert u.body == "Payments work again." and api.runtime.ledger.get_announcement(out["id"]).next_update_at is None
    res = cli(api, "post", "--kind", "incident")
    assert res.exit_code == 2 and "--title" in res.output
    res = cli(api, "post", "--kind", "incident", "--template", "nope")
    assert res.exit_code != 0 and "known incident templates: checkout" in res.output


def test_body_from_stdin(api):
    out = post_json(api, "--kind", "notice", "--title", "Read me", "--body-file", "-",
                    input="line one\n\n- a *list*\n")
    assert api.runtime.ledger.get_announcement(out["id"]).body == "line one\n\n- a *list*"


def test_body_from_file(api, tmp_path):
    f = tmp_path / "body.md"
    f.write_text("from a file", encoding="utf-8")
    out = post_json(api, "--kind", "notice", "--title", "File", "--body-file", str(f))
    assert api.runtime.ledger.get_announcement(out["id"]).body == "from a file"


def test_same_idempotency_key_posts_once(api):
    first = post_json(api, "--kind", "deploy", "--title", "v1.2.3", "--idempotency-key", "pipeline-42")
    again = post_json(api, "--kind", "deploy", "--title", "v1.2.3", "--idempotency-key", "pipeline-42")
    assert first["id"] == again["id"]
    assert len(api.runtime.ledger.list_announcements()) == 1


def test_human_output_names_the_announcement(api):
    res = cli(api, "post", "--kind", "notice", "--title", "Hello")
    assert res.exit_code == 0
    assert res.stdout.startswith("accepted ann_")


# ---------------------------------------------------------------- --wait and exit codes 0 / 1


def test_wait_all_delivered_exits_0_with_progress_lines(api):
    api.outcomes.update({"hook-a": "delivered", "hook-b": "delivered"})
    res = cli(api, "post", "--kind", "incident", "--title", "DB down", "--wait", "--timeout", "20",
              "--interval", "0.1")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert any("hook-a" in line and "pending" in line for line in lines)
    assert any("hook-a" in line and "delivered" in line and "https://example.test/hook-a/" in line for line in lines)
    assert any("hook-b" in line and "delivered" in line for line in lines)
    assert lines[-1] == "overall: delivered"


def test_quiet_prints_only_the_id_for_scripts(api):
    api.outcomes.update({"hook-a": "delivered", "hook-b": "delivered"})
    res = cli(api, "post", "--kind", "incident", "--title", "x", "--quiet", "--wait", "--timeout", "20",
              "--interval", "0.1")
    assert res.exit_code == 0, res.output
    [line] = res.stdout.splitlines()
    assert line.startswith("ann_") and api.runtime.ledger.get_announcement(line).title == "x"


def test_wait_with_a_failed_channel_exits_1(api):
    api.outcomes.update({"hook-a": "delivered", "hook-b": "failed"})
    res = cli(api, "post", "--kind", "incident", "--title", "DB down", "--wait", "--timeout", "20",
              "--interval", "0.1", "--json")
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    states = {d["channel"]: d["state"] for d in out["deliveries"]}
    assert states == {"hook-a": "delivered", "hook-b": "failed"}, "the top level is the final state"
    assert out["exit_code"] == 1 and out["overall"] == "attention"
    assert {d["state"] for d in out["accepted"]["deliveries"]} == {"pending"}, "the 202 answer, kept apart"


def test_wait_with_an_unknown_channel_exits_1(api):
    api.outcomes.update({"hook-a": "unknown", "hook-b": "delivered"})
    res = cli(api, "post", "--kind", "incident", "--title", "x", "--wait", "--timeout", "20", "--interval", "0.1")
    assert res.exit_code == 1
    assert "unknown" in res.stdout


def test_wait_timeout_exits_1_and_names_the_stragglers(api):
    res = cli(api, "post", "--kind", "incident", "--title", "x", "--wait", "--timeout", "0.5", "--interval", "0.1")
    assert res.exit_code == 1
    assert "timed out" in res.stderr and "hook-a" in res.stderr


def test_status_reports_failed_channel_with_exit_1(api):
    out = post_json(api, "--kind", "incident", "--title", "x")
    for d in api.runtime.ledger.deliveries_of(out["id"]):
        settle(api.runtime, d.id, "failed" if d.channel == "hook-b" else "delivered", error="nope")
    res = cli(api, "status", out["id"])
    assert res.exit_code == 1
    assert "hook-b" in res.stdout and "failed" in res.stdout and "overall: attention" in res.stdout
    res = cli(api, "status", out["id"], "--json")
    assert json.loads(res.stdout)["id"] == out["id"]


# ---------------------------------------------------------------- status reads true


def test_status_of_a_retracted_announcement_is_not_delivered(api):
    out = post_json(api, "--kind", "incident", "--title", "Wrong post")
    assert cli(api, "retract", out["id"]).exit_code == 0
    res = cli(api, "status", out["id"])
    assert res.exit_code == 0, res.output
    assert "overall: retracted" in res.stdout and "overall: delivered" not in res.stdout


def test_status_of_a_cancelled_announcement_says_cancelled(api):
    out = post_json(api, "--kind", "notice", "--title", "Later", "--publish-at", "2999-01-01T00:00:00Z")
    assert "overall: scheduled (publish at 2999-01-01T00:00:00" in cli(api, "status", out["id"]).stdout
    assert cli(api, "cancel", out["id"]).exit_code == 0
    assert "overall: cancelled" in cli(api, "status", out["id"]).stdout


def test_a_confirmed_delivery_no_longer_shows_its_old_error(api):
    out = post_json(api, "--kind", "incident", "--title", "x")
    for d in api.runtime.ledger.deliveries_of(out["id"]):
        settle(api.runtime, d.id, "unknown", error="timeout after the request was sent")
    before = cli(api, "status", out["id"])
    assert before.exit_code == 1 and "timeout after the request was sent" in before.stdout
    for d in api.runtime.ledger.deliveries_of(out["id"]):
        assert cli(api, "confirm", d.id).exit_code == 0
    after = cli(api, "status", out["id"])
    assert after.exit_code == 0, after.output
    assert "overall: delivered" in after.stdout
    assert "timeout after the request was sent" not in after.stdout


def test_status_labels_each_block_of_deliveries_with_what_it_carries(api):
    out = post_json(api, "--kind", "incident", "--title", "Search is slow")
    upd = json.loads(cli(api, "update", out["id"], "--status", "identified", "--body", "Found it.", "--json").stdout)
    lines = cli(api, "status", out["id"]).stdout.splitlines()
    assert "announcement:" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith(f"update {upd['id']} (identified, "))
    assert header > lines.index("announcement:")
    block = lines[header + 1:]
    assert block[0].startswith("CHANNEL") and {row.split()[0] for row in block[1:3]} == {"hook-a", "hook-b"}
    assert all(upd_row.split()[-1] in {d["id"] for d in upd["deliveries"]} for upd_row in block[1:3])


def test_a_held_promotion_says_which_incident_holds_it(tmp_path):
    from tests.cli.conftest import CHANNELS, LiveApi
    from tests.cli.live import make_settings, memory_runtime, serve

    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", CHANNELS,
                             routes={"incident": ["hook-a"], "promotion": ["hook-b"]},
                             quiet_during_incidents=["promotion"])
    rt = memory_runtime(settings)
    with serve(settings, rt) as (url, app):
        token, _ = app.state.tokens.create("ops", admin=True, actor="test")
        live = LiveApi(url=url, token=token, deploy_token=token, runtime=rt)
        incident = post_json(live, "--kind", "incident", "--title", "Checkout down")
        promo = post_json(live, "--kind", "promotion", "--title", "Spring sale")
        res = cli(live, "status", promo["id"])
        assert res.exit_code == 0, res.output
        assert f'overall: scheduled (held while incident {incident["id"]} "Checkout down" is open)' in res.stdout
        assert f"held: incident {incident['id']} is open" in res.stdout
        data = json.loads(cli(live, "status", promo["id"], "--json").stdout)
        assert data["held_by"] == [{"id": incident["id"], "title": "Checkout down"}]
    rt.ledger.close()


# ---------------------------------------------------------------- exit code 2


def test_missing_token_is_a_usage_error(api):
    res = CliRunner().invoke(main, ["list"], env={"BROADCASTER_URL": api.url, "BROADCASTER_TOKEN": ""})
    assert res.exit_code == 2
    assert "BROADCASTER_TOKEN" in res.stderr


def test_bad_flag_is_a_usage_error(api):
    assert cli(api, "post", "--kind", "party", "--title", "x").exit_code == 2
    assert cli(api, "post", "--kind", "notice", "--title", "x", "--body", "a", "--body-file", "-",
               input="b").exit_code == 2


def test_validation_error_from_the_api_is_exit_2_and_names_the_field(api):
    res = cli(api, "post", "--kind", "incident", "--title", "x", "--channel", "nope")
    assert res.exit_code == 2
    assert "422" in res.stderr and "nope" in res.stderr


def test_bad_token_is_exit_2(api):
    res = cli(api, "list", BROADCASTER_TOKEN="bct_wrong")
    assert res.exit_code == 2
    assert "401" in res.stderr
    assert "bct_wrong" not in res.output


def test_scoped_token_refused_is_exit_2(api):
    res = cli(api, "post", "--kind", "incident", "--title", "x", BROADCASTER_TOKEN=api.deploy_token)
    assert res.exit_code == 2
    assert "403" in res.stderr


# ---------------------------------------------------------------- exit code 3


def test_unreachable_server_is_exit_3():
    url = f"http://127.0.0.1:{free_port()}"
    res = CliRunner().invoke(main, ["post", "--kind", "notice", "--title", "x", "--api-url", url, "--token", "t"])
    assert res.exit_code == 3
    assert "cannot reach" in res.stderr


def test_503_is_exit_3(api, monkeypatch):
    from broadcaster.errors import LedgerUnavailable

    def down(*a, **k):
        raise LedgerUnavailable("the ledger database is unavailable")

    monkeypatch.setattr(api.runtime.ledger, "list_announcements", down)
    res = cli(api, "list")
    assert res.exit_code == 3
    assert "503" in res.stderr


# ---------------------------------------------------------------- the other commands


def test_update_list_retry_retract_and_preview(api):
    out = post_json(api, "--kind", "incident", "--title", "Search is slow")
    ann_id = out["id"]
    failed = next(d for d in api.runtime.ledger.deliveries_of(ann_id) if d.channel == "hook-a")
    settle(api.runtime, failed.id, "failed", error="boom")

    res = cli(api, "update", ann_id, "--status", "resolved", "--body-file", "-", input="All good now.")
    assert res.exit_code == 0, res.output
    assert api.runtime.ledger.get_announcement(ann_id).status == "resolved"
    assert [u.body for u in updates_of(api.runtime.ledger, ann_id)] == ["All good now."]

    res = cli(api, "list", "--kind", "incident")
    assert res.exit_code == 0 and ann_id in res.stdout and "Search is slow" in res.stdout
    listed = json.loads(cli(api, "list", "--json").stdout)
    assert [i["id"] for i in listed["items"]] == [ann_id]

    res = cli(api, "retry", failed.id)
    assert res.exit_code == 0, res.output
    assert str(api.runtime.ledger.get_delivery(failed.id).state) == "pending"

    res = cli(api, "retract", ann_id, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["id"] == ann_id
    assert api.runtime.ledger.get_announcement(ann_id).retracted_at is not None

    res = cli(api, "preview", "--kind", "incident", "--title", "Hello", "--body", "World", "--json")
    assert res.exit_code == 0, res.output
    chans = {c["channel"]: c for c in json.loads(res.stdout)["channels"]}
    assert chans["hook-a"]["lengths"] == [len("Hello\n\nWorld")]
    human = cli(api, "preview", "--kind", "incident", "--title", "Hello")
    assert "== hook-a" in human.stdout


def test_update_of_unknown_announcement_is_exit_2(api):
    res = cli(api, "update", "ann_nope", "--status", "resolved", "--body", "x")
    assert res.exit_code == 2
    assert "404" in res.stderr


@pytest.mark.parametrize("args", [["update", "x", "--status", "resolved"]])
def test_update_needs_text(api, args):
    assert cli(api, *args).exit_code == 2


# ---------------------------------------------------------------- maintenance windows (issue 13, item 14)


def test_post_creates_a_maintenance_window_and_previews_state_it(api):
    out = post_json(api, "--kind", "maintenance", "--title", "Database upgrade", "--body", "Writes pause briefly.",
                    "--starts-at", "2026-11-30T04:30:00Z", "--ends-at", "2026-11-30T06:00")
    ann = api.runtime.ledger.get_announcement(out["id"])
    assert (ann.window.starts_at, ann.window.ends_at) == (1796013000.0, 1796018400.0)  # a zone-less time is UTC
    res = cli(api, "preview", "--kind", "maintenance", "--title", "Database upgrade", "--starts-at",
              "2026-11-30T04:30Z", "--ends-at", "2026-11-30T06:00+00:00")
    assert res.exit_code == 0, res.output
    assert res.stdout.count("When: 30 Nov 2026, 04:30\u201306:00 UTC") == 2  # both channels' text


@pytest.mark.parametrize("args, flag, words", [
    (["--starts-at", "tomorrow 4am", "--ends-at", "2026-11-30T06:00Z"], "--starts-at", "ISO 8601"),
    (["--starts-at", "2026-11-30T04:30Z", "--ends-at", "2026-13-30T06:00Z"], "--ends-at", "ISO 8601"),
    (["--starts-at", "2026-11-30T06:00Z", "--ends-at", "2026-11-30T06:00Z"], "--ends-at", "must be after --starts-at"),
    (["--starts-at", "2026-11-30T06:00Z", "--ends-at", "2026-11-30T05:00Z"], "--ends-at", "must be after --starts-at"),
    (["--starts-at", "2026-11-30T06:00Z"], "--ends-at", "needs both"),
    (["--kind", "incident", "--starts-at", "2026-11-30T04:00Z", "--ends-at", "2026-11-30T06:00Z"], "--kind maintenance",
     "use them with"),
])
def test_a_bad_window_is_a_clear_usage_error_and_posts_nothing(api, args, flag, words):
    kind = [] if "--kind" in args else ["--kind", "maintenance"]
    res = cli(api, "post", *kind, "--title", "Database upgrade", *args)
    assert res.exit_code == 2, res.output
    assert flag in res.output and words in res.output and "Traceback" not in res.output
    assert api.runtime.ledger.list_announcements() == []


def test_cancel_window_tells_the_channels(api):
    out = post_json(api, "--kind", "maintenance", "--title", "Database upgrade",
                    "--starts-at", "2099-11-30T04:30Z", "--ends-at", "2099-11-30T06:00Z")
    for d in api.runtime.ledger.deliveries_of(out["id"]):
        settle(api.runtime, d.id, "delivered")
    res = cli(api, "cancel-window", out["id"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"window cancelled: {out['id']}") and "told_channels 2" in res.stdout
    assert api.runtime.ledger.get_announcement(out["id"]).status == "cancelled"


# ---------------------------------------------------------------- ids become one path segment


@pytest.mark.parametrize("args", [["status", "ann_../../x"], ["retract", "ann_../x"], ["update", "a/b", "--status",
                                  "resolved", "--body", "b"], ["cancel", ".."], ["drafts", "show", "d/../x"],
                                  ["approvals", "approve", "../announcements"], ["retry", "dlv/1"]])
def test_an_id_with_a_slash_is_a_usage_error_before_any_request(args):
    """``broadcaster status 'ann_../../x'`` used to request ``/api/v1/x``. Nothing listens on the
    port given: a request would exit 3 (unreachable), a usage error exits 2 first."""
    res = CliRunner().invoke(main, [*args, "--api-url", f"http://127.0.0.1:{free_port()}", "--token", "t"])
    assert res.exit_code == 2, res.output
    assert "is not an id" in res.output


def test_an_id_is_quoted_into_its_path_segment(api):
    """Characters that mean something in a URL (``?``, ``#``, ``%``) stay part of the id: the API
    sees the whole id (and refuses its shape) instead of ``ann_x`` (404 no announcement 'ann_x')."""
    for weird in ("ann_x?y=1", "ann_x#frag", "ann_%2e%2e"):
        res = cli(api, "status", weird)
        assert res.exit_code == 2, res.output
        assert "422 ann_id" in res.stderr and "404" not in res.stderr, res.stderr


# ---------------------------------------------------------------- retract says what is still visible


def _run_retractions(api, stop):
    """What a worker does with each retract task: engine.retract_one (the ledger decides)."""
    import time

    from broadcaster import engine
    from tests.support.runtime import wakeups

    done = set()
    while not stop.is_set():
        for delivery_id, _ in list(wakeups(api.runtime).retractions):
            if delivery_id not in done:
                done.add(delivery_id)
                engine.retract_one(api.runtime, delivery_id)
        time.sleep(0.02)


def test_retract_wait_says_a_webhook_post_is_still_visible_and_exits_1(api):
    """Generic webhooks (like e-mail and Slack) cannot delete what they delivered: `retract`
    once marked them retracted and the docs said "all withdrawn". Now each says it is still
    visible — in `retract --wait` (exit 1), `status`, and the API's delivery."""
    import threading

    api.outcomes.update({"hook-a": "delivered", "hook-b": "delivered"})
    res = cli(api, "post", "--kind", "incident", "--title", "Wrong post", "--quiet", "--wait", "--timeout", "20",
              "--interval", "0.1")
    assert res.exit_code == 0, res.output
    ann_id = res.stdout.strip()
    stop = threading.Event()
    worker = threading.Thread(target=_run_retractions, args=(api, stop), daemon=True)
    worker.start()
    try:
        res = cli(api, "retract", ann_id, "--wait", "--timeout", "20", "--interval", "0.1")
    finally:
        stop.set()
        worker.join(5)
    assert res.exit_code == 1, res.output
    note = "cannot be deleted on generic webhook: still visible to readers"
    assert any("hook-a" in line and "retracted" in line and note in line for line in res.stdout.splitlines())
    assert "not withdrawn — still visible to readers on: hook-a, hook-b" in res.stderr
    status = cli(api, "status", ann_id)
    assert note in status.stdout and "overall: retracted" in status.stdout
    data = json.loads(cli(api, "status", ann_id, "--json").stdout)
    assert {d["channel"]: (d["state"], d["current_error"]) for d in data["deliveries"]} == {
        "hook-a": ("retracted", note), "hook-b": ("retracted", note)}


def test_retract_wait_exits_0_when_nothing_is_left_up(api):
    out = post_json(api, "--kind", "notice", "--title", "Later", "--publish-at", "2999-01-01T00:00:00Z")
    res = cli(api, "retract", out["id"], "--wait", "--timeout", "20", "--interval", "0.1", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["exit_code"] == 0 and data["still_visible"] == []
    assert {d["state"] for d in data["deliveries"]} == {"cancelled"}


def test_a_post_over_the_tokens_rate_limit_waits_its_retry_after_and_goes_through_once(tmp_path):
    """A real API whose token budget is used up: the CLI waits the Retry-After, says so, sends
    the same post again and it is accepted, once (exit 4 when it never is: test_cli_rate_limit)."""
    import httpx

    from tests.cli.live import make_settings, memory_runtime, serve

    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/a"}},
                             api={"rate_limit": "2/4s", "anonymous_rate_limit": "100/1m"})
    rt = memory_runtime(settings)
    with serve(settings, rt) as (url, app):
        token, _ = app.state.tokens.create("ops", admin=True, actor="test")
        codes = [httpx.get(f"{url}/api/v1/channels", headers={"Authorization": f"Bearer {token}"}).status_code
                 for _ in range(3)]
        assert codes[-1] == 429, codes
        res = CliRunner().invoke(main, ["post", "--kind", "notice", "--title", "Later", "--idempotency-key", "k-1",
                                        "--quiet"],
                                 env={"BROADCASTER_URL": url, "BROADCASTER_TOKEN": token}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "rate limited by the server; waiting" in res.stderr and "(same Idempotency-Key)" in res.stderr
    assert [a.id for a in rt.ledger.list_announcements()] == [res.stdout.strip()]
    rt.ledger.close()


def test_status_shows_why_a_delivery_is_unknown(api):
    """The outside trial: an ``unknown`` delivery with an empty NOTE column. The worker's reason
    is its error (test_engine_attempt); a row recorded without one still says what to do."""
    out = post_json(api, "--kind", "incident", "--title", "Maybe posted")
    hook_a, hook_b = sorted(out["deliveries"], key=lambda d: d["channel"])
    settle(api.runtime, hook_a["id"], "unknown", error="slack: read timed out; it may have been posted, so it is "
                                                       "not re-sent — check the channel")
    settle(api.runtime, hook_b["id"], "unknown")
    res = cli(api, "status", out["id"])
    assert res.exit_code == 1
    rows = {line.split()[0]: line for line in res.stdout.splitlines() if line.startswith("hook-")}
    assert "read timed out; it may have been posted" in rows["hook-a"]
    assert (f"may have been posted: check hook-b, then `broadcaster confirm {hook_b['id']}` (it is there) or "
            f"`broadcaster retry {hook_b['id']}`") in rows["hook-b"]
