"""The API's wake-up thread (``broadcaster/api/wakeups.py``): what queues up while it publishes
goes out in one call, nothing queued is dropped at close, and one failed publish does not stop it."""

from __future__ import annotations

import threading

from broadcaster.api.wakeups import Wakeups


class Gate:
    """An enqueue that records its calls and blocks the first one until released."""

    def __init__(self, fail_first: bool = False):
        self.calls: list[list[tuple[str, str]]] = []
        self.threads: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_first = fail_first

    def __call__(self, items):
        self.calls.append(list(items))
        self.threads.append(threading.current_thread().name)
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(5)
            if self.fail_first:
                raise ConnectionError("broker away")


def test_what_queues_up_during_a_publish_goes_out_in_one_call():
    gate = Gate()
    w = Wakeups(gate)
    w.wake([("d1", "a")])
    assert gate.entered.wait(5)  # the thread is publishing the first…
    w.wake([("d2", "a"), ("d3", "b")])  # …while two more announcements are accepted
    w.wake([("d4", "b")])
    gate.release.set()
    assert w.flush()
    assert gate.calls == [[("d1", "a")], [("d2", "a"), ("d3", "b"), ("d4", "b")]]
    assert set(gate.threads) == {"broadcaster-wakeups"}  # never the request's thread
    w.close()


def test_close_publishes_what_is_queued_and_later_wake_ups_are_not_dropped():
    gate = Gate()
    w = Wakeups(gate)
    w.wake([("d1", "a")])
    assert gate.entered.wait(5)
    w.wake([("d2", "b")])
    closer = threading.Thread(target=w.close)
    closer.start()
    gate.release.set()
    closer.join(5)
    assert gate.calls == [[("d1", "a")], [("d2", "b")]]
    w.wake([("d3", "c")])  # after close: published at once, in the caller's thread
    assert gate.calls[-1] == [("d3", "c")] and gate.threads[-1] == threading.current_thread().name


def test_a_failed_publish_does_not_stop_the_thread():
    gate = Gate(fail_first=True)
    w = Wakeups(gate)
    w.wake([("d1", "a")])
    assert gate.entered.wait(5)
    gate.release.set()
    w.wake([("d2", "b")])
    assert w.flush()
    assert gate.calls[-1] == [("d2", "b")]
    w.close()


def test_nothing_to_wake_starts_nothing():
    gate = Gate()
    w = Wakeups(gate)
    w.wake([])
    assert w.flush(0.1) and gate.calls == [] and w._thread is None
