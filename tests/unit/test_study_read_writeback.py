"""Write-back of a single-study AI read (pure): boxes in original pixels, the overlay PNG, AIAST and
preliminary, stable identifiers, one transaction, and reads kept apart from comparisons when retiring."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from PIL import Image

from tools.imaging.geometry import Padding
from tools.medgemma.tasks import cxr_localization, slide_description, volume_findings
from tools.medgemma.tasks.volume_comparison import VolumeRead, combine
from tools.medgemma.tasks.volume_findings import VolumeModality
from tools.writeback.ai_labels import ModelIdentity
from tools.writeback.identifiers import Built
from tools.writeback.imaging_report import ComparisonTask, StudyInput, build_imaging_writeback
from tools.writeback.pending import WriteKind
from tools.writeback.study_read import (
    BOX_CODE,
    DICOM_IMAGE_URL,
    OVERLAY_MAX_SIDE,
    READ_SYSTEM,
    ReadStudy,
    build_study_read,
    study_read_write,
)
from tools.writeback.supersede import report_kind

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
SUBJECT = "Patient/p1"
IDENTITY = ModelIdentity(name="medgemma-test", version="rev1", prompt_version=cxr_localization.PROMPT_VERSION)
# A landscape radiograph 600 high and 1000 wide: padded to 1000 x 1000 with 200 rows above.
PADDING = Padding.centred(600, 1000)
CXR = ReadStudy(
    imaging_study_id="cxr-1",
    study_uid="1.2.3",
    series_uid="1.2.3.4",
    instance_uids=("1.2.3.4.5",),
    started="2026-05-01T10:00:00+00:00",
)
CT = ReadStudy(
    imaging_study_id="ct-1",
    study_uid="2.2.3",
    series_uid="2.2.3.4",
    instance_uids=tuple(f"2.2.3.4.{i}" for i in range(1, 4)),
    started="2026-05-02",
)


def localization() -> cxr_localization.CxrLocalization:
    boxes = [
        {"box_2d": [300, 100, 700, 450], "label": "right lung"},
        {"box_2d": [350, 550, 650, 900], "label": "left lung"},
    ]
    return cxr_localization.parse(f"Final Answer: ```json {json.dumps(boxes)} ```", PADDING)


def image() -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.full((600, 1000, 3), 40, dtype=np.uint8)


def cxr_built(**kw: Any) -> list[Built[Any]]:
    args: dict[str, Any] = {
        "subject": SUBJECT,
        "result": localization(),
        "study": CXR,
        "identity": IDENTITY,
        "issued": NOW,
        "image": image(),
    } | kw
    return build_study_read(**args)


def of_type(built: list[Built[Any]], rtype: str) -> list[dict[str, Any]]:
    return [b.resource.model_dump(mode="json") for b in built if b.resource_type == rtype]


def component(obs: dict[str, Any], code: str) -> dict[str, Any]:
    (found,) = [c for c in obs["component"] if c["code"]["coding"][0]["code"] == f"box-{code}"]
    return dict(found["valueQuantity"])


def test_boxes_are_written_in_original_pixels_tied_to_the_instance_read() -> None:
    built = cxr_built()
    assert [b.resource_type for b in built] == [
        "Device",
        "Observation",
        "Observation",
        "DiagnosticReport",
        "Provenance",
    ]
    right, left = of_type(built, "Observation")
    # By hand: scale 1000/1000 = 1 px per unit; 200 rows of padding above, none at the sides.
    # right lung [y0 300, x0 100, y1 700, x1 450] -> x 100..450, y 100..500.
    assert {k: component(right, k)["value"] for k in ("x0", "y0", "x1", "y1")} == {
        "x0": 100.0,
        "y0": 100.0,
        "x1": 450.0,
        "y1": 500.0,
    }
    assert {k: component(left, k)["value"] for k in ("x0", "y0", "x1", "y1")} == {
        "x0": 550.0,
        "y0": 150.0,
        "x1": 900.0,
        "y1": 450.0,
    }
    assert component(right, "x0")["code"] == "{pixel}"
    assert component(right, "x0")["system"] == "http://unitsofmeasure.org"
    assert right["code"]["coding"][0] == BOX_CODE
    assert right["bodySite"]["text"] == "right lung"
    assert right["derivedFrom"] == [{"reference": "ImagingStudy/cxr-1"}]
    (ext,) = right["extension"]
    assert ext["url"] == DICOM_IMAGE_URL
    assert {e["url"]: e["valueOid"] for e in ext["extension"]} == {
        "study": "urn:oid:1.2.3",
        "series": "urn:oid:1.2.3.4",
        "instance": "urn:oid:1.2.3.4.5",
    }
    assert right["status"] == "preliminary"
    assert right["meta"]["security"][0]["code"] == "AIAST"
    (report,) = of_type(built, "DiagnosticReport")
    obs_urls = [b.full_url for b in built if b.resource_type == "Observation"]
    assert [r["reference"] for r in report["result"]] == obs_urls
    (prov,) = of_type(built, "Provenance")
    assert {t["reference"] for t in prov["target"]} == {*obs_urls, built[3].full_url}
    assert {"reference": "ImagingStudy/cxr-1"} in [e["what"] for e in prov["entity"]]


def test_the_report_is_a_preliminary_ai_report_with_text_and_the_overlay_png() -> None:
    (report,) = of_type(cxr_built(), "DiagnosticReport")
    assert report["status"] == "preliminary"
    assert report["meta"]["security"][0]["code"] == "AIAST"
    assert report["code"]["coding"][0]["code"] == "18748-4"
    assert {"system": READ_SYSTEM, "code": "cxr-localization"}.items() <= report["code"]["coding"][1].items()
    assert report["imagingStudy"] == [{"reference": "ImagingStudy/cxr-1"}]
    assert report["conclusion"].startswith("AI-generated")
    text, png = report["presentedForm"]
    assert text["contentType"].startswith("text/plain")
    assert "right lung: 100, 100, 450, 500" in base64.b64decode(text["data"]).decode()
    assert png["contentType"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(png["data"]))).convert("RGB"))
    assert drawn.shape == (600, 1000, 3)  # the original frame, not the padded square
    # The right lung's left edge (x = 100) is drawn between its top and bottom edges; far away is untouched.
    assert (drawn[300, 100] != 40).any()
    assert (drawn[550, 50] == 40).all()


def test_a_large_radiograph_is_drawn_scaled_to_the_overlay_limit() -> None:
    big = Padding.centred(2048, 1536)  # 2048 rows: drawn at half size, 1024 x 768
    boxes = [{"box_2d": [250, 250, 750, 500], "label": "right lung"}]
    result = cxr_localization.parse(f"Final Answer: ```json {json.dumps(boxes)} ```", big)
    (box,) = result.boxes
    assert (box.box.x0, box.box.y0) == (256.0, 512.0)  # 0.25 * 2048 - 256 columns of padding
    built = cxr_built(result=result, image=np.full((2048, 1536, 3), 40, dtype=np.uint8))
    (report,) = of_type(built, "DiagnosticReport")
    png = base64.b64decode(report["presentedForm"][1]["data"])
    drawn = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert drawn.shape == (OVERLAY_MAX_SIDE, 768, 3)
    assert (drawn[400, 128] != 40).any()  # the left edge at x 256 / 2, between y 256 and 640
    assert (drawn[400, 100] == 40).all()
    (obs,) = of_type(built, "Observation")
    assert component(obs, "x0")["value"] == 256.0  # the Observation keeps the exact original pixels


def test_identifiers_are_stable_and_follow_the_inputs() -> None:
    first, again = cxr_built(), cxr_built(issued=LATER)
    assert [b.identifier for b in first] == [b.identifier for b in again]
    other_instance = CXR.model_copy(update={"instance_uids": ("1.2.3.4.6",)})
    moved = cxr_built(study=other_instance)
    assert moved[3].identifier != first[3].identifier
    assert moved[1].identifier != first[1].identifier
    asked = cxr_built(parameters={"question": "Locate the heart"})
    assert asked[3].identifier != first[3].identifier


def test_one_pending_transaction_of_conditional_creates() -> None:
    built = cxr_built()
    pending = study_read_write(built, CXR)
    assert pending.kind is WriteKind.IMAGING_REPORT
    assert pending.key == built[3].identifier.value
    assert pending.inputs == ("ImagingStudy/cxr-1", "urn:oid:1.2.3")
    bundle = pending.bundle
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "transaction")
    assert all(e["request"]["method"] == "POST" and e["request"]["ifNoneExist"] for e in bundle["entry"])
    assert len({e["fullUrl"] for e in bundle["entry"]}) == 5


def test_volume_and_slide_reads() -> None:
    findings = volume_findings.parse(
        '{"findings": [{"description": "nodule", "slices": [2]}], "impression": "A nodule."}',
        modality=VolumeModality.CT,
        slice_count=3,
    )
    identity = IDENTITY.model_copy(update={"prompt_version": volume_findings.PROMPT_VERSION})
    built = build_study_read(subject=SUBJECT, result=findings, study=CT, identity=identity, issued=NOW)
    assert [b.resource_type for b in built] == ["Device", "DiagnosticReport", "Provenance"]
    (report,) = of_type(built, "DiagnosticReport")
    assert report["conclusion"].endswith("A nodule.")
    assert "- nodule (SLICE 2)" in base64.b64decode(report["presentedForm"][0]["data"]).decode()
    assert "result" not in report

    slide = slide_description.parse('{"description": "Benign tissue.", "findings": ["fibrosis"]}')
    wsi = ReadStudy(imaging_study_id="wsi-1", study_uid="3.1", series_uid="3.1.1", started="2026-06-01")
    (report,) = of_type(
        build_study_read(subject=SUBJECT, result=slide, study=wsi, identity=identity, issued=NOW),
        "DiagnosticReport",
    )
    assert report["code"]["coding"][0]["code"] == "11526-1"
    assert report["category"][0]["coding"][0]["code"] == "SP"
    assert "Benign tissue." in report["conclusion"]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="image read"):
        cxr_built(image=None)
    with pytest.raises(ValueError, match="overlay image"):
        cxr_built(image=np.zeros((1000, 1000, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="exactly one instance"):
        cxr_built(study=CT)
    with pytest.raises(ValueError, match="subject"):
        cxr_built(subject="p1")


def retired_by(bundle: dict[str, Any]) -> list[str]:
    return [e["request"]["url"] for e in bundle["entry"] if e["request"]["method"] == "PUT"]


def stored(built: list[Built[Any]], rid: str) -> DiagnosticReport:
    data = next(b for b in built if b.resource_type == "DiagnosticReport").resource.model_dump(mode="json")
    return DiagnosticReport.model_validate({**data, "id": rid, "meta": {**data["meta"], "versionId": "1"}})


def test_a_single_study_read_and_a_comparison_without_prior_never_retire_each_other() -> None:
    # The comparison of a CT with no prior names one study too: the same subject, code and study set
    # but for the read's own coding.
    findings = volume_findings.parse('{"findings": [], "impression": "Normal."}', modality=VolumeModality.CT)
    identity = IDENTITY.model_copy(update={"prompt_version": volume_findings.PROMPT_VERSION})
    read = build_study_read(subject=SUBJECT, result=findings, study=CT, identity=identity, issued=NOW)
    comparison = build_imaging_writeback(
        task=ComparisonTask.CT,
        subject=SUBJECT,
        result=combine(
            VolumeModality.CT,
            VolumeRead(
                study_date=CT.started, series_uid=CT.series_uid, slice_instances=(1, 2, 3), findings=findings
            ),
            None,
        ),
        current=StudyInput(
            imaging_study_id="ct-1", study_uid=CT.study_uid, series_uids=(CT.series_uid,), started=CT.started
        ),
        prior=None,
        identity=identity,
        issued=NOW,
    )
    read_report, comparison_report = stored(read, "r1"), stored(comparison, "c1")
    assert report_kind(read_report.model_dump(mode="json")) != report_kind(
        comparison_report.model_dump(mode="json")
    )
    assert retired_by(study_read_write(read, CT, [comparison_report]).bundle) == []
    # ... while a newer read of the same study retires the older one.
    newer = build_study_read(
        subject=SUBJECT,
        result=findings,
        study=CT,
        identity=identity.model_copy(update={"version": "rev2"}),
        issued=LATER,
    )
    assert retired_by(study_read_write(newer, CT, [read_report, comparison_report]).bundle) == [
        "DiagnosticReport/r1"
    ]
