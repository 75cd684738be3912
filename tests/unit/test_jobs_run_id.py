"""A run id names the ledger's run, its Temporal workflow and the FHIR tag on what the run
creates: `jobs run --run-id` refuses one that could not be all three, before anything runs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import _COMMAND_MODULES
from agent.cli.app import app
from agent.cli.summarize import new_run_id
from agent.jobs.ledger import RUN_ID_RE

for _module in _COMMAND_MODULES:
    importlib.import_module(_module)


@pytest.mark.parametrize(
    "run_id", [" nightly", "nightly ", "night  ly", "", "-x", "a/b", "x" * 65, "nächtlich"]
)
def test_a_run_id_that_cannot_name_the_run_is_refused(
    run_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARTAGENT_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(
        app, ["jobs", "run", "--run-id", run_id, "--fhir-url", "http://127.0.0.1:9/fhir"]
    )
    assert result.exit_code == 2, result.output
    assert "--run-id" in result.output
    assert not (tmp_path / "jobs.sqlite").exists()  # refused before the ledger was opened


@pytest.mark.parametrize("run_id", ["nightly", "2026-12-05", "clinic.a:night_1", "x" * 64])
def test_usual_run_ids_are_accepted(run_id: str) -> None:
    assert RUN_ID_RE.fullmatch(run_id)


def test_generated_run_ids_are_accepted() -> None:
    assert RUN_ID_RE.fullmatch(new_run_id())
