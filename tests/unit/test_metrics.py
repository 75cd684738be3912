"""The process's metrics: requests are labelled by the route's template (FastAPI routes, Starlette
routes and mounts alike), never by a path with a patient id in it; an app that raises counts as
500; a streamed answer is timed to its end; the job ledger counts every outcome it records; FHIR
and DICOMweb attempts count by type or operation and outcome, retries included, never by id or
UID; model calls by outcome and tokens, a failure by its class and a cancelled one as `cancelled`;
a fresh process already exports every job outcome and proposal event, at 0."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import REGISTRY
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from agent.jobs.ledger import PatientResult, open_ledger
from agent.metrics import MetricsPortUnavailable, RequestMetrics, serve_metrics
from agent.settings import Settings
from fhir_adapters import FhirClient
from fhir_adapters.metrics import resource_label
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging.dicomweb_metrics import operation_of
from tools.medgemma.errors import ModelServerError
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.metrics import MeteredBackend
from tools.medgemma.types import Message, ModelInfo, ModelRequest, ModelResult, TextPart

PATIENT = "unit-metrics-patient-91c"
BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}


def _count(route: str, method: str, status: int) -> float:
    labels = {"route": route, "method": method, "status": str(status)}
    return REGISTRY.get_sample_value("chartagent_http_requests_total", labels) or 0.0


def _seconds(route: str, method: str) -> float:
    return (
        REGISTRY.get_sample_value("chartagent_http_request_seconds_sum", {"route": route, "method": method})
        or 0.0
    )


class _Asgi:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok")(scope, receive, send)


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/unit/patients/{patient_id}/thing")
    async def thing(patient_id: str) -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/unit/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/unit/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a"
            await asyncio.sleep(0.2)
            yield b"b"

        return StreamingResponse(chunks())

    app.router.routes.append(Route("/unit/mcp", endpoint=_Asgi(), methods=["POST"]))
    app.router.routes.append(Mount("/unit/files", app=_Asgi()))
    app.add_middleware(RequestMetrics, routes=app.router.routes)
    return app


async def test_requests_are_labelled_by_route_template_never_by_path() -> None:
    template = "/unit/patients/{patient_id}/thing"
    before = {
        "thing": _count(template, "GET", 200),
        "mcp": _count("/unit/mcp", "POST", 200),
        "files": _count("/unit/files", "GET", 200),
        "unmatched": _count("unmatched", "GET", 404),
        "boom": _count("/unit/boom", "GET", 500),
    }
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as http:
        assert (await http.get(f"/unit/patients/{PATIENT}/thing")).status_code == 200
        assert (await http.post("/unit/mcp")).status_code == 200
        assert (await http.get(f"/unit/files/{PATIENT}.pdf")).status_code == 200
        assert (await http.get(f"/unit/nothing/{PATIENT}")).status_code == 404
        assert (await http.get("/unit/boom")).status_code == 500
    assert _count(template, "GET", 200) == before["thing"] + 1
    assert _count("/unit/mcp", "POST", 200) == before["mcp"] + 1
    assert _count("/unit/files", "GET", 200) == before["files"] + 1
    assert _count("unmatched", "GET", 404) == before["unmatched"] + 1
    assert _count("/unit/boom", "GET", 500) == before["boom"] + 1
    exposed = "\n".join(f"{s.name}{s.labels}" for metric in REGISTRY.collect() for s in metric.samples)
    assert PATIENT not in exposed


async def test_a_streamed_answer_is_timed_to_its_end() -> None:
    before = _seconds("/unit/stream", "GET")
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as http:
        assert (await http.get("/unit/stream")).text == "ab"
    assert _seconds("/unit/stream", "GET") - before >= 0.2


async def test_the_ledger_counts_every_outcome_it_records(tmp_path: Path) -> None:
    def outcomes(status: str) -> float:
        return REGISTRY.get_sample_value("chartagent_job_patients_total", {"status": status}) or 0.0

    def timed(status: str) -> float:
        return REGISTRY.get_sample_value("chartagent_job_patient_seconds_count", {"status": status}) or 0.0

    done, unchanged, failed, timed_done = (
        outcomes("done"),
        outcomes("unchanged"),
        outcomes("failed"),
        timed("done"),
    )
    async with open_ledger(Settings(state_dir=tmp_path, checkpoint_url=None)) as ledger:
        await ledger.create_run("r", cohort="all", since=None, executor="local", fhir_url="http://fhir.test")
        await ledger.add_patients("r", ["a", "b", "c", "d"])
        await ledger.mark("r", PatientResult(patient_id="a", status="done", seconds=1.5))
        # A failed attempt that will be tried again is recorded, but is no outcome yet.
        await ledger.mark(
            "r", PatientResult(patient_id="b", status="failed", reason="fhir: HTTP 500", final=False)
        )
        assert outcomes("failed") == failed
        await ledger.mark("r", PatientResult(patient_id="b", status="failed", reason="fhir: HTTP 500"))
        assert await ledger.mark_unchanged("r", ["c", "d", "a"]) == ["c", "d"]  # a is not pending
    assert outcomes("done") == done + 1
    assert outcomes("failed") == failed + 1
    assert outcomes("unchanged") == unchanged + 2
    assert timed("done") == timed_done + 1  # the failure had no seconds to observe


def test_no_metrics_port_serves_nothing_and_a_taken_one_is_a_clear_error(tmp_path: Path) -> None:
    assert serve_metrics(Settings(state_dir=tmp_path)) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            MetricsPortUnavailable, match=f"CHARTAGENT_METRICS_PORT={port} on 127.0.0.1: cannot listen"
        ):
            serve_metrics(Settings(state_dir=tmp_path, metrics_port=port))


# ---------------------------------------------------------------- FHIR and model calls


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("https://ehr.example/fhir/Observation?patient=p-1&code=x", "Observation"),
        ("https://ehr.example/fhir/Patient/p-1", "Patient"),
        ("https://ehr.example/fhir/Patient/p-1/$everything", "Patient"),
        ("https://ehr.example/fhir", "(base)"),
        ("https://ehr.example/fhir/?_getpages=abc", "(base)"),
        ("https://ehr.example/fhir/$export?_type=Patient", "$export"),
        ("https://ehr.example/fhir/metadata", "metadata"),
        ("https://ehr.example/fhir/p-1", "other"),
        ("https://ehr.example/fhir/Mary%20Smith", "other"),
    ],
)
def test_a_fhir_request_is_labelled_by_its_type_never_its_id(url: str, label: str) -> None:
    assert resource_label(url, "https://ehr.example/fhir") == label


async def test_each_fhir_attempt_counts_by_outcome_retries_included() -> None:
    def fhir(outcome: str) -> float:
        labels = {"method": "GET", "resource_type": "Observation", "outcome": outcome}
        return REGISTRY.get_sample_value("chartagent_fhir_requests_total", labels) or 0.0

    answers = iter([httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json=BUNDLE)])

    async def no_sleep(_: float) -> None:
        return None

    before = {o: fhir(o) for o in ("429", "200")}
    transport = httpx.MockTransport(lambda request: next(answers))
    async with FhirClient("https://ehr.example/fhir", transport=transport, sleep=no_sleep) as client:
        assert await client.search("Observation", {"patient": PATIENT}) == []
    assert {o: fhir(o) - before[o] for o in before} == {"429": 1.0, "200": 1.0}


async def test_model_calls_count_by_outcome_and_tokens_and_a_failure_by_its_class() -> None:
    def model(outcome: str) -> float:
        labels = {"backend": "fake", "outcome": outcome}
        return REGISTRY.get_sample_value("chartagent_model_requests_total", labels) or 0.0

    def tokens(kind: str) -> float:
        return (
            REGISTRY.get_sample_value("chartagent_model_tokens_total", {"backend": "fake", "kind": kind})
            or 0.0
        )

    def fail(_: ModelRequest) -> str:
        raise ModelServerError(503, "/v1/chat/completions")

    backend = MeteredBackend(ScriptedBackend(["one two three", fail]))
    before = (model("stop"), model("ModelServerError"), tokens("completion"))
    request = ModelRequest(messages=(Message(role="user", content=(TextPart(text="hi"),)),))
    result = await backend.generate(request)
    with pytest.raises(ModelServerError):
        await backend.generate(request)
    assert result.completion_tokens == 3
    assert model("stop") == before[0] + 1
    assert model("ModelServerError") == before[1] + 1
    assert tokens("completion") == before[2] + 3


class _Hanging:
    """A backend whose generation never ends: its caller cancels it."""

    info = ModelInfo(name="hanging", backend="fake")

    async def generate(self, request: ModelRequest) -> ModelResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


async def test_a_cancelled_generation_counts_as_cancelled_not_as_a_failure() -> None:
    def model(outcome: str) -> float:
        labels = {"backend": "fake", "outcome": outcome}
        return REGISTRY.get_sample_value("chartagent_model_requests_total", labels) or 0.0

    before = (model("cancelled"), model("CancelledError"))
    request = ModelRequest(messages=(Message(role="user", content=(TextPart(text="hi"),)),))
    task = asyncio.create_task(MeteredBackend(_Hanging()).generate(request))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (model("cancelled"), model("CancelledError")) == (before[0] + 1, before[1])


def test_a_fresh_process_exports_every_outcome_and_event_at_zero() -> None:
    # Prometheus's increase() skips a series' first sample: a failure that created its series
    # would raise no alert (deploy/helm/chartagent/files/chartagent-alerts.yaml).
    scrape = subprocess.run(
        [
            sys.executable,
            "-c",
            "import agent.metrics, prometheus_client; print(prometheus_client.generate_latest().decode())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for status in ("done", "unchanged", "failed"):
        assert f'chartagent_job_patients_total{{status="{status}"}} 0.0' in scrape
    for event in ("proposed", "written", "discarded"):
        assert f'chartagent_note_proposals_total{{event="{event}"}} 0.0' in scrape
    for outcome in ("answered", "proposed", "refused", "failed", "cancelled"):
        assert f'chartagent_chat_runs_total{{outcome="{outcome}"}} 0.0' in scrape
    for status in ("done", "failed", "cancelled"):
        assert f'chartagent_summary_runs_total{{status="{status}"}} 0.0' in scrape


async def test_each_dicomweb_attempt_counts_by_operation_never_by_uid() -> None:
    def pacs(operation: str, outcome: str) -> float:
        labels = {"operation": operation, "outcome": outcome}
        return REGISTRY.get_sample_value("chartagent_dicomweb_requests_total", labels) or 0.0

    answers = iter([httpx.Response(503), httpx.Response(200, json=[])])

    async def no_sleep(_: float) -> None:
        return None

    before = (pacs("search", "503"), pacs("search", "200"))
    transport = httpx.MockTransport(lambda request: next(answers))
    async with DicomWebClient(
        "https://pacs.example/dicom-web", transport=transport, sleep=no_sleep
    ) as pacs_client:
        assert await pacs_client.search_series("2.25.4242") == []
    assert (pacs("search", "503"), pacs("search", "200")) == (before[0] + 1, before[1] + 1)
    assert operation_of("GET", "multipart/related; type=application/dicom") == "retrieve"
    assert operation_of("POST", "application/dicom+json") == "store"
    exposed = "\n".join(f"{s.labels}" for metric in REGISTRY.collect() for s in metric.samples)
    assert "2.25.4242" not in exposed
