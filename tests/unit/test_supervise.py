"""``broadcaster up``'s supervisor with stand-in children (small Python processes): "up" is said
only once every child serves; a required child refused by its configuration stops everything with
a reason; a part that keeps dying is restarted with a capped, growing pause while the others keep
running; an optional one (the sandbox) that cannot start is reported and the rest keeps running."""

from __future__ import annotations

import re
import sys
import threading
import time

from broadcaster import parts
from broadcaster.supervise import Backoff, Child, Supervisor

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
FAIL = [sys.executable, "-c", "import sys; sys.exit(3)"]
CONFIG_REFUSED = [sys.executable, "-c", "import sys; sys.exit(2)"]
#: a worker that someone kills with SIGKILL shortly after every start
KILLED = [sys.executable, "-c", "import os, time; time.sleep(0.05); os.kill(os.getpid(), 9)"]
QUICK = Backoff(first=0.05, cap=0.2, stable_after=30)


def supervisor(*children: Child, **options) -> tuple[Supervisor, list[str]]:
    said: list[str] = []
    sup = Supervisor(env={}, ready_timeout=options.pop("ready_timeout", 30), say=said.append, **options)
    sup.children.extend(children)
    return sup, said


def stop_when_ready(sup: Supervisor, seen: list) -> callable:
    def on_ready(running):
        seen.append([c.name for c in running])
        threading.Timer(0.2, sup._stop).start()
    return on_ready


def test_up_is_said_only_after_the_probe_answers():
    answers = iter([False, False, False, True])
    calls: list[str] = []

    def probe() -> bool:
        ok = next(answers, True)
        calls.append("probe-ok" if ok else "probe-no")
        return ok

    sup, _ = supervisor(Child("api", SLEEP, probe=probe))
    seen: list = []

    def on_ready(running):
        calls.append("ready")
        stop_when_ready(sup, seen)(running)

    assert sup.run(on_ready=on_ready) == 0
    assert calls == ["probe-no", "probe-no", "probe-no", "probe-ok", "ready"]
    assert seen == [["api"]]


def test_a_required_child_refused_by_its_configuration_stops_everything_with_a_reason():
    sup, said = supervisor(Child("api", CONFIG_REFUSED, probe=lambda: False), Child("worker", SLEEP))
    seen: list = []
    started = time.monotonic()
    assert sup.run(on_ready=stop_when_ready(sup, seen)) == 1
    assert time.monotonic() - started < 15, "a configuration error is not retried until the timeout"
    assert seen == [], "never said up"
    assert any(line.startswith("api cannot start: its configuration was refused (exit code 2") for line in said), said
    assert all(c.proc.poll() is not None for c in sup.children), "the others were stopped too"


def test_a_required_child_failing_otherwise_at_start_is_retried_then_up_stops_at_the_timeout():
    sup, said = supervisor(Child("api", FAIL, probe=lambda: False), Child("worker", SLEEP),
                           ready_timeout=1.5, backoff=QUICK)
    seen: list = []
    assert sup.run(on_ready=stop_when_ready(sup, seen)) == 1
    assert seen == []
    assert sup.children[0].restarts >= 3, said
    assert any("api exited with code 3" in line and "restarting in" in line for line in said), said
    assert any(line.startswith("api (exits with code 3; its message is above) did not start within 1.5s")
               for line in said), said
    assert all(c.proc.poll() is not None for c in sup.children)


def test_a_worker_killed_again_and_again_is_restarted_with_a_capped_growing_pause_and_the_rest_runs(tmp_path):
    state = tmp_path / "parts.json"
    sup, said = supervisor(Child("api", SLEEP, probe=lambda: True), Child("worker", SLEEP),
                           Child("scheduler", SLEEP), backoff=QUICK, state_file=state, tick=0.02)
    seen_states: list[parts.PartState] = []

    def on_ready(running):
        worker = sup.children[1]
        api_pid = sup.children[0].proc.pid
        worker.argv = KILLED  # from now on every start of the worker is killed with SIGKILL

        def watch():
            worker.proc.kill()
            deadline = time.monotonic() + 20
            while worker.restarts < 10 and time.monotonic() < deadline:
                got = parts.read(state).get("worker")
                if got is not None and got.state == parts.RESTARTING:
                    seen_states.append(got)
                time.sleep(0.01)
            assert sup.children[0].proc.pid == api_pid
            sup._stop()

        threading.Thread(target=watch, daemon=True).start()

    assert sup.run(on_ready=on_ready) == 0, said
    assert sup.children[1].restarts >= 10, said
    assert not any("stopping" in line for line in said), said
    assert sup.children[0].restarts == sup.children[2].restarts == 0, "the API and scheduler were left alone"
    pauses = [float(m.group(1)) for line in said
              if (m := re.search(r"^worker exited with code -9 after \d+s; restarting in ([\d.]+)s "
                                 r"\(next try at \d\d:\d\d:\d\d, restart \d+\)", line))]
    assert len(pauses) >= 10, said
    assert pauses[:3] == [0.05, 0.1, 0.2], "doubling from the first pause"
    assert max(pauses) == 0.2, "never more than the cap"
    assert seen_states and seen_states[-1].last_exit == -9 and seen_states[-1].next_try_at.endswith("Z")
    assert not state.exists(), "a clean stop removes the parts file"


def test_the_pause_doubles_up_to_its_cap():
    assert [QUICK.delay(n) for n in (1, 2, 3, 4, 9)] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert Backoff().delay(1) == 1 and Backoff().delay(7) == 60 and Backoff().delay(30) == 60


def test_a_part_that_ran_long_enough_starts_its_pause_over():
    lasting = [sys.executable, "-c", "import time; time.sleep(0.4); raise SystemExit(1)"]
    sup, said = supervisor(Child("worker", lasting), backoff=Backoff(first=0.05, cap=5, stable_after=0.3),
                           tick=0.02)

    def on_ready(running):
        def watch():
            deadline = time.monotonic() + 20
            while sup.children[0].restarts < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            sup._stop()
        threading.Thread(target=watch, daemon=True).start()

    assert sup.run(on_ready=on_ready) == 0
    pauses = re.findall(r"restarting in ([\d.]+)s", "\n".join(said))
    assert len(pauses) >= 3 and set(pauses) == {"0.05"}, said


def test_an_optional_child_that_cannot_start_is_reported_and_the_rest_runs():
    sup, said = supervisor(Child("sandbox", FAIL, required=False, probe=lambda: False),
                           Child("api", SLEEP, probe=lambda: True), Child("worker", SLEEP))
    seen: list = []
    assert sup.run(on_ready=stop_when_ready(sup, seen)) == 0
    assert seen == [["api", "worker"]]
    assert any("sandbox could not start" in line and "carrying on without it" in line for line in said), said
    assert sup.children[0].restarts == 0, "a dropped optional child is not restarted"
