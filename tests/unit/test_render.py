"""Length rules and thread splitting: the counters are checked against hand-counted values."""

from __future__ import annotations

import pytest

from broadcaster import render
from broadcaster.errors import ContentRejected
from broadcaster.models import Announcement, Message, Update

URL = "https://example.com/a/rather/long/path/to/an/incident/page?with=query&and=more"

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"  # man-woman-girl, one grapheme
THUMB = "\U0001F44D\U0001F3FD"  # thumbs up + skin tone
FLAG = "\U0001F1FA\U0001F1F8"
E_COMBINING = "e\u0301"  # e + combining acute
KEYCAP = "1\ufe0f\u20e3"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("hello", 5),
        (FAMILY, 1),
        (THUMB, 1),
        (FLAG, 1),
        (E_COMBINING * 3, 3),
        (KEYCAP, 1),
        ("日本語", 3),
        ("", 0),
    ],
)
def test_grapheme_len(text, expected):
    assert render.grapheme_len(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("abc", 3),
        (f"see {URL}", 4 + 23),
        (f"{URL} {URL}", 23 + 1 + 23),
        ("hi @alice@example.social", 3 + 6),  # the remote domain does not count
        (f"{FAMILY}{THUMB}", 2),
        (E_COMBINING, 1),
    ],
)
def test_mastodon_length(text, expected):
    assert render.mastodon_length(text) == expected


def test_mastodon_length_uses_the_instance_url_weight():
    assert render.mastodon_length(f"a {URL}", url_weight=30) == 32


@pytest.mark.parametrize(
    "text, expected",
    [
        ("hello", 5),
        ("日本語", 6),  # CJK weighs 2 each
        ("привет", 6),  # Cyrillic is below U+10FF: 1 each
        ("\u2014", 1),  # em dash is in 8208-8223
        ("\u2026", 2),  # the ellipsis (8230) is just outside it
        ("\u20ac", 2),  # euro sign is not
        (FAMILY, 2),  # a ZWJ sequence is one emoji
        (THUMB, 2),
        (FLAG, 2),
        (KEYCAP, 2),
        ("\U0001F600", 2),
        (E_COMBINING, 1),  # NFC makes it one light code point
        (f"read {URL}", 5 + 23),
        ("see example.com now", 4 + 23 + 4),  # bare domains become links too
        ("t.co", 23),
    ],
)
def test_x_length(text, expected):
    assert render.x_length(text) == expected


def test_x_exactly_at_and_one_over_the_limit():
    assert render.x_length("a" * 280) == 280
    assert render.x_length("日" * 140) == 280
    assert render.x_length("日" * 140 + "a") == 281


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a" * 300, 300),
        ("a" * 301, 301),
        ("日" * 300, 300),  # 900 bytes: graphemes decide
        (FAMILY * 300, 300 * 18 // 10),  # 18 bytes each: 5400 bytes → bytes decide
        (FAMILY * 166, 299),  # 2988 bytes → 298.8, rounded up
        (FAMILY * 167, 301),  # 3006 bytes: over on bytes, not on graphemes
    ],
)
def test_bluesky_length_applies_both_limits(text, expected):
    assert render.bluesky_length(text) == expected


def test_utf8_len():
    assert render.utf8_len("aé日" + THUMB) == 1 + 2 + 3 + 8


# ---------------------------------------------------------------- fit / thread / truncate


def test_fit_keeps_text_exactly_at_the_limit_in_one_unnumbered_part():
    text = "x" * 500
    assert render.fit(text, 500, render.grapheme_len, "thread", "m") == [text]


def test_fit_one_over_the_limit_threads():
    text = ("word " * 100).strip() + "!"  # 500 chars
    parts = render.fit(text, 499, render.grapheme_len, "thread", "m")
    assert len(parts) == 2
    assert parts[0].endswith(" (1/2)") and parts[1].endswith(" (2/2)")
    assert all(len(p) <= 499 for p in parts)


def test_fit_reject_names_the_length():
    with pytest.raises(ContentRejected, match="501 long, the limit is 500"):
        render.fit("a" * 501, 500, len, "reject", "m")


def test_fit_truncate_cuts_at_a_word():
    out = render.fit("alpha beta gamma delta", 12, len, "truncate", "m")
    assert out == ["alpha beta…"]


def test_truncate_a_single_giant_word_is_cut_inside_it():
    assert render.truncate("a" * 50, 10, len) == "a" * 9 + "…"


def _unnumbered(parts):
    return [p.rsplit(" (", 1)[0] for p in parts]


def test_thread_never_breaks_words_or_urls():
    words = [f"w{i:03d}" for i in range(200)]
    text = " ".join(words[:50]) + f" {URL} " + " ".join(words[50:])
    parts = render.split_thread(text, 120, render.mastodon_length)
    assert all(render.mastodon_length(p) <= 120 for p in parts)
    rejoined = " ".join(_unnumbered(parts)).split()
    assert rejoined == text.split()  # nothing lost, nothing cut
    assert sum(URL in p for p in parts) == 1


def test_thread_prefers_sentence_ends():
    text = "First sentence is here. " + "Second one runs on and on with many words to fill space " * 2
    parts = render.split_thread(text.strip(), 80, len)
    assert _unnumbered(parts)[0] == "First sentence is here. Second one runs on and on with many words to fill"
    text = "Short lead-in sentence that is long enough. Then a second sentence that will not fit in this part"
    assert _unnumbered(render.split_thread(text, 70, len))[0] == "Short lead-in sentence that is long enough."


def test_thread_cut_at_a_sentence_end_does_not_overflow_the_next_part():
    # after stepping back to the sentence end, the tail plus the next word must be re-packed
    text = "Aaaa aaaa aaaa. " + " ".join(["bbbbbbbbb"] * 30)
    parts = render.split_thread(text, 30, len)
    assert all(len(p) <= 30 for p in parts), parts


def test_thread_numbering_widens_past_nine_parts():
    text = " ".join(["abcdefghi"] * 120)
    parts = render.split_thread(text, 60, len)
    assert len(parts) > 9
    assert parts[0].endswith(f" (1/{len(parts)})")
    assert all(len(p) <= 60 for p in parts)


def test_thread_of_a_10kb_body_with_emoji_cjk_and_combining_marks():
    chunk = f"Status {THUMB} 日本語のテキスト caf{E_COMBINING} {FAMILY} update. "
    text = chunk * (10_000 // len(chunk.encode()) + 1)
    assert len(text.encode()) > 10_000
    for counter, limit in ((render.mastodon_length, 500), (render.x_length, 280), (render.bluesky_length, 300)):
        parts = render.split_thread(text.strip(), limit, counter)
        assert all(counter(p) <= limit for p in parts)
        assert " ".join(_unnumbered(parts)).split() == text.split()


def test_thread_refuses_a_link_longer_than_a_part():
    with pytest.raises(ContentRejected, match="longer than the limit"):
        render.split_thread("see https://example.com/" + "x" * 400, 100, len)


# ---------------------------------------------------------------- text from a message


def test_plain_text_and_status_prefix():
    a = Announcement(id="a1", kind="incident", title="API down", body="We are **on it**.", url="https://status.example.com/1")
    assert render.plain_text(a.title, a.body, Message(a)) == "API down\n\nWe are on it.\n\nhttps://status.example.com/1"
    m = Message(a, update=Update(id="u1", announcement_id="a1", status="resolved", body="Fixed."))
    title, body = render.title_and_body(m, "mastodon")
    assert render.plain_text(title, body, m) == "[Resolved] API down\n\nFixed."
