"""``broadcaster up``'s supervisor with stand-in children (small Python processes): "up" is said
only once every child serves; a required child that cannot start stops everything with a reason;
an optional one (the sandbox) is reported and the rest keeps running."""

from __future__ import annotations

import sys
import threading

from broadcaster.supervise import Child, Supervisor

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
FAIL = [sys.executable, "-c", "import sys; sys.exit(3)"]


def supervisor(*children: Child) -> tuple[Supervisor, list[str]]:
    said: list[str] = []
    sup = Supervisor(env={}, ready_timeout=30, say=said.append)
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


def test_a_required_child_that_cannot_start_stops_everything_with_a_reason():
    sup, said = supervisor(Child("api", FAIL, probe=lambda: False), Child("worker", SLEEP))
    seen: list = []
    assert sup.run(on_ready=stop_when_ready(sup, seen)) == 1
    assert seen == [], "never said up"
    assert any(line.startswith("api could not start (exit code 3") for line in said), said
    assert all(c.proc.poll() is not None for c in sup.children), "the others were stopped too"


def test_an_optional_child_that_cannot_start_is_reported_and_the_rest_runs():
    sup, said = supervisor(Child("sandbox", FAIL, required=False, probe=lambda: False),
                           Child("api", SLEEP, probe=lambda: True), Child("worker", SLEEP))
    seen: list = []
    assert sup.run(on_ready=stop_when_ready(sup, seen)) == 0
    assert seen == [["api", "worker"]]
    assert any("sandbox could not start" in line and "carrying on without it" in line for line in said), said
    assert sup.children[0].restarts == 0, "a dropped optional child is not restarted"
