"""Prometheus metrics of a ChartAgent process: what the people who run it watch and alert on.

- HTTP (`chartagent serve`): requests and their seconds by route, method and status
  (`RequestMetrics`, outermost ASGI middleware). The route is the matched route's template
  (`/api/patients/{patient_id}/summary`), never the path: paths carry patient ids, and a label per
  id would also grow without end. A request no route matched is `unmatched`.
- Jobs (the local executor and the Temporal workers): every patient outcome the job ledger
  records, by status, and the seconds of each summarized patient (`job_outcome`). A failed
  attempt that Temporal will retry is no outcome yet: only the last one counts.
- Notes proposed over MCP: proposed, written and discarded (`proposal_event`).
- Chat runs (`POST /api/agent`) by how they ended, and "Summarize now" runs by their status
  (`chat_run`, `summary_run`).
- FHIR: each HTTP attempt of `FhirClient` (retries included) by method, resource type and outcome,
  and its seconds (fhir_adapters.metrics): the load on the EHR and its 429s.
- DICOMweb: each HTTP attempt of `DicomWebClient` by operation (search, retrieve, store; never a
  UID) and outcome, and its seconds (tools.imaging.dicomweb_metrics): the load on the PACS.
- The model: each generation by backend and outcome, its seconds and tokens
  (tools.medgemma.metrics, the backend `create_backend` returns).

Beside them, prometheus_client's own process and Python collectors (CPU seconds, resident
memory, open files, garbage collections).

Served on `CHARTAGENT_METRICS_PORT` (`serve_metrics`: prometheus_client's HTTP server on its own
thread), apart from the service's port; nothing is served without it, and counting costs a few
microseconds a request. No label holds a patient id, a token, a FHIR URL or free text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Final, Literal, get_args

from prometheus_client import Counter, Histogram, start_http_server
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.settings import Settings, env_var
from fhir_adapters.error_tree import ConfigurationError

__all__ = [
    "CHAT_RUNS",
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "JOB_PATIENTS",
    "JOB_PATIENT_SECONDS",
    "NOTE_PROPOSALS",
    "SUMMARY_RUNS",
    "ChatOutcome",
    "JobOutcome",
    "MetricsPortUnavailable",
    "ProposalEvent",
    "RequestMetrics",
    "SummaryRunStatus",
    "chat_run",
    "job_outcome",
    "proposal_event",
    "route_of",
    "serve_metrics",
    "summary_run",
]

log = logging.getLogger(__name__)

UNMATCHED: Final = "unmatched"

# What one patient's job run ended as (the ledger's `ResultStatus`), and what befell a proposal.
JobOutcome = Literal["done", "unchanged", "failed"]
ProposalEvent = Literal["proposed", "written", "discarded"]
# How a chat run ended: an answer, a note proposed for confirmation, a note refused (the caller
# may not write), an error event, or the client went away.
ChatOutcome = Literal["answered", "proposed", "refused", "failed", "cancelled"]
SummaryRunStatus = Literal["done", "failed", "cancelled"]

HTTP_REQUESTS: Final = Counter(
    "chartagent_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
# Up to minutes: a chat's answer streams, and a run's whole stream is one request.
HTTP_SECONDS: Final = Histogram(
    "chartagent_http_request_seconds",
    "Seconds from a request's start to its answer's end, by route template and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
JOB_PATIENTS: Final = Counter(
    "chartagent_job_patients",
    "Patient outcomes the job ledger recorded in this process, by status",
    ["status"],
)
JOB_PATIENT_SECONDS: Final = Histogram(
    "chartagent_job_patient_seconds",
    "Seconds a job took for one patient (record read, plan, writes), by status",
    ["status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
NOTE_PROPOSALS: Final = Counter(
    "chartagent_note_proposals", "Notes proposed over MCP, and people's decisions on them", ["event"]
)
CHAT_RUNS: Final = Counter("chartagent_chat_runs", "Chat runs (AG-UI) by how they ended", ["outcome"])
SUMMARY_RUNS: Final = Counter(
    "chartagent_summary_runs", "'Summarize now' runs of the SMART app by how they ended", ["status"]
)
# Each outcome and event is a series from the start, at 0: Prometheus's increase() and rate() do
# not count a series' first sample, so a first failure in a fresh process that created its series
# would raise no alert, and an alert over a series never created (no "written" yet) is empty.
for _status in get_args(JobOutcome):
    JOB_PATIENTS.labels(_status)
    JOB_PATIENT_SECONDS.labels(_status)  # rate() over a histogram born at its first patient misses it
for _event in get_args(ProposalEvent):
    NOTE_PROPOSALS.labels(_event)
for _outcome in get_args(ChatOutcome):
    CHAT_RUNS.labels(_outcome)
for _run_status in get_args(SummaryRunStatus):
    SUMMARY_RUNS.labels(_run_status)


def route_of(scope: Scope, routes: Sequence[BaseRoute] = (), request: Scope | None = None) -> str:
    """The template of the route that answered `scope`: FastAPI's routes leave themselves in it;
    a Starlette route or mount (MCP, the app's files) is found again among `routes`, matching
    `request` (the scope as it came in: routing rewrites a mount's root path). Else `unmatched`."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    for route in routes:
        if route.matches(request if request is not None else scope)[0] is Match.FULL:
            found = getattr(route, "path", None)
            return found if isinstance(found, str) and found else UNMATCHED
    return UNMATCHED


class RequestMetrics:
    """Counts and times every HTTP request (pure ASGI: a streamed answer is timed to its end).
    `routes`: the app's, to name what its Starlette routes answered."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request = dict(scope)
        status = 500  # what the server answers when the app raises before its answer starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route, method = route_of(scope, self.routes, request), str(scope.get("method", ""))
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - start)


def job_outcome(status: JobOutcome, seconds: float | None = None, *, count: int = 1) -> None:
    """`count` patients' outcome as the ledger recorded it (`seconds`: one run patient's)."""
    JOB_PATIENTS.labels(status).inc(count)
    if seconds is not None:
        JOB_PATIENT_SECONDS.labels(status).observe(seconds)


def proposal_event(event: ProposalEvent) -> None:
    NOTE_PROPOSALS.labels(event).inc()


def chat_run(outcome: ChatOutcome) -> None:
    CHAT_RUNS.labels(outcome).inc()


def summary_run(status: SummaryRunStatus) -> None:
    SUMMARY_RUNS.labels(status).inc()


class MetricsPortUnavailable(ConfigurationError):
    """The metrics port could not be listened on: the process does not start half-observed."""


def serve_metrics(settings: Settings) -> int | None:
    """Serve `/metrics` on `CHARTAGENT_METRICS_PORT` (its own thread); the port, None when unset."""
    if settings.metrics_port is None:
        return None
    try:
        start_http_server(settings.metrics_port, addr=settings.metrics_address)
    except OSError as exc:  # in use, or an address this host does not have
        raise MetricsPortUnavailable(
            f"{env_var('metrics_port')}={settings.metrics_port} on {settings.metrics_address}: "
            f"cannot listen ({exc.strerror or type(exc).__name__})"
        ) from None
    log.info("metrics on %s:%d", settings.metrics_address, settings.metrics_port)
    return settings.metrics_port
