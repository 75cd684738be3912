"""The app's summary view (agent.service.summary_view), built from resources made by the real
write-back code (trend transaction, PDF transcriptions, a chest X-ray reading) and stored the way
a FHIR server stores a transaction (ids assigned, urn:uuid references resolved)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import pytest
from fhir.resources.R4B.observation import Observation

from agent.service.summary_view import PatientResources, SummaryView, build_summary_view
from tools.imaging.geometry import Padding
from tools.labs.pdf import ExtractedLab
from tools.labs.series import build_series
from tools.medgemma.tasks import cxr_localization
from tools.medgemma.tasks.lab_extraction import LabFlag
from tools.trends import compute_trend
from tools.writeback import build_model_device, build_patient_transaction
from tools.writeback.ai_labels import ModelIdentity
from tools.writeback.bundle import conditional_create_bundle
from tools.writeback.lab_results import (
    build_lab_document_transaction,
    build_lab_result_observation,
    lab_pdf_extractor_identity,
)
from tools.writeback.study_read import ReadStudy, build_study_read

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
PATIENT = "p1"
SUBJECT = f"Patient/{PATIENT}"
DOC_ID = "doc-1"
LOINC = "http://loinc.org"


def url(rtype: str, rid: str, index: int) -> str:
    return f"/api/patients/{PATIENT}/attachments/{rtype}/{rid}/{index}"


def feed_creatinine(i: int, value: float, day: date) -> dict[str, Any]:
    """A lab feed's creatinine result (mg/dL, with the lab's range)."""
    return {
        "resourceType": "Observation",
        "id": f"cr-{i}",
        "meta": {"versionId": "1"},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": "2160-0", "display": "Creatinine"}]},
        "subject": {"reference": SUBJECT},
        "effectiveDateTime": f"{day.isoformat()}T08:00:00+00:00",
        "valueQuantity": {
            "value": value,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
        "referenceRange": [{"low": {"value": 0.6, "unit": "mg/dL"}, "high": {"value": 1.2, "unit": "mg/dL"}}],
    }


class Server:
    """Stores transactions as a FHIR server does: an id per entry, urn:uuid references resolved."""

    def __init__(self) -> None:
        self.resources: dict[str, dict[str, Any]] = {}
        self.count = 0

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.resources[f"{resource['resourceType']}/{resource['id']}"] = resource
        return resource

    def transaction(self, bundle: dict[str, Any]) -> dict[str, str]:
        ids: dict[str, str] = {}
        for entry in bundle["entry"]:
            self.count += 1
            ids[entry["fullUrl"]] = f"{entry['resource']['resourceType']}/x{self.count}"
        text = json.dumps([e["resource"] for e in bundle["entry"]])
        for full_url, ref in ids.items():
            text = text.replace(json.dumps(full_url), json.dumps(ref))
        for resource, ref in zip(json.loads(text), ids.values(), strict=True):
            resource["id"] = ref.split("/")[1]
            resource.setdefault("meta", {})["versionId"] = "1"
            self.put(resource)
        return ids

    def of(self, rtype: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(r) for r in self.resources.values() if r["resourceType"] == rtype]

    def patient_resources(self) -> PatientResources:
        return PatientResources(
            patient={
                "resourceType": "Patient",
                "id": PATIENT,
                "name": [{"use": "official", "given": ["Ada"], "family": "Test"}],
                "birthDate": "1950-02-03",
                "gender": "female",
            },
            observations=self.of("Observation"),
            reports=self.of("DiagnosticReport"),
            documents=self.of("DocumentReference"),
            studies=self.of("ImagingStudy"),
        )


def transcription_of(server: Server) -> None:
    """A creatinine value printed in µmol/L on page 2 of a lab-report PDF, transcribed."""
    identity = lab_pdf_extractor_identity("9.9.9")
    row = ExtractedLab(
        name="Creatinine",
        loinc="2160-0",
        name_status="matched",
        value=150.0,
        value_text="150",
        unit="umol/L",
        reference_low=53.0,
        reference_high=106.0,
        reference_text="53-106",
        flag=LabFlag.HIGH,
        effective=date(2026, 3, 1),
        effective_time=time(9, 30),
        page=2,
        bbox=(200.0, 110.5, 214.25, 119.0),
    )
    obs = build_lab_result_observation(
        row,
        subject=SUBJECT,
        document=f"DocumentReference/{DOC_ID}",
        pdf_sha256=hashlib.sha256(b"pdf").hexdigest(),
        device=build_model_device(identity),
        identity=identity,
        issued=NOW,
    )
    server.transaction(
        build_lab_document_transaction(
            document=f"DocumentReference/{DOC_ID}", observations=[obs], identity=identity, issued=NOW
        )
    )


def seeded() -> Server:
    server = Server()
    server.put(
        {
            "resourceType": "DocumentReference",
            "id": DOC_ID,
            "status": "current",
            "subject": {"reference": SUBJECT},
            "content": [
                {"attachment": {"contentType": "text/plain", "data": "eA=="}},
                {"attachment": {"contentType": "application/pdf", "url": "Binary/b1"}},
            ],
        }
    )
    for i, (value, day) in enumerate(
        [(0.9, date(2025, 1, 5)), (1.1, date(2025, 6, 5)), (1.4, date(2025, 11, 5))]
    ):
        server.put(feed_creatinine(i, value, day))
    transcription_of(server)
    # The trend engine over the feed and the transcription, as the planning graph runs it.
    sources = [Observation.model_validate(o) for o in server.of("Observation")]
    (series,) = build_series(sources).series
    trend = compute_trend(series)
    server.transaction(
        build_patient_transaction(subject=SUBJECT, trends=[trend], narrative="Creatinine rose.", issued=NOW)
    )
    # A chest X-ray reading with two boxes and its overlay.
    server.put(
        {
            "resourceType": "ImagingStudy",
            "id": "cxr-1",
            "status": "available",
            "subject": {"reference": SUBJECT},
            "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"}],
        }
    )
    boxes = [
        {"box_2d": [300, 100, 700, 450], "label": "right lung"},
        {"box_2d": [350, 550, 650, 900], "label": "left lung"},
    ]
    result = cxr_localization.parse(
        f"Final Answer: ```json {json.dumps(boxes)} ```", Padding.centred(600, 1000)
    )
    study = ReadStudy(
        imaging_study_id="cxr-1",
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        instance_uids=("1.2.3.4.5",),
        started="2026-05-01T10:00:00+00:00",
    )
    built = build_study_read(
        subject=SUBJECT,
        result=result,
        study=study,
        identity=ModelIdentity(
            name="medgemma-test", version="1", prompt_version=cxr_localization.PROMPT_VERSION
        ),
        issued=NOW,
        image=np.full((600, 1000, 3), 40, dtype=np.uint8),
    )
    server.transaction(conditional_create_bundle(built))
    return server


def view_of(server: Server, *, banner: bool = True) -> SummaryView:
    return build_summary_view(server.patient_resources(), need_patient_banner=banner, attachment_url=url)


def summary_report(server: Server) -> dict[str, Any]:
    return next(r for r in server.of("DiagnosticReport") if not r.get("imagingStudy"))


def test_patient_banner_and_the_current_summary_with_attachment_links() -> None:
    server = seeded()
    view = view_of(server, banner=False)
    assert view.patient.model_dump() == {
        "id": PATIENT,
        "name": "Ada Test",
        "birthDate": "1950-02-03",
        "gender": "female",
    }
    assert view.need_patient_banner is False
    report = summary_report(server)
    assert view.summary is not None
    assert view.summary.reference == f"DiagnosticReport/{report['id']}"
    assert view.summary.status == "preliminary"
    assert view.summary.conclusion == "Creatinine rose."
    forms = view.summary.presentedForm
    assert [f.contentType.split(";")[0] for f in forms] == ["text/plain", "image/png"]
    assert [f.url for f in forms] == [url("DiagnosticReport", report["id"], i) for i in (0, 1)]


def test_trend_points_are_in_the_series_unit_with_the_judged_range() -> None:
    view = view_of(seeded())
    (trend,) = view.trends
    assert (trend.analyte, trend.code, trend.unit) == ("Creatinine", "2160-0", "mg/dL")
    assert trend.direction == "worsened"
    values = [round(p.value, 2) for p in trend.points]
    # The transcribed 150 µmol/L is 1.70 mg/dL, in time order after the feed's results.
    assert values == [0.9, 1.1, 1.4, 1.7]
    assert [p.reference for p in trend.points][:3] == [
        "Observation/cr-0",
        "Observation/cr-1",
        "Observation/cr-2",
    ]
    assert trend.referenceRange is not None
    # The latest point's range: the PDF's 53-106 µmol/L in mg/dL.
    assert (trend.referenceRange.low, trend.referenceRange.high) == pytest.approx((0.6, 1.2), abs=0.005)
    assert trend.reference.startswith("Observation/x")


def test_pdf_values_carry_page_box_and_the_pdfs_link() -> None:
    (value,) = view_of(seeded()).pdf_values
    assert (value.analyte, value.value, value.unit) == ("Creatinine", 150.0, "umol/L")
    assert value.document == f"DocumentReference/{DOC_ID}"
    assert (value.page, value.bbox) == (2, [200.0, 110.5, 214.25, 119.0])
    assert value.url == url("DocumentReference", DOC_ID, 1)  # the PDF, not the text attachment


def test_imaging_report_with_its_boxes_in_original_pixels_and_the_overlay() -> None:
    server = seeded()
    (imaging,) = view_of(server).imaging
    report = next(r for r in server.of("DiagnosticReport") if r.get("imagingStudy"))
    assert imaging.reference == f"DiagnosticReport/{report['id']}"
    assert imaging.study == "1.2.3"
    assert imaging.overlay == url("DiagnosticReport", report["id"], 1)
    assert [b.label for b in imaging.boxes] == ["right lung", "left lung"]
    assert all(b.instance == "1.2.3.4.5" for b in imaging.boxes)
    # box_2d [y0, x0, y1, x1] on 0..1000 of the padded square; the image sits 200 rows down.
    x0, y0, x1, y1 = imaging.boxes[0].bbox
    assert (round(x0), round(x1)) == (100, 450)
    assert (round(y0), round(y1)) == (100, 500)


def test_pending_lists_reports_and_transcriptions_not_trends_or_boxes() -> None:
    server = seeded()
    view = view_of(server)
    kinds = sorted((p.resourceType, p.title) for p in view.pending)
    assert [k for k, _ in kinds] == ["DiagnosticReport", "DiagnosticReport", "Observation"]
    transcription = next(p for p in view.pending if p.resourceType == "Observation")
    assert transcription.reference == view.pdf_values[0].reference


def test_reviewed_and_retired_results_leave_pending() -> None:
    server = seeded()
    report = summary_report(server)
    server.put({**report, "status": "final"})
    transcription = next(
        o
        for o in server.of("Observation")
        if o["id"] == view_of(server).pdf_values[0].reference.split("/")[1]
    )
    server.put({**transcription, "status": "entered-in-error"})
    view = view_of(server)
    assert view.summary is not None
    assert view.summary.status == "final"
    assert [p.resourceType for p in view.pending] == ["DiagnosticReport"]  # the imaging report
    assert view.pdf_values == []
    server.put({**report, "status": "cancelled"})
    assert view_of(server).summary is None


def test_other_systems_reports_are_not_chartagents() -> None:
    server = Server()
    server.put(
        {
            "resourceType": "DiagnosticReport",
            "id": "lab-1",
            "status": "preliminary",
            "code": {"coding": [{"system": LOINC, "code": "11502-2"}]},
            "subject": {"reference": SUBJECT},
            "issued": "2026-01-01T00:00:00Z",
        }
    )
    view = view_of(server)
    assert (view.summary, view.trends, view.imaging, view.pending) == (None, [], [], [])


def test_a_trend_view_is_reused_only_while_its_sources_are_unchanged() -> None:
    server = seeded()
    first = view_of(server).trends[0]
    assert view_of(server).trends[0] is first  # memoized by the versions it was built from
    source = server.resources["Observation/cr-1"]
    server.put(
        {**source, "meta": {"versionId": "2"}, "valueQuantity": {**source["valueQuantity"], "value": 1.0}}
    )
    changed = view_of(server).trends[0]
    assert [round(p.value, 2) for p in changed.points] == [0.9, 1.0, 1.4, 1.7]
    unversioned = {k: v for k, v in server.resources["Observation/cr-2"].items() if k != "meta"}
    server.put(unversioned)
    assert view_of(server).trends[0] is not view_of(server).trends[0]  # no version: never memoized
