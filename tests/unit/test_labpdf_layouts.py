"""Generated lab-report PDFs: deterministic, every truth string in the text layer, page counts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pymupdf
import pytest

from agent.testbed.cohort.labpdf import (
    Comparator,
    Dialect,
    Flag,
    LabReport,
    Panel,
    cumulative_truth,
    make_report,
    panel_keys,
    render_commercial,
    render_cumulative,
    render_hospital,
    render_panel,
    render_scanned,
    sample_results,
)

_WHEN = datetime(2024, 3, 1, 8, 30)


def _keys(*panels: Panel) -> tuple[str, ...]:
    return tuple(k for p in panels for k in panel_keys(p))


def _report(dialect: Dialect, *panels: Panel, seed: int = 1) -> LabReport:
    values: dict[str, float | str] = {**sample_results(_keys(*panels), seed, abnormal_rate=0.3)}
    values.update({"crp": "<0.5", "egfr": ">90", "b12": "see note"})
    return make_report(
        "pat-1", _WHEN, values, seed, dialect=dialect, notes={"b12": "Specimen haemolysed; please repeat."}
    )


def _text(pdf: bytes) -> str:
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    return "\n".join(doc[i].get_text() for i in range(doc.page_count))


def _pages(pdf: bytes) -> int:
    return int(pymupdf.open(stream=pdf, filetype="pdf").page_count)


def _assert_all_printed(pdf: bytes, truth: LabReport) -> None:
    text = _text(pdf)
    for r in truth.results:
        for field in (r.name, r.value_text, r.unit, r.reference_text, r.note or ""):
            assert field in text, f"{r.name}: {field!r} missing from the text layer"
    assert truth.patient_name in text or truth.patient_name.upper() in text
    assert truth.patient_id in text


LAYOUTS: dict[str, Callable[[LabReport], bytes]] = {
    "hospital": render_hospital,
    "commercial": render_commercial,
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dialect", list(Dialect))
def test_full_report_prints_every_truth_string(layout: str, dialect: Dialect) -> None:
    truth = _report(dialect, Panel.CMP, Panel.CBC, Panel.URINALYSIS)
    _assert_all_printed(LAYOUTS[layout](truth), truth)


def test_truth_covers_censored_text_and_comma_values() -> None:
    truth = _report(Dialect.SI_COMMA, Panel.CMP, Panel.URINALYSIS)
    by_name = {r.name: r for r in truth.results}
    assert by_name["C-Reactive Protein"].value_text == "<0,5"
    assert by_name["C-Reactive Protein"].comparator is Comparator.LT
    assert by_name["C-Reactive Protein"].value == 0.5
    assert by_name["eGFR (CKD-EPI 2021)"].comparator is Comparator.GT
    assert by_name["Vitamin B12"].value is None
    assert by_name["Vitamin B12"].note
    assert by_name["Nitrite"].reference_text == "negative"
    assert any("," in r.value_text for r in truth.results)
    assert by_name["Urea"].unit == "mmol/L"
    for r in truth.results:
        if r.value is not None and r.comparator is None:
            assert float(r.value_text.replace(",", ".")) == r.value
            if r.reference_high is not None and r.value > r.reference_high:
                assert r.flag is Flag.HIGH


def test_unit_spellings_vary_by_dialect() -> None:
    units = {d: {r.unit for r in _report(d, Panel.CMP, Panel.CBC).results} for d in Dialect}
    assert "mg/dl" in units[Dialect.US_LEGACY]
    assert "10*3/uL" in units[Dialect.US]
    assert "x10^9/L" in units[Dialect.SI]
    assert "mL/min/1.73m2" in units[Dialect.US]


def test_same_inputs_give_identical_bytes() -> None:
    truth = _report(Dialect.US, Panel.CMP)
    again = _report(Dialect.US, Panel.CMP)
    for render in (render_hospital, render_commercial):
        first = render(truth)
        assert first == render(again)
        assert b"/ID" not in first  # no random file identifier
    assert render_scanned(truth, 3) == render_scanned(again, 3)
    assert render_scanned(truth, 3) != render_scanned(truth, 4)


def test_see_note_without_a_footnote_is_refused() -> None:
    with pytest.raises(ValueError, match="notes"):
        make_report("p", _WHEN, {"b12": "see note"}, 1)


def test_compact_panel_is_one_page_and_refuses_overflow() -> None:
    truth = make_report("p", _WHEN, sample_results(_keys(Panel.LIPID), 2), 2)
    pdf = render_panel(truth)
    assert _pages(pdf) == 1
    _assert_all_printed(pdf, truth)
    with pytest.raises(ValueError, match="compact page"):
        render_panel(_report(Dialect.US, Panel.CMP, Panel.CBC, Panel.IRON))


def test_cumulative_report_spans_pages_with_every_value() -> None:
    keys = _keys(*(p for p in Panel if p not in (Panel.URINALYSIS, Panel.VITAMINS)))
    draws = [
        make_report(
            "pat-9", _WHEN + timedelta(days=60 * i), sample_results(keys, i), i, dialect=Dialect.SI_COMMA
        )
        for i in range(4)
    ]
    pdf = render_cumulative(draws)
    assert _pages(pdf) >= 2
    truth = cumulative_truth(draws)
    assert len(truth.results) == sum(len(d.results) for d in draws)
    assert {r.collected for r in truth.results} == {d.collected for d in draws}
    text = _text(pdf)
    assert text.count("CUMULATIVE REPORT") == _pages(pdf)  # header repeated on every page
    _assert_all_printed(pdf, truth)


def test_cumulative_refuses_two_patients() -> None:
    a = make_report("a", _WHEN, {"sodium": 140.0}, 1)
    b = make_report("b", _WHEN + timedelta(days=1), {"sodium": 140.0}, 1)
    with pytest.raises(ValueError, match="one patient"):
        render_cumulative([a, b])


def test_scanned_page_has_no_text_layer() -> None:
    pdf = render_scanned(_report(Dialect.US, Panel.LIPID), 5)
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    assert doc.page_count == 1
    assert doc[0].get_text().strip() == ""
    assert len(doc[0].get_images()) == 1
