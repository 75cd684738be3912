"""Pair selection for the imaging review (pure): modalities, body sites, dates, no prior, skips."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.imagingstudy import ImagingStudy

from agent.testbed.cohort.imaging.fhir import imaging_resources, imaging_study_id
from agent.testbed.cohort.imaging.plan import plan_imaging
from agent.testbed.cohort.imaging.study import Modality, Timepoint
from tools.imaging_review import ImagingKind, PlannedComparison, plan_comparisons
from tools.imaging_review.plan import StudyEntry, is_chest, study_entry
from tools.record import PatientRecord, build_record

PID = "p1"
SNOMED = "http://snomed.info/sct"
CHEST = {"system": SNOMED, "code": "51185008", "display": "Thoracic structure"}
HEAD = {"system": SNOMED, "code": "69536005", "display": "Head structure"}
HAND = {"system": SNOMED, "code": "85562004", "display": "Hand structure"}
_counter = iter(range(1, 10_000))


def series(
    modality: str, *, site: dict[str, str] | None = CHEST, number: int = 1, description: str = ""
) -> dict[str, Any]:
    n = next(_counter)
    entry: dict[str, Any] = {
        "uid": f"1.2.3.{n}",
        "number": number,
        "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": modality},
    }
    if description:
        entry["description"] = description
    if site is not None:
        entry["bodySite"] = site
    return entry


def study(
    sid: str,
    started: str | None,
    *series_entries: dict[str, Any],
    subject: str = f"Patient/{PID}",
    status: str = "available",
    description: str = "",
    uid: str | None = "auto",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": sid,
        "status": status,
        "subject": {"reference": subject},
        "series": list(series_entries),
        **(extra or {}),
    }
    if description:
        resource["description"] = description
    if uid is not None:
        value = f"2.25.{next(_counter)}" if uid == "auto" else uid
        resource["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{value}"}]
    if started is not None:
        resource["started"] = started
    return resource


def record(*resources: dict[str, Any]) -> PatientRecord:
    built = build_record(PID, list(resources), types=("ImagingStudy", "Endpoint"))
    assert built.rejected == []
    return built


def by_kind(plans: list[PlannedComparison], kind: ImagingKind) -> list[PlannedComparison]:
    return [p for p in plans if p.kind is kind]


def test_the_cohort_patients_get_their_planned_pairs() -> None:
    ids = ["c0", "c1", "c2", "c3"]
    imaging = plan_imaging(ids, 3)
    resources = imaging_resources(imaging, "http://127.0.0.1:8042/dicom-web", include_instances=False)
    for pid in ("c0", "c2"):
        mine = [
            r for r in resources if r["resourceType"] == "Endpoint" or r["subject"]["reference"].endswith(pid)
        ]
        plans = plan_comparisons(build_record(pid, mine, types=("ImagingStudy",)))
        studies = imaging.for_patient(pid)
        if pid == "c0":
            assert [p.kind for p in plans] == [ImagingKind.CXR, ImagingKind.CT]
            for plan, modality in zip(plans, (Modality.CR, Modality.CT), strict=True):
                pair = {
                    s.timepoint: s
                    for s in studies
                    if modality in s.modalities or (modality is Modality.CR and Modality.DX in s.modalities)
                }
                assert plan.skip_reason is None
                assert plan.current.id == imaging_study_id(pair[Timepoint.CURRENT])
                assert plan.prior is not None
                assert plan.prior.id == imaging_study_id(pair[Timepoint.PRIOR])
                assert plan.current_series == pair[Timepoint.CURRENT].series[0].uid
                assert plan.prior_series == pair[Timepoint.PRIOR].series[0].uid
                assert plan.current.study_uid == pair[Timepoint.CURRENT].uid
        else:  # one MR brain study with a T1 and a T2 series: findings on the first series, no prior
            (plan,) = plans
            (mr,) = studies
            assert plan.kind is ImagingKind.MRI
            assert plan.prior is None
            assert plan.skip_reason is None
            assert plan.notes == ("no prior available",)
            assert plan.current_series == min(mr.series, key=lambda s: s.number).uid


def test_newest_is_current_and_newest_earlier_is_prior() -> None:
    plans = plan_comparisons(
        record(
            study("cxr-old", "2024-01-05T09:00:00Z", series("DX")),
            study("cxr-new", "2026-05-01T09:00:00Z", series("DX")),
            study("cxr-mid", "2025-11-02T09:00:00+01:00", series("CR")),
        )
    )
    (plan,) = plans
    assert plan.kind is ImagingKind.CXR
    assert (plan.current.id, plan.prior and plan.prior.id) == ("cxr-new", "cxr-mid")
    assert plan.current.date == "2026-05-01"


def test_time_zones_order_studies_by_the_instant() -> None:
    # 10:00+05:00 is 05:00 UTC: earlier than 08:00 UTC the same day, although it reads later.
    plans = plan_comparisons(
        record(
            study("a", "2026-05-01T10:00:00+05:00", series("CT")),
            study("b", "2026-05-01T08:00:00+00:00", series("CT")),
        )
    )
    (plan,) = plans
    assert plan.current.id == "b"
    assert plan.prior is not None
    assert plan.prior.id == "a"


def test_a_study_at_the_same_instant_is_not_a_prior() -> None:
    plans = plan_comparisons(
        record(
            study("a", "2026-05-01T08:00:00Z", series("CT")), study("b", "2026-05-01T08:00:00Z", series("CT"))
        )
    )
    (plan,) = plans
    assert plan.prior is None
    assert plan.notes == ("no prior available",)


def test_body_sites_are_compared_only_with_themselves() -> None:
    plans = plan_comparisons(
        record(
            study("ct-chest-1", "2025-01-01", series("CT", site=CHEST)),
            study("ct-head-1", "2025-06-01", series("CT", site=HEAD)),
            study("ct-chest-2", "2026-01-01", series("CT", site=CHEST)),
        )
    )
    ct = by_kind(plans, ImagingKind.CT)
    pairs = {(p.current.id, p.prior.id if p.prior else None) for p in ct}
    assert pairs == {("ct-chest-2", "ct-chest-1"), ("ct-head-1", None)}


def test_modalities_map_to_kinds_and_wsi_and_others_are_skipped() -> None:
    plans = plan_comparisons(
        record(
            study("mr-1", "2025-01-01", series("MR", site=HEAD)),
            study("mr-2", "2026-01-01", series("MR", site=HEAD)),
            study("slide", "2026-02-01", series("SM", site=None)),
            study("echo", "2026-02-02", series("US", site=None)),
        )
    )
    (mri,) = by_kind(plans, ImagingKind.MRI)
    assert (mri.current.id, mri.prior and mri.prior.id) == ("mr-2", "mr-1")
    (wsi,) = by_kind(plans, ImagingKind.WSI)
    assert wsi.current.id == "slide"
    assert wsi.skip_reason is not None
    assert "whole-slide" in wsi.skip_reason
    (other,) = by_kind(plans, ImagingKind.OTHER)
    assert other.skip_reason == "no comparison recipe for modality US"
    assert plans.index(mri) < plans.index(wsi)  # comparisons first, then the skipped studies


def test_cxr_without_prior_is_skipped_ct_without_prior_still_runs() -> None:
    plans = plan_comparisons(
        record(study("cxr-1", "2026-01-01", series("CR")), study("ct-1", "2026-01-02", series("CT")))
    )
    (cxr,) = by_kind(plans, ImagingKind.CXR)
    assert cxr.skip_reason is not None
    assert "no prior chest X-ray" in cxr.skip_reason
    (ct,) = by_kind(plans, ImagingKind.CT)
    assert ct.skip_reason is None
    assert ct.prior is None


def test_a_radiograph_is_a_chest_x_ray_only_when_the_chest_is_named() -> None:
    plans = plan_comparisons(
        record(
            study("hand-1", "2025-01-01", series("DX", site=HAND)),
            study("hand-2", "2026-01-01", series("DX", site=HAND)),
            study("nosite-1", "2025-01-01", series("CR", site=None), description="XR KNEE 2 VIEWS"),
            study("cxr-text-1", "2025-01-01", series("CR", site=None, description="PA CHEST")),
            study("cxr-text-2", "2026-01-01", series("CR", site=None), description="Chest X-ray PA"),
        )
    )
    skipped = {p.current.id: p.skip_reason for p in plans if p.skip_reason}
    assert "is not a chest X-ray (its body site is not the chest)" in str(skipped["hand-1"])
    assert "hand-2" in skipped
    assert "no body site says chest" in str(skipped["nosite-1"])
    (cxr,) = [p for p in plans if p.skip_reason is None]
    assert (cxr.current.id, cxr.prior and cxr.prior.id) == ("cxr-text-2", "cxr-text-1")


def test_is_chest_reads_codes_and_uncoded_text() -> None:
    coded = study_entry_of(study("a", "2026-01-01", series("DX", site=CHEST)))
    text_only = study_entry_of(study("b", "2026-01-01", series("DX", site={"display": "Chest"})))
    none = study_entry_of(study("c", "2026-01-01", series("DX", site=None)))
    assert is_chest(coded) is True
    assert is_chest(text_only) is True
    assert is_chest(none) is None


def study_entry_of(resource: dict[str, Any]) -> StudyEntry:
    return study_entry(ImagingStudy.model_validate(resource))


def test_unusable_studies_are_skipped_or_ignored_with_reasons() -> None:
    ai_meta = {"meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                                      "code": "AIAST"}]}}  # fmt: skip
    plans = plan_comparisons(
        record(
            study("undated", None, series("CT")),
            study("no-uid", "2026-01-01", series("CT"), uid=None),
            study("cancelled", "2026-03-01", series("CT"), status="cancelled"),
            study("wrong-subject", "2026-03-02", series("CT"), subject="Patient/someone-else"),
            study("ai", "2026-03-03", series("CT"), extra=ai_meta),
            study("ok", "2025-01-01", series("CT")),
        )
    )
    reasons = {p.current.id: p.skip_reason for p in plans}
    assert "cancelled" not in reasons
    assert "no start date" in str(reasons["undated"])
    assert "StudyInstanceUID" in str(reasons["no-uid"])
    assert "another subject" in str(reasons["wrong-subject"])
    assert "AI-asserted" in str(reasons["ai"])
    assert reasons["ok"] is None
    for sid in ("undated", "no-uid", "wrong-subject", "ai"):
        assert f"ImagingStudy/{sid}" in str(reasons[sid])


def test_series_are_matched_by_description_then_by_number() -> None:
    plans = plan_comparisons(
        record(
            study(
                "mr-old",
                "2025-01-01",
                series("MR", site=HEAD, number=1, description="AX T1 SE"),
                series("MR", site=HEAD, number=2, description="AX FLAIR"),
            ),
            study(
                "mr-new",
                "2026-01-01",
                series("MR", site=HEAD, number=1, description="AX DWI"),
                series("MR", site=HEAD, number=2, description="AX FLAIR"),
                series("SR", site=None, number=3, description="report"),
            ),
        )
    )
    (plan,) = plans
    assert plan.prior is not None
    current = {s.uid: s.description for s in plan.current.series}
    prior = {s.uid: s.description for s in plan.prior.series}
    assert current[str(plan.current_series)] == prior[str(plan.prior_series)] == "AX FLAIR"


def test_a_study_without_listed_series_leaves_the_series_to_the_fetch() -> None:
    dcm = "http://dicom.nema.org/resources/ontology/DCM"
    bare = study("ct-bare", "2026-01-01", extra={"modality": [{"system": dcm, "code": "CT"}]})
    bare.pop("series")
    (plan,) = plan_comparisons(record(bare))
    assert plan.kind is ImagingKind.CT
    assert plan.current_series is None
    assert plan.skip_reason is None


@pytest.mark.parametrize("status", ["entered-in-error", "registered", "cancelled"])
def test_studies_not_done_are_not_considered(status: str) -> None:
    assert plan_comparisons(record(study("x", "2026-01-01", series("CT"), status=status))) == []


@pytest.mark.parametrize(
    ("identifier", "uid"),
    [
        ({"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.1"}, "1.2.840.1"),
        (
            {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.840.99999999.1"},
            "1.2.840.99999999.1",
        ),  # Synthea
        ({"system": "urn:ietf:rfc:3986", "value": "https://pacs.example/1.2.3"}, None),
        ({"system": "urn:dicom:uid", "value": "urn:oid:not-a-uid"}, None),
        ({"system": "http://hospital.example/accession", "value": "A123"}, None),
    ],
)
def test_the_study_instance_uid_is_read_from_its_identifier(
    identifier: dict[str, str], uid: str | None
) -> None:
    resource = study("s", "2026-01-01", series("CT"), uid=None, extra={"identifier": [identifier]})
    assert study_entry_of(resource).study_uid == uid
