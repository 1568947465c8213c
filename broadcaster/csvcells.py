"""CSV cells a spreadsheet shows as text (the subscriber export, and everything that reads it back).

A cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is evaluated as a
formula by spreadsheets (``=HYPERLINK(...)`` from a public sign-up form runs on the admin's
machine). Following OWASP's advice on CSV injection, such a cell is written behind a single
quote, which spreadsheets display as text. Quotes already in front of a trigger get one more,
so :func:`from_text_cell` always removes exactly what :func:`as_text_cell` added: the export
round-trips without loss, and every other value is written unchanged.
"""

from __future__ import annotations

import re

#: a cell a spreadsheet would evaluate, behind any quotes already prefixed
_FORMULA = re.compile(r"^'*[=+\-@\t\r]")


def as_text_cell(value: str) -> str:
    """``value`` as a cell spreadsheets show as text (``=1+1`` → ``'=1+1``; ``'=x`` → ``''=x``)."""
    return "'" + value if _FORMULA.match(value) else value


def from_text_cell(value: str) -> str:
    """The inverse of :func:`as_text_cell`."""
    return value[1:] if value.startswith("'") and _FORMULA.match(value) else value
