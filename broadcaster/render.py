"""Pure text shaping: the Markdown subset to plain text and HTML, and fitting text to a limit.

No I/O. Channels call these from ``render``; ``POST /preview`` shows exactly their output.
The Markdown subset is: paragraphs, ``[text](url)`` links, bare URLs, ``*em*``/``_em_``,
``**strong**``, ``- `` / ``* `` / ``1. `` lists. Everything else is shown as written.
"""

from __future__ import annotations

import html
import re
from typing import Callable

from .errors import ContentRejected
from .models import Message

URL_RE = re.compile(r"https?://[^\s<>()\[\]]+[^\s<>()\[\].,;:!?'\"]")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_STRONG = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])|(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])")
_BULLET = re.compile(r"^\s*([-*+])\s+")
_NUMBERED = re.compile(r"^\s*(\d+)[.)]\s+")

STATUS_LABELS = {
    "investigating": "Investigating",
    "identified": "Identified",
    "monitoring": "Monitoring",
    "resolved": "Resolved",
    "scheduled": "Scheduled",
    "in_progress": "In progress",
    "completed": "Completed",
    "cancelled": "Cancelled",
}


def title_and_body(message: Message, channel: str) -> tuple[str, str]:
    """Title and body for ``channel``: the update's text, or the announcement's variant."""
    a = message.announcement
    title, body = a.variant(channel)
    if message.update is not None:
        title = message.update.title or title
        body = message.update.body
    return title, body


def markdown_to_text(md: str) -> str:
    """Markdown subset → plain text: links become ``text (url)`` unless the text is the URL."""

    def link(m: re.Match) -> str:
        label, url = m.group(1), m.group(2)
        return url if label.strip() == url else f"{label} ({url})"

    out = []
    for line in md.replace("\r\n", "\n").split("\n"):
        line = _LINK.sub(link, line)
        line = _STRONG.sub(lambda m: m.group(1) or m.group(2), line)
        line = _EM.sub(lambda m: m.group(1) or m.group(2), line)
        line = _BULLET.sub("• ", line)
        out.append(line.rstrip())
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def markdown_to_html(md: str) -> str:
    """Markdown subset → safe HTML. Every piece of user text is escaped first."""
    blocks = re.split(r"\n\s*\n", md.replace("\r\n", "\n").strip()) if md.strip() else []
    out = []
    for block in blocks:
        lines = block.split("\n")
        if all(_BULLET.match(l) for l in lines):
            items = "".join(f"<li>{_inline_html(_BULLET.sub('', l))}</li>" for l in lines)
            out.append(f"<ul>{items}</ul>")
        elif all(_NUMBERED.match(l) for l in lines):
            items = "".join(f"<li>{_inline_html(_NUMBERED.sub('', l))}</li>" for l in lines)
            out.append(f"<ol>{items}</ol>")
        else:
            out.append("<p>" + "<br>\n".join(_inline_html(l) for l in lines) + "</p>")
    return "\n".join(out)


def _inline_html(text: str) -> str:
    pieces = []
    pos = 0
    for m in _LINK.finditer(text):
        pieces.append(_emphasis_html(_autolink(text[pos : m.start()])))
        pieces.append(f'<a href="{html.escape(m.group(2), quote=True)}">{html.escape(m.group(1))}</a>')
        pos = m.end()
    pieces.append(_emphasis_html(_autolink(text[pos:])))
    return "".join(pieces)


def _autolink(text: str) -> str:
    parts = []
    pos = 0
    for m in URL_RE.finditer(text):
        parts.append(html.escape(text[pos : m.start()]))
        u = html.escape(m.group(0), quote=True)
        parts.append(f'<a href="{u}">{u}</a>')
        pos = m.end()
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


def _emphasis_html(escaped: str) -> str:
    escaped = _STRONG.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", escaped)
    return _EM.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", escaped)


def html_body(body: str) -> str:
    return markdown_to_html(body)


def status_prefix(message: Message) -> str:
    """``"[Resolved] "`` for updates, ``""`` for first posts."""
    if message.update is None:
        return ""
    return f"[{STATUS_LABELS.get(message.update.status, message.update.status)}] "


def plain_text(title: str, body: str, message: Message) -> str:
    """The one-piece plain text most channels post: title, body, link."""
    text = status_prefix(message) + title.strip()
    body_text = markdown_to_text(body)
    if body_text:
        text += "\n\n" + body_text
    url = message.announcement.url
    if url and message.update is None and url not in text:
        text += f"\n\n{url}"
    return text


def fit(text: str, limit: int, count: Callable[[str], int], mode: str, channel: str) -> list[str]:
    """Make ``text`` fit ``limit``: one part if it does; else thread, truncate or reject."""
    if count(text) <= limit:
        return [text]
    if mode == "reject":
        raise ContentRejected(f"{channel}: text is {count(text)} long, the limit is {limit}")
    if mode == "truncate":
        return [truncate(text, limit, count)]
    return split_thread(text, limit, count)


def truncate(text: str, limit: int, count: Callable[[str], int], ellipsis: str = "…") -> str:
    words = _tokens(text)
    out = ""
    for w in words:
        if count(out + w + ellipsis) > limit:
            break
        out += w
    return out.rstrip() + ellipsis


def _tokens(text: str) -> list[str]:
    """Words with their trailing whitespace; URLs are single tokens (never split)."""
    return re.findall(r"\S+\s*|\s+", text)


def split_thread(text: str, limit: int, count: Callable[[str], int]) -> list[str]:
    """Split into numbered parts ``" (i/n)"`` at sentence or word boundaries, never mid-word.

    Prefers a sentence end when it leaves the part at least half full. A single word longer
    than the limit (a giant URL) cannot be split and is refused with ``ContentRejected``.
    """
    for n_guess in (9, 99, 999):
        suffix_room = len(f" ({n_guess}/{n_guess})")
        parts = _pack(text, limit - suffix_room, count)
        if len(parts) <= n_guess:
            n = len(parts)
            return [f"{p} ({i}/{n})" for i, p in enumerate(parts, 1)]
    raise ContentRejected("text too long to thread")


def _pack(text: str, room: int, count: Callable[[str], int]) -> list[str]:
    if room <= 0:
        raise ContentRejected("limit too small to thread")
    tokens = _tokens(text)
    parts: list[str] = []
    current = ""
    last_sentence_end = -1  # index in current where a sentence ended
    for tok in tokens:
        if count(tok.strip()) > room:
            raise ContentRejected(f"a single word or link is longer than the limit ({room})")
        candidate = current + tok
        if count(candidate.rstrip()) <= room:
            current = candidate
            if re.search(r"[.!?…]\s*$", tok) or "\n" in tok:
                last_sentence_end = len(current)
            continue
        if last_sentence_end > 0 and count(current[:last_sentence_end].rstrip()) >= room // 2:
            head, tail = current[:last_sentence_end], current[last_sentence_end:]
            parts.append(head.rstrip())
            current = tail + tok
        else:
            parts.append(current.rstrip())
            current = tok
        current = current.lstrip()
        last_sentence_end = -1
    if current.strip():
        parts.append(current.rstrip())
    return [p for p in parts if p]
