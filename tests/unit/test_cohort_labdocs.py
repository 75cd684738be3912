"""Lab-report PDFs of the synthetic cohort: FHIR DocumentReferences consistent with the lab history.

Checked against the cohort's own FHIR resources and the real extractor (``tools.labs.pdf``):
what each document prints, which results duplicate a FHIR Observation, that the planned courses
survive the new points, and that the documents change nothing else in the cohort.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from datetime import date, datetime
from functools import cache
from typing import Any

import numpy as np
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.observation import Observation

from agent.testbed.cohort import (
    Cohort,
    CohortPatient,
    Course,
    LabDialect,
    analyte_for_coding,
    generate_cohort,
)
from agent.testbed.cohort.codes import LOINC, UCUM
from agent.testbed.cohort.labdocs import (
    BAD_DOCUMENT_INDEX,
    AttachmentMode,
    DocumentKind,
    Layout,
    PlannedLabDocument,
    printed_form,
)
from agent.testbed.cohort.labpdf import Dialect, make_report
from agent.testbed.cohort.labpdf.bad import deterministic_encrypted_pdf
from agent.testbed.cohort.labpdf.canvas import open_pdf
from agent.testbed.cohort.labpdf.layouts import render_hospital
from agent.testbed.cohort.labpdf.layouts.common import fmt_date
from agent.testbed.cohort.labs import Analyte
from tools.labs.pdf import PdfEncryptedError, extract_labs
from tools.labs.series import build_series
from tools.trends import Direction, compute_trend

DOC_TYPES = ("DocumentReference", "Binary")
EXPECTED: dict[Course, Direction] = {
    Course.STABLE: "stable",
    Course.IMPROVING: "improved",
    Course.WORSENING: "worsened",
}


@cache
def cohort(seed: int = 7, patients: int = 12) -> Cohort:
    return generate_cohort(patients, seed)


def documents(c: Cohort) -> list[tuple[CohortPatient, PlannedLabDocument]]:
    return [(p, d) for p in c.patients for d in c.lab_documents.get(p.id, ())]


def resource(p: CohortPatient, rtype: str, rid: str) -> dict[str, Any]:
    (found,) = [r for r in p.resources if r["resourceType"] == rtype and r["id"] == rid]
    return found


def pdf_of(p: CohortPatient, doc: PlannedLabDocument) -> bytes:
    """The PDF as a FHIR client gets it: inline data, or the Binary the attachment points at."""
    attachment = resource(p, "DocumentReference", doc.document_id)["content"][0]["attachment"]
    if "data" in attachment:
        return base64.b64decode(attachment["data"])
    rtype, rid = attachment["url"].split("/")
    return base64.b64decode(resource(p, rtype, rid)["data"])


def lab_observations(p: CohortPatient) -> list[dict[str, Any]]:
    return [
        r
        for r in p.resources
        if r["resourceType"] == "Observation" and r["category"][0]["coding"][0]["code"] == "laboratory"
    ]


def page_text(pdf: bytes, password: str | None = None) -> str:
    doc: Any = open_pdf(pdf)  # pymupdf's page methods are untyped
    if password is not None:
        assert doc.needs_pass
        assert doc.authenticate(password)
    return "\n".join(doc[i].get_text() for i in range(doc.page_count))


def test_documents_change_no_fhir_resource_and_no_course() -> None:
    with_docs, bare = cohort(), generate_cohort(12, 7, lab_documents=False)
    assert bare.lab_documents == {}
    assert with_docs.truth == bare.truth
    for p, b in zip(with_docs.patients, bare.patients, strict=True):
        # The same resources, then the documents after them.
        assert p.resources[: len(b.resources)] == b.resources
        assert {r["resourceType"] for r in p.resources[len(b.resources) :]} <= set(DOC_TYPES)
        assert (p.id, p.mrn, p.dialect) == (b.id, b.mrn, b.dialect)


def test_same_seed_gives_the_same_bytes_and_cohorts_are_prefix_stable() -> None:
    # A fresh generation of the first six patients (the encrypted document among them).
    again = generate_cohort(6, 7)
    first = cohort().patients[:6]
    assert again.patients == first
    assert again.lab_documents == {p.id: cohort().lab_documents[p.id] for p in first}
    assert any(d.bad for p in first for d in again.lab_documents[p.id])
    other = generate_cohort(1, 8)
    assert pdf_of(other.patients[0], other.lab_documents["ca-8-0"][0]) != pdf_of(
        first[0], cohort().lab_documents["ca-7-0"][0]
    )


def test_the_default_cohort_holds_every_layout_and_one_bad_document() -> None:
    c = cohort()
    docs = documents(c)
    assert {d.layout for _, d in docs} == set(Layout)
    assert {d.attachment for _, d in docs} == set(AttachmentMode)
    assert all(2 <= len(c.lab_documents[p.id]) <= 4 for p in c.patients)
    bad = [(p, d) for p, d in docs if d.bad]
    assert [p.id for p, _ in bad] == [c.patients[BAD_DOCUMENT_INDEX].id]
    for p, d in docs:
        assert d.text_layer is (d.layout is not Layout.SCANNED)
        assert d.dialect.si is (p.dialect is LabDialect.SI)
        pdf = pdf_of(p, d)
        if d.layout is Layout.CUMULATIVE:
            assert open_pdf(pdf).page_count >= 2
            assert 2 <= len(d.collected) <= 4
        else:
            assert len(d.collected) == 1
        assert d.collected == tuple(sorted(d.collected))
        assert (
            max(d.collected)
            < d.reported
            < datetime.combine(c.reference_date, datetime.min.time(), d.reported.tzinfo)
        )


def test_document_resources_are_valid_r4_and_describe_their_pdf() -> None:
    c = cohort()
    for p, d in documents(c):
        ref = resource(p, "DocumentReference", d.document_id)
        get_fhir_model_class("DocumentReference").model_validate(ref)
        k = d.document_id.rsplit("-", 1)[1]
        assert d.document_id == f"{p.id}-labdoc-{k}"
        assert (ref["status"], ref["docStatus"]) == ("current", "final")
        assert ref["type"]["coding"][0]["system"] == LOINC
        assert ref["type"]["coding"][0]["code"] == "11502-2"
        assert ref["category"][0]["coding"][0]["code"] == "LAB"
        assert ref["subject"] == {"reference": f"Patient/{p.id}"}
        assert datetime.fromisoformat(ref["date"]) == d.reported
        period = ref["context"]["period"]
        assert datetime.fromisoformat(period["start"]) == d.collected[0]
        assert datetime.fromisoformat(period["end"]) == d.collected[-1]
        attachment = ref["content"][0]["attachment"]
        pdf = pdf_of(p, d)
        assert pdf.startswith(b"%PDF-")
        assert attachment["contentType"] == "application/pdf"
        assert attachment["size"] == len(pdf)
        assert base64.b64decode(attachment["hash"]) == hashlib.sha1(pdf).digest()
        assert datetime.fromisoformat(attachment["creation"]) == d.reported
        if d.attachment is AttachmentMode.BINARY:
            assert "data" not in attachment
            assert attachment["url"] == f"Binary/{d.binary_id}" == f"Binary/{p.id}-labpdf-{k}"
            binary = resource(p, "Binary", f"{p.id}-labpdf-{k}")
            get_fhir_model_class("Binary").model_validate(binary)
            assert binary["contentType"] == "application/pdf"
            assert binary["securityContext"] == {"reference": f"Patient/{p.id}"}
        else:
            assert "url" not in attachment
            assert d.binary_id is None
        # Title and description name the document, never the patient.
        patient = p.resources[0]
        for private in (patient["name"][0]["family"], patient["birthDate"], p.mrn):
            assert private not in attachment["title"]
            assert private not in ref["description"]
    types = Counter(r["resourceType"] for r in c.resources())
    assert types["DocumentReference"] == len(documents(c))
    assert types["Binary"] == sum(d.attachment is AttachmentMode.BINARY for _, d in documents(c))


def test_printed_identity_is_the_patients_own() -> None:
    for p, d in documents(cohort()):
        patient = p.resources[0]
        family, given = patient["name"][0]["family"], patient["name"][0]["given"][0]
        birth = date.fromisoformat(patient["birthDate"])
        report = d.report
        assert report.patient_name == f"{family}, {given}"
        assert (report.birth_date, report.patient_id) == (birth, p.mrn)
        assert report.sex == {"female": "F", "male": "M"}[patient["gender"]]
        pdf = pdf_of(p, d)
        text = page_text(pdf, "patient" if d.bad else None)
        if d.layout is Layout.SCANNED:
            assert text.strip() == ""  # image only: nothing to read without a model
            continue
        assert report.patient_name in text or report.patient_name.upper() in text
        assert p.mrn in text
        assert fmt_date(birth, d.dialect.decimal_comma) in text


def test_text_layer_documents_read_back_as_their_truth() -> None:
    read = 0
    for p, d in documents(cohort()):
        pdf = pdf_of(p, d)
        if d.bad:
            with pytest.raises(PdfEncryptedError):
                extract_labs(pdf)
            continue
        got = extract_labs(pdf)
        if not d.text_layer:
            assert got.results == ()
            assert got.needs_model == tuple(range(1, got.page_count + 1))
            continue
        assert not got.partial, (d.document_id, got.warnings)
        found = Counter(
            (r.loinc, r.value, r.unit, r.flag.value if r.flag else None, r.effective, r.effective_time)
            for r in got.results
        )
        # The printed collection time is the UTC wall-clock time, to the minute.
        truth = Counter(
            (
                r.loinc,
                r.value,
                r.unit,
                r.flag.value if r.flag else None,
                r.effective.date(),
                r.effective.time().replace(tzinfo=None),
            )
            for r in d.results
        )
        assert found == truth, d.document_id
        read += len(d.results)
    assert read > 300


def test_duplicates_are_exactly_the_results_the_fhir_feed_already_has() -> None:
    counts: Counter[tuple[DocumentKind, bool]] = Counter()
    for p, d in documents(cohort()):
        fhir = {}
        for obs in lab_observations(p):
            coding = obs["code"]["coding"][0]
            analyte = analyte_for_coding(coding["system"], coding["code"])
            fhir[(analyte, datetime.fromisoformat(obs["effectiveDateTime"]))] = obs["valueQuantity"]
        for r in d.results:
            quantity = fhir.get((r.analyte, r.effective)) if r.analyte is not None else None
            same = quantity is not None and quantity["value"] == r.value
            assert r.duplicates_fhir is same, (d.document_id, r.name)
            if same:
                assert quantity is not None
                assert quantity["code"] == r.unit  # the same number in the same unit
            counts[(d.kind, r.duplicates_fhir)] += 1
        if d.kind is DocumentKind.VISIT_COPY:
            assert all(r.duplicates_fhir for r in d.results)
        if d.kind is DocumentKind.INTERVAL:
            assert not any(r.duplicates_fhir for r in d.results)
        if d.kind is DocumentKind.CUMULATIVE:
            # Visits as columns, and one draw of its own: every followed result of that column is new.
            new = [
                t for t in d.collected if not any(r.duplicates_fhir for r in d.results if r.effective == t)
            ]
            assert new == [d.collected[-1]]
            assert any(r.duplicates_fhir for r in d.results)
            # Tests the cohort does not follow, inside their reference ranges: no course to find.
            others = [r for r in d.results if r.analyte is None]
            assert others
            assert all(r.flag is None and not r.duplicates_fhir for r in others)
    assert counts[(DocumentKind.VISIT_COPY, True)] > 50
    assert counts[(DocumentKind.INTERVAL, False)] > 50


def test_new_points_lie_on_the_planned_course() -> None:
    # Independently of the trend engine (whose baseline and latest point a new point in between
    # rarely moves): each new value is within one stability threshold of the line fitted through
    # the FHIR values of its analyte, at its own time; analytical noise is at most a sixth of that.
    checked = 0
    for p in cohort().patients:
        fhir: dict[Analyte, list[tuple[float, float]]] = {}
        for obs in lab_observations(p):
            coding, quantity = obs["code"]["coding"][0], obs["valueQuantity"]
            analyte = analyte_for_coding(coding["system"], coding["code"])
            assert analyte is not None
            day = datetime.fromisoformat(obs["effectiveDateTime"]).timestamp() / 86400
            value = analyte.row.to_canonical(float(quantity["value"]), quantity["code"])
            fhir.setdefault(analyte, []).append((day, value))
        for d in cohort().lab_documents[p.id]:
            for r in d.results:
                if r.analyte is None or r.duplicates_fhir:
                    continue
                assert isinstance(r.value, float)
                points = fhir[r.analyte]
                day = r.effective.timestamp() / 86400
                assert points[0][0] < day < points[-1][0]
                slope, intercept = np.polyfit([t for t, _ in points], [v for _, v in points], 1)
                expected = slope * day + intercept
                value = r.analyte.row.to_canonical(r.value, r.unit)
                assert abs(value - expected) < r.analyte.row.stability.magnitude(expected), (p.id, r.name)
                checked += 1
    assert checked > 100


def pdf_observation(
    p: CohortPatient, n: int, loinc: str, value: float, unit: str, when: datetime
) -> dict[str, Any]:
    """A transcribed result as an ingest would write it (LOINC, UCUM, the collection time)."""
    return {
        "resourceType": "Observation",
        "id": f"{p.id}-pdfobs-{n}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{p.id}"},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


@pytest.mark.parametrize("seed", [7, 11])
def test_trend_engine_finds_every_planned_course_with_the_pdf_points(seed: int) -> None:
    c = cohort(seed)
    added = 0
    for p in c.patients:
        new = [
            r
            for d in c.lab_documents[p.id]
            if not d.bad
            for r in d.results
            if r.analyte is not None and not r.duplicates_fhir
        ]
        assert new, p.id
        extra = []
        for n, r in enumerate(new):
            assert r.loinc is not None
            assert r.unit is not None
            assert isinstance(r.value, float)
            extra.append(pdf_observation(p, n, r.loinc, r.value, r.unit, r.effective))
        fhir = [r for r in p.resources if r["resourceType"] == "Observation"]
        series = build_series([Observation.model_validate(o) for o in fhir + extra])
        assert not series.skipped, (p.id, series.skipped)
        assert {s.analyte_key for s in series.series} == {a.value for a in c.truth[p.id]}
        for analyte, course in c.truth[p.id].items():
            s = series.by_analyte(analyte.value)
            assert s is not None
            trend = compute_trend(s)
            assert trend.direction == EXPECTED[course], (p.id, analyte, course, trend.direction_reason)
        added += len(extra)
    assert added > 100


def test_a_printed_form_exists_only_where_the_catalog_prints_the_fhir_number() -> None:
    si_a1c = printed_form(Analyte.HBA1C, LabDialect.SI)
    assert si_a1c is None  # the catalog prints % where SI results are in mmol/mol
    us_a1c = printed_form(Analyte.HBA1C, LabDialect.LOINC)
    assert us_a1c is not None
    assert us_a1c.decimals == 1
    si_chol = printed_form(Analyte.CHOLESTEROL, LabDialect.SI)
    assert si_chol is not None
    assert si_chol.si
    assert si_chol.decimals == 2
    assert printed_form(Analyte.SYSTOLIC_BP, LabDialect.LOINC) is None
    assert printed_form(Analyte.CREATININE, LabDialect.EPIC_LOCAL) == printed_form(
        Analyte.CREATININE, LabDialect.LOINC
    )


def test_make_report_overrides_change_only_what_they_name() -> None:
    when = datetime(2024, 3, 1, 8, 15)
    values: dict[str, float | str] = {"cholesterol": 201.0, "glucose": 97.0}
    plain = make_report("p-1", when, values, 3, dialect=Dialect.SI)
    own = make_report(
        "p-1", when, values, 3, dialect=Dialect.SI,
        patient_name="Quinn, Avery", birth_date=date(1950, 2, 3), sex="M", decimals={"cholesterol": 2},
    )  # fmt: skip
    assert (own.patient_name, own.birth_date, own.sex) == ("Quinn, Avery", date(1950, 2, 3), "M")
    assert (own.report_id, own.reported, own.lab_name) == (plain.report_id, plain.reported, plain.lab_name)
    chol = {r.name: r for r in own.results}["Cholesterol, Total"]
    assert (chol.value, chol.value_text) == (5.2, "5.20")
    assert chol.reference_text == {r.name: r for r in plain.results}["Cholesterol, Total"].reference_text
    assert {r.name: r for r in own.results}["Glucose"] == {r.name: r for r in plain.results}["Glucose"]
    with pytest.raises(ValueError, match="decimals"):
        make_report("p-1", when, values, 3, decimals={"hdl": 2})
    with pytest.raises(ValueError, match="sex"):
        make_report("p-1", when, values, 3, sex="female")


def test_deterministic_encryption_needs_the_password_and_keeps_the_content() -> None:
    pdf = render_hospital(make_report("p-1", datetime(2024, 3, 1, 8, 15), {"glucose": 97.0}, 3))
    locked = deterministic_encrypted_pdf(pdf, b"0123456789abcdef")
    assert locked == deterministic_encrypted_pdf(pdf, b"0123456789abcdef")
    assert locked != deterministic_encrypted_pdf(pdf, b"fedcba9876543210")
    assert b"Glucose" not in locked
    with pytest.raises(PdfEncryptedError):
        extract_labs(locked)
    doc: Any = open_pdf(locked)
    assert doc.needs_pass
    assert not doc.authenticate("wrong")
    assert page_text(locked, "patient") == page_text(pdf)
    assert doc.authenticate("patient")
    plain: Any = open_pdf(pdf)
    assert doc.metadata["title"] == plain.metadata["title"]
