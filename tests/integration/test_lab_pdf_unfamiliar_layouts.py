"""A patient whose lab-report PDFs come from labs ChartAgent's reader was not written beside.

Three reports, built here in layouts unlike ``agent.testbed.cohort.labpdf.layouts``: run-in lines
with leader dots ("Potassium ........ 4.4 mmol/L (3.5-5.1)"), a European report (comma decimals,
dd.mm.yyyy, units and ranges in their own columns, no header words the reader knows), and a
scanned page (an image, no text layer: read by OCR). They are attached to DocumentReferences on
the real embedded FHIR server beside a feed Observation that one report repeats. The summarization
run transcribes them (the OCR ones tagged as such), writes the repeated value once (the feed's),
and trends the analytes over the three reports.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any

import pymupdf
import pytest
from lab_documents import lab_doc, seed
from PIL import Image

from agent.context import RunContext
from agent.jobs.summarize import summarize_patient
from fhir_adapters import FhirClient
from tools.documents.ingest import DocumentIngest
from tools.writeback.extraction_labels import OCR_ENGINE_URL, is_ocr_reading

pytestmark = pytest.mark.integration

_open: Any = pymupdf.open  # pymupdf ships no type hints
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
EXTRACTION_TAG = "urn:chartagent:ai-output-kind|document-extraction"
POTASSIUM, SODIUM, CREATININE, GLUCOSE = "2823-3", "2951-2", "2160-0", "2345-7"
# What each report prints (potassium rises over the three; sodium stays; creatinine falls).
RUN_IN = {"Potassium": 4.4, "Sodium": 139.0, "Creatinine": 1.30, "Glucose": 92.0}
EUROPEAN = {"Potassium": 4.9, "Sodium": 140.0, "Creatinine": 1.20, "Glucose": 97.0}
SCANNED = {"Potassium": 5.4, "Sodium": 141.0, "Creatinine": 1.10, "Glucose": 104.0}
UNITS = {"Potassium": "mmol/L", "Sodium": "mmol/L", "Creatinine": "mg/dL", "Glucose": "mg/dL"}
RANGES = {"Potassium": (3.5, 5.1), "Sodium": (136, 145), "Creatinine": (0.6, 1.2), "Glucose": (70, 99)}
CODES = {"Potassium": POTASSIUM, "Sodium": SODIUM, "Creatinine": CREATININE, "Glucose": GLUCOSE}


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _page() -> tuple[Any, Any]:
    doc = _open()
    return doc, doc.new_page(width=595, height=842)  # A4


def _flag(name: str, value: float) -> str:
    low, high = RANGES[name]
    return "H" if value > high else "L" if value < low else ""


def run_in_report() -> bytes:
    """One line per result: name, leader dots, value, unit, range in brackets, flag last."""
    doc, page = _page()
    page.insert_text((50, 60), "NORTHSIDE COMMUNITY LABORATORY", fontsize=13, fontname="hebo")
    page.insert_text((50, 80), "Specimen: serum     Collected: 01/10/2024 08:30", fontsize=10)
    page.insert_text((50, 110), "Chemistry", fontsize=11, fontname="hebo")
    y = 130.0
    for name, value in RUN_IN.items():
        low, high = RANGES[name]
        leader = "." * (40 - len(name))
        line = f"{name} {leader} {value:g} {UNITS[name]} ({low:g}-{high:g}) {_flag(name, value)}"
        page.insert_text((50, y), line.rstrip(), fontsize=10, fontname="cour")
        y += 16
    page.insert_text((50, y + 30), "Results reviewed by the laboratory director.", fontsize=9)
    return bytes(doc.tobytes())


def _decimal_comma(value: float) -> str:
    return f"{value:g}".replace(".", ",")


def european_report() -> bytes:
    """A European lab: dd.mm.yyyy, comma decimals, columns headed in the lab's own words."""
    doc, page = _page()
    page.insert_text((50, 60), "Laboratoire Central - Befundbericht", fontsize=13, fontname="hebo")
    page.insert_text((50, 80), "Collected: 14.02.2024 09:15", fontsize=10)
    page.insert_text((50, 115), "Analysis", fontsize=10, fontname="hebo")
    page.insert_text((230, 115), "Result", fontsize=10, fontname="hebo")
    page.insert_text((300, 115), "Unit", fontsize=10, fontname="hebo")
    page.insert_text((380, 115), "Reference interval", fontsize=10, fontname="hebo")
    y = 135.0
    for name, value in EUROPEAN.items():
        low, high = RANGES[name]
        page.insert_text((50, y), name, fontsize=10)
        page.insert_text((230, y), f"{_decimal_comma(value)} {_flag(name, value)}".strip(), fontsize=10)
        page.insert_text((300, y), UNITS[name], fontsize=10)
        page.insert_text((380, y), f"{_decimal_comma(low)} - {_decimal_comma(high)}", fontsize=10)
        y += 16
    return bytes(doc.tobytes())


def scanned_report() -> bytes:
    """A report printed, then scanned: the page is one greyscale image, with no text layer."""
    source, page = _page()  # the source document must outlive its page
    page.insert_text((50, 60), "St. Anne Hospital Laboratory", fontsize=14, fontname="hebo")
    page.insert_text((50, 85), "Collected: 03/20/2024 07:50", fontsize=11)
    for x, head in ((50, "Test"), (230, "Result"), (300, "Flag"), (350, "Units"), (430, "Reference Range")):
        page.insert_text((x, 120), head, fontsize=11)
    y = 140.0
    for name, value in SCANNED.items():
        low, high = RANGES[name]
        page.insert_text((50, y), name, fontsize=11)
        page.insert_text((230, y), f"{value:g}", fontsize=11)
        page.insert_text((300, y), _flag(name, value), fontsize=11)
        page.insert_text((350, y), UNITS[name], fontsize=11)
        page.insert_text((430, y), f"{low:g}-{high:g}", fontsize=11)
        y += 18
    pix = page.get_pixmap(dpi=300, colorspace=pymupdf.csGRAY)
    source.close()
    buffer = io.BytesIO()
    Image.frombytes("L", (pix.width, pix.height), pix.samples).save(buffer, format="PNG")
    scan, blank = _page()
    blank.insert_image(blank.rect, stream=buffer.getvalue())
    return bytes(scan.tobytes())


@pytest.fixture
async def fhir(fhir_base_url: str) -> Any:
    async with FhirClient(fhir_base_url, flavour="sekmet") as client:
        yield client


async def test_unfamiliar_lab_reports_are_transcribed_deduplicated_and_trended(fhir: FhirClient) -> None:
    pid = fresh("unfam")
    run_in, european, scanned = fresh("runin"), fresh("euro"), fresh("scan")
    # The EHR's own feed already holds the European report's sodium (same time, same value).
    feed = {
        "resourceType": "Observation",
        "id": fresh("feed"),
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": SODIUM, "display": "Sodium"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2024-02-14T09:15:00Z",
        "valueQuantity": {"value": 140, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                          "code": "mmol/L"},
    }  # fmt: skip
    await seed(
        fhir,
        pid,
        feed,
        lab_doc(run_in, pid, pdf=run_in_report(), day="2024-01-11"),
        lab_doc(european, pid, pdf=european_report(), day="2024-02-15"),
        lab_doc(scanned, pid, pdf=scanned_report(), day="2024-03-21"),
    )

    state = await summarize_patient(RunContext(fhir=fhir, now=NOW), pid)
    documents: DocumentIngest = state["documents"]
    outcomes = {d.document.split("/")[1]: d for d in documents.documents}
    assert all(d.error is None for d in outcomes.values()), [d.error for d in outcomes.values()]

    written = await fhir.search("Observation", {"subject": f"Patient/{pid}", "_tag": EXTRACTION_TAG})
    by_doc: dict[str, dict[str, Any]] = {}
    for obs in written:
        doc_id = obs["derivedFrom"][0]["reference"].split("/")[1]
        by_doc.setdefault(doc_id, {})[obs["code"]["coding"][0]["code"]] = obs

    assert len(written) == 4 + 3 + 4  # nothing twice
    # Every printed value is transcribed once, with its value, unit and flag, where it was printed.
    for doc_id, printed in ((run_in, RUN_IN), (european, EUROPEAN), (scanned, SCANNED)):
        expected = {CODES[n] for n in printed} - ({SODIUM} if doc_id == european else set())
        assert set(by_doc.get(doc_id, {})) == expected, (doc_id, outcomes[doc_id].warnings)
        for name, value in printed.items():
            result = by_doc[doc_id].get(CODES[name])
            if result is None:
                continue
            assert result["valueQuantity"]["value"] == pytest.approx(value)
            flag = (result.get("interpretation") or [{"coding": [{"code": ""}]}])[0]["coding"][0]["code"]
            assert flag == _flag(name, value), (doc_id, name)
            (location,) = result["extension"]
            parts = {p["url"]: p for p in location["extension"]}
            x0, y0, x1, y1 = (float(v) for v in parts["bbox"]["valueString"].split(","))
            assert 0 <= x0 < x1 <= 595
            assert 0 <= y0 < y1 <= 842
            # OCR readings say so; text-layer ones do not.
            assert is_ocr_reading(result) == (doc_id == scanned)
            assert ("ocr" in parts) == (doc_id == scanned)

    # The repeated sodium was not written twice: the feed's Observation stands for it.
    assert outcomes[european].duplicates == 1
    assert [n.reason for n in outcomes[european].not_written] == [f"same as Observation/{feed['id']}"]

    # The Provenance of the scanned report's results names the OCR engine on the source document.
    some = next(iter(by_doc[scanned].values()))
    (provenance,) = await fhir.search("Provenance", {"target": f"Observation/{some['id']}"})
    (source,) = [e for e in provenance["entity"] if e["role"] == "source"]
    assert source["what"]["reference"] == f"DocumentReference/{scanned}"
    assert source["extension"][0]["url"] == OCR_ENGINE_URL
    assert source["extension"][0]["valueString"].startswith("tesseract ")

    # Trended: each analyte's trend runs over the three reports (the feed's sodium in place of the
    # European report's), and the summary's trend Observations are derived from those points.
    trends = {t.code: t for t in state["trends"]}
    for name in ("Potassium", "Creatinine", "Glucose"):
        trend = trends[CODES[name]]
        refs = {s.reference for s in trend.sources}
        assert refs == {f"Observation/{by_doc[d][CODES[name]]['id']}" for d in (run_in, european, scanned)}
    assert trends[POTASSIUM].direction != "stable"  # 4.4 -> 4.9 -> 5.4
    sodium = {s.reference for s in trends[SODIUM].sources}
    assert f"Observation/{feed['id']}" in sodium
    assert len(sodium) == 3
    stored = await fhir.search(
        "Observation", {"subject": f"Patient/{pid}", "code": "urn:chartagent:trend|lab-trend"}
    )
    potassium_trend = next(
        o for o in stored if any(c["valueCodeableConcept"]["coding"][0]["code"] == POTASSIUM
                                 for c in o["component"] if "valueCodeableConcept" in c)
    )  # fmt: skip
    assert {d["reference"] for d in potassium_trend["derivedFrom"]} == {
        f"Observation/{by_doc[d][POTASSIUM]['id']}" for d in (run_in, european, scanned)
    }

    # A second run finds nothing new to write.
    before = len(written)
    await summarize_patient(RunContext(fhir=fhir, now=NOW), pid)
    after = await fhir.search("Observation", {"subject": f"Patient/{pid}", "_tag": EXTRACTION_TAG})
    assert len(after) == before
