"""After a revoke, readers must not trust what the revoked key signed on its word — it may be in
someone else's hands — yet our own announcements must keep verifying. So ``keys revoke`` (and
``keys publish``) signs again with the active key exactly what the ledger holds as signed and
not retracted; everything else signed only by the revoked key is refused by ``verify``.

The worker's own path on a real SQLite ledger: submit, the engine signs the status-page post,
the statuspage channel publishes it into a directory; then the operator's commands as a CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.published import Published
from tests.support.signed_site import cli


@pytest.fixture
def published(tmp_path):
    p = Published(tmp_path)
    yield p
    p.rt.close()
    p.rt.ledger.close()


def test_revoke_signs_our_announcements_again_and_refuses_the_rest(published):
    p = published
    before = {e["id"]: e for e in p.entries(p.kept)}
    assert {e["key_id"] for e in before.values()} == {"k1"} and len(before) == 2
    assert cli(p.s, "keys", "create", "--id", "k2").exit_code == 0
    revoked = cli(p.s, "keys", "revoke", "k1")
    assert revoked.exit_code == 0, revoked.output
    said = revoked.stderr
    assert "signed again with key k2: 1 announcement(s) the ledger holds as signed" in said, said
    assert "left as they are: 1 retracted announcement(s) (they stay RETRACTED)" in said
    assert f"NOT signed again: {p.altered}: announcement {p.altered}: the signed text is not what the ledger " \
           "holds — it no longer verifies" in said
    assert "NOT signed again: ann_madeup_1: announcement ann_madeup_1 is not in the ledger" in said

    # ours keeps verifying — the same texts, now signed by k2 — for a reader with only the site too
    after = {e["id"]: e for e in p.entries(p.kept)}
    assert {e["key_id"] for e in after.values()} == {"k2"}
    assert all(after[i]["canonical"] == before[i]["canonical"] for i in before)
    assert all(after[i]["resigned"]["from_key"] == "k1" for i in after)
    for reader in (False, True):
        ok = p.verify("--id", p.kept, reader=reader)
        assert ok.exit_code == 0 and ok.stdout.startswith(f"OK: announcement {p.kept} is signed by us"), ok.output
        assert "signed by key 'k2' (active), signed again on " in ok.stdout and "after key 'k1' was revoked" in ok.stdout
        pasted = p.verify("--text", "-", text=p.text(p.kept), reader=reader)
        assert pasted.exit_code == 0 and pasted.stdout.startswith("OK: the text is exactly what we signed"), \
            pasted.output

    # retracted stays retracted; what only k1 vouches for is refused
    gone = p.verify("--id", p.gone)
    assert gone.exit_code == 1 and gone.stdout.startswith(f"RETRACTED: we withdrew announcement {p.gone}")
    for ann_id in (p.altered, "ann_madeup_1"):
        for reader in (False, True):
            out = p.verify("--id", ann_id, reader=reader)
            assert out.exit_code == 1 and out.stdout.startswith("NOT GENUINE: key 'k1' has been revoked"), out.output
    old = before[p.kept]
    by_k1 = p.verify("--signature", f"k1:{old['signature']}", "--text", "-", text=old["canonical"])
    assert by_k1.exit_code == 1 and by_k1.stdout.startswith("NOT GENUINE: key 'k1' has been revoked")

    # publishing again changes nothing of what was signed again
    again = cli(p.s, "keys", "publish")
    assert again.exit_code == 0 and "signed again with key" not in again.stderr, again.output
    assert {e["id"]: e["signature"] for e in p.entries(p.kept)} == {i: e["signature"] for i, e in after.items()}


def test_without_the_ledger_or_an_active_key_nothing_is_signed_again_and_it_says_so(published):
    p = published
    db = Path(p.s.settings.ledger.removeprefix("sqlite:///"))
    p.rt.ledger.close()
    moved = db.rename(db.with_suffix(".away"))
    assert cli(p.s, "keys", "create", "--id", "k2").exit_code == 0
    revoked = cli(p.s, "keys", "revoke", "k1")
    assert revoked.exit_code == 1, revoked.output
    assert "error: 3 announcement(s) signed by a revoked key were NOT signed again (nothing can vouch for the " \
           "texts: ledger unreachable (no file" in revoked.stderr, revoked.stderr
    assert {k["id"]: k["status"] for k in p.s.keys_file()["keys"]} == {"k1": "revoked", "k2": "active"}
    refused = p.verify("--id", p.kept, reader=True)
    assert refused.exit_code == 1 and refused.stdout.startswith("NOT GENUINE: key 'k1' has been revoked")

    moved.rename(db)  # the ledger answers again: publishing signs ours again
    published_again = cli(p.s, "keys", "publish")
    assert published_again.exit_code == 0, published_again.output
    assert p.verify("--id", p.kept, reader=True).exit_code == 0

    revoke_all = cli(p.s, "keys", "revoke", "k2")  # the last key: nothing is left to sign with
    assert revoke_all.exit_code == 1
    assert "NOT signed again (no key to sign with here: no active signing key" in revoke_all.stderr
