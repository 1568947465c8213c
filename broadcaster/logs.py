"""Logging: readable one-line text on a terminal, one JSON object per line everywhere else.

A person running ``broadcaster up`` reads the lines on a terminal, where JSON objects next to
Celery's and uvicorn's own output are hard to follow; a log shipper reads a pipe or a file,
where JSON with the delivery/announcement ids as keys is what it wants. So the default
(``auto``) picks by whether standard error is a terminal; ``BROADCASTER_LOG_FORMAT=json`` or
``=text`` forces one. Colour only on a terminal, and never with ``NO_COLOR`` set.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

_EXTRA = ("delivery_id", "announcement_id", "channel", "state")
FORMATS = ("auto", "json", "text")
ENV = "BROADCASTER_LOG_FORMAT"

_COLOURS = {"DEBUG": "\033[2m", "INFO": "\033[32m", "WARNING": "\033[33m", "ERROR": "\033[31m",
            "CRITICAL": "\033[1;31m"}
_DIM, _RESET = "\033[2m", "\033[0m"


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _EXTRA:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL logger: message key=value…`` on one line (a traceback follows, indented)."""

    def __init__(self, *, colour: bool = False):
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = f"{record.levelname:<7}"
        extra = " ".join(f"{k}={getattr(record, k)}" for k in _EXTRA if hasattr(record, k))
        message = record.getMessage().replace("\n", " ⏎ ")
        if self.colour:
            when = f"{_DIM}{when}{_RESET}"
            level = f"{_COLOURS.get(record.levelname, '')}{level}{_RESET}"
            name = f"{_DIM}{record.name}{_RESET}"
        else:
            name = record.name
        line = f"{when} {level} {name}: {message}" + (f" {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + "\n".join("    " + ln for ln in self.formatException(record.exc_info).splitlines())
        return line


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


def choose_format(stream: TextIO, env: Mapping[str, str] | None = None) -> str:
    """``json`` or ``text`` for ``stream``: what ``BROADCASTER_LOG_FORMAT`` says, else by TTY."""
    env = _env(env)
    wanted = (env.get(ENV) or "auto").strip().lower()
    if wanted in ("json", "text"):
        return wanted
    return "text" if is_terminal(stream) else "json"


def formatter_for(stream: TextIO, env: Mapping[str, str] | None = None) -> logging.Formatter:
    env = _env(env)
    if choose_format(stream, env) == "json":
        return JsonFormatter()
    return TextFormatter(colour=is_terminal(stream) and not env.get("NO_COLOR") and env.get("TERM") != "dumb")


def configure(level: str = "INFO", *, stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> None:
    env = _env(env)
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(stream, env))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    wanted = (env.get(ENV) or "auto").strip().lower()
    if wanted not in FORMATS:
        logging.getLogger(__name__).warning("%s=%r is not one of %s; using auto", ENV, wanted, ", ".join(FORMATS))
