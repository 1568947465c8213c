"""SMS segment counting (pure): how many billed messages a text becomes.

A text whose every character is in the GSM 03.38 alphabet travels as 7-bit septets: 160 in one
message, or 153 per segment once it is split (each segment loses 7 septets to the header that
ties the parts together). Characters of the GSM extension table (``^ { } \\ [ ~ ] | €`` and
form feed) take two septets (an escape and the character), and a segment never ends between
the two. Any other character switches the whole message to UCS-2: 70 UTF-16 code units in one
message, 67 per segment, and a surrogate pair (most emoji) is never split either.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

#: (single message, per segment of a split message) in the encoding's unit
GSM7_LIMITS = (160, 153)
UCS2_LIMITS = (70, 67)


@dataclass(frozen=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int  # billed messages


def is_gsm7(text: str) -> bool:
    return all(c in GSM_BASIC or c in GSM_EXTENSION for c in text)


def _pack(widths: list[int], single: int, per_segment: int) -> int:
    """Messages needed when no character (escape pair, surrogate pair) may straddle two."""
    total = sum(widths)
    if total <= single:
        return 1 if widths else 0
    count, used = 1, 0
    for w in widths:
        if used + w > per_segment:
            count, used = count + 1, 0
        used += w
    return count


def segments(text: str) -> Segments:
    if is_gsm7(text):
        widths = [2 if c in GSM_EXTENSION else 1 for c in text]
        return Segments("GSM-7", sum(widths), _pack(widths, *GSM7_LIMITS))
    widths = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return Segments("UCS-2", sum(widths), _pack(widths, *UCS2_LIMITS))


def segment_count(text: str) -> int:
    """Billed messages for ``text`` (the length rule the SMS channel fits texts to)."""
    return segments(text).count
