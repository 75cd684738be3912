"""Property-based tests over the lab-report layout fuzzer: its truth is exact, and the reader
writes only values that are printed where it says, equal to the truth, never for a row the
renderer made unreadable.

Recall is not asserted here: ``bench/bench_lab_pdf_extract.py`` reports it per family.
Hypothesis runs derandomized (the same seeds on every run) with a bounded number of examples.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from agent.testbed.cohort.labpdf.canvas import open_pdf
from agent.testbed.cohort.labpdf.corpus import build_fuzz_corpus
from agent.testbed.cohort.labpdf.fuzz import FuzzedDocument, fuzz_document, scan_document
from agent.testbed.cohort.labpdf.fuzz.grade import grade, text_in_box
from agent.testbed.cohort.labpdf.fuzz.style import Arrangement
from agent.testbed.cohort.labpdf.fuzz.truth import FuzzTruth
from tools.labs.pdf import extract_labs

# Hypothesis keeps a cache of constants in its home folder: outside the working tree.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "chartagent-hypothesis"))
_SEEDS = st.integers(min_value=0, max_value=10**6)
_BOUNDED = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,  # no .hypothesis folder in the tree: the seeds are the same on every run
    suppress_health_check=[HealthCheck.too_slow],
)


def _words(pdf: bytes) -> list[list[tuple[Any, ...]]]:
    doc = open_pdf(pdf)
    return [doc[i].get_text("words") for i in range(doc.page_count)]  # type: ignore[no-untyped-call]


@_BOUNDED
@given(seed=_SEEDS)
def test_the_truth_is_exactly_what_the_text_layer_holds(seed: int) -> None:
    document = fuzz_document(seed)
    words = _words(document.pdf)
    truth = document.truth
    assert truth.page_count == len(words)
    assert truth.results, "a fuzzed report has results"
    for row in truth.results:
        assert text_in_box(words[row.page - 1], row.bbox) == row.value_text, row
    for hidden in truth.unreadable:
        assert text_in_box(words[hidden.page - 1], hidden.bbox) == hidden.printed, hidden
    positions = [(r.page, r.bbox) for r in truth.results]
    assert len(set(positions)) == len(positions), "two values printed in one place"


@_BOUNDED
@given(seed=_SEEDS)
def test_the_reader_writes_only_printed_values_equal_to_the_truth(seed: int) -> None:
    document = fuzz_document(seed)
    got = extract_labs(document.pdf, name=document.name)
    words = _words(document.pdf)
    for result in got.results:
        inside = text_in_box(words[result.page - 1], result.bbox)
        assert inside == result.value_text, (
            f"{result.name}: {result.value_text!r} but the box holds {inside!r}"
        )
    graded = grade(document.truth, got, label=document.name)
    assert graded.failures == []
    assert graded.value_precision == 1.0


def test_the_same_seed_gives_the_same_bytes_and_seeds_differ() -> None:
    first, again, other = fuzz_document(11), fuzz_document(11), fuzz_document(12)
    assert first.pdf == again.pdf
    assert first.truth == again.truth
    assert first.pdf != other.pdf


def test_seeds_cover_every_arrangement_and_family_kind() -> None:
    documents = [fuzz_document(seed) for seed in range(24)]
    assert {d.style.arrangement for d in documents} == set(Arrangement)
    families = {f for d in documents for r in d.truth.results for f in r.families}
    for kind in ("separator:", "numbers:", "dates:", "flag:", "name:", "units:", "font:"):
        assert any(f.startswith(kind) for f in families), kind
    assert any(d.truth.unreadable for d in documents)
    assert any(d.truth.page_count > 1 for d in documents)


@pytest.mark.parametrize("seed", [4, 37])
def test_a_scanned_version_is_image_only_and_deterministic(seed: int) -> None:
    document: FuzzedDocument = fuzz_document(seed)
    scanned = scan_document(document, seed)
    assert scanned == scan_document(document, seed)
    doc = open_pdf(scanned)
    assert doc.page_count == document.truth.page_count
    for index in range(doc.page_count):
        page: Any = doc[index]
        assert page.get_text().strip() == ""
        assert len(page.get_images()) == 1


def test_a_fuzz_corpus_on_disk_holds_each_pdf_with_its_truth(tmp_path: Path) -> None:
    written = build_fuzz_corpus(tmp_path, seed=3, count=3, scanned=1)
    assert [p.name.endswith(".scan.pdf") for p in written] == [False, True, False, False]
    for pdf in (p for p in written if not p.name.endswith(".scan.pdf")):
        truth = FuzzTruth.model_validate_json(pdf.with_suffix(".truth.json").read_text())
        assert pdf.read_bytes() == fuzz_document(truth.seed).pdf
    assert (tmp_path / "manifest.json").is_file()
