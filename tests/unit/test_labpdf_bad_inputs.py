"""Bad lab-report inputs and the benchmark corpus."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pymupdf
import pytest

from agent.testbed.cohort.labpdf import Panel, make_report, panel_keys, render_hospital, sample_results
from agent.testbed.cohort.labpdf.bad import (
    INJECTION_TEXT,
    blank_pdf,
    empty_file,
    encrypted_pdf,
    huge_pdf,
    injection_report,
    truncated_pdf,
)
from agent.testbed.cohort.labpdf.corpus import build_corpus


def _pdf() -> bytes:
    values = sample_results(panel_keys(Panel.LIPID), 1, abnormal_rate=1.0)
    return render_hospital(make_report("p", datetime(2024, 1, 2, 9), values, 1))


def test_encrypted_pdf_needs_the_password() -> None:
    doc = pymupdf.open(stream=encrypted_pdf(_pdf(), user_password="secret"), filetype="pdf")
    assert doc.needs_pass
    assert not doc.authenticate("wrong")
    assert doc.authenticate("secret")
    assert "LIPID PANEL" in doc[0].get_text()


def test_truncated_pdf_loses_its_trailer_and_text() -> None:
    good = _pdf()
    cut = truncated_pdf(good)
    assert len(cut) < len(good)
    assert b"%%EOF" not in cut
    try:
        doc = pymupdf.open(stream=cut, filetype="pdf")
    except pymupdf.FileDataError:
        return
    text = "".join(doc[i].get_text() for i in range(doc.page_count))  # mupdf may repair it
    assert "LIPID PANEL" not in text


def test_blank_and_empty() -> None:
    doc = pymupdf.open(stream=blank_pdf(), filetype="pdf")
    assert doc.page_count == 1
    assert doc[0].get_text() == ""
    assert empty_file() == b""
    with pytest.raises(pymupdf.EmptyFileError):
        pymupdf.open(stream=empty_file(), filetype="pdf")


def test_huge_pdf_has_500_pages() -> None:
    doc = pymupdf.open(stream=huge_pdf(), filetype="pdf")
    assert doc.page_count == 500
    assert "Continuation" in doc[499].get_text()


def test_injection_is_printed_as_data_and_flags_stay() -> None:
    values = sample_results(panel_keys(Panel.LIPID), 1, abnormal_rate=1.0)
    pdf, truth = injection_report(make_report("p", datetime(2024, 1, 2, 9), values, 1))
    text = pymupdf.open(stream=pdf, filetype="pdf")[0].get_text()
    assert INJECTION_TEXT in " ".join(text.split())
    assert any(r.flag is not None for r in truth.results)


def test_corpus_is_written_with_truth_and_manifest(tmp_path: Path) -> None:
    written = build_corpus(tmp_path, seed=7)
    assert len(written) >= 20
    layouts = {e["layout"] for e in json.loads((tmp_path / "manifest.json").read_text())["files"]}
    assert {"hospital", "commercial", "panel", "cumulative", "scanned", "encrypted", "huge"} <= layouts
    for path, truth in written:
        assert path.exists()
        if truth is not None:
            assert (tmp_path / f"{path.stem}.truth.json").exists()
    again = build_corpus(tmp_path / "again", seed=7)
    for (a, _), (b, _) in zip(written, again, strict=True):
        if "encrypted" not in a.name:  # AES salt/IV are random in pymupdf
            assert a.read_bytes() == b.read_bytes(), a.name
