"""The journal under the memory twin: one fsynced line per transaction, a torn last line (a crash
mid-write) skipped and cut off before the next append, damage anywhere else refused, one writer
at a time — and a twin whose journal cannot be written changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from broadcaster.errors import Conflict, InvalidRequest, LedgerUnavailable
from broadcaster.ledger.journal import Journal
from broadcaster.ledger.memory import MemoryLedger
from broadcaster.models import DeliveryState as S
from tests.support.runtime import Clock


def new(twin: MemoryLedger, channels=("a", "b")) -> str:
    ann_id, _ = twin.create_announcement({"kind": "incident", "title": "T", "status": "investigating"},
                                         [{"channel": c} for c in channels], actor="t")
    return ann_id


def test_each_transaction_is_one_line_and_a_replay_resumes_where_it_stopped(tmp_path):
    clock = Clock()
    journal = Journal(tmp_path / "j.jsonl")
    twin = MemoryLedger(clock=clock, journal=journal)
    ann_id = new(twin)
    a, _b = twin.deliveries_of(ann_id)
    claimed = twin.claim_with_announcement(a.id, "w", 30)[0]
    lines = (tmp_path / "j.jsonl").read_text().splitlines()
    assert len(lines) == 2, "create (announcement, deliveries, events, audit) and claim: one line each"
    assert {c["table"] for c in json.loads(lines[0])["changes"]} == {"announcements", "deliveries",
                                                                     "delivery_events", "audit_log"}
    assert os.stat(tmp_path / "j.jsonl").st_mode & 0o077 == 0, "only its owner may read it"

    again = MemoryLedger.replay(journal, clock=clock)  # the process died here; a new one picks up
    assert again.get_delivery(a.id) == claimed
    assert again.claim_with_announcement(a.id, "w2", 30) is None, "the lease survived the restart"
    assert again.transition(claimed, S.DELIVERED, "sent", owner="w", attempted=True)
    assert MemoryLedger.replay(journal).get_delivery(a.id).state == S.DELIVERED


def test_a_read_only_replay_writes_nothing(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    new(MemoryLedger(journal=journal))
    before = (tmp_path / "j.jsonl").read_bytes()
    picture = MemoryLedger.replay(journal, follow=False)
    new(picture)
    assert (tmp_path / "j.jsonl").read_bytes() == before and len(picture.announcement_ids()) == 2


def test_a_torn_last_line_is_skipped_and_cut_off_before_the_next_append(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    twin = MemoryLedger(journal=journal)
    first = new(twin)
    with open(path, "ab") as f:
        f.write(b'{"type": "ledger", "changes": [{"table": "annou')  # the crash came mid-write
    assert MemoryLedger.replay(Journal(path)).announcement_ids() == [first]
    later = MemoryLedger.replay(Journal(path))
    second = new(later)
    assert path.read_bytes().count(b"\n") == 2 and b"annou\n" not in path.read_bytes()
    assert MemoryLedger.replay(Journal(path)).announcement_ids() == [first, second]


def test_a_damaged_line_before_the_end_is_refused_with_its_number(tmp_path):
    path = tmp_path / "j.jsonl"
    twin = MemoryLedger(journal=Journal(path))
    new(twin)
    new(twin)
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([lines[0][:-5], *lines[1:]]))
    with pytest.raises(InvalidRequest, match="line 1 is not valid JSON"):
        MemoryLedger.replay(Journal(path))


def test_a_transaction_that_fails_leaves_neither_memory_nor_journal_changed(tmp_path):
    path = tmp_path / "j.jsonl"
    twin = MemoryLedger(journal=Journal(path))
    ann_id = new(twin, channels=("a",))
    with pytest.raises(Conflict):
        twin.create_announcement({"kind": "notice", "title": "T"},
                                 [{"channel": "a", "id": "dlv_x"}, {"channel": "b", "id": "dlv_x"}], actor="t")
    assert twin.announcement_ids() == [ann_id] and path.read_text().count("\n") == 1


def test_a_journal_that_cannot_be_written_stops_the_change(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the journal's directory should be")
    twin = MemoryLedger(journal=Journal(blocked / "j.jsonl"))
    with pytest.raises(LedgerUnavailable, match="cannot be written"):
        new(twin)
    assert twin.announcement_ids() == [] and twin.count_by_state() == {}


def test_one_process_at_a_time_holds_a_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom broadcaster.ledger.journal import Journal\n"
         f"with Journal({str(path)!r}).exclusive():\n    print('held', flush=True)\n    time.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(InvalidRequest, match="in use by another break-glass run"), Journal(path).exclusive():
            pass
    finally:
        holder.kill()
        holder.wait(10)
    with Journal(path).exclusive():  # free again once its holder is gone
        pass
