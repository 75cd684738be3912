"""A newer AI report retires the older current one of the same patient and kind (issue 9)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from tools.writeback import AI_OUTPUT_SYSTEM, AIAST
from tools.writeback.supersede import SUPERSEDED_BY_URL, with_superseded

LONGITUDINAL = {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]}
COMPARISON = {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]}


def report(
    value: str,
    *,
    id: str | None = None,
    status: str = "preliminary",
    subject: str = "Patient/p1",
    code: dict[str, Any] = LONGITUDINAL,
    ai: bool = True,
    version: str | None = "3",
    studies: tuple[str, ...] = (),
) -> dict[str, Any]:
    meta: dict[str, Any] = {"security": [AIAST]} if ai else {}
    if version is not None:
        meta["versionId"] = version
        meta["lastUpdated"] = "2026-01-01T00:00:00Z"
    out: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "code": code,
        "subject": {"reference": subject},
        "identifier": [{"system": AI_OUTPUT_SYSTEM, "value": value}],
        "meta": meta,
    }
    if id is not None:
        out["id"] = id
    if studies:
        out["imagingStudy"] = [{"reference": s} for s in studies]
    return out


def bundle(*reports: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:0000000{i}-0000-0000-0000-000000000000",
                "resource": {k: v for k, v in r.items() if k != "meta"},
                "request": {"method": "POST", "url": "DiagnosticReport", "ifNoneExist": "identifier=x"},
            }
            for i, r in enumerate(reports)
        ],
    }


def parsed(*reports: dict[str, Any]) -> list[DiagnosticReport]:
    return [DiagnosticReport.model_validate(r) for r in reports]


def test_the_older_current_summary_is_retired_with_a_version_check_and_a_link() -> None:
    new = bundle(report("new"))
    out = with_superseded(new, parsed(report("old", id="r1")))
    assert out["entry"][: len(new["entry"])] == new["entry"]
    (update,) = out["entry"][len(new["entry"]) :]
    assert update["request"] == {"method": "PUT", "url": "DiagnosticReport/r1", "ifMatch": 'W/"3"'}
    resource = update["resource"]
    assert resource["status"] == "cancelled"
    assert resource["id"] == "r1"
    assert {
        "url": SUPERSEDED_BY_URL,
        "valueReference": {"reference": new["entry"][0]["fullUrl"]},
    } in resource["extension"]
    assert resource["meta"] == {"security": [AIAST]}  # still labelled AI output; server sets version
    assert resource["identifier"] == [{"system": AI_OUTPUT_SYSTEM, "value": "old"}]


def test_nothing_is_retired_when_the_current_report_is_this_runs_own() -> None:
    new = bundle(report("same"))
    assert with_superseded(new, parsed(report("same", id="r1"))) == new


def test_reports_people_reviewed_others_and_other_kinds_stay() -> None:
    new = bundle(report("new"))
    current = parsed(
        report("a", id="final", status="final"),  # a person approved it
        report("b", id="rejected", status="entered-in-error"),
        report("c", id="human", ai=False),  # not AI output
        report("d", id="other-patient", subject="Patient/p2"),
        report("e", id="imaging", code=COMPARISON, studies=("ImagingStudy/s1", "ImagingStudy/s0")),
    )
    assert with_superseded(new, current) == new


def test_imaging_comparisons_are_retired_per_pair_of_studies() -> None:
    pair = ("ImagingStudy/cur", "ImagingStudy/prior")
    new = bundle(report("new-cmp", code=COMPARISON, studies=pair))
    current = parsed(
        report("old-cmp", id="same-pair", code=COMPARISON, studies=tuple(reversed(pair))),
        report("other", id="other-pair", code=COMPARISON, studies=("ImagingStudy/cur", "ImagingStudy/x")),
    )
    out = with_superseded(new, current)
    assert [e["request"]["url"] for e in out["entry"][1:]] == ["DiagnosticReport/same-pair"]


def test_a_report_without_a_version_is_retired_without_if_match() -> None:
    out = with_superseded(bundle(report("new")), parsed(report("old", id="r1", version=None)))
    assert out["entry"][-1]["request"] == {"method": "PUT", "url": "DiagnosticReport/r1"}
