"""`broadcaster verify` and the verify page never call tampered text genuine; revocation and
retraction reach readers at once.

Everything goes through the real parts: posts are rendered by each channel kind's own
``render``, the status site is written by the statuspage channel into a directory, and
``broadcaster`` runs as a CLI (click's runner) against that directory. The verify page's
JavaScript text rules run in node (or headless Chromium) over the same table as the Python.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from broadcaster import signing
from broadcaster.models import Receipt
from tests.conftest import unavailable
from tests.support.signed_site import (
    ALL_CHANNELS,
    ANN_ID,
    BODY,
    NOW,
    PAGE,
    UPDATE,
    Setup,
    announcement,
    cli,
    mastodon_text,
    reader_copy,
    verify_text,
    x_thread,
)


@pytest.fixture
def system(tmp_path) -> Setup:
    s = Setup(tmp_path)
    assert cli(s, "keys", "create", "--id", "k1").exit_code == 0
    s.publish_both()
    return s


# ---------------------------------------------------------------- genuine posts verify on every channel kind


@pytest.mark.parametrize("name", ALL_CHANNELS)
@pytest.mark.parametrize("which", ["announcement", "update"])
def test_the_genuine_post_of_every_channel_kind_is_ok(system, name, which):
    message = system.message() if which == "announcement" else system.message(update=UPDATE, thread=(Receipt("r"),))
    copied = reader_copy(system.channel(name), message)
    result = verify_text(system, copied)
    assert result.exit_code == 0, (copied, result.output)
    assert result.stdout.startswith("OK: "), result.output


def test_the_x_post_is_a_thread_and_verifies_only_whole(system):
    parts = system.channel("x-main").render(system.message()).parts
    assert len(parts) >= 3 and parts[0].startswith("Logins failing")  # the variant title, split in numbered parts
    assert verify_text(system, "\n\n".join(parts)).exit_code == 0
    assert verify_text(system, " ".join(parts)).exit_code == 0


def test_no_verify_link_under_a_post_that_is_never_signed(system):
    """Only the status site publishes signatures: a promotion routed elsewhere carries no link
    that would answer "not found" for our own post."""
    promo = announcement(kind="promotion", channels=("mastodon-main", "x-main"), variants={})
    assert "Verify:" not in "".join(system.channel("mastodon-main").render(system.message(promo)).parts)
    assert "Verify: " + PAGE in "".join(system.channel("mastodon-main").render(system.message()).parts)


# ---------------------------------------------------------------- tampered posts never do


TAMPERED = {
    "deletion marked with an ellipsis": (
        lambda s: mastodon_text(s).replace("Your data is safe: nothing was lost and no password was exposed.", "…"),
        "left-out text"),
    "words deleted without a mark": (
        lambda s: mastodon_text(s).replace(" and no password was exposed", ""), "differs from character"),
    "forged status prefix on the first post": (
        lambda s: "[Send BTC to 1Ab] " + mastodon_text(s), "differs from character"),
    "forged status prefix on an update": (
        lambda s: mastodon_text(s, update=True).replace("[Identified]", "[Send BTC to 1Ab]"), "differs from character"),
    "changed status": (
        lambda s: mastodon_text(s, update=True).replace("[Identified]", "[Resolved]"), "differs from character"),
    "verify link on a look-alike domain": (
        lambda s: mastodon_text(s).replace(PAGE, "https://status.example.com.verify-now.test/verify.html"),
        "differs from character"),
    "verify link on another scheme and host": (
        lambda s: mastodon_text(s).replace(PAGE, "http://status-example.com/verify.html"), "differs from character"),
    "thread without its last part": (
        lambda s: "\n".join(x_thread(s)[:-1]), "of the"),
    "thread without a middle part": (
        lambda s: "\n".join(x_thread(s)[:1] + x_thread(s)[2:]), "is missing"),
    "thread parts out of order": (
        lambda s: "\n".join([x_thread(s)[1], x_thread(s)[0], *x_thread(s)[2:]]), "not in order"),
    "thread without numbering, last part dropped": (
        lambda s: " ".join(p.rsplit(" (", 1)[0] for p in x_thread(s)[:-1]), "stops at character"),
    "extra text after the post": (
        lambda s: mastodon_text(s) + "\n\nSend 0.1 BTC to 1AbCdEf to keep your account.", "extra text"),
    "extra text inside the post": (
        lambda s: mastodon_text(s).replace("We will post again", "Reset your password at evil.test. We will post"),
        "differs from character"),
    "one changed character": (
        lambda s: mastodon_text(s).replace("30 minutes", "3O minutes"), "differs from character"),
    "the first post cut short by a channel": (
        lambda s: mastodon_text(s)[:200] + "…", "left-out text"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_text_is_not_genuine(system, case):
    make, why = TAMPERED[case]
    text = make(system)
    result = verify_text(system, text)
    first = result.stdout.splitlines()[0] if result.stdout else ""
    assert result.exit_code == 1, (case, result.output)
    assert first.startswith("NOT GENUINE: ") and why in first, (case, first)
    assert "VALID" not in first and not first.startswith("OK")


def test_the_answer_shows_where_the_text_differs(system):
    first = verify_text(system, mastodon_text(system).replace("30 minutes", "3O minutes")).stdout.splitlines()[0]
    at = signing.normalize(mastodon_text(system)).index("30 minutes") + 2
    assert f"differs from character {at}: it has \"3O minutes" in first and "where we signed \"30 minutes" in first


def test_a_link_elsewhere_is_not_ours_even_with_a_real_id(system):
    """The id in a phishing link finds the real announcement, and the link then fails the text."""
    text = mastodon_text(system).replace(PAGE, "https://status-example.test/verify.html")
    assert signing.id_from_text(text) == ANN_ID
    result = cli(system, "verify", "--text", "-", input=text)
    assert result.exit_code == 1 and "status-example.test" in result.stdout.splitlines()[0]


# ---------------------------------------------------------------- the page's JavaScript applies the same rules


def run_js(cases: list[dict]) -> list[dict]:
    script = (Path(signing.__file__).parent / "verify.js").read_text(encoding="utf-8")
    driver = "JSON.stringify(CASES.map((c) => compare(c.pasted, c.expected)))"
    node = shutil.which("node") or shutil.which("nodejs")
    if node:
        program = ("const vm = require('vm'); const fs = require('fs');"
                   "const src = fs.readFileSync(process.argv[1], 'utf8');"
                   "const CASES = JSON.parse(fs.readFileSync(0, 'utf8'));"
                   "vm.runInThisContext(src + '\\n;globalThis.compare = compare;');"
                   f"process.stdout.write({driver});")
        path = Path(signing.__file__).parent / "verify.js"
        out = subprocess.run([node, "-e", program, str(path)], input=json.dumps(cases), capture_output=True,
                             text=True, check=True, timeout=60)
        return json.loads(out.stdout)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("node or Playwright (to run the verify page's JavaScript)")
    from tests.web.test_browser import ARGS, CHROMIUM

    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        unavailable(f"node or headless Chromium at {CHROMIUM}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_content("<html><body></body></html>")
            page.add_script_tag(content=script.replace('if (typeof document !== "undefined")', "if (false)"))
            return json.loads(page.evaluate(f"(CASES) => {driver}", cases))
        finally:
            browser.close()


def test_the_page_script_gives_the_same_answer_as_the_cli(system):
    """Every case of the table, and every genuine rendering: same verdict, same words."""
    published = system.signature_file()
    expected = [[e["id"], t] for e in published["entries"] for t in e["readable"]]
    docs = [json.loads(e["canonical"]) for e in published["entries"]]
    assert expected == [list(x) for x in signing.readable_texts(docs, PAGE)]  # the site publishes the spec's texts
    texts = [make(system) for make, _ in TAMPERED.values()]
    for name in ALL_CHANNELS:
        ch = system.channel(name)
        update = system.message(update=UPDATE, thread=(Receipt("r"),))
        texts += [reader_copy(ch, system.message()), reader_copy(ch, update)]
    texts += ["", "   ", "Login errors (1/2) x (2/2)", "Émoji 🙂 café\u2028line\u00a0nbsp", "a (0/0)"]
    cases = [{"pasted": t, "expected": expected} for t in texts]
    js = run_js(cases)
    for text, got in zip(texts, js, strict=True):
        want = signing.compare(text, [tuple(x) for x in expected])
        assert (got["ok"], got["reason"]) == (want.ok, want.reason), text


def test_the_verify_page_carries_the_script_and_the_signature_file_the_link(system):
    page = (system.out / "verify.html").read_text()
    assert "function compare(pasted, expected)" in page and "</script" not in page.split("<script>", 1)[1][:-30]
    assert system.signature_file()["verify_url"] == PAGE


# ---------------------------------------------------------------- revocation reaches readers at once


def test_revoke_republishes_the_key_list_at_once(system, tmp_path):
    system.create_ledger()  # it does not hold ANN_ID: nothing vouches for what k1 signed of it
    assert cli(system, "keys", "create", "--id", "k2").exit_code == 0
    assert {k["id"]: k["status"] for k in system.keys_file()["keys"]} == {"k1": "active"}  # not yet published
    result = cli(system, "keys", "revoke", "k1")
    assert result.exit_code == 0, result.output
    assert f"NOT signed again: {ANN_ID}: announcement {ANN_ID} is not in the ledger" in result.stderr
    assert {k["id"]: k["status"] for k in system.keys_file()["keys"]} == {"k1": "revoked", "k2": "active"}
    # a reader who has only the published site: everything k1 signed is not genuine
    reader = Setup(tmp_path, signing_on=False)
    for args in (["--id", ANN_ID], ["--text", "-"]):
        out = cli(reader, "verify", *args, input=mastodon_text(system))
        assert out.exit_code == 1, out.output
        assert out.stdout.startswith("NOT GENUINE: key 'k1' has been revoked"), out.output
    # the incidents on the page survived the republication
    assert (system.out / "index.html").read_text().count("Login errors") >= 1


def test_keys_publish_republishes_by_hand(system, tmp_path):
    system.create_ledger()
    signing.Keyring(tmp_path / "keys").create("k2")
    signing.Keyring(tmp_path / "keys").set_status("k1", "revoked")  # revoked where the site was not reachable
    assert system.keys_file()["keys"][0]["status"] == "active"
    result = cli(system, "keys", "publish")
    assert result.exit_code == 0, result.output
    assert system.keys_file()["keys"][0]["status"] == "revoked"
    assert cli(Setup(tmp_path, signing_on=False), "verify", "--id", ANN_ID).exit_code == 1


def test_keys_publish_without_a_status_site_is_a_usage_error(tmp_path):
    s = Setup(tmp_path, with_site=False)
    assert cli(s, "keys", "create", "--id", "k1").exit_code == 0
    result = cli(s, "keys", "publish")
    assert result.exit_code == 2 and "no enabled statuspage channel" in result.stderr


def test_revoke_says_when_it_could_not_publish(system):
    keys_json = system.out / ".well-known/broadcaster/keys.json"
    keys_json.unlink()
    keys_json.mkdir()  # the site cannot be written (a directory where the file goes)
    result = cli(system, "keys", "revoke", "k1")
    assert result.exit_code == 1 and "NOT yet published" in result.stderr, result.output


# ---------------------------------------------------------------- retraction reaches readers


def test_a_retracted_announcement_never_verifies(system):
    genuine = mastodon_text(system)
    assert verify_text(system, genuine).exit_code == 0
    first = system.site().lookup(system.site().render(system.message()), key="dlv_1")
    system.site().retract(first)  # what engine.retract_one does for the status page delivery
    assert system.signature_file()["retracted_at"] == signing.iso(NOW)
    for args, text in ((["--id", ANN_ID], None), (["--text", "-"], genuine),
                       (["--text", "-"], mastodon_text(system, update=True))):
        out = cli(system, "verify", *args, input=text)
        assert out.exit_code == 1, out.output
        assert out.stdout.startswith(f"RETRACTED: we withdrew announcement {ANN_ID}"), out.output
    entry = system.signature_file()["entries"][0]
    sig = cli(system, "verify", "--signature", f"{entry['key_id']}:{entry['signature']}", "--text", "-",
              input=entry["canonical"])
    assert sig.exit_code == 1 and sig.stdout.startswith("RETRACTED"), sig.output


def test_retracting_an_update_marks_its_announcement_retracted(system):
    site = system.site()
    upd_receipt = site.lookup(site.render(system.message(update=UPDATE)), key="dlv_2")
    assert upd_receipt is not None and upd_receipt.extra["is_update"]
    site.retract(upd_receipt)
    assert "retracted_at" in system.signature_file()
    assert cli(system, "verify", "--id", ANN_ID).exit_code == 1


# ---------------------------------------------------------------- end to end: service, engine, status site, CLI


def test_through_the_engine_sign_publish_verify_retract(tmp_path):
    """The worker's own path: submit, the engine signs the status-page post, the statuspage
    channel publishes; another channel's rendering verifies; a retraction (service + the
    retract task's engine.retract_one) makes every check answer RETRACTED."""
    from broadcaster import engine, official, service
    from broadcaster.channels.ports import ChannelPorts
    from broadcaster.principal import Principal
    from tests.support.runtime import Clock, memory_runtime, wakeups

    s = Setup(tmp_path)
    assert cli(s, "keys", "create", "--id", "k1").exit_code == 0
    rt = memory_runtime(s.settings, clock=Clock(NOW),
                        ports=ChannelPorts(trust_files=lambda state: official.site_files(s.settings, state)))
    ops = Principal("ops", admin=True)
    sub = service.submit(rt, {"kind": "incident", "title": "Login errors", "body": BODY, "severity": "major",
                              "channels": ["status-site", "mastodon-main"]}, principal=ops)
    by_channel = {d.channel: d for d in rt.ledger.deliveries_of(sub.id)}
    assert engine.attempt(rt, by_channel["status-site"].id) == "delivered"
    mastodon = rt.channel("mastodon-main")
    text = "\n".join(mastodon.render(engine.build_message(rt, by_channel["mastodon-main"])).parts)
    assert f"Verify: {PAGE}?id={sub.id}" in text
    ok = cli(s, "verify", "--text", "-", input=text)
    assert ok.exit_code == 0 and ok.stdout.startswith("OK: the text is exactly what we signed"), ok.output

    service.retract(rt, sub.id, principal=ops)
    for delivery_id, _channel in wakeups(rt).retractions:
        engine.retract_one(rt, delivery_id)
    for args in (["--id", sub.id], ["--text", "-"]):
        out = cli(s, "verify", *args, input=text)
        assert out.exit_code == 1 and out.stdout.startswith(f"RETRACTED: we withdrew announcement {sub.id}"), out.output
