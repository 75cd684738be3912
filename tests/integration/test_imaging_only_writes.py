"""A patient with imaging and no lab series gets its imaging report written (it once got nothing:
the run ended when no trend was found), in a transaction of its own; a rerun writes nothing new.

Real FHIR server and Orthanc (the shared ones, fresh ids from a seed of our own); the model is the
scripted fake backend answering the chest X-ray comparison.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from agent.context import RunContext
from agent.jobs.summarize import PatientOutcome, summarize_many
from agent.state import SummarizeState
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.cohort.imaging import Modality
from agent.testbed.cohort.imaging.fhir import imaging_study_id
from agent.testbed.cohort.imaging.seed import cohort_imaging_plan, seed_imaging
from agent.testbed.cohort.load import seed_cohort
from fhir_adapters import FhirClient
from tools.imaging.dicomweb import DicomWebClient
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.types import ModelRequest
from tools.writeback.pending import WriteKind

pytestmark = pytest.mark.integration

SEED = 4733  # fresh patient ids and UIDs on the shared servers
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
IMAGING_REPORT_CODE = "18748-4"


BOXES = [{"box_2d": [250, 120, 760, 480], "label": "right lung"}]


def cxr_answer(request: ModelRequest) -> str:
    """The comparison (two images) and each study's localization (one image)."""
    if request.image_count == 1:
        return f"Final Answer: ```json {json.dumps(BOXES)} ```"
    assert request.image_count == 2, "only the chest X-ray pair is seeded"
    answer = {
        "comparisons": [{"finding": "left basal opacity", "change": "improved", "evidence": "smaller"}],
        "summary": "Left basal opacity smaller than on the prior.",
    }
    return f"```json\n{json.dumps(answer)}\n```"


class Transactions(httpx.AsyncBaseTransport):
    """The real network; every transaction Bundle posted is kept."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.posted: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = json.loads(await request.aread())
            if body.get("type") == "transaction":
                self.posted.append(body)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    """One patient with its imaging, stripped of every lab result and lab-report document."""
    full = generate_cohort(1, SEED)
    (patient,) = full.patients
    kept = tuple(
        r for r in patient.resources if r["resourceType"] not in ("Observation", "DocumentReference")
    )
    return full.model_copy(update={"patients": (patient.model_copy(update={"resources": kept}),)})


@pytest.fixture(scope="module")
async def seeded(fhir_base_url: str, dicomweb_base_url: str, cohort: Cohort) -> list[str]:
    """The patient and its chest X-ray pair (the CT pair is left out: not needed, slow to store)."""
    full = cohort_imaging_plan(cohort)
    plan = full.model_copy(
        update={"studies": tuple(s for s in full.studies if set(s.modalities) <= {Modality.CR, Modality.DX})}
    )
    assert len(plan.studies) == 2
    async with FhirClient(fhir_base_url) as fhir, DicomWebClient(dicomweb_base_url) as pacs:
        await seed_cohort(fhir, cohort)
        report = await seed_imaging(fhir, pacs, cohort, dicomweb_url=dicomweb_base_url, plan=plan)
    assert report.failed == []
    current = next(s for s in plan.studies if s.prior_study_uid is not None)
    prior = plan.study(str(current.prior_study_uid))
    return [f"ImagingStudy/{imaging_study_id(current)}", f"ImagingStudy/{imaging_study_id(prior)}"]


async def run(
    fhir_url: str, dicomweb_url: str, patient_id: str
) -> tuple[PatientOutcome, SummarizeState, Transactions]:
    wire = Transactions()
    states: list[SummarizeState] = []

    def keep(_: PatientOutcome, state: SummarizeState | None) -> None:
        assert state is not None
        states.append(state)

    async with FhirClient(fhir_url, transport=wire) as fhir, DicomWebClient(dicomweb_url) as pacs:
        # A model name of its own: another test on the shared server expects to create its Device.
        model = ScriptedBackend([cxr_answer], cycle=True, name="scripted-imaging-only")
        ctx = RunContext(fhir=fhir, dicomweb=pacs, model=model, now=NOW)
        (outcome,) = await summarize_many(ctx, [patient_id], on_done=keep)
    return outcome, states[0], wire


async def test_imaging_without_labs_writes_its_reports_each_in_its_own_transaction(
    fhir_base_url: str, dicomweb_base_url: str, cohort: Cohort, seeded: list[str]
) -> None:
    patient_id = cohort.patients[0].id
    first, state, wire = await run(fhir_base_url, dicomweb_base_url, patient_id)
    assert first.status == "written", first.error
    assert first.series == 0
    # The pair's comparison and each study's localization: three reports, three transactions.
    assert first.created["DiagnosticReport"] == 3
    assert any(line.startswith("CXR ") and "improved (AI-generated)" in line for line in first.imaging)
    assert sum("localized right lung" in line for line in first.imaging) == 2
    writes = state["writes"]
    assert [(w.kind, w.status) for w in writes] == [(WriteKind.IMAGING_REPORT, "written")] * 3
    assert len(wire.posted) == 3
    by_key = {p.key: p for p in state["pending"]}
    comparison = next(
        p for p in state["pending"] if len([i for i in p.inputs if i.startswith("ImagingStudy/")]) == 2
    )
    assert comparison.inputs[0::2] == tuple(seeded)  # each study's reference, then its StudyInstanceUID
    assert all(uid.startswith("urn:oid:") for uid in comparison.inputs[1::2])
    for bundle in wire.posted:
        types = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert types.count("DiagnosticReport") == 1
        assert {"Device", "Provenance"} <= set(types)
        assert set(types) <= {"Device", "DiagnosticReport", "Provenance", "Observation"}
    assert set(by_key) == {w.key for w in writes}

    async with FhirClient(fhir_base_url) as fhir:
        reports = await fhir.search_patient("DiagnosticReport", patient_id)
        assert len(reports) == 3
        pair = [r for r in reports if len(r["imagingStudy"]) == 2]
        (report,) = pair
        assert report["code"]["coding"][0]["code"] == IMAGING_REPORT_CODE
        assert [s["reference"] for s in report["imagingStudy"]] == seeded
        assert report["status"] == "preliminary"
        singles = sorted(r["imagingStudy"][0]["reference"] for r in reports if len(r["imagingStudy"]) == 1)
        assert singles == sorted(seeded)
        provenances = await fhir.search("Provenance", {"target": f"DiagnosticReport/{report['id']}"})
        assert len(provenances) == 1

    # The rerun plans from the record: every study has its AI reading; nothing is read, asked or sent.
    again, rerun_state, rerun_wire = await run(fhir_base_url, dicomweb_base_url, patient_id)
    assert again.status == "unchanged", again.error
    assert again.created == {}
    assert rerun_state["worklist"].items == ()
    assert rerun_state.get("pending", []) == []
    assert rerun_state.get("writes", []) == []
    assert rerun_wire.posted == []
    async with FhirClient(fhir_base_url) as fhir:
        assert len(await fhir.search_patient("DiagnosticReport", patient_id)) == 3
