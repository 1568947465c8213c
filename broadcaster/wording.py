"""Small rules of English for the messages we build from words we do not know in advance
(a kind, a status): in one place, so no message says "a incident"."""

from __future__ import annotations

#: words that start with a vowel letter but not a vowel sound ("a user", "a unique", "a one-off")
_CONSONANT_SOUND = ("uni", "use", "usu", "uti", "ura", "url", "eu", "one", "once")
#: words that start with a consonant letter but a vowel sound ("an hour")
_VOWEL_SOUND = ("hour", "honest", "honour", "honor", "heir")


def a(word: str) -> str:
    """``word`` after its indefinite article: ``an incident``, ``a maintenance``, ``an update``."""
    low = word.lower()
    vowel = (low[:1] in ("a", "e", "i", "o", "u") and not low.startswith(_CONSONANT_SOUND)) or \
        low.startswith(_VOWEL_SOUND)
    return f"{'an' if vowel else 'a'} {word}"
