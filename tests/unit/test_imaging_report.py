"""Imaging comparison write-back: valid R4B, AI-labelled, stable identifiers, the right ImagingStudy refs;
and the CT/MRI combination of the prior and current reads."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from tools.imaging_review import ComparisonOutcome, ComparisonStatus, ImagingKind, ImagingReview
from tools.medgemma.tasks.cxr_comparison import Change, CxrComparison, FindingChange
from tools.medgemma.tasks.volume_comparison import NOT_COMPARED_NOTE, VolumeRead, combine
from tools.medgemma.tasks.volume_findings import Finding, VolumeFindings, VolumeModality
from tools.writeback import AI_OUTPUT_SYSTEM, Built, ModelIdentity, build_model_device
from tools.writeback.imaging_report import (
    AI_REPORT_LABEL,
    ComparisonTask,
    StudyInput,
    build_imaging_report,
    build_imaging_writeback,
)

ISSUED = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
SUBJECT = "Patient/p1"
MODEL = ModelIdentity(
    name="google/medgemma-1.5-4b-it", version="abc123", dtype="bfloat16", prompt_version="p/1"
)
CURRENT = StudyInput(
    imaging_study_id="p1-cxr-current",
    study_uid="2.25.2",
    series_uids=("2.25.2.1",),
    started="2026-05-01T09:00:00Z",
)
PRIOR = StudyInput(
    imaging_study_id="p1-cxr-prior",
    study_uid="2.25.1",
    series_uids=("2.25.1.1",),
    started="2025-11-02T09:00:00Z",
)
CXR = CxrComparison(
    comparisons=(
        FindingChange(
            finding="left lower zone opacity", change=Change.WORSENED, evidence="larger and denser"
        ),
        FindingChange(finding="pleural effusion", change=Change.STABLE),
    ),
    summary="Left lower zone opacity has worsened.",
)
CT_CURRENT = StudyInput(
    imaging_study_id="p1-ct-current",
    study_uid="2.25.4",
    series_uids=("2.25.4.1",),
    started="2026-06-20T12:45:00Z",
)
CT_PRIOR = StudyInput(
    imaging_study_id="p1-ct-prior", study_uid="2.25.3", series_uids=("2.25.3.1",), started="2025-10-01"
)


def findings(
    impression: str, *items: tuple[str, tuple[int, ...]], notes: tuple[str, ...] = ()
) -> VolumeFindings:
    return VolumeFindings(
        modality=VolumeModality.CT,
        findings=tuple(Finding(description=d, slices=s) for d, s in items),
        impression=impression,
        answer_format="json",
        parse_notes=notes,
    )


def ct_result(with_prior: bool = True) -> Any:
    current = VolumeRead(
        study_date=CT_CURRENT.started,
        series_uid="2.25.4.1",
        slice_instances=(1, 3, 5, 7),
        findings=findings(
            "A 14 mm nodule in the right upper lobe.", ("right upper lobe nodule 14 mm", (2, 3))
        ),
    )
    prior = VolumeRead(
        study_date=CT_PRIOR.started,
        series_uid="2.25.3.1",
        slice_instances=(2, 4, 6),
        findings=findings("A 9 mm nodule in the right upper lobe.", ("right upper lobe nodule 9 mm", (1,)),
                          notes=("text before the JSON ignored",)),
    )  # fmt: skip
    return combine(VolumeModality.CT, current, prior if with_prior else None)


def cxr_report(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "task": ComparisonTask.CXR,
        "subject": SUBJECT,
        "result": CXR,
        "current": CURRENT,
        "prior": PRIOR,
        "identity": MODEL,
        "issued": ISSUED,
        "parameters": {"max_new_tokens": None},
    }
    return json_of(build_imaging_report(**(args | overrides)))


def json_of(built: Built[Any]) -> dict[str, Any]:
    """The resource as it goes on the wire, checked by an R4B validation round trip."""
    data: dict[str, Any] = built.resource.model_dump(mode="json")
    assert type(built.resource).model_validate(data).model_dump(mode="json") == data
    return data


def text_of(report: dict[str, Any]) -> str:
    (form,) = report["presentedForm"]
    assert form["contentType"] == "text/plain; charset=utf-8"
    return base64.b64decode(form["data"]).decode("utf-8")


def refs(report: dict[str, Any]) -> list[str]:
    return [r["reference"] for r in report["imagingStudy"]]


def test_cxr_report_is_valid_ai_labelled_and_points_at_both_studies() -> None:
    report = cxr_report()
    assert report["status"] == "preliminary"
    security = [(s["system"], s["code"]) for s in report["meta"]["security"]]
    assert security == [("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST")]
    (category,) = report["category"]
    rad = ("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD")
    assert [(c["system"], c["code"]) for c in category["coding"]] == [rad]
    assert [(c["system"], c["code"]) for c in report["code"]["coding"]] == [("http://loinc.org", "18748-4")]
    assert report["subject"] == {"reference": SUBJECT}
    assert datetime.fromisoformat(report["effectiveDateTime"]) == datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    assert datetime.fromisoformat(report["issued"]) == ISSUED
    assert refs(report) == ["ImagingStudy/p1-cxr-current", "ImagingStudy/p1-cxr-prior"]
    conclusion = report["conclusion"]
    assert conclusion.startswith(AI_REPORT_LABEL)
    assert "CXR 2026-05-01 vs 2025-11-02" in conclusion
    assert CXR.summary in conclusion
    text = text_of(report)
    assert "AI-generated" in text
    assert "- left lower zone opacity: worsened - larger and denser" in text
    assert "- pleural effusion: stable" in text
    assert "StudyInstanceUID 2.25.2" in text
    assert "google/medgemma-1.5-4b-it version abc123, prompt p/1" in text


def test_cxr_conclusion_falls_back_to_the_changes_without_a_summary() -> None:
    report = cxr_report(result=CXR.model_copy(update={"summary": ""}))
    assert report["conclusion"].endswith("left lower zone opacity worsened; pleural effusion stable.")


def ident(**overrides: Any) -> str:
    (identifier,) = cxr_report(**overrides)["identifier"]
    assert identifier["system"] == AI_OUTPUT_SYSTEM
    return str(identifier["value"])


def test_identifiers_are_stable_and_follow_inputs_model_and_roles() -> None:
    base = ident()
    assert ident() == base
    assert ident(issued=datetime(2027, 1, 1, tzinfo=UTC)) == base  # the clock is not an input
    # The text is the output, not an input: a rerun that words it differently finds the earlier report.
    assert ident(result=CXR.model_copy(update={"summary": "other words"})) == base
    changed = [
        ident(current=PRIOR, prior=CURRENT),  # roles swapped
        ident(current=CURRENT.model_copy(update={"series_uids": ("2.25.2.9",)})),
        ident(prior=PRIOR.model_copy(update={"imaging_study_id": "p1-cxr-older"})),
        ident(identity=MODEL.model_copy(update={"version": "def456"})),
        ident(identity=MODEL.model_copy(update={"prompt_version": "p/2"})),
        ident(parameters={"max_new_tokens": 64}),
    ]
    assert len({base, *changed}) == len(changed) + 1


def test_writeback_is_device_report_and_provenance_of_the_studies() -> None:
    built = build_imaging_writeback(
        task=ComparisonTask.CXR,
        subject=SUBJECT,
        result=CXR,
        current=CURRENT,
        prior=PRIOR,
        identity=MODEL,
        issued=ISSUED,
    )
    device, report, provenance = built
    assert [b.resource_type for b in built] == ["Device", "DiagnosticReport", "Provenance"]
    assert device == build_model_device(MODEL)  # identical Built: the integrator de-duplicates by full_url
    prov = json_of(provenance)
    assert [t["reference"] for t in prov["target"]] == [report.full_url]
    assert prov["agent"][0]["who"]["reference"] == device.full_url
    sources = sorted(e["what"]["reference"] for e in prov["entity"] if e["role"] == "source")
    assert sources == ["ImagingStudy/p1-cxr-current", "ImagingStudy/p1-cxr-prior"]
    entries = [
        {
            "fullUrl": b.full_url,
            "resource": json_of(b),
            "request": {"method": "POST", "url": b.resource_type, "ifNoneExist": b.if_none_exist},
        }
        for b in built
    ]
    Bundle.model_validate({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def ct_report(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "task": ComparisonTask.CT,
        "subject": SUBJECT,
        "result": ct_result(),
        "current": CT_CURRENT,
        "prior": CT_PRIOR,
        "identity": MODEL,
        "issued": ISSUED,
        "parameters": {"slices": 4, "prior_slices": 3},
    }
    return json_of(build_imaging_report(**(args | overrides)))


def test_ct_report_states_each_read_and_maps_slices_to_instances() -> None:
    report = ct_report()
    assert refs(report) == ["ImagingStudy/p1-ct-current", "ImagingStudy/p1-ct-prior"]
    conclusion = report["conclusion"]
    assert "current impression: A 14 mm nodule" in conclusion
    assert "Prior impression: A 9 mm nodule" in conclusion
    assert NOT_COMPARED_NOTE in conclusion
    text = text_of(report)
    current_at = text.index("Current findings:")
    prior_at = text.index("Prior findings:")
    assert "- right upper lobe nodule 14 mm (SLICE 2, 3; InstanceNumber 3, 5)" in text[current_at:prior_at]
    assert "- right upper lobe nodule 9 mm (SLICE 1; InstanceNumber 2)" in text[prior_at:]
    assert "Parsing notes: prior: text before the JSON ignored" in text
    assert "4 image(s) shown" in text


def test_ct_without_prior_reports_no_prior_available() -> None:
    report = ct_report(result=ct_result(with_prior=False), prior=None, parameters=None)
    assert refs(report) == ["ImagingStudy/p1-ct-current"]
    assert "(no prior available)" in report["conclusion"]
    assert "Prior: no prior available" in text_of(report)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": ComparisonTask.CT}, "cannot be written as ct-comparison"),
        ({"prior": None}, "needs the prior study"),
        ({"prior": CURRENT}, "compared with itself"),
        ({"subject": "p1"}, "literal Patient reference"),
        ({"issued": datetime(2026, 6, 30, 12, 0)}, "timezone-aware"),
    ],
)
def test_inconsistent_cxr_input_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cxr_report(**overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": ComparisonTask.MRI}, "cannot be written as mri-comparison"),
        ({"prior": None}, "both be given, or neither"),
        ({"current": CT_CURRENT.model_copy(update={"series_uids": ("9.9",)})}, "is not listed for"),
    ],
)
def test_inconsistent_ct_input_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ct_report(**overrides)


def test_combination_keeps_both_reads_and_their_notes() -> None:
    result = ct_result()
    assert result.current.findings.impression.startswith("A 14 mm")
    assert result.prior is not None
    assert result.prior.findings.findings[0].description == "right upper lobe nodule 9 mm"
    assert result.parse_notes == ("prior: text before the JSON ignored",)
    assert result.current.instances_of((2, 3)) == (3, 5)


def test_a_read_citing_slices_not_shown_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"only 1\.\.2 were shown"):
        VolumeRead(
            study_date=None, series_uid="1.2", slice_instances=(1, 2), findings=findings("x", ("y", (3,)))
        )


def test_reads_of_another_modality_are_refused() -> None:
    read = VolumeRead(study_date=None, series_uid="1.2", slice_instances=(1,), findings=findings("x"))
    with pytest.raises(ValidationError, match="a ct read in a mri comparison"):
        combine(VolumeModality.MRI, read, None)


def outcome(
    kind: ImagingKind, status: ComparisonStatus, result: Any, prior_date: str | None, **kw: Any
) -> Any:
    return ComparisonOutcome(
        kind=kind,
        current="c",
        prior="p" if prior_date else None,
        current_date="2026-05-01",
        prior_date=prior_date,
        status=status,
        result=result,
        **kw,
    )


def test_summary_lines_for_the_narrative() -> None:
    common: dict[str, Any] = {"subject": SUBJECT, "identity": MODEL, "issued": ISSUED}
    built = tuple(
        build_imaging_writeback(task=ComparisonTask.CXR, result=CXR, current=CURRENT, prior=PRIOR, **common)
    )
    ct_built = tuple(
        build_imaging_writeback(
            task=ComparisonTask.CT, result=ct_result(), current=CT_CURRENT, prior=CT_PRIOR, **common
        )
    )
    review = ImagingReview(
        comparisons=(
            outcome(ImagingKind.CXR, ComparisonStatus.READY, CXR, "2025-11-02", built=built),
            outcome(ImagingKind.CT, ComparisonStatus.READY, ct_result(), "2025-10-01", built=ct_built),
            outcome(
                ImagingKind.MRI, ComparisonStatus.FAILED, None, None, reason="model answer not usable (x): y"
            ),
        )
    )
    assert review.summary_lines == [
        "CXR 2026-05-01 vs 2025-11-02: left lower zone opacity worsened; pleural effusion stable "
        "(AI-generated)",
        "CT 2026-05-01 vs 2025-10-01: current: A 14 mm nodule in the right upper lobe.; "
        "prior: A 9 mm nodule in the right upper lobe. (AI-generated; each study read separately)",
        "MRI 2026-05-01: not analysed - model answer not usable (x): y",
    ]
    assert review.lines() == review.summary_lines[:2]
    # One Device (the same model and prompt wrote both), two reports, two provenances.
    assert [b.resource_type for b in review.built] == [
        "Device", "DiagnosticReport", "Provenance", "DiagnosticReport", "Provenance",
    ]  # fmt: skip


def test_an_outcome_is_ready_exactly_when_it_has_something_to_write() -> None:
    with pytest.raises(ValueError, match="only a ready one"):
        outcome(ImagingKind.CXR, ComparisonStatus.READY, CXR, "2025-11-02")
    with pytest.raises(ValueError, match="needs its reason"):
        outcome(ImagingKind.CXR, ComparisonStatus.SKIPPED, None, None)
