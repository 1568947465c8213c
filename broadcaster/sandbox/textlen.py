"""Length rules as the providers apply them, written independently of ``broadcaster.render``
so the sandbox can catch a wrong counter in an adapter rather than share its mistake."""

from __future__ import annotations

import re
import unicodedata

import regex

URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
MENTION = re.compile(r"(@[A-Za-z0-9_]+)@[A-Za-z0-9.\-]+[A-Za-z0-9]")
# twitter-text v3: code points of weight 1; everything else weighs 2
_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))


def graphemes(text: str) -> int:
    return len(regex.findall(r"\X", text))


def mastodon_length(text: str, spoiler: str = "", url_length: int = 23) -> int:
    """Graphemes of spoiler + text, each URL counting ``url_length``, remote mentions as ``@user``."""
    shaped = MENTION.sub(r"\1", URL.sub("x" * url_length, text))
    return graphemes(spoiler) + graphemes(shaped)


def _is_emoji(cluster: str) -> bool:
    return any(0x1F000 <= ord(c) <= 0x1FAFF or 0x2600 <= ord(c) <= 0x27BF or c == "\u200d" for c in cluster) and (
        len(cluster) > 1 or ord(cluster) >= 0x1F000
    )


def x_weighted_length(text: str) -> int:
    """Approximate twitter-text v3: NFC, URLs 23, emoji clusters 2, light code points 1, others 2."""
    text = unicodedata.normalize("NFC", text)
    total = 0
    pos = 0
    for match in URL.finditer(text):
        total += _weigh(text[pos : match.start()]) + 23
        pos = match.end()
    return total + _weigh(text[pos:])


def _weigh(text: str) -> int:
    total = 0
    for cluster in regex.findall(r"\X", text):
        if _is_emoji(cluster):
            total += 2
            continue
        for ch in cluster:
            cp = ord(ch)
            total += 1 if any(lo <= cp <= hi for lo, hi in _LIGHT) else 2
    return total
