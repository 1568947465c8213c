"""Thread splitting and truncation find their cuts by galloping/bisecting with the channel's real
counter instead of re-measuring the growing part after every word (which was quadratic: a 20 kB
preview cost seconds of CPU per channel, a 5,000-``&`` title minutes on Telegram).

The property tests compare them with the old word-by-word algorithm, kept here verbatim as the
reference, on random texts (URLs, bare domains, remote mentions, emoji sequences, combining
marks, CJK, HTML entities, long words, sentence ends, newlines) for every channel counter.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from broadcaster import render
from broadcaster.channels import _sms
from broadcaster.channels.linkedin import commentary_length
from broadcaster.channels.telegram import escape as telegram_escape, visible_length
from broadcaster.errors import ContentRejected

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
THUMB = "\U0001F44D\U0001F3FD"
FLAG = "\U0001F1FA\U0001F1F8"
KEYCAP = "1\ufe0f\u20e3"

# ---------------------------------------------------------------- the reference (the old code)


def _ref_tokens(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


def _ref_ends_sentence(token: str) -> bool:
    return "\n" in token or bool(re.search(r"[.!?…:]$", token.rstrip()))


def ref_truncate(text: str, limit: int, count: render.Counter, ellipsis: str = "…") -> str:
    if count(text) <= limit:
        return text
    out = ""
    for w in _ref_tokens(text):
        if count((out + w).rstrip() + ellipsis) > limit:
            break
        out += w
    if out.strip():
        return out.rstrip() + ellipsis
    for g in render.graphemes(text):
        if count(out + g + ellipsis) > limit:
            break
        out += g
    return out + ellipsis


def ref_split_thread(text: str, limit: int, count: render.Counter) -> list[str]:
    for width in (1, 2, 3):
        biggest = "9" * width
        room = limit - count(f" ({biggest}/{biggest})")
        parts = _ref_pack(text.strip(), room, count)
        if len(parts) <= int(biggest):
            n = len(parts)
            out = [f"{p} ({i}/{n})" for i, p in enumerate(parts, 1)]
            for part in out:
                if count(part) > limit:
                    raise ContentRejected(f"a thread part is {count(part)} long, the limit is {limit}")
            return out
    raise ContentRejected("text too long to thread")


def _ref_pack(text: str, room: int, count: render.Counter) -> list[str]:
    if room <= 0:
        raise ContentRejected("limit too small to thread")
    tokens = _ref_tokens(text)
    for tok in tokens:
        if count(tok.strip()) > room:
            raise ContentRejected(f"a single word or link is longer than the limit ({room}): {tok.strip()[:40]}…")
    parts: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and count("".join(tokens[i : j + 1]).rstrip()) <= room:
            j += 1
        j = max(j, i + 1)
        if j < len(tokens):
            for k in range(j - 1, i, -1):
                if _ref_ends_sentence(tokens[k]) and count("".join(tokens[i : k + 1]).rstrip()) >= room // 2:
                    j = k + 1
                    break
        part = "".join(tokens[i:j]).strip()
        if part:
            parts.append(part)
        i = j
    return parts


# ---------------------------------------------------------------- random texts

WORDS = ["status", "update", "the", "API", "errors", "we", "are", "on", "it", "café", "cafe\u0301", "日本語",
         "テキスト", "привет", "naïve", FAMILY, THUMB, FLAG, KEYCAP, "\U0001F600", "example.com", "t.co",
         "status.example.io/incidents/42", "@alice@example.social", "@bob", "R&D", "<b>", "a&b", "—", "€",
         "{json}", "x" * 30]
URL = st.builds(lambda path: f"https://example.com/{path}x",
                st.text(alphabet="abz019/-_?=&.", min_size=0, max_size=120))
LONG_WORD = st.lists(st.sampled_from(["a", "b", "日", "é", "e\u0301", "&", THUMB, "."]), min_size=20,
                     max_size=150).map("".join)
WORD = st.one_of(st.sampled_from(WORDS), URL, LONG_WORD,
                 st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12))
PUNCT = st.sampled_from(["", "", "", ".", "!", "?", ":", ",", "…"])
SEP = st.sampled_from([" ", " ", " ", " ", "  ", "\n", "\n\n", " \n"])
TOKEN = st.tuples(WORD, PUNCT, SEP).map("".join)
TEXT = st.lists(TOKEN, min_size=1, max_size=50).map(lambda ts: "".join(ts).strip() or "x")

#: every counter a channel fits text with: (name, counter, limit range, how the channel escapes)
COUNTERS: list[tuple[str, render.Counter, tuple[int, int], Callable[[str], str]]] = [
    ("characters (Discord, Facebook, Google Chat)", len, (25, 400), str),
    ("graphemes", render.grapheme_len, (25, 400), str),
    ("mastodon", render.mastodon_length, (40, 500), str),
    ("mastodon, instance URL weight 30", lambda t: render.mastodon_length(t, 30), (40, 500), str),
    ("x", render.x_length, (40, 280), str),
    ("bluesky", render.bluesky_length, (30, 300), str),
    ("utf-8 bytes (Matrix)", render.utf8_len, (40, 600), str),
    ("telegram", visible_length, (25, 400), telegram_escape),
    ("linkedin", commentary_length, (25, 400), str),
    ("sms segments", _sms.segment_count, (2, 6), str),
]
IDS = [c[0] for c in COUNTERS]


def outcome(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except ContentRejected as exc:
        return ("rejected", str(exc))


@pytest.mark.parametrize("name, count, limits, escape", COUNTERS, ids=IDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_split_thread_matches_the_word_by_word_reference(name, count, limits, escape, data):
    text = escape(data.draw(TEXT, label="text"))
    limit = data.draw(st.integers(*limits), label="limit")
    got = outcome(lambda: render.split_thread(text, limit, count))
    assert got == outcome(lambda: ref_split_thread(text, limit, count))
    if isinstance(got, list):
        assert all(count(p) <= limit for p in got)
        assert " ".join(p.rsplit(" (", 1)[0] for p in got).split() == text.split()  # nothing lost or cut


def _grows(count: render.Counter, cuts: list[str]) -> bool:
    """Whether ``count`` never measures a longer cut as shorter than the one before."""
    sizes = [count(c) for c in cuts]
    return all(a <= b for a, b in itertools.pairwise(sizes))


@pytest.mark.parametrize("name, count, limits, escape", COUNTERS, ids=IDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_truncate_matches_the_word_by_word_reference(name, count, limits, escape, data):
    text = escape(data.draw(TEXT, label="text"))
    limit = data.draw(st.integers(*limits), label="limit")
    got = render.truncate(text, limit, count)
    assert count(got) <= limit or count("…") > limit
    # Identical wherever the counter grows with the cut. Cutting inside a word can measure a
    # longer cut as shorter (Telegram: ``&am`` is 3 long, ``&amp`` decodes to 1); there the
    # old code stopped at the first bump and the new one may keep more — still within the limit.
    ends = render._offsets(render.graphemes(text))
    if _grows(count, [text[:e] + "…" for e in ends[1:]]):
        assert got == ref_truncate(text, limit, count)


# ---------------------------------------------------------------- fixed cases and the work done


def test_truncate_keeps_the_old_cut_for_words_and_for_a_giant_word():
    assert render.truncate("alpha beta gamma delta", 12, len) == "alpha beta…"
    assert render.truncate("a" * 50, 10, len) == "a" * 9 + "…"
    assert render.truncate("  " + "a" * 50, 10, len) == "  " + " " * 2 + "a" * 5 + "…"  # as before: quirky
    long_link = "https://example.com/" + "x" * 400
    assert render.truncate(long_link + " tail words", 28, render.x_length) == long_link + "…"  # a URL weighs 23
    assert render.truncate(long_link + " tail words", 30, render.x_length) == long_link + " tail…"


class Measured:
    """A counter that adds up how many characters it was asked to measure."""

    def __init__(self, count: render.Counter):
        self.count, self.chars, self.calls = count, 0, 0

    def __call__(self, text: str) -> int:
        self.chars += len(text)
        self.calls += 1
        return self.count(text)


BODY = ("Checkout is failing for some customers; we are on it. See https://status.example.com/x "
        f"and example.com {THUMB} 日本語 caf\u00e9. ") * 250


@pytest.mark.parametrize("count, limit, bound", [(render.x_length, 280, 25), (render.bluesky_length, 300, 25),
                                                 (render.mastodon_length, 500, 25), (len, 2000, 40)])
def test_a_20kb_thread_is_measured_in_near_linear_work(count, limit, bound):
    """The old splitter re-measured the growing part after every word: 47× the body's length
    for X, 93× for Mastodon, 298× for Discord's 2,000. Galloping then bisecting measures
    O(log part) times the body: 14×, 16× and 27× (``bound`` sits between old and new)."""
    text = BODY[:20_000].strip()
    measured = Measured(count)
    parts = render.split_thread(text, limit, measured)
    assert all(count(p) <= limit for p in parts)
    assert " ".join(p.rsplit(" (", 1)[0] for p in parts).split() == text.split()
    assert measured.chars <= bound * len(text), measured.chars


def test_truncating_a_5000_ampersand_title_for_telegram_is_near_linear_and_fits():
    """Telegram measures the escaped HTML (``&amp;`` is one); the old cut went one character at
    a time, each time decoding the whole prefix: ~10⁸ characters, minutes of CPU."""
    text = telegram_escape("&" * 5000)
    measured = Measured(visible_length)
    out = render.truncate(text, 4096, measured)
    assert visible_length(out) <= 4096
    assert out.endswith("…") and out.startswith("&amp;" * 4000)
    assert measured.chars <= 40 * len(text), measured.chars


def test_a_thread_over_999_parts_is_still_refused():
    with pytest.raises(ContentRejected, match="too long to thread"):
        render.split_thread("word " * 3000, 14, len)


def test_x_bare_domains_inside_urls_are_not_counted_twice():
    text = " ".join(f"https://a.example/{i} b{i}.com" for i in range(300))
    assert render.x_length(text) == 300 * 23 * 2 + 599
    assert render.x_length("https://example.com/x.com example.com") == 23 + 1 + 23
