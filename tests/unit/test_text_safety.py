"""safe_text: what record text may carry into ChartAgent's output."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.documents.ingest import DocumentOutcome
from tools.documents.summary import document_problem
from tools.text_safety import ELLIPSIS, MAX_CHARS, MAX_COMBINING, _clean, safe_text

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_controls_and_bidi_are_removed() -> None:
    dirty = "Vit\x1b[31mamin\x07 D\x00 \u202e25-OH\u202c" + BIDI + "\x7f\x9b"
    assert safe_text(dirty) == "Vit[31mamin D 25-OH"


@pytest.mark.parametrize("c", [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"])
def test_every_c0_control_is_gone(c: str) -> None:
    assert safe_text(f"a{c}b") in ("ab", "a b")  # line-like controls become a blank


def test_format_surrogate_and_noncharacters_are_removed_zwj_kept() -> None:
    text = "a\u200bb\ufeffc\u2060d\U000e0041e\ud800f\ufffeg\U0001ffffh\ufdd0i"
    assert safe_text(text) == "abcdefghi"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # emoji sequence joined by ZWJ
    assert safe_text(family) == family
    assert safe_text("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") == (
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # Persian with ZWNJ
    )


def test_real_text_is_kept() -> None:
    for text in ("Créatinine sérique", "קריאטינין", "كرياتينين", "肌酐", "e\u0301", "🧪 µmol/L", "\ue000"):
        assert safe_text(text) == text


def test_single_line_collapses_blanks_multiline_keeps_lines() -> None:
    assert safe_text("  a\tb\r\nc\u2028d\n\n e  ") == "a b c d e"
    assert safe_text("a\r\nb\rc\u2029d\t \n", multiline=True, limit=None) == "a\nb\nc\nd\n"


def test_long_text_is_capped_with_an_ellipsis() -> None:
    huge = "x" * 1_000_000
    out = safe_text(huge)
    assert len(out) == MAX_CHARS
    assert out.endswith(ELLIPSIS)
    assert safe_text(huge, limit=10) == "x" * 9 + ELLIPSIS
    assert safe_text("short", limit=10) == "short"
    assert len(safe_text(huge, limit=None)) == len(huge)
    # A megabyte of controls before the name still yields the name.
    assert safe_text("\x00" * 1_000_000 + "Creatinine") == "Creatinine"


def test_combining_mark_runs_are_cut() -> None:
    zalgo = "a" + "\u0301" * 1000 + "b"
    out = safe_text(zalgo)
    assert out == "a" + "\u0301" * MAX_COMBINING + "b"
    assert all(unicodedata.category(c) != "Cc" for c in out)


@pytest.mark.parametrize(
    "text", ["a\x1bb" * 300, "x" * 5000, "  \u202e y \t", "a" + "\u0301" * 20, "é" * 400, "a\r\n\r\nb"]
)
def test_idempotent(text: str) -> None:
    for multiline in (False, True):
        once = safe_text(text, multiline=multiline)
        assert safe_text(once, multiline=multiline) == once


def test_none_and_empty() -> None:
    assert safe_text(None) == ""
    assert safe_text("") == ""
    assert safe_text("\x00\x01") == ""
    with pytest.raises(ValueError, match="limit"):
        safe_text("a", limit=0)


def test_document_problems_are_one_safe_line() -> None:
    doc = DocumentOutcome(
        document="DocumentReference/d1",
        status="failed",
        error="cannot open 'lab\x1b[2J\u202ereport.pdf'\nline two" + "x" * 10_000,
        stage="read",
    )
    line = document_problem(doc)
    assert line.startswith("DocumentReference/d1: cannot open 'lab[2Jreport.pdf' line two")
    assert len(line) <= 400
    assert not any(c in line for c in "\x1b\u202e\n")


@given(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=500),
    st.sampled_from([None, 1, 5, 200]),
    st.booleans(),
)
@settings(max_examples=300, derandomize=True, deadline=None)
def test_the_printable_ascii_fast_path_gives_what_the_character_loop_gives(
    text: str, limit: int | None, multiline: bool
) -> None:
    enough = None if limit is None else 2 * limit + 16
    assert safe_text(text, limit=limit, multiline=multiline) == _clean(text, limit, multiline, enough)
