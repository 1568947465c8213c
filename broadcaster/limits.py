"""What every channel and the ledger can hold, checked once where text comes in.

Two rules, shared by every intake (API, web page, CLI, break glass, subscriber form and CSV
import, token creation):

* **characters** — no control characters anywhere (NUL, ANSI escapes, BEL, DEL, C1); a
  multi-line field (a body) may hold tabs and newlines, a one-line field (a title, a status, a
  name, an address) holds neither — nor CR, U+2028 or U+2029, which mail headers, chat titles
  and the ledger's one-line columns cannot carry. PostgreSQL refuses NUL in any text column and
  an email ``Subject`` refuses a line break *at send time*: refused here, the author hears it at
  once instead of a channel failing later.
* **hidden text** — Unicode bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E,
  U+200F, U+061C) reorder what a reader sees ("Trojan Source" spoofing: a title that reads
  ``Resolved`` but is not), and the invisible operators U+2060–U+2064 and U+FEFF (a BOM too)
  hide text; both are refused in every field. Zero-width space and non-joiner (U+200B, U+200C)
  are refused in one-line fields, where they make two names that look the same. The zero-width
  joiner U+200D stays allowed everywhere: emoji sequences (👩‍💻, 🏳️‍🌈) need it, and so do flags
  built from regional indicators and tag characters, which are not format controls.
* **lengths** — a value bound for a ``VARCHAR(n)`` column is limited to ``n``, read from
  :mod:`broadcaster.ledger.columns` (read from the schema), so the check and the column cannot
  drift apart. (SQLite would store any length; PostgreSQL refuses the statement.)
"""

from __future__ import annotations

import re

from .ledger.columns import (  # the columns' own lengths, read from the schema
    CHANNEL as CHANNEL,
    ID as ID,
    IDEMPOTENCY_KEY as IDEMPOTENCY_KEY,
    STATUS as STATUS,
    SUBSCRIBER_ADDRESS as SUBSCRIBER_ADDRESS,
    SUBSCRIBER_LIST as SUBSCRIBER_LIST,
    TOKEN_NAME as TOKEN_NAME,
)

#: control characters refused everywhere (tab, LF and CR are decided per field)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: what ends a line somewhere: one-line fields refuse these and tabs
BREAKS = re.compile(r"[\t\n\r\u2028\u2029]")
#: characters that reorder or hide text: refused everywhere
HIDDEN = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
#: zero-width characters refused in one-line fields (not U+200D, the joiner emoji sequences use)
ZERO_WIDTH = re.compile("[\u200b\u200c]")


def text_problem(value: str, *, one_line: bool) -> str | None:
    """Why ``value`` cannot be stored and sent as it is, or None. Pure."""
    if CONTROL.search(value):
        return "contains control characters" + ("" if one_line else " (only tabs and newlines are allowed)")
    if one_line and BREAKS.search(value):
        return "must be one line (no line breaks or tabs)"
    return hidden_problem(value, one_line=one_line)


def hidden_problem(value: str, *, one_line: bool) -> str | None:
    """Why ``value`` would show a reader other text than the one stored (reordered or hidden), or None."""
    hidden = HIDDEN.search(value) or (ZERO_WIDTH.search(value) if one_line else None)
    if hidden:
        return f"contains an invisible or text-direction control character (U+{ord(hidden.group()):04X})"
    return None


def cleaned(value: str, *, one_line: bool) -> str:
    """``value`` with what :func:`text_problem` refuses taken out, for text that arrives from
    systems nobody can ask to send it again (an alert's annotations): control characters and
    hidden ones (bidirectional controls, invisible operators, and in a one-line field zero-width
    spaces) are removed; in a one-line field every line break and tab becomes a space and runs
    of blanks one. The same rules as the check, so ``text_problem(cleaned(v, …), …)`` is None."""
    text = HIDDEN.sub("", CONTROL.sub("", multiline(value)))
    if one_line:
        return re.sub(" {2,}", " ", ZERO_WIDTH.sub("", BREAKS.sub(" ", text))).strip()
    return text


def multiline(value: str) -> str:
    """A body as channels get it: CRLF and lone CR (what a browser's textarea sends) become LF."""
    return value.replace("\r\n", "\n").replace("\r", "\n")
