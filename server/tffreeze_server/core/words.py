"""Small wording helpers for messages and reasons that name ops and tensors.

``article("ArgMax")`` is "an ArgMax", ``article("MatMul")`` "a MatMul": the article a
message puts before an op's name. ``tidy(text)`` mends the two glitches that filling names
into fixed words gives, wherever the words were made: "a" before an op name said with a
vowel ("a ArgMax", "a Identity") and a name that repeats the word before it ("the loss
loss", when the loss tensor is named loss).
"""

from __future__ import annotations

import re

# Capitalised names said with a consonant though they start with a vowel letter (OneHot, Unique).
_CONSONANT_SOUND = ("One", "Uni", "Use", "Usu", "Eu", "Ur")
# Initials said letter by letter: "an LSTM", "an FFT", "an RGBToHSV"; "a URL", "a TPU".
_VOWEL_INITIALS = "AEFHILMNORSX"


def _an(word: str) -> bool:
    if len(word) > 1 and word[:2].isupper() and word[:2].isalpha():
        return word[0] in _VOWEL_INITIALS
    return word[:1] in "AEIOUaeiou" and not word.startswith(_CONSONANT_SOUND)


def article(word: str) -> str:
    """``word`` (an op or tensor name) after the article it takes: "an ArgMax", "a MatMul"."""
    return ("an %s" if _an(word) else "a %s") % word


_A_NAME = re.compile(r"\b([Aa]) ([A-Z][\w]*)")
_REPEATED = re.compile(r"\b(the (\w+)) \2\b(?![/:\w])")


def tidy(text: str) -> str:
    """``text`` with "a" before a capitalised name said with a vowel made "an" ("a ArgMax" ->
    "an ArgMax") and "the X X" made "the X" ("the loss loss compares" -> "the loss compares":
    the name says it once). Lower-case words are left as they are."""
    text = _A_NAME.sub(lambda m: (m.group(1) + "n " if _an(m.group(2)) else m.group(1) + " ") + m.group(2), text)
    return _REPEATED.sub(r"\1", text)
