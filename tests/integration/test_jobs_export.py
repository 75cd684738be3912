"""A job whose cohort is a Bulk Data export (`chartagent jobs run --cohort export:all`), as processes
against a real sekmet behind the fault proxy: an export that stays 202 for long (the proxy answers
the status polls "still running") is polled, its progress reported, and survives a `kill -9` of the
job; the rerun of the same run id resumes polling the saved status URL (no second kick-off) through
429s, its download is retried after a 500, then fails for good (410: the file is gone) and the job
ends naming the step; the next rerun gets the manifest again from the saved URL, downloads and
summarizes every patient. Duplicates are counted on the server by identifier."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_proxy import FaultKind, FaultPlan, FaultProxy, ScriptedFault
from fhir_reads import count, duplicate_identifiers, server_with

from agent.testbed.cohort import generate_cohort

pytestmark = pytest.mark.integration

KICK_OFF = r"/\$export$"
STATUS = r"/bulk-status/"
FILES = r"/bulk-files/"


def _env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTAGENT_")}
    # sekmet's absolute status and file URLs are mapped back onto the proxy by its flavour.
    return {**env, "CHARTAGENT_STATE_DIR": str(state_dir), "CHARTAGENT_FHIR_FLAVOUR": "sekmet"}


def _jobs(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "jobs", *args],
        capture_output=True, text=True, timeout=300, env=_env(state_dir), check=False,
    )  # fmt: skip


def _spawn(state_dir: Path, log: Path, *args: str) -> subprocess.Popen[str]:
    """In its own process group; output to a file (a pipe nobody reads would stall it)."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "jobs", *args],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=_env(state_dir), start_new_session=True,
        )  # fmt: skip


def _saved_status_url(state_dir: Path, run_id: str) -> str | None:
    if not (state_dir / "jobs.sqlite").exists():
        return None
    with sqlite3.connect(state_dir / "jobs.sqlite", timeout=30) as db:
        found = db.execute("SELECT export_status_url FROM job_runs WHERE run_id = ?", (run_id,)).fetchall()
    return str(found[0][0]) if found and found[0][0] else None


def _hits(proxy: FaultProxy, path: str) -> list[str | None]:
    """The fault (or None) of each request to `path` (a regular expression), in order."""
    return [e.fault.value if e.fault else None for e in proxy.log if re.search(path, e.path)]


async def test_an_export_cohort_polled_for_long_killed_resumed_and_reported(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    cohort = generate_cohort(3, 1224, lab_documents=False)
    ids = sorted(p.id for p in cohort.patients)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    # The export stays "in progress" for as long as the first run lives.
    forever = FaultPlan(
        retry_after="1", script=(ScriptedFault(FaultKind.STILL_RUNNING, path=STATUS, times=10_000),)
    )
    with FaultProxy(base, forever) as proxy:
        args = ("run", "--cohort", "export:all", "--run-id", "nightly", "--fhir-url", proxy.base_url)
        log = tmp_path / "first.log"
        first = _spawn(tmp_path, log, *args)
        deadline = time.monotonic() + 120
        try:
            while len(_hits(proxy, STATUS)) < 3 or _saved_status_url(tmp_path, "nightly") is None:
                assert first.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "the export was not polled three times"
                await asyncio.sleep(0.2)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        assert _hits(proxy, KICK_OFF) == [None]
        assert set(_hits(proxy, STATUS)) == {"202"}
        # Reported while it waits: the server's progress text, once.
        assert log.read_text().count("export in progress: still running (fault proxy)") == 1
        saved = _saved_status_url(tmp_path, "nightly")

        # Resumed from the saved status URL: two 429s, then the manifest; the Patient file's
        # download gets a 500 (retried), then a 410 (the file is gone: not retried).
        proxy.set_plan(
            FaultPlan(
                retry_after="1",
                script=(
                    ScriptedFault(FaultKind.TOO_MANY_REQUESTS, path=STATUS, times=2),
                    ScriptedFault(FaultKind.ERROR_BEFORE, path=FILES),
                    ScriptedFault(FaultKind.GONE, path=FILES, skip=1),
                ),
            )
        )
        proxy.clear_log()
        second = await asyncio.to_thread(_jobs, tmp_path, *args)
        assert second.returncode == 1, second.stderr[-2000:]
        assert "job failed: GET bulk export download of Patient file 1 of 1 -> HTTP 410" in second.stderr, (
            second.stderr[-2000:]
        )
        assert _hits(proxy, KICK_OFF) == []  # no new export
        assert _hits(proxy, STATUS) == ["429", "429", None]
        assert _hits(proxy, FILES) == ["500-before", "410"]
        assert _saved_status_url(tmp_path, "nightly") == saved

        # The link is clean again: the same run id downloads and summarizes every patient.
        proxy.set_plan(FaultPlan())
        proxy.clear_log()
        third = await asyncio.to_thread(_jobs, tmp_path, *args)
        assert third.returncode == 0, third.stderr[-2000:]
        assert _hits(proxy, KICK_OFF) == []
        assert _hits(proxy, FILES) == [None]
    shown = json.loads((await asyncio.to_thread(_jobs, tmp_path, "status", "nightly", "--json")).stdout)
    assert (shown["done"], shown["failed"], shown["pending"]) == (len(ids), 0, 0)
    assert [p["id"] for p in shown["patients"]] == ids
    assert await duplicate_identifiers(base) == {}
    assert await count(base, "DiagnosticReport") == len(ids)
