"""Pure text shaping: the Markdown subset to plain text and HTML, and fitting text to a limit.

No I/O. Channels call these from ``render``; ``POST /preview`` shows exactly their output.
The Markdown subset is: paragraphs, ``[text](url)`` links, bare URLs, ``*em*``/``_em_``,
``**strong**``, ``- `` / ``* `` / ``1. `` lists. Everything else is shown as written.

Length rules differ per provider (characters, grapheme clusters, UTF-8 bytes, X's weighted
count, links at a fixed weight), so every fitting function takes the counter as an argument and
the counters live here as pure functions.
"""

from __future__ import annotations

import bisect
import functools
import html
import math
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime

import regex

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


#: a host name in a link label (``bank.example``, ``https://www.bank.example/x``)
_HOSTISH = re.compile(r"(?i)(?:https?://)?((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9])(?![\w-])")
#: placeholders for links while emphasis is applied (private-use code points; see ``_shield``)
_OPEN, _CLOSE = "\ue000", "\ue001"
_SLOT = re.compile(f"{_OPEN}(\\d+){_CLOSE}")


def _host(url: str) -> str:
    m = re.match(r"(?i)https?://([^/?#:@\s]+@)?([^/?#:\s]+)", url)
    return (m.group(2) if m else "").lower().rstrip(".")


def misleading_label(label: str, url: str) -> bool:
    """True when a link's label names another place than its target (``[https://bank.example]
    (https://evil.example)``): such a label would make readers trust the wrong site."""
    target = _host(url)
    for m in _HOSTISH.finditer(label):
        host = m.group(1).lower().rstrip(".")
        if host != target and not target.endswith("." + host):
            return True
    return False


def link_label(label: str, url: str) -> str:
    """What a link shows: its label, or its real target when the label names another site."""
    return url if misleading_label(label, url) else label


def honest_links(md: str) -> str:
    """The Markdown with every misleading link label replaced by the link's target, for
    providers that render the author's Markdown themselves (Cachet)."""
    return _LINK.sub(lambda m: f"[{link_label(m.group(1), m.group(2))}]({m.group(2)})", md)


def _shield(line: str, link: Callable[[str, str], str], bare: Callable[[str], str]) -> tuple[str, list[str]]:
    """Swap every link and bare URL for a placeholder so emphasis is never applied inside a URL
    (``https://x.example/a_b_`` stays whole); returns the line and what the placeholders stand for.

    Private-use placeholders the author typed are replaced first, so they cannot pull a URL in."""
    line = line.replace(_OPEN, "\ufffd").replace(_CLOSE, "\ufffd")
    saved: list[str] = []

    def keep(text: str) -> str:
        saved.append(text)
        return f"{_OPEN}{len(saved) - 1}{_CLOSE}"

    line = _LINK.sub(lambda m: keep(link(m.group(1), m.group(2))), line)
    pieces, pos = [], 0
    for m in URL_RE.finditer(line):
        pieces.append(line[pos : m.start()])
        pieces.append(keep(bare(m.group(0))))
        pos = m.end()
    pieces.append(line[pos:])
    return "".join(pieces), saved


def _unshield(line: str, saved: list[str]) -> str:
    return _SLOT.sub(lambda m: saved[int(m.group(1))], line)


def _plain_emphasis(text: str) -> str:
    text = _STRONG.sub(lambda m: m.group(1) or m.group(2), text)
    return _EM.sub(lambda m: m.group(1) or m.group(2), text)


def markdown_to_text(md: str) -> str:
    """Markdown subset → plain text: links become ``text (url)`` unless the text is the URL, or
    just ``url`` when the text names another site; emphasis marks go, but never inside a URL."""

    def link(label: str, url: str) -> str:
        shown = link_label(label, url)
        if shown.strip() == url:
            return url
        label_text, urls = _shield(shown, lambda t, u: f"[{t}]({u})", lambda u: u)  # a URL in the label too
        return f"{_unshield(_plain_emphasis(label_text), urls)} ({url})"

    out = []
    for raw in md.replace("\r\n", "\n").split("\n"):
        line, saved = _shield(raw, link, lambda u: u)
        line = _unshield(_plain_emphasis(line), saved)
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
        if all(_BULLET.match(line) for line in lines):
            items = "".join(f"<li>{_inline_html(_BULLET.sub('', line))}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        elif all(_NUMBERED.match(line) for line in lines):
            items = "".join(f"<li>{_inline_html(_NUMBERED.sub('', line))}</li>" for line in lines)
            out.append(f"<ol>{items}</ol>")
        else:
            out.append("<p>" + "<br>\n".join(_inline_html(line) for line in lines) + "</p>")
    return "\n".join(out)


def _inline_html(text: str) -> str:
    def link(label: str, url: str) -> str:
        shown = link_label(label, url)
        label_text, urls = _shield(shown, lambda t, u: html.escape(f"[{t}]({u})"), html.escape)
        inner = _unshield(_emphasis_html(html.escape(label_text)), urls)
        return f'<a href="{html.escape(url, quote=True)}">{inner}</a>'

    def bare(url: str) -> str:
        u = html.escape(url, quote=True)
        return f'<a href="{u}">{u}</a>'

    line, saved = _shield(text, link, bare)
    return _unshield(_emphasis_html(html.escape(line)), saved)


def _emphasis_html(escaped: str) -> str:
    escaped = _STRONG.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", escaped)
    return _EM.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", escaped)


def html_body(body: str, when: str | None = None) -> str:
    """The body as HTML, after the window line of a maintenance announcement's first post."""
    html_text = markdown_to_html(body)
    if when:
        label, _, value = when.partition(": ")
        html_text = f"<p><strong>{html.escape(label)}:</strong> {html.escape(value)}</p>\n" + html_text
    return html_text


# ---------------------------------------------------------------- maintenance windows


EN_DASH = "\u2013"  # a range, as typeset (written as an escape so no one mistakes it for "-")


def _day(dt: datetime) -> str:
    return f"{dt.day} {dt:%b %Y}"


def window_text(starts_at: float, ends_at: float) -> str:
    """A window as people read it, in UTC: ``30 Nov 2026, 04:30-06:00 UTC`` (an en dash between
    the times), or with both days when it crosses midnight: ``30 Nov 2026, 22:00 - 1 Dec 2026,
    02:00 UTC`` (an en dash between spaces)."""
    start, end = (datetime.fromtimestamp(t, UTC) for t in (starts_at, ends_at))
    if start.date() == end.date():
        return f"{_day(start)}, {start:%H:%M}{EN_DASH}{end:%H:%M} UTC"
    return f"{_day(start)}, {start:%H:%M} {EN_DASH} {_day(end)}, {end:%H:%M} UTC"


def when_line(kind: str, starts_at: float | None, ends_at: float | None) -> str | None:
    """``"When: <window>"`` for a maintenance announcement with a window, else None."""
    if kind != "maintenance" or starts_at is None or ends_at is None:
        return None
    return f"When: {window_text(starts_at, ends_at)}"


def window_line(message: Message) -> str | None:
    """The window line the first post of a maintenance announcement carries on every channel
    (updates do not repeat it: they say what changed)."""
    a = message.announcement
    if message.update is not None or a.window is None:
        return None
    return when_line(a.kind, a.window.starts_at, a.window.ends_at)


def status_prefix(message: Message) -> str:
    """``"[Resolved] "`` for updates, ``""`` for first posts."""
    if message.update is None:
        return ""
    return f"[{STATUS_LABELS.get(message.update.status, message.update.status)}] "


def compose_plain(prefix: str, title: str, body: str, url: str | None, when: str | None = None) -> str:
    """Status prefix and title, the window line, the body as plain text, the link: the order
    every channel's plain text (and what signature checks expect) follows."""
    text = prefix + title.strip()
    if when:
        text += "\n\n" + when
    body_text = markdown_to_text(body)
    if body_text:
        text += "\n\n" + body_text
    if url and url not in text:
        text += f"\n\n{url}"
    return text


def plain_text(title: str, body: str, message: Message) -> str:
    """The one-piece plain text most channels post: title, window (maintenance), body, link."""
    url = message.announcement.url if message.update is None else None
    text = compose_plain(status_prefix(message), title, body, url, window_line(message))
    if message.verify_link:
        text += message.verify_link
    return text


# ---------------------------------------------------------------- counting

Counter = Callable[[str], int]

_GRAPHEME = regex.compile(r"\X")
#: ``@user@domain`` counts as ``@user`` on Mastodon (the domain is not shown to local readers)
_REMOTE_MENTION = re.compile(r"(?<![\w@])(@\w+)@[\w.-]+\.\w+")
#: bare domains X turns into t.co links (a short list of common TLDs: an approximation)
_BARE_DOMAIN = re.compile(
    r"(?<![\w@./:-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    r"(?:com|org|net|io|dev|app|co|ai|gov|edu|info|me|ly|uk|de|fr|eu|us|ca|nl|be|ch|jp|social|page|cloud)"
    r"(?:/[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"])?(?![\w-])",
    re.I,
)
#: code points X weighs as one character; everything else weighs two (twitter-text v3)
_X_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_EMOJI_CLUSTER = regex.compile(r"\p{Emoji_Presentation}|\p{Extended_Pictographic}\uFE0F|\u20E3|\p{Regional_Indicator}")


def graphemes(text: str) -> list[str]:
    """User-perceived characters (extended grapheme clusters): 👍🏽, é and 🇺🇸 are one each."""
    return _GRAPHEME.findall(text)


def grapheme_len(text: str) -> int:
    return len(graphemes(text))


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def url_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` string indices of every http(s) URL, in order."""
    return [m.span() for m in URL_RE.finditer(text)]


def with_urls_as(weight: int, counter: Counter, spans: Callable[[str], list[tuple[int, int]]] = url_spans) -> Counter:
    """A counter where each URL weighs ``weight`` and the rest is measured by ``counter``."""

    def count(text: str) -> int:
        total, pos = 0, 0
        for start, end in spans(text):
            total += counter(text[pos:start]) + weight
            pos = end
        return total + counter(text[pos:])

    return count


def mastodon_length(text: str, url_weight: int = 23) -> int:
    """Mastodon's rule: grapheme clusters; a URL is ``url_weight``; ``@user@domain`` is ``@user``."""
    return with_urls_as(url_weight, grapheme_len)(_REMOTE_MENTION.sub(r"\1", text))


def _x_plain(text: str) -> int:
    if text.isascii():
        return len(text)  # every ASCII code point is light and none is an emoji presentation
    return sum(_x_cluster(cluster) for cluster in graphemes(text))


@functools.lru_cache(maxsize=4096)
def _x_cluster(cluster: str) -> int:
    """One grapheme cluster's X weight (cached: texts repeat the same few clusters)."""
    if _EMOJI_CLUSTER.search(cluster):
        return 2  # an emoji sequence (ZWJ family, skin tone, flag, keycap) counts as one emoji
    return sum(1 if any(lo <= ord(ch) <= hi for lo, hi in _X_LIGHT) else 2 for ch in cluster)


def _x_url_spans(text: str) -> list[tuple[int, int]]:
    """URLs, then bare domains that do not start inside one (found by bisecting the URLs'
    starts, so many links in a long text cost n log n, not URLs × domains)."""
    urls = url_spans(text)
    starts = [s for s, _ in urls]
    spans = list(urls)
    for m in _BARE_DOMAIN.finditer(text):
        at = bisect.bisect_right(starts, m.start()) - 1
        if at < 0 or m.start() >= urls[at][1]:
            spans.append(m.span())
    return sorted(spans)


def x_length(text: str, url_weight: int = 23) -> int:
    """X's weighted length (twitter-text v3), NFC-normalised: light code points 1, others 2,
    any emoji sequence 2, any URL (including a bare ``example.com``) ``url_weight``."""
    return with_urls_as(url_weight, _x_plain, _x_url_spans)(unicodedata.normalize("NFC", text))


def bluesky_length(text: str) -> int:
    """Bluesky's two limits (300 graphemes and 3000 UTF-8 bytes) as one number against 300:
    the larger of the grapheme count and a tenth of the byte count, rounded up."""
    return max(grapheme_len(text), math.ceil(utf8_len(text) / 10))


# ---------------------------------------------------------------- fitting


def fit(text: str, limit: int, count: Counter, mode: str, channel: str) -> list[str]:
    """Make ``text`` fit ``limit``: one part if it does; else thread, truncate or reject."""
    length = count(text)
    if length <= limit:
        return [text]
    if mode == "reject":
        raise ContentRejected(f"{channel}: text is {length} long, the limit is {limit}")
    if mode == "truncate":
        return [truncate(text, limit, count)]
    return split_thread(text, limit, count)


def _last_fitting(fits: Callable[[int], bool], lo: int, hi: int, guess: int | None = None) -> int:
    """The largest ``m`` in ``lo..hi`` with ``fits(m)``, or ``lo - 1`` when ``fits(lo)`` fails.

    Galloping from ``guess`` (the previous part's size lands near the answer) or from ``lo``,
    then bisecting, so finding a cut costs O(part × log part) counter work instead of one count
    per token (quadratic). It assumes what every channel counter satisfies at word boundaries:
    a longer prefix never measures less than a shorter one. Each answer is still a cut the real
    counter measured as fitting, so a part is never over the limit whatever the counter does."""
    if lo > hi:
        return lo - 1
    good, bad = lo - 1, hi + 1  # invariant: good fits (or is lo - 1), bad does not (or is hi + 1)
    if guess is not None and lo < guess <= hi:
        if fits(guess):
            good = guess
        else:
            bad, step = guess, 1
            while bad - step > lo and not fits(bad - step):  # gallop down to a cut that fits
                bad, step = bad - step, step * 2
            if bad - step > lo:
                good = bad - step
    if good < lo:
        if not fits(lo):
            return lo - 1
        good = lo
    step = 1
    while good + step < bad:  # gallop up: good fits; find a bad (or the end) above it
        probe = good + step
        if not fits(probe):
            bad = probe
            break
        good, step = probe, step * 2
    while bad - good > 1:  # bisect: good fits, bad does not (or is past the end)
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def truncate(text: str, limit: int, count: Counter, ellipsis: str = "…") -> str:
    """Cut at a word boundary and add ``ellipsis``; a first word too long is cut by grapheme."""
    if count(text) <= limit:
        return text
    offsets = _offsets(_tokens(text))
    # the most whole tokens whose (right-stripped) text plus the ellipsis fits
    m = _last_fitting(lambda k: count(text[: offsets[k]].rstrip() + ellipsis) <= limit, 1, len(offsets) - 1)
    out = text[: offsets[max(m, 0)]]
    if out.strip():
        return out.rstrip() + ellipsis
    # no whole word fits: fall back to cutting inside it, grapheme by grapheme from the start
    ends = _offsets(graphemes(text))
    g = _last_fitting(lambda k: count(out + text[: ends[k]] + ellipsis) <= limit, 1, len(ends) - 1)
    return out + text[: ends[max(g, 0)]] + ellipsis


def _tokens(text: str) -> list[str]:
    """Words with their trailing whitespace; URLs are single tokens (never split)."""
    return re.findall(r"\S+\s*|\s+", text)


def _offsets(pieces: list[str]) -> list[int]:
    """``offsets[k]`` is where piece ``k`` starts in ``"".join(pieces)`` (the last is the end),
    so any run of pieces is one slice of the text."""
    out = [0]
    for piece in pieces:
        out.append(out[-1] + len(piece))
    return out


def _ends_sentence(token: str) -> bool:
    return "\n" in token or bool(re.search(r"[.!?…:]$", token.rstrip()))


def split_thread(text: str, limit: int, count: Counter) -> list[str]:
    """Split into numbered parts ``" (i/n)"`` at sentence or word boundaries, never mid-word.

    Prefers a sentence end when it leaves the part at least half full. A single word longer
    than the room left beside the numbering (a giant URL) is refused with ``ContentRejected``.
    """
    text = text.strip()
    tokens = _tokens(text)
    sizes = [count(tok.strip()) for tok in tokens]  # measured once for every numbering width
    for width in (1, 2, 3):
        biggest = "9" * width
        room = limit - count(f" ({biggest}/{biggest})")
        parts = _pack(text, tokens, sizes, room, count, int(biggest))
        if len(parts) <= int(biggest):
            n = len(parts)
            out = [f"{p} ({i}/{n})" for i, p in enumerate(parts, 1)]
            for part in out:  # a safety net for counters that are not additive
                if count(part) > limit:
                    raise ContentRejected(f"a thread part is {count(part)} long, the limit is {limit}")
            return out
    raise ContentRejected("text too long to thread")


def _pack(text: str, tokens: list[str], sizes: list[int], room: int, count: Counter, most: int) -> list[str]:
    """Greedy packing of whole tokens (``"".join(tokens) == text``, ``sizes`` their stripped
    lengths) into parts of at most ``room``; stops once there are more than ``most`` parts,
    as the caller then tries a wider numbering anyway.

    Each part takes the most tokens that fit (found by :func:`_last_fitting`), then steps back
    to the last sentence end inside it if that keeps the part at least half full."""
    if room <= 0:
        raise ContentRejected("limit too small to thread")
    for tok, size in zip(tokens, sizes, strict=True):
        if size > room:
            raise ContentRejected(f"a single word or link is longer than the limit ({room}): {tok.strip()[:40]}…")
    offsets = _offsets(tokens)
    sentence_ends = [k for k, tok in enumerate(tokens) if _ends_sentence(tok)]
    n = len(tokens)
    parts: list[str] = []
    i = size = 0
    while i < n and len(parts) <= most:
        start = offsets[i]

        def measure(j: int, start: int = start) -> int:  # the part made of tokens[i:j]
            return count(text[start : offsets[j]].rstrip())

        guess = i + size if size else None  # parts of a text tend to take as many tokens
        j = max(_last_fitting(lambda m: measure(m) <= room, i + 1, n, guess), i + 1)  # never stall
        if j < n:  # overflow: step back to the last sentence end if that keeps the part half full
            # the last sentence end among tokens[i + 1 : j]: an earlier one measures less still
            at = bisect.bisect_right(sentence_ends, j - 1) - 1
            if at >= 0 and sentence_ends[at] > i and measure(sentence_ends[at] + 1) >= room // 2:
                j = sentence_ends[at] + 1
        part = text[start : offsets[j]].strip()
        if part:
            parts.append(part)
        size, i = j - i, j
    return parts
