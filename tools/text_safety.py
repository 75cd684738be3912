"""Text from a record, made safe to copy into ChartAgent's output (pure).

Strings that come from a FHIR record or a document (``Observation.code.text``,
``coding.display``, a unit, a document's error line) are data written by another system. Copied
verbatim into a trend, the report's text, a plot or a log line, some characters do harm:

* C0 and C1 control characters (ESC, BEL, NUL, ...): FHIR ``string`` forbids everything below
  U+0020 except tab, CR and LF; a terminal runs ESC sequences; XML 1.0 cannot carry most of them.
* Bidirectional overrides, embeddings, isolates and marks (U+202A-U+202E, U+2066-U+2069,
  U+200E, U+200F, U+061C): they make text display in another order than it is stored, so a
  reader sees something else than what was written (the "Trojan Source" spoof).
* Other format characters (category Cf: zero-width space, word joiner, the invisible "tag"
  characters U+E0000-U+E007F that can smuggle instructions into a model's prompt, BOM).
  Zero-width non-joiner and joiner (U+200C, U+200D) stay: Persian, Indic scripts and emoji
  sequences need them.
* Surrogates (lone halves of a UTF-16 pair cannot be encoded) and the 66 noncharacters
  (U+FDD0-U+FDEF and U+xFFFE/U+xFFFF of every plane). Unassigned code points are kept: which
  ones are unassigned changes with the Unicode version, and the output must not depend on the
  Python build that ran.
* Absurd lengths: a 1 MB display name is capped (``limit`` characters, the last one an
  ellipsis), and a run of combining marks on one base character (the "Zalgo" text that
  spills over neighbouring lines) is cut after ``MAX_COMBINING`` marks.

Right-to-left letters, combining accents, emoji and private-use characters are kept: they are
text, not controls. ``safe_text`` is the one function for this; everything that copies record
text into output calls it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["ELLIPSIS", "MAX_CHARS", "MAX_COMBINING", "safe_text"]

MAX_CHARS: Final = 200
MAX_COMBINING: Final = 8
ELLIPSIS: Final = "\u2026"

# Format characters that carry meaning in real text and cannot spoof order: ZWNJ and ZWJ.
_KEPT_FORMAT: Final = frozenset({"\u200c", "\u200d"})
# Line breaks of any kind: kept as "\n" in multi-line text, a space in a single line.
_LINE_BREAKS: Final = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_SPACES: Final = re.compile(r"[ \t]+")


def _is_noncharacter(c: str) -> bool:
    cp = ord(c)
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def _dropped(c: str) -> bool:
    category = unicodedata.category(c)
    if category in ("Cc", "Cs"):
        return True
    if category == "Cf":
        return c not in _KEPT_FORMAT
    return _is_noncharacter(c)


def _is_mark(c: str) -> bool:
    return unicodedata.category(c) in ("Mn", "Me")


def safe_text(text: str | None, *, limit: int | None = MAX_CHARS, multiline: bool = False) -> str:
    """``text`` without control, bidi, format, surrogate and noncharacter code points.

    Single-line (the default): every line break and tab becomes a space, runs of blanks become
    one, and the ends are stripped. ``multiline``: line breaks (CR LF, CR, U+2028, ...) become
    ``"\\n"`` and tabs stay. ``limit``: at most this many characters, the last an ellipsis when
    the text was cut; ``None`` for no cap (text ChartAgent composed, such as the narrative).
    ``None`` gives ``""``. Idempotent: ``safe_text(safe_text(x)) == safe_text(x)``.
    """
    if not text:
        return ""
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    # Enough kept characters to fill ``limit`` after blanks collapse; a 1 MB string stops early.
    enough = None if limit is None else 2 * limit + 16
    if (enough is None or len(text) <= enough) and text.isascii() and text.isprintable():
        # Printable ASCII (most record text): nothing to drop, no marks, breaks or tabs; the loop
        # (`_clean`) would keep every character. The result is the same (a property test holds it).
        cleaned = text.rstrip(" ") if multiline else _SPACES.sub(" ", text).strip()
        if limit is not None and len(cleaned) > limit:
            return cleaned[: limit - 1].rstrip() + ELLIPSIS
        return cleaned
    return _clean(text, limit, multiline, enough)


def _clean(text: str, limit: int | None, multiline: bool, enough: int | None) -> str:
    """``safe_text`` character by character (any text)."""
    out: list[str] = []
    marks = 0
    previous = ""
    cut = False
    for c in text:
        if enough is not None and len(out) > enough:
            cut = True
            break
        after_cr, previous = previous == "\r", c
        if c in _LINE_BREAKS:
            marks = 0
            if not (after_cr and c == "\n"):
                out.append("\n" if multiline else " ")
            continue
        if c == "\t":
            marks = 0
            out.append("\t" if multiline else " ")
            continue
        if _dropped(c):
            continue
        if _is_mark(c):
            marks += 1
            if marks > MAX_COMBINING:
                continue
        else:
            marks = 0
        out.append(c)
    cleaned = "".join(out)
    if multiline:
        cleaned = "\n".join(line.rstrip(" \t") for line in cleaned.split("\n"))
    else:
        cleaned = _SPACES.sub(" ", cleaned).strip()
    if limit is not None and (cut or len(cleaned) > limit):
        return cleaned[: limit - 1].rstrip() + ELLIPSIS
    return cleaned
