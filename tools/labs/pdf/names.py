"""Printed test names: leaders and colons taken off, names wrapped over two lines joined (pure).

Name *resolution* (synonyms, qualifiers, LOINC) is ``tools.labs.loinc_catalog.resolve``'s; this
module only decides which printed words form the name.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

from tools.labs.pdf.model import Word

__all__ = [
    "LEADER_RE",
    "UNREADABLE",
    "clean_name",
    "continues",
    "is_heading",
    "is_leader",
    "is_unreadable",
    "readable",
    "strip_leaders",
]

# A dot leader: a word of dots (or dots glued to the end of a name: "Glucose.......").
LEADER_RE: Final = re.compile(r"\s*(?:[.·…_]\s*){3,}$|^[.·…_]+$")
_NOTE_STARTS: Final = ("*", "†", "‡", "note", "comment", "footnote", "#")
_MAX_HEADING_WORDS: Final = 6
# A first line that cannot end a name: it goes on below ("Carbon Dioxide,", "Alanine amino-").
# A word that sets off a gloss: "WBC — ■■■■", "Test / ■■■■".
_SEPARATOR_RE: Final = re.compile(r"[\-\u2010-\u2015/|]+")
UNREADABLE: Final = "\ufffd"  # what reader.page_words gives for a character that is not text
_OPEN_END_RE: Final = re.compile(r"(?:[,\-/&(+]|\b(?:and|of|with|for|in|to|per))$", re.IGNORECASE)


def is_leader(word: Word) -> bool:
    return bool(LEADER_RE.fullmatch(word.text))


def strip_leaders(text: str) -> str:
    return LEADER_RE.sub("", text).strip()


def is_unreadable(text: str) -> bool:
    """A word made only of unreadable characters (U+FFFD, see ``reader.page_words``)."""
    return bool(text) and set(text) == {UNREADABLE}


def readable(words: list[Word]) -> list[Word]:
    """``words`` without those that are not readable text, nor the dash, slash or bar that set
    them off: "WBC — ■■■■■ ■■■■" (a gloss in a script the font could not draw) is "WBC", a header
    "Test / ■■■■■   Result / ■■■■" is "Test   Result". Lines run left to right, so a separator
    is the word just before an unreadable one on the same line."""
    if not any(is_unreadable(w.text) for w in words):
        return words
    drop = {id(w) for w in words if is_unreadable(w.text)}
    for before, after in itertools.pairwise(words):
        same_line = abs((before.y0 + before.y1) - (after.y0 + after.y1)) < max(before.height, after.height)
        if id(after) in drop and same_line and _SEPARATOR_RE.fullmatch(before.text):
            drop.add(id(before))
    return [w for w in words if id(w) not in drop]


def clean_name(words: list[Word]) -> str:
    """The printed name without dot leaders and a trailing colon ("Glucose ......", "Glucose:")."""
    text = " ".join(strip_leaders(w.text) for w in words if not is_leader(w))
    return " ".join(text.split()).rstrip(":").strip()


def is_heading(text: str) -> bool:
    """A line that can head a panel: a few words, no digits, no colon inside, not a note."""
    body = text.rstrip(":").strip()
    return (
        bool(body)
        and ":" not in body
        and not any(ch.isdigit() for ch in body)
        and len(body.split()) <= _MAX_HEADING_WORDS
        and not body.lower().startswith(_NOTE_STARTS)
    )


def continues(first: str, second: str) -> bool:
    """Whether ``second`` (the next line's name words) goes on the name ``first`` began.

    Only printed evidence joins lines: the first line ends open (a comma, a hyphen, "and"), or
    the second begins lower case or with a bracket ("(NGSP)", "total"). Two full names stay apart.
    """
    first, second = first.strip(), second.strip()
    if not first or not second or is_note(second):
        return False
    if _OPEN_END_RE.search(first):
        return True
    if first.isupper() and not second.isupper():
        return False  # "URINALYSIS" over "pH, Urine": a heading, then a row
    head = second.split()[0].strip(",;")
    # "(NGSP)", "total": not "pH" or "eGFR", which are names of their own.
    return second[0] in "([" or (head.isalpha() and head.islower())


def is_note(text: str) -> bool:
    return text.lower().startswith(_NOTE_STARTS)
