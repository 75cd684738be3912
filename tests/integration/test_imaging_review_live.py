"""The imaging review against a real Orthanc and a real FHIR server: one seeded patient with a CT pair
and a chest X-ray pair, found through ImagingStudy -> Endpoint -> DICOMweb.

- The scripted fake model (answers chosen by what it is shown) gives a CXR and a CT comparison whose
  DiagnosticReports carry the right ImagingStudy references and the model's text, and which the
  FHIR server takes in one transaction; a rerun writes nothing new.
- The tiny random-weight model through the production loader runs the CXR comparison end to end
  and ends in a result or a clean "model answer not usable" outcome, never an exception.
- Without a model, nothing is fetched from DICOMweb nor read from FHIR.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from fhir.resources.R4B.imagingstudy import ImagingStudy

from agent.context import RunContext
from agent.jobs.summarize import summarize_many
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.cohort.imaging import Modality, StudyPlan, Timepoint
from agent.testbed.cohort.imaging.fhir import imaging_study_id
from agent.testbed.cohort.imaging.seed import cohort_imaging_plan, seed_imaging
from agent.testbed.cohort.load import seed_cohort
from fhir_adapters import FhirClient
from tools.imaging.ct import prepare_ct
from tools.imaging.cxr import prepare_cxr
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.prepared import PreparedImages
from tools.imaging.sources import load_dicomweb
from tools.imaging.volume import assemble
from tools.imaging_review import (
    NO_MODEL,
    ComparisonStatus,
    ImagingKind,
    ImagingReview,
    ReviewOptions,
    compare_imaging,
)
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.tasks.cxr_comparison import CxrComparison
from tools.medgemma.tasks.volume_comparison import VolumeComparison
from tools.medgemma.tiny_model import tiny_medgemma_path
from tools.medgemma.transformers_backend import TransformersBackend
from tools.medgemma.types import ImagePart, ModelRequest, TextPart
from tools.record import PatientRecord, gather_record
from tools.writeback import Built
from tools.writeback.bundle import conditional_create_bundle

pytestmark = pytest.mark.integration

SEED = 4711  # a seed of our own: fresh patient ids and UIDs on the shared servers
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
Image = npt.NDArray[np.uint8]


def digest(image: Image) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:12]


def request_text(request: ModelRequest) -> str:
    return "\n".join(p.text for m in request.messages for p in m.content if isinstance(p, TextPart))


def request_images(request: ModelRequest) -> list[Image]:
    return [p.image for m in request.messages for p in m.content if isinstance(p, ImagePart)]


def scripted_model(request: ModelRequest) -> str:
    """A valid answer per task; each names the image it was shown first, so tests can tell reads apart."""
    first = digest(request_images(request)[0])
    if request.image_count == 2:  # the chest X-ray pair
        answer: dict[str, Any] = {
            "comparisons": [
                {"finding": "right mid zone nodule", "change": "worsened", "evidence": f"prior image {first}"}
            ],
            "summary": "Right mid zone nodule larger than on the prior.",
        }
    else:
        answer = {
            "findings": [{"description": f"nodule on the series starting {first}", "slices": [40, 41]}],
            "impression": f"Impression of series {first}.",
        }
    return f"```json\n{json.dumps(answer)}\n```"


@dataclass(frozen=True)
class Seeded:
    fhir_url: str
    dicomweb_url: str
    patient_id: str
    studies: dict[tuple[str, Timepoint], StudyPlan]


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(1, SEED)  # position 0: a CT chest pair and a chest X-ray pair


@pytest.fixture(scope="module")
async def seeded(fhir_base_url: str, dicomweb_base_url: str, cohort: Cohort) -> Seeded:
    async with FhirClient(fhir_base_url) as fhir, DicomWebClient(dicomweb_base_url) as pacs:
        await seed_cohort(fhir, cohort)
        report = await seed_imaging(fhir, pacs, cohort, dicomweb_url=dicomweb_base_url)
    assert report.failed == []
    patient_id = cohort.patients[0].id
    studies: dict[tuple[str, Timepoint], StudyPlan] = {}
    for s in cohort_imaging_plan(cohort).for_patient(patient_id):
        kind = "ct" if Modality.CT in s.modalities else "cxr"
        studies[(kind, s.timepoint)] = s
    assert set(studies) == {(k, t) for k in ("ct", "cxr") for t in (Timepoint.PRIOR, Timepoint.CURRENT)}
    return Seeded(fhir_base_url, dicomweb_base_url, patient_id, studies)


async def patient_record(seeded: Seeded) -> PatientRecord:
    async with FhirClient(seeded.fhir_url) as fhir:
        return await gather_record(fhir, seeded.patient_id)


async def review_with(seeded: Seeded, model: Any, **kw: Any) -> ImagingReview:
    record = kw.pop("record", None) or await patient_record(seeded)
    async with FhirClient(seeded.fhir_url) as fhir, DicomWebClient(seeded.dicomweb_url) as pacs:
        return await compare_imaging(record, dicomweb=pacs, model=model, now=NOW, fhir=fhir, **kw)


async def prepared_independently(seeded: Seeded, study: StudyPlan, prepare: Any) -> PreparedImages:
    """The study prepared the way tests/integration/test_imaging_seed.py does, not through the review."""
    async with DicomWebClient(seeded.dicomweb_url) as pacs:
        loaded = await load_dicomweb(pacs, study.uid)
    volume = assemble(loaded.instances).select("test", study.series[0].uid)
    prepared: PreparedImages = prepare(volume, source="test")
    return prepared


def report_of(built: tuple[Built[Any], ...]) -> dict[str, Any]:
    (report,) = [b for b in built if b.resource_type == "DiagnosticReport"]
    data: dict[str, Any] = report.resource.model_dump(mode="json")
    return data


def refs(report: dict[str, Any]) -> list[str]:
    return [r["reference"] for r in report["imagingStudy"]]


def presented(report: dict[str, Any]) -> str:
    return base64.b64decode(report["presentedForm"][0]["data"]).decode("utf-8")


async def test_fake_model_cxr_and_ct_comparisons_write_valid_reports(seeded: Seeded) -> None:
    model = ScriptedBackend([scripted_model], cycle=True)
    review = await review_with(seeded, model)
    by_kind = {c.kind: c for c in review.comparisons}
    assert set(by_kind) == {ImagingKind.CXR, ImagingKind.CT}
    cxr, ct = by_kind[ImagingKind.CXR], by_kind[ImagingKind.CT]
    assert (cxr.status, ct.status) == (ComparisonStatus.READY, ComparisonStatus.READY), (
        cxr.reason,
        ct.reason,
    )
    assert len(model.requests) == 3  # one CXR pair, the current CT and the prior CT

    plans = seeded.studies
    cxr_now, cxr_then = plans[("cxr", Timepoint.CURRENT)], plans[("cxr", Timepoint.PRIOR)]
    ct_now, ct_then = plans[("ct", Timepoint.CURRENT)], plans[("ct", Timepoint.PRIOR)]

    # CXR: the prior image first, then the current one, with both dates in the prompt.
    (cxr_request,) = [r for r in model.requests if r.image_count == 2]
    prior_image = (await prepared_independently(seeded, cxr_then, prepare_cxr)).images[0]
    current_image = (await prepared_independently(seeded, cxr_now, prepare_cxr)).images[0]
    shown = request_images(cxr_request)
    assert np.array_equal(shown[0], prior_image)
    assert np.array_equal(shown[1], current_image)
    text = request_text(cxr_request)
    assert f"prior chest X-ray ({cxr_then.study_date.isoformat()})" in text
    assert f"current chest X-ray ({cxr_now.study_date.isoformat()})" in text

    report = report_of(cxr.built)
    assert refs(report) == [
        f"ImagingStudy/{imaging_study_id(cxr_now)}",
        f"ImagingStudy/{imaging_study_id(cxr_then)}",
    ]
    assert report["status"] == "preliminary"
    assert report["meta"]["security"][0]["code"] == "AIAST"
    assert "Right mid zone nodule larger than on the prior." in report["conclusion"]
    assert f"right mid zone nodule: worsened - prior image {digest(prior_image)}" in presented(report)
    assert isinstance(cxr.result, CxrComparison)
    assert cxr.summary == (
        f"CXR {cxr_now.study_date.isoformat()} vs {cxr_then.study_date.isoformat()}: "
        "right mid zone nodule worsened (AI-generated)"
    )

    # CT: 85 slices each, two reads; each impression lands with its own study.
    ct_requests = [r for r in model.requests if r.image_count != 2]
    assert [r.image_count for r in ct_requests] == [85, 85]
    assert all("SLICE 85" in request_text(r) for r in ct_requests)
    now_first = digest((await prepared_independently(seeded, ct_now, prepare_ct)).images[0])
    then_first = digest((await prepared_independently(seeded, ct_then, prepare_ct)).images[0])
    assert now_first != then_first
    report = report_of(ct.built)
    assert refs(report) == [
        f"ImagingStudy/{imaging_study_id(ct_now)}",
        f"ImagingStudy/{imaging_study_id(ct_then)}",
    ]
    assert f"current impression: Impression of series {now_first}." in report["conclusion"]
    assert f"Prior impression: Impression of series {then_first}." in report["conclusion"]
    form = presented(report)
    assert f"- nodule on the series starting {now_first} (SLICE 40, 41; InstanceNumber" in form
    assert f"StudyInstanceUID {ct_now.uid}, series {ct_now.series[0].uid}, 85 image(s) shown" in form
    assert isinstance(ct.result, VolumeComparison)
    assert ct.result.current.series_uid == ct_now.series[0].uid

    # The FHIR server takes everything in one transaction; a rerun creates nothing new.
    async with FhirClient(seeded.fhir_url) as fhir:
        first = await fhir.transaction(conditional_create_bundle(review.built))
        statuses = [str(e["response"]["status"]) for e in first["entry"]]
        # The prompt is part of a model Device's identity: one Device per task prompt.
        kinds = [b.resource_type for b in review.built]
        assert kinds == ["Device", "DiagnosticReport", "Provenance"] * 2
        assert all(s.startswith("201") for s in statuses), statuses
        rerun = await review_with(seeded, ScriptedBackend([scripted_model], cycle=True))
        again = await fhir.transaction(conditional_create_bundle(rerun.built))
        assert all(str(e["response"]["status"]).startswith("200") for e in again["entry"])
        token = report_of(cxr.built)["identifier"][0]
        found = await fhir.search("DiagnosticReport", {"identifier": f"{token['system']}|{token['value']}"})
        assert len(found) == 1
        assert found[0]["imagingStudy"] == report_of(cxr.built)["imagingStudy"]


async def test_tiny_model_runs_the_cxr_comparison_to_a_result_or_a_clean_refusal(seeded: Seeded) -> None:
    full = await patient_record(seeded)
    cxr_only = [
        s
        for s in full.of_type("ImagingStudy")
        if isinstance(s, ImagingStudy) and any(m.code in ("CR", "DX") for m in s.modality or ())
    ]
    assert len(cxr_only) == 2
    record = full.model_copy(update={"resources": {"ImagingStudy": cxr_only}})
    backend = TransformersBackend.from_pretrained(str(tiny_medgemma_path()), device="cpu")
    try:
        review = await review_with(seeded, backend, record=record, options=ReviewOptions(max_new_tokens=16))
    finally:
        await backend.aclose()
    (outcome,) = review.comparisons
    assert outcome.kind is ImagingKind.CXR
    if outcome.status is ComparisonStatus.FAILED:
        assert str(outcome.reason).startswith("model answer not usable")
        assert outcome.raw_text is not None
        assert outcome.built == ()
        assert "not analysed - model answer not usable" in outcome.summary
    else:  # random weights may, by chance, write valid JSON
        assert outcome.status is ComparisonStatus.READY
        assert report_of(outcome.built)["status"] == "preliminary"


async def test_an_unreadable_ct_read_fails_the_comparison_and_writes_nothing(seeded: Seeded) -> None:
    full = await patient_record(seeded)
    ct_only = [
        s
        for s in full.of_type("ImagingStudy")
        if isinstance(s, ImagingStudy) and any(m.code == "CT" for m in s.modality or ())
    ]
    record = full.model_copy(update={"resources": {"ImagingStudy": ct_only}})

    def prior_garbled(request: ModelRequest) -> str:  # the current read is fine, the prior one is not
        first = digest(request_images(request)[0])
        return scripted_model(request) if first == current_first else "The scan looks fine to me."

    ct_now = seeded.studies[("ct", Timepoint.CURRENT)]
    current_first = digest((await prepared_independently(seeded, ct_now, prepare_ct)).images[0])
    model = ScriptedBackend([prior_garbled], cycle=True)
    review = await review_with(seeded, model, record=record)
    (outcome,) = review.comparisons
    assert outcome.kind is ImagingKind.CT
    assert outcome.status is ComparisonStatus.FAILED
    assert str(outcome.reason).startswith("model answer not usable (prior study): ")
    assert outcome.raw_text == "The scan looks fine to me."
    assert outcome.built == ()
    assert len(model.requests) == 2


class CountingTransport(httpx.AsyncBaseTransport):
    """The real network, with every request URL recorded."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.urls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_without_a_model_nothing_is_fetched(seeded: Seeded) -> None:
    record = await patient_record(seeded)
    pacs_wire, fhir_wire = CountingTransport(), CountingTransport()
    async with (
        DicomWebClient(seeded.dicomweb_url, transport=pacs_wire) as pacs,
        FhirClient(seeded.fhir_url, transport=fhir_wire) as fhir,
    ):
        review = await compare_imaging(record, dicomweb=pacs, model=None, now=NOW, fhir=fhir)
    assert {c.kind for c in review.comparisons} == {ImagingKind.CXR, ImagingKind.CT}
    assert all(c.status is ComparisonStatus.SKIPPED and c.reason == NO_MODEL for c in review.comparisons)
    assert review.built == []
    assert pacs_wire.urls == []
    assert fhir_wire.urls == []


def graph_model(request: ModelRequest) -> str:
    """The imaging answers above; a chest X-ray read alone (one image, the localization prompt)
    gets a box; for the text-only summary request, a narrative without numbers."""
    if request.image_count == 0:
        return "Lab trends were reviewed; see the computed table for values."
    prompt = " ".join(p.text for m in request.messages for p in m.content if p.type == "text")
    if request.image_count == 1 and "box_2d" in prompt:
        return 'Final Answer: ```json [{"box_2d": [250, 120, 760, 480], "label": "right lung"}] ```'
    return scripted_model(request)


async def test_the_summarize_graph_writes_imaging_comparisons_with_the_longitudinal_report(
    seeded: Seeded,
) -> None:
    """Through the agent: gather -> PDFs -> trends -> imaging comparisons -> synthesis -> one transaction."""
    async with FhirClient(seeded.fhir_url) as fhir, DicomWebClient(seeded.dicomweb_url) as pacs:
        ctx = RunContext(fhir=fhir, dicomweb=pacs, model=ScriptedBackend([graph_model], cycle=True), now=NOW)
        (first,) = await summarize_many(ctx, [seeded.patient_id])
        rerun_ctx = RunContext(
            fhir=fhir, dicomweb=pacs, model=ScriptedBackend([graph_model], cycle=True), now=NOW
        )
        (second,) = await summarize_many(rerun_ctx, [seeded.patient_id])
        reports = await fhir.search_patient("DiagnosticReport", seeded.patient_id)
    assert first.status == "written", first.error
    assert second.status == "unchanged"
    # The pairs were read by the model earlier in this module (`test_fake_model_...` wrote them):
    # the planner lists those readings and does not read them again; a fresh server reads them here.
    earlier = "(AI-generated, earlier reading DiagnosticReport/"
    assert any(
        line.startswith("CXR ") and ("worsened (AI-generated)" in line or earlier in line)
        for line in first.imaging
    )
    assert any(line.startswith("CT ") and ("current:" in line or earlier in line) for line in first.imaging)
    imaging = [r for r in reports if r["code"]["coding"][0]["code"] == "18748-4"]
    assert {tuple(x["reference"] for x in r["imagingStudy"]) for r in imaging} >= {
        (
            f"ImagingStudy/{imaging_study_id(seeded.studies[(k, Timepoint.CURRENT)])}",
            f"ImagingStudy/{imaging_study_id(seeded.studies[(k, Timepoint.PRIOR)])}",
        )
        for k in ("cxr", "ct")
    }
    (summary,) = [r for r in reports if r["code"]["coding"][0]["code"] == "11502-2"]
    assert "Imaging comparisons" in summary["text"]["div"]
    assert "right mid zone nodule" in summary["text"]["div"].lower()
