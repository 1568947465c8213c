"""Does a pasted post say exactly what we signed? The rules, in the order they are applied.

1. **The texts a genuine post can have** are derived from the signed documents the way every
   channel renders them (``render.plain_text``): ``[Status] `` prefix for an update (its label
   from the *signed* status), title, the body as plain text, the announcement's link, and the
   line ``Verify: <our verify link>`` — that exact link, on our verify page, for this
   announcement. The prefix and the Verify line may be missing (status pages show the status
   apart and carry no link); nothing else may be. Variant wordings count: they are signed too.
2. **Whitespace and Unicode form do not count**: both sides are NFC-normalized and every run of
   whitespace (the ``WS`` characters below) becomes one space, so line breaks lost in copying
   do no harm. No other character is ignored — not a ``…``, not a link, not a bracket.
3. **A thread is reassembled exactly**: when the paste is not already a match, markers
   `` (i/n)`` that channels end each part with are removed — only when they run ``1/n … n/n``
   in order; a missing or misplaced part is reported as such.
4. The paste must then **equal** one of the texts. Anything else is not genuine, and the
   answer says where it first differs (a position counted in characters — code points — of
   the normalized text) and shows both sides there.

The verify page applies the same rules in JavaScript (``verify.js``: ``normalize``,
``unthread``, ``compare``) to the texts of rule 1, which the status site publishes next to each
signature (computed here, by :func:`readable_texts`); ``tests/unit/test_verify_text.py`` runs
both implementations over the same table.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import render
from .links import link_for

#: what counts as whitespace, listed so that Python and JavaScript agree on it
WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_WS_RUN = re.compile(f"[{WS}]+")
_MARK = re.compile(r" \(([0-9]{1,3})/([0-9]{1,3})\)(?= |$)")
EXCERPT = 40


def normalize(text: str) -> str:
    return _WS_RUN.sub(" ", unicodedata.normalize("NFC", text)).strip(" ")


def _plain(prefix: str, title: str, body: str, url: str | None, when: str | None = None) -> str:
    """``render.plain_text`` without the Verify line, from signed fields."""
    return render.compose_plain(prefix, title, body, url, when)


def _when(doc: dict[str, Any]) -> str | None:
    """The window line a maintenance announcement's first post carries, from the signed window."""
    window = doc.get("window") or {}
    try:
        starts, ends = (datetime.fromisoformat(str(window[k]).replace("Z", "+00:00")).timestamp()
                        for k in ("starts_at", "ends_at"))
    except (KeyError, TypeError, ValueError):
        return None
    return render.when_line(str(doc.get("kind")), starts, ends)


def readable_texts(docs: Iterable[dict[str, Any]], verify_page: str | None = None) -> list[tuple[str, str]]:
    """Every normalized text a genuine post may show, as ``(document id, text)``: rule 1.
    ``verify_page`` is our verify page (None: no Verify line is genuine)."""
    docs = list(docs)
    announcements = {d.get("id"): d for d in docs if d.get("type") == "announcement"}
    out: list[tuple[str, str]] = []
    for doc in docs:
        texts: list[str] = []
        if doc.get("type") == "announcement":
            title, body = doc.get("title") or "", doc.get("body") or ""
            pairs = [(title, body)] + [(v.get("title") or title, v["body"] if v.get("body") is not None else body)
                                       for v in (doc.get("variants") or {}).values()]
            texts = [_plain("", t, b, doc.get("url"), _when(doc)) for t, b in pairs]
            ann_id = str(doc.get("id"))
        else:
            ann_id = str(doc.get("announcement_id"))
            parent = announcements.get(ann_id) or {}
            titles = [doc.get("title") or ""]
            if parent and doc.get("title") == parent.get("title"):  # the update took each channel's title
                titles += [v["title"] for v in (parent.get("variants") or {}).values() if v.get("title")]
            status = str(doc.get("status") or "")
            prefix = f"[{render.STATUS_LABELS.get(status, status)}] "
            texts = [_plain(p, t, doc.get("body") or "", None) for t in titles for p in (prefix, "")]
        link = f"\n\nVerify: {link_for(verify_page, ann_id)}" if verify_page else None
        for text in texts:
            for candidate in ([text + link] if link else []) + [text]:
                entry = (str(doc.get("id")), normalize(candidate))
                if entry not in out:
                    out.append(entry)
    return out


def unthread(text: str) -> tuple[str, str | None]:
    """Rule 3: ``(text without thread markers, None)``, or ``(text, what is wrong)``."""
    marks = list(_MARK.finditer(text))
    if not marks:
        return text, None
    n = int(marks[-1].group(2))
    own = [m for m in marks if int(m.group(2)) == n]
    numbers = [int(m.group(1)) for m in own]
    if numbers != list(range(1, n + 1)):
        missing = [str(i) for i in range(1, n + 1) if i not in numbers]
        if missing:
            return text, f"part {', '.join(missing)} of the {n}-part thread is missing: paste every part, in order"
        return text, f"the thread parts are not in order 1/{n} ... {n}/{n}: paste every part, in order"
    pieces, pos = [], 0
    for m in own:
        pieces.append(text[pos:m.start()])
        pos = m.end()
    pieces.append(text[pos:])
    return "".join(pieces), None


@dataclass(frozen=True)
class TextMatch:
    ok: bool
    reason: str
    entry: str | None = None  # the id of the signed document the text is, when ok


def _common(a: str, b: str) -> int:
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    return i


def compare(pasted: str, expected: list[tuple[str, str]]) -> TextMatch:
    """Rules 2-4: is ``pasted`` exactly one of ``expected`` (from :func:`readable_texts`)?"""
    text = normalize(pasted)
    if not text:
        return TextMatch(False, "there is no text to compare")
    if not expected:
        return TextMatch(False, "there is no signed text to compare with")
    for entry, want in expected:
        if text == want:
            return TextMatch(True, f"the text is exactly what we signed ({entry})", entry)
    joined, problem = unthread(text)
    if problem:
        return TextMatch(False, problem)
    for entry, want in expected:
        if joined == want:
            return TextMatch(True, f"the thread, put together, is exactly what we signed ({entry})", entry)
    best, at = expected[0][1], -1
    for _entry, want in expected:
        common = _common(joined, want)
        if common > at:
            best, at = want, common
    if at == len(joined):
        reason = f"the text stops at character {at}, but the signed text goes on: \"{best[at:at + EXCERPT]}\""
    elif at == len(best):
        reason = f"extra text after the signed text, from character {at + 1}: \"{joined[at:at + EXCERPT]}\""
    else:  # both excerpts start at the word the difference is in (at most 20 characters back)
        start = max(joined.rfind(" ", 0, at) + 1, at - 20)
        reason = (f"the text differs from character {at + 1}: it has \"{joined[start:start + EXCERPT]}\" "
                  f"where we signed \"{best[start:start + EXCERPT]}\"")
    if "…" in joined:
        reason += " (a \"…\" marks left-out text: only a complete post can be verified)"
    return TextMatch(False, reason)


def match_text(pasted: str, docs: Iterable[dict[str, Any]], verify_page: str | None = None) -> TextMatch:
    """Is ``pasted`` exactly a genuine rendering of one of ``docs`` (all signature-checked)?"""
    return compare(pasted, readable_texts(docs, verify_page))
