"""The planning worklist: what is new since ChartAgent's last summary, from the record alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.planning.worklist import WorkKind, plan_work
from agent.testbed.cohort import generate_cohort
from tools.record import build_record
from tools.writeback import AI_OUTPUT_SYSTEM, AIAST
from tools.writeback.builders import SUMMARY_REPORT_CODE
from tools.writeback.read_inputs import read_input_extensions


@pytest.fixture(scope="module")
def raws() -> tuple[str, list[dict[str, Any]]]:
    cohort = generate_cohort(1, 5)
    patient = cohort.patients[0].id
    return patient, [r for r in cohort.resources() if r["resourceType"] != "Binary"]


def summary(
    patient: str, read: frozenset[str], *, rid: str = "s1", status: str = "preliminary"
) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "meta": {"security": [dict(AIAST)]},
        "identifier": [{"system": AI_OUTPUT_SYSTEM, "value": "a" * 64}],
        "extension": read_input_extensions(read),
        "status": status,
        "code": {"coding": [dict(SUMMARY_REPORT_CODE)]},
        "subject": {"reference": f"Patient/{patient}"},
        "issued": "2026-07-01T00:00:00+00:00",
    }


def test_a_first_run_has_every_document_and_the_summary_to_do(raws: tuple[str, list[dict[str, Any]]]) -> None:
    patient, resources = raws
    work = plan_work(build_record(patient, resources), can_read_images=True)
    docs = work.of_kind(WorkKind.DOCUMENT)
    assert {d.key for d in docs} == {
        f"DocumentReference/{r['id']}" for r in resources if r["resourceType"] == "DocumentReference"
    }
    (labs,) = work.of_kind(WorkKind.LAB_SUMMARY)
    assert labs.reason == "no summary yet"
    assert work.previous_summary is None


def test_nothing_new_after_a_summary_that_read_everything(raws: tuple[str, list[dict[str, Any]]]) -> None:
    patient, resources = raws
    first = plan_work(build_record(patient, resources), can_read_images=True)
    done = [*resources, summary(patient, first.read_inputs)]
    work = plan_work(build_record(patient, done), can_read_images=True)
    assert work.items == ()
    assert work.previous_summary == "DiagnosticReport/s1"


def test_a_changed_value_or_a_version_bump(raws: tuple[str, list[dict[str, Any]]]) -> None:
    patient, resources = raws
    read = plan_work(build_record(patient, resources), can_read_images=True).read_inputs
    changed = copy.deepcopy(resources)
    obs = next(r for r in changed if r["resourceType"] == "Observation" and "valueQuantity" in r)
    obs["valueQuantity"]["value"] += 1
    work = plan_work(build_record(patient, [*changed, summary(patient, read)]), can_read_images=True)
    assert [(i.kind, i.reason) for i in work.items] == [(WorkKind.LAB_SUMMARY, "1 new or changed, 1 gone")]
    # Only the meta changed (a server re-sent the same result): nothing to do.
    bumped = copy.deepcopy(resources)
    obs = next(r for r in bumped if r["resourceType"] == "Observation")
    obs["meta"] = {"versionId": "7", "lastUpdated": "2026-07-02T00:00:00Z"}
    assert (
        plan_work(build_record(patient, [*bumped, summary(patient, read)]), can_read_images=True).items == ()
    )


def test_a_new_document_brings_the_summary_with_it(raws: tuple[str, list[dict[str, Any]]]) -> None:
    patient, resources = raws
    read = plan_work(build_record(patient, resources), can_read_images=True).read_inputs
    doc = copy.deepcopy(next(r for r in resources if r["resourceType"] == "DocumentReference"))
    doc["id"] = "new-doc"
    work = plan_work(build_record(patient, [*resources, doc, summary(patient, read)]), can_read_images=True)
    assert [(i.kind, i.key) for i in work.items] == [
        (WorkKind.DOCUMENT, "DocumentReference/new-doc"),
        (WorkKind.LAB_SUMMARY, "labs"),
    ]


def test_a_retired_summary_does_not_count(raws: tuple[str, list[dict[str, Any]]]) -> None:
    patient, resources = raws
    read = plan_work(build_record(patient, resources), can_read_images=True).read_inputs
    work = plan_work(
        build_record(patient, [*resources, summary(patient, read, status="cancelled")]), can_read_images=True
    )
    assert work.of_kind(WorkKind.LAB_SUMMARY)[0].reason == "no summary yet"
