"""The job run's tag: put on what a job creates (not on the shared Device, not on updates), found
again on the resources read back."""

from __future__ import annotations

import copy

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from tools.writeback.run_tag import JOB_RUN_SYSTEM, created_by_run, tagged_with_run

_AI = {"system": "urn:chartagent:ai-output", "code": "abc"}


def _bundle() -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Device"}, "resource": {"resourceType": "Device"}},
            {
                "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=x|1"},
                "resource": {"resourceType": "Observation", "meta": {"tag": [_AI]}, "status": "preliminary"},
            },
            {"request": {"method": "POST", "url": "Provenance"}, "resource": {"resourceType": "Provenance"}},
            {
                "request": {"method": "PUT", "url": "DiagnosticReport/old"},
                "resource": {"resourceType": "DiagnosticReport", "id": "old", "status": "entered-in-error"},
            },
        ],
    }


def test_created_resources_carry_the_run_tag_and_nothing_else_changes() -> None:
    bundle = _bundle()
    before = copy.deepcopy(bundle)
    tagged = tagged_with_run(bundle, "night-1")
    assert bundle == before  # the pending write's bundle is left as built
    device, observation, provenance, update = (e["resource"] for e in tagged["entry"])
    run = {"system": JOB_RUN_SYSTEM, "code": "night-1"}
    assert observation["meta"]["tag"] == [_AI, run]  # the identifier's tag kept, first
    assert provenance["meta"] == {"tag": [run]}
    assert "meta" not in device  # one Device serves every run
    assert "meta" not in update  # an update is not a creation
    assert [e["request"] for e in tagged["entry"]] == [e["request"] for e in before["entry"]]


def test_the_run_is_found_on_the_resources_it_created() -> None:
    tagged = tagged_with_run(_bundle(), "night-1")
    observation = Observation.model_validate(
        {**tagged["entry"][1]["resource"], "id": "o1", "code": {"text": "Glucose"}}
    )
    other = Observation.model_validate(
        {**tagged_with_run(_bundle(), "night-2")["entry"][1]["resource"], "id": "o2", "code": {"text": "x"}}
    )
    report = DiagnosticReport.model_validate(
        {"resourceType": "DiagnosticReport", "id": "r1", "status": "final", "code": {"text": "s"}}
    )
    assert created_by_run([observation, other, report], "night-1") == ["Observation/o1"]
    assert created_by_run([observation, other, report], "night-3") == []
