"""What ``broadcaster up`` tells the API about the processes it runs (the parts): a small JSON
file the supervisor rewrites whenever a part starts, exits or waits to be restarted, and that
``/readyz`` and ``/metrics`` read. It is how a crashing worker shows while the API keeps serving.

The supervisor names the file in the children's environment (:data:`ENV`); a process started any
other way (``broadcaster api`` under systemd or Kubernetes) has no such file, and reports no parts:
there the platform watches its processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

#: the environment variable that names the file, set by ``broadcaster up`` for its children
ENV = "BROADCASTER_PARTS_FILE"

RUNNING, RESTARTING, LEFT_OUT, STOPPED = "running", "restarting", "left out", "stopped"


@dataclass(frozen=True)
class PartState:
    #: running | restarting (exited, waiting for its next try) | left out (an optional part that
    #: could not start) | stopped
    state: str
    #: how many times the supervisor restarted it since ``up`` began
    restarts: int = 0
    #: the exit code of its last exit (negative: killed by that signal), None if it never exited
    last_exit: int | None = None
    #: when the next try is due (ISO 8601 UTC), while restarting
    next_try_at: str | None = None

    def describe(self) -> str:
        """One line for people: ``restarting (exit code -9, 6 restarts; next try at …)``."""
        if self.state != RESTARTING:
            return self.state
        return (f"restarting (exit code {self.last_exit}, {self.restarts} restarts; "
                f"next try at {self.next_try_at})")


def write(path: Path, parts: Mapping[str, PartState]) -> None:
    """Replace the file atomically (a reader sees the old or the new picture, never half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({name: asdict(p) for name, p in parts.items()}, sort_keys=True))
    os.replace(tmp, path)


def read(path: str | os.PathLike[str] | None = None) -> dict[str, PartState]:
    """The parts the file describes; empty when there is no file (not under ``up``) or it cannot
    be read (a report must answer anyway)."""
    where = path if path is not None else os.environ.get(ENV)
    if not where:
        return {}
    try:
        raw = json.loads(Path(where).read_text())
        return {str(name): PartState(**fields) for name, fields in raw.items()}
    except (OSError, ValueError, TypeError):
        return {}
