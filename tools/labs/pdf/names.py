"""Printed test names: leaders and colons taken off, names wrapped over two lines joined (pure).

Name *resolution* (synonyms, qualifiers, LOINC) is ``tools.labs.loinc_catalog.resolve``'s; this
module only decides which printed words form the name.
"""

from __future__ import annotations

import re
from typing import Final

from tools.labs.pdf.model import Word

__all__ = ["LEADER_RE", "clean_name", "continues", "is_heading", "is_leader", "strip_leaders"]

# A dot leader: a word of dots (or dots glued to the end of a name: "Glucose.......").
LEADER_RE: Final = re.compile(r"\s*(?:[.·…_]\s*){3,}$|^[.·…_]+$")
_NOTE_STARTS: Final = ("*", "†", "‡", "note", "comment", "footnote", "#")
_MAX_HEADING_WORDS: Final = 6
# A first line that cannot end a name: it goes on below ("Carbon Dioxide,", "Alanine amino-").
_OPEN_END_RE: Final = re.compile(r"(?:[,\-/&(+]|\b(?:and|of|with|for|in|to|per))$", re.IGNORECASE)


def is_leader(word: Word) -> bool:
    return bool(LEADER_RE.fullmatch(word.text))


def strip_leaders(text: str) -> str:
    return LEADER_RE.sub("", text).strip()


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
