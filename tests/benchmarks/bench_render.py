"""Render: CPU seconds to fit a 20 kB body to X, Bluesky, Mastodon, Telegram and Discord (thread
split, as ``POST /preview`` and the workers do), and to truncate a 5,000-``&`` title for
Telegram — today's ``broadcaster.render`` against the word-by-word splitter it replaced.

The "before" code is ``broadcaster/render.py`` as of :data:`BEFORE` (read with ``git show``
into a throw-away module inside the ``broadcaster`` package, with its own counters); without
git history the column says so. No services, no processes: pure CPU, one thread.

    python -m tests.benchmarks.bench_render [--quick] [--slow]

``--slow`` also times the old Telegram truncation of the ``&`` title (minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from types import ModuleType
from typing import Any

import httpx

from broadcaster import render
from broadcaster.channels.base import Channel
from broadcaster.channels.registry import channel_class
from broadcaster.models import Announcement, Message

from .common import ROOT, log, table, write_json

NAME = "render"
#: the last commit whose render.py split word by word (re-measuring the growing part each time)
BEFORE = "91ae777011ab6f9c7947f4343d0036490fde885c"
BODY = ("Checkout is failing for some customers; **we are on it**. See https://status.example.com/x "
        "and example.com \U0001F44D\U0001F3FD 日本語 café. " * 250)[:20000]
SETTINGS: dict[str, dict[str, Any]] = {
    "x": {"access_token": "t"},
    "bluesky": {"handle": "status.example.com", "app_password": "p"},
    "mastodon": {"base_url": "https://m.example", "access_token": "t", "read_instance_limits": False},
    "telegram": {"bot_token": "1:abc", "chat_id": "@status"},
    "discord": {"url": "https://hooks.example/discord", "format": "discord"},
}


def old_render() -> ModuleType | None:
    """``broadcaster/render.py`` at :data:`BEFORE`, importable beside today's (or None)."""
    try:
        source = subprocess.run(["git", "show", f"{BEFORE}:broadcaster/render.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("broadcaster._render_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "broadcaster"
    sys.modules[spec.name] = module
    exec(compile(source, f"{BEFORE[:8]}:broadcaster/render.py", "exec"), module.__dict__)
    return module


def make_channel(label: str) -> Channel[Any]:
    kind = "webhook" if label == "discord" else label
    cls = channel_class(kind)
    if cls is None:
        raise RuntimeError(f"channel kind {kind} is not available")
    settings = cls.Settings(kind=kind, **SETTINGS[label])
    return cls(label, settings, http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))))


def old_counter(label: str, ch: Channel[Any], old: ModuleType) -> render.Counter:
    """The channel's counter as it was: the old module's for the ones that live in render.py."""
    own = {"x": old.x_length, "bluesky": old.bluesky_length, "mastodon": lambda t: old.mastodon_length(t, 23)}
    return own.get(label, ch.count)


def seconds(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def run(quick: bool = False, slow: bool = False) -> dict[str, Any]:
    old = old_render()
    if old is None:
        log(f"no git history for {BEFORE[:8]}: timing today's code only")
    repeat = 1 if quick else 3
    message = Message(Announcement(id="a1", kind="incident", title="Checkout errors", body=BODY))
    rows, out = [], {}
    for label in SETTINGS:
        ch = make_channel(label)
        text = ch.escape(render.plain_text("Checkout errors", BODY, message))
        limit = ch.max_length
        assert limit is not None
        after = seconds(lambda text=text, limit=limit, ch=ch, label=label: render.fit(text, limit, ch.count, "thread", label),
                        repeat)
        parts = render.fit(text, limit, ch.count, "thread", label)
        before = same = None
        if old is not None:
            count = old_counter(label, ch, old)
            before = seconds(lambda text=text, limit=limit, count=count, label=label: old.fit(text, limit, count, "thread",
                                                                                          label), 1)
            same = old.fit(text, limit, count, "thread", label) == parts
        out[label] = {"limit": limit, "chars": len(text), "parts": len(parts), "before_s": before,
                      "after_s": round(after, 4), "same_parts": same}
        rows.append([f"{label} thread ({limit})", len(text), len(parts),
                     "-" if before is None else f"{before:.2f}", f"{after:.3f}",
                     "-" if before is None else f"×{before / max(after, 1e-6):.0f}", same])
    # a 5,000-character '&' title truncated for Telegram (measured on the escaped HTML)
    tg = make_channel("telegram")
    title = tg.escape("&" * 5000)
    after = seconds(lambda: render.truncate(title, 4096, tg.count), repeat)
    before = None
    if old is not None and slow:
        before = seconds(lambda: old.truncate(title, 4096, tg.count), 1)
    out["telegram_truncate_ampersands"] = {"chars": len(title), "before_s": before, "after_s": round(after, 4)}
    rows.append(["telegram truncate 5,000 '&' (4096)", len(title), 1,
                 "minutes (--slow)" if before is None else f"{before:.1f}", f"{after:.3f}",
                 "-" if before is None else f"×{before / max(after, 1e-6):.0f}", "-"])
    result = {"params": {"body_chars": len(BODY), "repeat": repeat, "before_commit": BEFORE}, "runs": out,
              "targets": {"same_parts": all(r.get("same_parts") is not False for r in out.values())}}
    table(f"render: fit a {len(BODY)}-char body (CPU seconds, best of {repeat} after; 1 before)",
          ["channel (limit)", "chars", "parts", "before s", "after s", "speed-up", "same parts"], rows)
    write_json(NAME, result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_render", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--slow", action="store_true", help="also time the old Telegram truncation (minutes)")
    a = p.parse_args(argv)
    run(a.quick, a.slow)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
