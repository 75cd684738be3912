"""Single-study AI reads against a real Orthanc and a real FHIR server, with the scripted model.

Seeded: the MR brain study (cohort position 2), the landscape DX chest X-ray pair (position 6) and
the whole-slide study (position 7).

- The current chest X-ray read by `read_study` (localization): its boxes land in FHIR as Observations
  in ORIGINAL pixel coordinates (checked against the scripted 0..1000 padded-frame answer mapped by
  hand here), tied to the SOP instance read, with the overlay PNG in the report; a rerun writes
  nothing new.
- The slide read gives a pathology report.
- The MR read (findings) and the MR comparison without a prior both name that one study: neither
  retires the other, while a newer read retires the older read.
- An unreadable answer is a failed read with its reason and nothing to write.
- The agent tools `analyze_study` and `compare_with_prior`, through `ToolRegistry.call`, answer cited
  facts (bbox in original pixels, UIDs), write nothing, and refuse a study of another patient.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.cohort.imaging import Modality, StudyPlan, Timepoint
from agent.testbed.cohort.imaging.fhir import imaging_study_id, slide_imaging_study_id
from agent.testbed.cohort.imaging.seed import cohort_imaging_plan, cohort_slide_plan, seed_imaging
from agent.testbed.cohort.imaging.slide import SlidePlan
from agent.testbed.cohort.imaging.study import CxrSpec
from agent.testbed.cohort.load import seed_cohort
from fhir_adapters import FhirClient
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging_review import ComparisonStatus, ReviewOptions, compare_imaging
from tools.imaging_review.read import ReadStatus, StudyRead, read_study
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.tasks.registry import AnalysisTask
from tools.medgemma.tiny_model import tiny_medgemma_path
from tools.medgemma.transformers_backend import TransformersBackend
from tools.medgemma.types import ModelRequest, TextPart
from tools.record import PatientRecord, gather_record
from tools.registry import ToolContext, read_tools
from tools.writeback.study_read import DICOM_IMAGE_URL, OVERLAY_MAX_SIDE

pytestmark = pytest.mark.integration

SEED = 4793  # fresh patient ids and UIDs on the shared servers
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
MR_POSITION, CXR_POSITION, SLIDE_POSITION = 2, 6, 7
# The scripted localization, on 0..1000 of the padded square: [y0, x0, y1, x1].
BOXES: list[dict[str, Any]] = [
    {"box_2d": [250, 120, 760, 480], "label": "right lung"},
    {"box_2d": [260, 530, 770, 880], "label": "left lung"},
]
SLIDE_ANSWER = {"description": "Fragments of benign glandular tissue.", "findings": ["mild fibrosis"]}
PAIR_ANSWER = {
    "comparisons": [{"finding": "right upper zone nodule", "change": "stable", "evidence": "same size"}],
    "summary": "Stable nodule.",
}


MR_ANSWER = {
    "findings": [{"description": "white matter lesion", "slices": [30, 31]}],
    "impression": "One lesion.",
}


def answer(request: ModelRequest) -> str:
    if "MRI series" in request_text(request):
        return f"```json\n{json.dumps(MR_ANSWER)}\n```"
    if request.image_count == 2:
        return f"```json\n{json.dumps(PAIR_ANSWER)}\n```"
    if request.image_count == 1:
        return f"Final Answer: ```json {json.dumps(BOXES)} ```"
    return f"```json\n{json.dumps(SLIDE_ANSWER)}\n```"


def request_text(request: ModelRequest) -> str:
    return "\n".join(p.text for m in request.messages for p in m.content if isinstance(p, TextPart))


def by_hand(box_2d: list[int], rows: int, columns: int) -> dict[str, float]:
    """The padded-square box mapped to original pixels: scale by S/1000, subtract the centred padding."""
    size = max(rows, columns)
    top, left = (size - rows) // 2, (size - columns) // 2
    y0, x0, y1, x1 = (v * size / 1000 for v in box_2d)
    return {
        "x0": min(max(x0 - left, 0.0), columns),
        "y0": min(max(y0 - top, 0.0), rows),
        "x1": min(max(x1 - left, 0.0), columns),
        "y1": min(max(y1 - top, 0.0), rows),
    }


@dataclass(frozen=True)
class Seeded:
    fhir_url: str
    dicomweb_url: str
    cxr_patient: str
    slide_patient: str
    mr_patient: str
    mr: StudyPlan
    current: StudyPlan
    prior: StudyPlan
    slide: SlidePlan


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(8, SEED)


@pytest.fixture(scope="module")
async def seeded(fhir_base_url: str, dicomweb_base_url: str, cohort: Cohort) -> Seeded:
    cxr_patient, slide_patient = cohort.patients[CXR_POSITION].id, cohort.patients[SLIDE_POSITION].id
    mr_patient = cohort.patients[MR_POSITION].id
    full = cohort_imaging_plan(cohort)
    (mr,) = full.for_patient(mr_patient)
    assert Modality.MR in mr.modalities
    plan = full.model_copy(update={"studies": (*full.for_patient(cxr_patient), mr)})
    slide = cohort_slide_plan(cohort)
    assert slide is not None
    assert slide.patient_id == slide_patient
    three = cohort.model_copy(
        update={"patients": tuple(cohort.patients[i] for i in (MR_POSITION, CXR_POSITION, SLIDE_POSITION))}
    )
    async with FhirClient(fhir_base_url) as fhir, DicomWebClient(dicomweb_base_url) as pacs:
        await seed_cohort(fhir, three)
        report = await seed_imaging(fhir, pacs, cohort, dicomweb_url=dicomweb_base_url, plan=plan)
    assert report.failed == []
    cxr = full.for_patient(cxr_patient)
    current = next(s for s in cxr if s.timepoint is Timepoint.CURRENT)
    prior = next(s for s in cxr if s.timepoint is Timepoint.PRIOR)
    return Seeded(
        fhir_base_url, dicomweb_base_url, cxr_patient, slide_patient, mr_patient, mr, current, prior, slide
    )


async def record_of(seeded: Seeded, patient_id: str) -> PatientRecord:
    async with FhirClient(seeded.fhir_url) as fhir:
        return await gather_record(fhir, patient_id)


async def read(seeded: Seeded, patient_id: str, study: str, model: Any) -> StudyRead:
    record = await record_of(seeded, patient_id)
    async with FhirClient(seeded.fhir_url) as fhir, DicomWebClient(seeded.dicomweb_url) as pacs:
        return await read_study(record, study, dicomweb=pacs, model=model, now=NOW, fhir=fhir)


def component_values(obs: dict[str, Any]) -> dict[str, float]:
    return {
        c["code"]["coding"][0]["code"].removeprefix("box-"): c["valueQuantity"]["value"]
        for c in obs["component"]
    }


async def test_a_chest_x_ray_read_writes_its_boxes_in_original_pixels(seeded: Seeded) -> None:
    spec = seeded.current.spec
    assert isinstance(spec, CxrSpec)
    assert spec.rows != spec.columns  # padding matters
    expected = [by_hand(b["box_2d"], spec.rows, spec.columns) for b in BOXES]
    ref = f"ImagingStudy/{imaging_study_id(seeded.current)}"
    instance = seeded.current.series[0].instance_uid(1)

    model = ScriptedBackend([answer], cycle=True, name="scripted-study-read")
    done = await read(seeded, seeded.cxr_patient, ref, model)
    assert done.status is ReadStatus.READY, done.reason
    assert done.task is AnalysisTask.LOCALIZE
    assert [r.image_count for r in model.requests] == [1]
    assert done.selected is not None
    assert done.selected.instance_uids == (instance,)
    assert done.pending is not None
    assert done.pending.inputs == (ref, f"urn:oid:{seeded.current.uid}")

    async with FhirClient(seeded.fhir_url) as fhir:
        first = await fhir.transaction(done.pending.bundle)
        assert all(str(e["response"]["status"]).startswith("201") for e in first["entry"])
        reports = [
            r
            for r in await fhir.search_patient("DiagnosticReport", seeded.cxr_patient)
            if r["imagingStudy"] == [{"reference": ref}]
        ]
        (report,) = reports
        assert report["status"] == "preliminary"
        assert report["meta"]["security"][0]["code"] == "AIAST"
        assert report["code"]["coding"][0]["code"] == "18748-4"
        text, png = report["presentedForm"]
        assert text["contentType"].startswith("text/plain")
        assert png["contentType"] == "image/png"
        drawn = Image.open(io.BytesIO(base64.b64decode(png["data"])))
        # The original frame (not the padded square), scaled to at most OVERLAY_MAX_SIDE.
        scale = min(1.0, OVERLAY_MAX_SIDE / max(spec.rows, spec.columns))
        assert drawn.size == (round(spec.columns * scale), round(spec.rows * scale))
        observations = [
            await fhir.read("Observation", r["reference"].split("/")[1]) for r in report["result"]
        ]
        assert len(observations) == 2
        for obs, want, box in zip(observations, expected, BOXES, strict=True):
            assert component_values(obs) == pytest.approx(want, abs=1e-6)
            assert obs["bodySite"]["text"] == box["label"]
            assert obs["derivedFrom"] == [{"reference": ref}]
            (ext,) = [e for e in obs["extension"] if e["url"] == DICOM_IMAGE_URL]
            assert {e["url"]: e["valueOid"] for e in ext["extension"]} == {
                "study": f"urn:oid:{seeded.current.uid}",
                "series": f"urn:oid:{seeded.current.series[0].uid}",
                "instance": f"urn:oid:{instance}",
            }

        # A rerun (the record now holds the report) writes nothing new and retires nothing.
        again = await read(
            seeded, seeded.cxr_patient, ref, ScriptedBackend([answer], cycle=True, name="scripted-study-read")
        )
        assert again.pending is not None
        assert again.pending.key == done.pending.key
        assert again.pending.superseded() == []
        second = await fhir.transaction(again.pending.bundle)
        assert all(str(e["response"]["status"]).startswith("200") for e in second["entry"])
        assert len(await fhir.search("Observation", {"derived-from": ref})) == 2


async def test_an_unreadable_answer_is_a_failed_read_with_nothing_to_write(seeded: Seeded) -> None:
    ref = f"ImagingStudy/{imaging_study_id(seeded.prior)}"
    done = await read(seeded, seeded.cxr_patient, ref, ScriptedBackend(["Both lungs look fine."], cycle=True))
    assert done.status is ReadStatus.FAILED
    assert str(done.reason).startswith("model answer not usable")
    assert done.raw_text == "Both lungs look fine."
    assert (done.pending, done.built) == (None, ())


async def test_the_summarize_graph_gives_the_slide_patient_a_pathology_report(seeded: Seeded) -> None:
    """Through the planning graph: the whole slide without an AI reading is a work item, read in a
    branch of its own and written in a transaction of its own; a rerun finds it read."""
    from agent.context import RunContext
    from agent.jobs.summarize import summarize_patient
    from agent.planning.worklist import WorkKind
    from tools.writeback.pending import WriteKind

    ref = f"ImagingStudy/{slide_imaging_study_id(seeded.slide)}"
    model = ScriptedBackend([answer], cycle=True, name="scripted-study-read")
    async with FhirClient(seeded.fhir_url) as fhir, DicomWebClient(seeded.dicomweb_url) as pacs:
        ctx = RunContext(fhir=fhir, dicomweb=pacs, model=model, now=NOW)
        state = await summarize_patient(ctx, seeded.slide_patient)
        again = await summarize_patient(ctx, seeded.slide_patient)
        reports = await fhir.search_patient("DiagnosticReport", seeded.slide_patient)
    assert (WorkKind.IMAGING_READ, ref) in {(i.kind, i.key) for i in state["worklist"].items}
    imaging = [w for w in state["writes"] if w.kind is WriteKind.IMAGING_REPORT]
    assert [w.status for w in imaging] == ["written"]
    (report,) = [r for r in reports if r.get("imagingStudy") == [{"reference": ref}]]
    assert report["code"]["coding"][0]["code"] == "11526-1"
    assert SLIDE_ANSWER["description"] in report["conclusion"]
    assert any(line.startswith(f"{ref}: read earlier") for line in again["imaging_lines"])
    assert WorkKind.IMAGING_READ not in {i.kind for i in again["worklist"].items}


async def test_the_slide_read_gives_a_pathology_report(seeded: Seeded) -> None:
    ref = f"ImagingStudy/{slide_imaging_study_id(seeded.slide)}"
    model = ScriptedBackend([answer], cycle=True, name="scripted-study-read")
    done = await read(seeded, seeded.slide_patient, ref, model)
    assert done.status is ReadStatus.READY, done.reason
    assert done.task is AnalysisTask.FINDINGS
    assert model.requests[0].image_count >= 1
    assert done.pending is not None
    async with FhirClient(seeded.fhir_url) as fhir:
        await fhir.transaction(done.pending.bundle)
        (report,) = [
            r
            for r in await fhir.search_patient("DiagnosticReport", seeded.slide_patient)
            if r.get("imagingStudy") == [{"reference": ref}]
        ]
    assert report["code"]["coding"][0]["code"] == "11526-1"
    assert SLIDE_ANSWER["description"] in report["conclusion"]
    assert report["conclusion"].startswith("AI-generated")


async def test_the_agent_tools_answer_cited_facts_and_refuse_another_patients_study(seeded: Seeded) -> None:
    spec = seeded.current.spec
    assert isinstance(spec, CxrSpec)
    current = f"ImagingStudy/{imaging_study_id(seeded.current)}"
    prior = f"ImagingStudy/{imaging_study_id(seeded.prior)}"
    registry = read_tools()
    model = ScriptedBackend([answer], cycle=True, name="scripted-study-tools")
    async with FhirClient(seeded.fhir_url) as fhir, DicomWebClient(seeded.dicomweb_url) as pacs:
        before = len(await fhir.search_patient("DiagnosticReport", seeded.cxr_patient))
        ctx = ToolContext(fhir=fhir, patient_id=seeded.cxr_patient, dicomweb=pacs, model=model, now=NOW)

        analyzed = await registry.call("analyze_study", {"study": current}, ctx)
        assert analyzed.ok, analyzed.error
        assert len(analyzed.facts) == 2
        for fact, box in zip(analyzed.facts, BOXES, strict=True):
            (cite,) = fact.citations
            want = by_hand(box["box_2d"], spec.rows, spec.columns)
            assert cite.reference == current
            assert cite.bbox == pytest.approx((want["x0"], want["y0"], want["x1"], want["y1"]))
            assert (cite.study_uid, cite.series_uid, cite.instance_uid) == (
                seeded.current.uid,
                seeded.current.series[0].uid,
                seeded.current.series[0].instance_uid(1),
            )
            assert box["label"] in fact.text

        compared = await registry.call("compare_with_prior", {"study": current}, ctx)
        assert compared.ok, compared.error
        assert compared.output is not None
        assert compared.output["prior"] == prior
        assert [r.image_count for r in model.requests] == [1, 2]
        assert any("right upper zone nodule stable" in f.text for f in compared.facts)
        assert {c.reference for f in compared.facts for c in f.citations} == {current, prior}
        assert {c.study_uid for f in compared.facts for c in f.citations} == {
            seeded.current.uid,
            seeded.prior.uid,
        }

        slide = f"ImagingStudy/{slide_imaging_study_id(seeded.slide)}"
        for tool in ("analyze_study", "compare_with_prior"):
            refused = await registry.call(tool, {"study": slide}, ctx)
            assert not refused.ok
            assert "refused" in str(refused.error)
        assert len(model.requests) == 2  # nothing was read for the refused calls

        # Reads only: no report was written by the tools.
        assert len(await fhir.search_patient("DiagnosticReport", seeded.cxr_patient)) == before

        no_model = ToolContext(fhir=fhir, patient_id=seeded.cxr_patient, dicomweb=pacs, model=None, now=NOW)
        noted = await registry.call("analyze_study", {"study": current}, no_model)
        assert noted.ok
        assert noted.facts == []
        assert "no model configured" in str(noted.note)


async def test_an_mr_read_and_the_mr_comparison_without_prior_never_retire_each_other(seeded: Seeded) -> None:
    ref = f"ImagingStudy/{imaging_study_id(seeded.mr)}"
    model = ScriptedBackend([answer], cycle=True, name="scripted-study-read")
    done = await read(seeded, seeded.mr_patient, ref, model)
    assert done.status is ReadStatus.READY, done.reason
    assert done.task is AnalysisTask.FINDINGS
    (request,) = model.requests
    assert request.image_count == len(done.slice_instances) > 31
    assert done.pending is not None
    async with FhirClient(seeded.fhir_url) as fhir, DicomWebClient(seeded.dicomweb_url) as pacs:
        await fhir.transaction(done.pending.bundle)
        record = await gather_record(fhir, seeded.mr_patient)
        review = await compare_imaging(record, dicomweb=pacs, model=model, now=NOW, fhir=fhir)
        (comparison,) = review.comparisons
        assert comparison.status is ComparisonStatus.READY, comparison.reason
        assert comparison.prior is None  # one study, as the read
        write = comparison.pending_write(record.of_type("DiagnosticReport"))
        assert write is not None
        assert write.superseded() == []  # the read is another kind of report
        await fhir.transaction(write.bundle)

        record = await gather_record(fhir, seeded.mr_patient)
        newer_model = ScriptedBackend([answer], cycle=True, name="scripted-study-read-v2")
        newer = await read_study(record, ref, dicomweb=pacs, model=newer_model, now=NOW, fhir=fhir)
        assert newer.pending is not None
        (retired,) = newer.pending.superseded()
        await fhir.transaction(newer.pending.bundle)
        reports = await fhir.search_patient("DiagnosticReport", seeded.mr_patient)
    status = {f"DiagnosticReport/{r['id']}": r["status"] for r in reports}
    assert status[retired] == "cancelled"
    assert sorted(status.values()) == ["cancelled", "preliminary", "preliminary"]
    by_key = {r["identifier"][0]["value"]: r["status"] for r in reports}
    assert by_key[done.pending.key] == "cancelled"
    assert by_key[write.key] == "preliminary"
    assert by_key[newer.pending.key] == "preliminary"


async def test_analyze_study_cites_the_instances_of_the_slices_a_finding_names(seeded: Seeded) -> None:
    ref = f"ImagingStudy/{imaging_study_id(seeded.mr)}"
    model = ScriptedBackend([answer], cycle=True, name="scripted-study-tools")
    async with FhirClient(seeded.fhir_url) as fhir, DicomWebClient(seeded.dicomweb_url) as pacs:
        ctx = ToolContext(fhir=fhir, patient_id=seeded.mr_patient, dicomweb=pacs, model=model, now=NOW)
        analyzed = await read_tools().call("analyze_study", {"study": ref}, ctx)
        compared = await read_tools().call("compare_with_prior", {"study": ref}, ctx)
    assert analyzed.ok, analyzed.error
    finding, impression = analyzed.facts
    assert "white matter lesion (SLICE 30, 31)" in finding.text
    series_uids = {s.uid for s in seeded.mr.series}
    instances = {s.instance_uid(n) for s in seeded.mr.series for n in range(1, s.instance_count + 1)}
    assert len(finding.citations) == 2
    assert all(c.series_uid in series_uids and c.instance_uid in instances for c in finding.citations)
    assert len({c.instance_uid for c in finding.citations}) == 2
    assert "One lesion." in impression.text
    assert compared.ok, compared.error
    assert compared.note == "no prior available: the current study was read on its own"
    assert [c.reference for f in compared.facts for c in f.citations] == [ref]


async def test_the_tiny_model_reads_the_chest_x_ray_to_a_result_or_a_clean_failure(seeded: Seeded) -> None:
    """The production backend and processor on the padded radiograph (random weights: any text)."""
    ref = f"ImagingStudy/{imaging_study_id(seeded.current)}"
    record = await record_of(seeded, seeded.cxr_patient)
    backend = TransformersBackend.from_pretrained(str(tiny_medgemma_path()), device="cpu")
    try:
        async with FhirClient(seeded.fhir_url) as fhir, DicomWebClient(seeded.dicomweb_url) as pacs:
            options = ReviewOptions(max_new_tokens=16)
            done = await read_study(
                record, ref, dicomweb=pacs, model=backend, now=NOW, fhir=fhir, options=options
            )
    finally:
        await backend.aclose()
    assert done.status is not ReadStatus.SKIPPED, done.reason
    if done.status is ReadStatus.FAILED:
        assert str(done.reason).startswith("model answer not usable")
        assert done.pending is None
    else:  # random weights may, by chance, write valid boxes
        assert done.status is ReadStatus.READY
        assert done.pending is not None
