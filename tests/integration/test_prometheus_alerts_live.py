"""The alerting rules in a real Prometheus scraping a real Temporal worker through a real job run.

A worker (`python -m agent.jobs.temporal_worker`, its metrics on their own port) runs a cohort on
the Temporal dev server against sekmet; one patient of the run is one the server does not hold,
so the run ends with that patient failed. Prometheus (Debian's binary, in .tools/bin) scrapes the
worker every second and evaluates deploy/helm/chartagent/files/chartagent-alerts.yaml every second.

What is checked on Prometheus itself: the worker's outcome series are there at 0 before any
outcome; after the run the failed patient raises ChartAgentPatientsFailing (a first failure of a
fresh process, which increase() would miss had the series been created by it), the done ones
count, every rule evaluates without error over the real series, every query of the Grafana
dashboard (the chart's files/) runs and those over what a worker does (jobs, FHIR, the process) find
series, and no series or label Prometheus holds names a patient.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fhir_reads import server_with
from monitoring_checks import dashboard_queries
from prometheus_server import prometheus_server
from temporal_fixtures import WorkerProcess, job_settings, prepare_run, temporal_server

from agent.jobs.ledger import open_ledger
from agent.jobs.temporal_executor import start_run
from agent.jobs.temporal_worker import connect
from agent.jobs.temporal_workflows import RunOptions
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.stack.ports import free_port
from agent.testbed.temporal_server import TemporalDevServer

pytestmark = pytest.mark.integration

__all__ = ["temporal_server"]  # the fixture, imported for pytest

# A worker serves no HTTP API and, in this run, reads no PACS and calls no model.
NOT_A_WORKERS = ("chartagent_http_", "chartagent_dicomweb_", "chartagent_model_")
UNKNOWN = "not-on-this-server-5c1"
OPTIONS = RunOptions(
    chunk_size=5, max_attempts=2, initial_retry_s=0.5, max_retry_s=1.0, heartbeat_timeout_s=3.0
)


@pytest.fixture
def cohort() -> Cohort:
    return generate_cohort(3, 1207, lab_documents=False)


@pytest.fixture
def fhir(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


async def test_a_failed_patient_in_a_worker_raises_the_alert_in_prometheus(
    fhir: str, cohort: Cohort, tmp_path: Path, temporal_server: TemporalDevServer
) -> None:
    settings = job_settings(tmp_path, temporal_server.address, fhir_flavour="sekmet")
    patients = sorted(p.id for p in cohort.patients)
    await prepare_run(settings, "alerting", fhir, [*patients, UNKNOWN])
    metrics_port = free_port()
    worker = WorkerProcess(settings, fhir, concurrency=2, metrics_port=metrics_port)
    worker.start()
    try:
        with prometheus_server([f"127.0.0.1:{metrics_port}"]) as prometheus:
            # Scraped before any outcome: the failed series is there, at 0.
            no_failure = 'chartagent_job_patients_total{job="chartagent",status="failed"} == 0'
            await asyncio.to_thread(prometheus.wait_for, no_failure, 60)
            assert prometheus.alerts("ChartAgentPatientsFailing") == []

            client = await connect(settings)
            handle = await start_run(client, settings, "alerting", OPTIONS)
            tally = await asyncio.wait_for(handle.result(), timeout=240)
            assert tally.statuses == {"done": len(patients), "failed": 1}

            firing = await asyncio.to_thread(
                prometheus.wait_for, 'ALERTS{alertname="ChartAgentPatientsFailing",alertstate="firing"}'
            )
            assert firing[0]["metric"]["severity"] == "warning"
            (alert,) = prometheus.alerts("ChartAgentPatientsFailing")
            summary = alert["annotations"]["summary"]
            assert summary == "ChartAgent jobs recorded failed patients in the last 6 h"
            # The run's last outcomes reach Prometheus with the scrape after them.
            await asyncio.to_thread(
                prometheus.wait_for, f'chartagent_job_patients_total{{status="done"}} == {len(patients)}'
            )
            counted = {
                s["metric"]["status"]: float(s["value"][1])
                for s in prometheus.query("chartagent_job_patients_total")
            }
            assert counted == {"done": len(patients), "unchanged": 0, "failed": 1}
            # Every FHIR request the run made counted by type and outcome, the unknown patient's 404 too.
            not_found = 'chartagent_fhir_requests_total{resource_type="Patient",outcome="404"} > 0'
            assert prometheus.query(not_found)

            rules = prometheus.rules()
            assert len(rules) >= 10
            assert {r["name"]: r["health"] for r in rules if r["health"] != "ok"} == {}
            quiet = {"ChartAgentNoPatientSummarized", "ChartAgentModelFailing", "ChartAgentPacsFailing"}
            assert {r["name"] for r in rules if r["state"] == "firing"}.isdisjoint(quiet)

            for title, expr in dashboard_queries():
                if any(family in expr for family in NOT_A_WORKERS):
                    prometheus.query(expr)  # runs (an error answer fails in `get`), may be empty
                else:  # finds series once a scrape after the run's last outcome holds them
                    assert await asyncio.to_thread(prometheus.wait_for, expr), title

            held = json.dumps(prometheus.get("series", **{"match[]": '{job="chartagent"}'}))
            assert "chartagent_fhir_requests_total" in held
            assert all(pid not in held for pid in [*patients, UNKNOWN])
    finally:
        worker.stop()
    async with open_ledger(settings) as ledger:
        (failed,) = [r for r in await ledger.patients("alerting") if r.status == "failed"]
    assert failed.patient_id == UNKNOWN
    assert failed.reason
