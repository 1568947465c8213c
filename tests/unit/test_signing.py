"""Ed25519 signing of announcements and updates: canonical form, sign → verify, tampering,
rotation (old and new keys both verify), revocation, pasted-text matching, the verify link."""

from __future__ import annotations

import json
import os
import stat
from types import SimpleNamespace

import pytest

from broadcaster import signing
from broadcaster.models import Announcement, Message, Update, Window

NOW = 1_700_000_000.0


def ann(**kw) -> Announcement:
    base = dict(id="ann_18c2f0a1b2c_3f9a1c2e", kind="incident", title="Login errors",
                body="We are *investigating* failed logins.\n\n- EU\n- US", url="https://status.example.com/i/1",
                severity="major", components=("api", "web"), created_at=NOW)
    base.update(kw)
    return Announcement(**base)


def upd(**kw) -> Update:
    base = dict(id="upd_1", announcement_id="ann_18c2f0a1b2c_3f9a1c2e", status="resolved", body="Fixed at 10:42.",
                created_at=NOW + 600)
    base.update(kw)
    return Update(**base)


@pytest.fixture
def ring(tmp_path):
    return signing.Keyring(tmp_path / "keys")


def settings_with(ring, **kw):
    return SimpleNamespace(signing=signing.SigningConfig(key_dir=str(ring.dir), **kw), channels={})


# ---------------------------------------------------------------- canonical form


def test_canonical_form_is_stable_and_sorted():
    doc = signing.announcement_document(ann())
    text = signing.canonical(doc)
    assert text == signing.canonical(json.loads(text))
    assert text.startswith('{"body":') and ", " not in text and ": " not in text
    assert '"created_at":"2023-11-14T22:13:20.000Z"' in text


def test_canonical_form_normalizes_unicode_and_newlines():
    composed = signing.canonical(signing.announcement_document(ann(title="Caf\u00e9", body="a\r\nb")))
    decomposed = signing.canonical(signing.announcement_document(ann(title="Cafe\u0301", body="a\nb")))
    assert composed == decomposed


def test_update_document_carries_its_announcement_and_status():
    doc = signing.update_document(upd(), ann())
    assert doc["type"] == "update" and doc["announcement_id"] == ann().id
    assert doc["status"] == "resolved" and doc["title"] == "Login errors"
    assert signing.document_for(Message(ann(), update=upd())) == doc


def test_window_and_variants_are_signed():
    a = ann(kind="maintenance", window=Window(NOW, NOW + 3600), variants={"x-main": {"title": "Short"}})
    doc = signing.announcement_document(a)
    assert doc["window"] == {"starts_at": "2023-11-14T22:13:20.000Z", "ends_at": "2023-11-14T23:13:20.000Z"}
    assert doc["variants"] == {"x-main": {"title": "Short"}}


# ---------------------------------------------------------------- keys


def test_create_writes_a_private_key_only_the_owner_reads(ring):
    info = ring.create("k1", now=NOW)
    mode = stat.S_IMODE(os.stat(ring.private_path("k1")).st_mode)
    assert mode == 0o600
    assert info.status == "active" and len(signing.unb64u(info.public)) == 32
    data = json.loads(ring.index_path.read_text())
    assert "PRIVATE" not in ring.index_path.read_text() and data["keys"][0]["id"] == "k1"


def test_key_ids_are_checked_and_unique(ring):
    ring.create("k1")
    with pytest.raises(signing.SigningError, match="already exists"):
        ring.create("k1")
    with pytest.raises(signing.SigningError, match="key id"):
        ring.create("../evil")
    assert signing.KEY_ID_RE.match(ring.create().id)


def test_no_key_is_a_clear_error(ring):
    with pytest.raises(signing.SigningError, match="keys create"):
        ring.active()


# ---------------------------------------------------------------- sign and verify


def test_sign_then_verify(ring):
    info = ring.create("k1")
    record = signing.sign_document(signing.announcement_document(ann()), ring.private("k1"), info.id)
    verdict = signing.verify_record(record, ring.keys())
    assert verdict.ok, verdict.reason
    assert verdict.document["title"] == "Login errors"


@pytest.mark.parametrize("where", ["title", "body", "url"])
def test_one_changed_character_fails(ring, where):
    info = ring.create("k1")
    record = signing.sign_document(signing.announcement_document(ann()), ring.private("k1"), info.id)
    doc = json.loads(record["canonical"])
    value = doc[where]
    doc[where] = value[:5] + ("X" if value[5] != "X" else "Y") + value[6:]
    tampered = {**record, "canonical": signing.canonical(doc)}
    verdict = signing.verify_record(tampered, ring.keys())
    assert not verdict.ok and "does not match" in verdict.reason


def test_a_changed_signature_or_key_id_fails(ring):
    info = ring.create("k1")
    ring.create("k2")
    record = signing.sign_document(signing.announcement_document(ann()), ring.private("k1"), info.id)
    sig = bytearray(signing.unb64u(record["signature"]))
    sig[0] ^= 1
    assert not signing.verify_record({**record, "signature": signing.b64u(bytes(sig))}, ring.keys()).ok
    assert not signing.verify_record({**record, "key_id": "k2"}, ring.keys()).ok
    assert "unknown key" in signing.verify_record({**record, "key_id": "nope"}, ring.keys()).reason


def test_non_canonical_text_is_refused_even_if_signed(ring):
    info = ring.create("k1")
    private = ring.private("k1")
    loose = json.dumps(signing.announcement_document(ann()), indent=2)
    record = {"type": "announcement", "id": ann().id, "canonical": loose, "alg": "Ed25519", "key_id": info.id,
              "signature": signing.b64u(private.sign(signing.signed_bytes(loose)))}
    assert "canonical" in signing.verify_record(record, ring.keys()).reason


def test_signature_is_bound_to_our_domain_prefix(ring):
    info = ring.create("k1")
    text = signing.canonical(signing.announcement_document(ann()))
    bare = signing.b64u(ring.private("k1").sign(text.encode()))  # signed without the prefix
    assert not signing.verify_signature(text, bare, info.public_key())


def test_rotation_keeps_old_signatures_valid(ring):
    old = ring.create("k-old", now=NOW)
    before = signing.sign_document(signing.announcement_document(ann()), ring.private(old.id), old.id)
    new = ring.create("k-new", now=NOW + 86400)
    keys = ring.keys()
    assert keys["k-old"].status == "retired" and keys["k-new"].status == "active"
    assert ring.active().id == "k-new"
    after = signing.sign_document(signing.update_document(upd(), ann()), ring.private(new.id), new.id)
    assert signing.verify_record(before, keys).ok
    assert signing.verify_record(after, keys).ok
    # and with the keys as the status site publishes them
    published = signing.keys_from_json(json.loads(json.dumps(signing.keys_document(keys.values()))))
    assert signing.verify_record(before, published).ok and signing.verify_record(after, published).ok


def test_a_revoked_key_no_longer_verifies(ring):
    info = ring.create("k1")
    record = signing.sign_document(signing.announcement_document(ann()), ring.private("k1"), info.id)
    ring.set_status("k1", "revoked")
    verdict = signing.verify_record(record, ring.keys())
    assert not verdict.ok and "revoked" in verdict.reason
    with pytest.raises(signing.SigningError, match="no active"):
        ring.active()


def test_after_a_revoke_an_announcement_is_signed_again_whole_or_not_at_all(ring):
    from broadcaster.signing.resign import resign

    ring.create("k1")
    first = signing.sign_document(signing.announcement_document(ann()), ring.private("k1"), "k1")
    update = signing.sign_document(signing.update_document(upd(), ann()), ring.private("k1"), "k1")
    ring.create("k2")
    ring.set_status("k1", "revoked")
    key_id, sign = signing.active_signer(settings_with(ring))

    def sigs() -> dict:
        return {ann().id: {first["id"]: dict(first), update["id"]: dict(update)}}

    doubted = sigs()  # the ledger vouches for the first post but not for the update: neither is signed again
    out = resign(doubted, ring.keys(), retracted={}, sign=sign, key_id=key_id, now=0.0,
                 vouch=lambda doc: "not in the ledger" if doc["type"] == "update" else None, blocked=None)
    assert out.refused == {ann().id: "not in the ledger"} and not out.announcements
    assert doubted == sigs()
    vouched = sigs()
    out = resign(vouched, ring.keys(), retracted={}, sign=sign, key_id=key_id, now=0.0, vouch=lambda doc: None,
                 blocked=None)
    assert out.announcements == [ann().id] and {r["key_id"] for r in vouched[ann().id].values()} == {"k2"}
    assert all(signing.verify_record(r, ring.keys()).ok for r in vouched[ann().id].values())
    withdrawn = sigs()
    out = resign(withdrawn, ring.keys(), retracted={ann().id: "2026-01-01"}, sign=sign, key_id=key_id, now=0.0,
                 vouch=lambda doc: None, blocked=None)
    assert out.retracted == [ann().id] and withdrawn == sigs()


# ---------------------------------------------------------------- in the engine


def test_sign_message_uses_the_active_key_and_follows_rotation(ring):
    ring.create("k1")
    settings = settings_with(ring)
    first = signing.sign_message(settings, Message(ann()))
    assert first["key_id"] == "k1" and first["type"] == "announcement"
    ring.create("k2")
    second = signing.sign_message(settings, Message(ann(), update=upd()))
    assert second["key_id"] == "k2" and second["type"] == "update" and second["announcement_id"] == ann().id
    keys = ring.keys()
    assert signing.verify_record(first, keys).ok and signing.verify_record(second, keys).ok


def test_sign_message_is_deterministic(ring):
    ring.create("k1")
    settings = settings_with(ring)
    assert signing.sign_message(settings, Message(ann())) == signing.sign_message(settings, Message(ann()))


def test_signing_off_or_broken_never_raises(ring, caplog):
    assert signing.sign_message(SimpleNamespace(channels={}), Message(ann())) is None
    assert signing.sign_message(settings_with(ring), Message(ann())) is None  # no keyring yet
    assert "not signed" in caplog.text


def test_a_pinned_key_id_is_used(ring):
    ring.create("k1")
    ring.create("k2")
    assert signing.sign_message(settings_with(ring, key_id="k1"), Message(ann()))["key_id"] == "k1"


# ---------------------------------------------------------------- the verification link


def test_verification_suffix_from_the_status_page_site_url(ring):
    site = SimpleNamespace(kind="statuspage", enabled=True, site_url="https://status.example.com/")
    settings = SimpleNamespace(signing={"key_dir": str(ring.dir)}, channels={"status": site})
    assert signing.verification_suffix(settings, "ann_1") == "\n\nVerify: https://status.example.com/verify.html?id=ann_1"


def test_verification_suffix_explicit_url_and_off_switches(ring):
    settings = settings_with(ring, verify_url="https://trust.example.com/v")
    assert signing.verification_url(settings, "ann 1") == "https://trust.example.com/v?id=ann%201"
    assert signing.verification_suffix(settings_with(ring, verify_url="https://t.example/v", embed_link=False), "a") is None
    assert signing.verification_suffix(settings_with(ring), "a") is None  # no site to link to
    assert signing.verification_suffix(SimpleNamespace(channels={}), "a") is None  # signing off


def test_the_link_has_no_little_text_reserved_character(ring):
    from broadcaster.channels.linkedin import escape_little

    link = signing.verification_url(settings_with(ring, verify_url="https://status.example.com/verify.html"), "ann_18c2f0a1b2c_3f9a1c2e")
    assert escape_little(link.replace("_", "")) == link.replace("_", "")


# ---------------------------------------------------------------- pasted text


def doc():
    return signing.announcement_document(ann())


PAGE = "https://status.example.com/verify.html"


def test_pasted_post_matches_with_the_decorations_channels_add():
    pasted = ("Login errors\n\nWe are investigating failed logins.\n\n• EU\n• US\n\nhttps://status.example.com/i/1"
              "\n\nVerify: https://status.example.com/verify.html?id=ann_18c2f0a1b2c_3f9a1c2e")
    m = signing.match_text(pasted, [doc()], PAGE)
    assert m.ok and m.entry == ann().id
    assert signing.id_from_text(pasted) == "ann_18c2f0a1b2c_3f9a1c2e"


def test_a_thread_part_or_a_truncated_text_is_not_genuine():
    part = signing.match_text("Login errors We are investigating (1/2)", [doc()], PAGE)
    assert not part.ok and "part 2 of the 2-part thread is missing" in part.reason
    cut = signing.match_text("Login errors\n\nWe are investigating…", [doc()], PAGE)
    assert not cut.ok and "left-out text" in cut.reason


def test_update_text_with_its_status_prefix_matches():
    u = signing.update_document(upd(), ann())
    assert signing.match_text("[Resolved] Login errors\n\nFixed at 10:42.", [doc(), u]).ok
    assert not signing.match_text("[Investigating] Login errors\n\nFixed at 10:42.", [doc(), u]).ok


@pytest.mark.parametrize("pasted", [
    "Login errors\n\nWe are investigating failed logins in Asia.",
    "Login errors\n\nWe are investigating failed 1ogins.",
    "Login errors\n\nWe are investigating failed logins.\n\nhttps://status.examp1e.com/i/1",
    "",
])
def test_a_changed_text_does_not_match(pasted):
    assert not signing.match_text(pasted, [doc()]).ok


def test_variant_wording_matches():
    d = signing.announcement_document(ann(variants={"x-main": {"body": "Logins failing; on it."}}))
    assert signing.match_text("Login errors Logins failing; on it. https://status.example.com/i/1", [d]).ok


def test_signature_argument_parsing():
    assert signing.parse_signature_arg("k1:abc") == ("k1", "abc")
    with pytest.raises(signing.SigningError):
        signing.parse_signature_arg("abc")


# ---------------------------------------------------------------- the CLI: keys and verify


def cli(args, input=None, env=None):
    from click.testing import CliRunner

    import broadcaster.cli.keys  # noqa: F401 - registers its commands on `main`
    from broadcaster.cli import main

    return CliRunner().invoke(main, args, input=input, env={"BROADCASTER_CONFIG": "", **(env or {})})


def publish(ring, tmp_path, *messages):
    """A status-site output directory as the statuspage channel would write it."""
    from broadcaster import official

    site = tmp_path / "site"
    s = settings_with(ring, verify_url=PAGE)
    state: dict = {}
    for m in messages:
        official.remember_signature(state, signing.sign_message(s, m))
    for rel, data in official.site_files(s, state).items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
    return site


def test_cli_keys_create_list_rotate_revoke(tmp_path):
    kd = str(tmp_path / "keys")
    first = cli(["keys", "create", "--id", "k1", "--key-dir", kd])
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "k1"
    assert cli(["keys", "create", "--id", "k2", "--key-dir", kd]).exit_code == 0
    listed = cli(["keys", "list", "--key-dir", kd]).stdout
    assert "k1\tretired" in listed and "k2\tactive" in listed and "private key here" in listed
    published = json.loads(cli(["keys", "list", "--json", "--key-dir", kd]).stdout)
    assert [k["id"] for k in published["keys"]] == ["k1", "k2"] and "PRIVATE" not in json.dumps(published)
    assert cli(["keys", "create", "--id", "k1", "--key-dir", kd]).exit_code == 2
    assert cli(["keys", "revoke", "k1", "--key-dir", kd]).exit_code == 0
    assert "k1\trevoked" in cli(["keys", "list", "--key-dir", kd]).stdout


def test_cli_keys_without_configuration_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(["keys", "list"]).exit_code == 2


def test_cli_verify_by_id_and_by_pasted_text_across_rotation(ring, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ring.create("k1")
    m1 = Message(ann())
    site = publish(ring, tmp_path, m1)
    ring.create("k2")
    site = publish(ring, tmp_path, m1, Message(ann(), update=upd()))  # re-signs the first with k2 too
    records = json.loads((site / ".well-known/broadcaster/signatures" / f"{ann().id}.json").read_text())["entries"]
    assert {r["key_id"] for r in records} == {"k2"}
    # a record signed with the retired key still verifies
    old = signing.sign_document(signing.announcement_document(ann(id="ann_old")), ring.private("k1"), "k1")
    sigdir = site / ".well-known/broadcaster/signatures"
    (sigdir / "ann_old.json").write_text(json.dumps(signing.signatures_document("ann_old", [old])))
    url = site.as_uri()
    # --site as a file:// URL is not fetched over HTTP: use the keyring and a local copy instead
    monkeypatch.setattr("broadcaster.cli.keys._fetch_json",
                        lambda s, loc, rel: json.loads((site / rel).read_text()) if (site / rel).is_file() else None)
    ok = cli(["verify", "--id", ann().id, "--site", url])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("OK: ") and "signed    announcement" in ok.stdout and "signed    update" in ok.stdout
    assert cli(["verify", "--id", "ann_old", "--site", url]).exit_code == 0
    assert cli(["verify", "--id", "ann_old", "--site", url, "--key-dir", str(ring.dir)]).exit_code == 0
    pasted = ("Login errors\n\nWe are investigating failed logins.\n\n• EU\n• US\n\nhttps://status.example.com/i/1\n\n"
              f"Verify: https://status.example.com/verify.html?id={ann().id}\n")
    good = cli(["verify", "--text", "-", "--site", url], input=pasted)
    assert good.exit_code == 0 and good.stdout.startswith("OK: the text is exactly what we signed"), good.output
    bad = cli(["verify", "--text", "-", "--site", url], input=pasted.replace("failed", "fai1ed"))
    assert bad.exit_code == 1 and bad.stdout.startswith("NOT GENUINE: the text differs from character")
    assert cli(["verify", "--id", "ann_nope", "--site", url]).exit_code == 1
    assert cli(["verify", "--text", "-", "--site", url], input="no link here").exit_code == 2
    # tampering with the published record fails
    rec = json.loads((sigdir / f"{ann().id}.json").read_text())
    rec["entries"][0]["canonical"] = rec["entries"][0]["canonical"].replace("Login", "Logon")
    (sigdir / f"{ann().id}.json").write_text(json.dumps(rec))
    tampered = cli(["verify", "--id", ann().id, "--site", url])
    assert tampered.exit_code == 1 and tampered.stdout.startswith("NOT GENUINE: the signature does not match")


def test_cli_verify_a_canonical_document_with_signature(ring, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ring.create("k1")
    record = signing.sign_document(signing.announcement_document(ann()), ring.private("k1"), "k1")
    sig = f"k1:{record['signature']}"
    ok = cli(["verify", "--text", "-", "--signature", sig, "--key-dir", str(ring.dir)], input=record["canonical"] + "\n")
    assert ok.exit_code == 0 and ok.stdout.startswith("OK: the document is exactly what was signed"), ok.output
    changed = record["canonical"].replace("investigating", "investigatinG")
    bad = cli(["verify", "--text", "-", "--signature", sig, "--key-dir", str(ring.dir)], input=changed)
    assert bad.exit_code == 1 and bad.stdout.startswith("NOT GENUINE")
    assert cli(["verify", "--text", "-", "--signature", "nocolon", "--key-dir", str(ring.dir)], input="x").exit_code == 1
