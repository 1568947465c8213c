"""``limits.cleaned``: text nobody can be asked to send again (an alert's) made to pass the
intake's own checks — control and hidden characters out, a one-line field on one line."""

from __future__ import annotations

from hypothesis import given, strategies as st

from broadcaster.limits import cleaned, text_problem

#: the characters the checks care about, mixed into ordinary text
TRICKY = st.sampled_from([*"\x00\x07\x1b\x7f\x85\t\n\r\u2028\u2029\u200b\u200c\u200d\u202a\u202e\u2066\u2069",
                          *"\u061c\u200e\u2060\ufeff", "a", " ", "é", "👩\u200d💻", "Bcc:"])


@given(st.lists(TRICKY | st.text(max_size=5), max_size=40).map("".join))
def test_cleaned_text_always_passes_the_check_it_was_cleaned_for(value):
    for one_line in (True, False):
        assert text_problem(cleaned(value, one_line=one_line), one_line=one_line) is None


def test_what_cleaning_keeps_and_removes():
    trial = "line1\nBcc: x \u202egnp.exe"
    assert cleaned(trial, one_line=True) == "line1 Bcc: x gnp.exe"
    assert cleaned(trial, one_line=False) == "line1\nBcc: x gnp.exe"
    assert cleaned("a\r\nb\t\x1b[31mc", one_line=False) == "a\nb\t[31mc"
    assert cleaned("  two \n\n lines\u200b ", one_line=True) == "two lines"
    assert cleaned("👩‍💻 ok", one_line=True) == "👩‍💻 ok", "the zero-width joiner of emoji stays"
