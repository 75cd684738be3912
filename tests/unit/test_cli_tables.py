"""Result tables off a terminal: the `problem` column is printed whole, not cut at 80 columns."""

from __future__ import annotations

import importlib
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.cli import _COMMAND_MODULES
from agent.cli.app import app
from agent.jobs.summarize import PatientOutcome

for _module in _COMMAND_MODULES:
    importlib.import_module(_module)

LONG_PROBLEM = (
    "gather_record: GET Observation?patient&_count -> HTTP 503: error/transient: the server is "
    "overloaded, retry later (every one of these words must reach the reader, off a terminal too)"
)
OUTCOMES = [
    PatientOutcome(patient_id="p-1", status="failed", error=LONG_PROBLEM),
    PatientOutcome(patient_id="p-2", status="written", series=3, created={"Observation": 3}),
]


def _one_line_with(text: str, output: str) -> str:
    lines = [line for line in output.splitlines() if "p-1" in line]
    assert len(lines) == 1, output
    assert text in lines[0], output
    return lines[0]


def test_output_console_off_a_terminal_prints_the_whole_problem() -> None:
    from agent.cli.summarize import outcome_table, output_console

    buffer = io.StringIO()
    output_console(buffer).print(outcome_table(OUTCOMES, "summaries"))
    line = _one_line_with(LONG_PROBLEM, buffer.getvalue())
    assert line.rstrip() == line.rstrip(" ")  # no padding to a huge console width
    assert len(line) < 400


async def _fake_summaries(*args: Any, **kwargs: Any) -> tuple[list[PatientOutcome], list[dict[str, Any]]]:
    return OUTCOMES, []


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHARTAGENT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "none")
    monkeypatch.delenv("CHARTAGENT_DICOMWEB_URL", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.mark.usefixtures("clean_env")
def test_summarize_table_is_not_cut_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.cli.summarize.run_summaries", _fake_summaries)
    result = CliRunner().invoke(app, ["summarize", "--all", "--fhir-url", "http://127.0.0.1:9/fhir"])
    assert result.exit_code == 1, result.output  # p-1 failed
    _one_line_with(LONG_PROBLEM, result.stdout)


@pytest.mark.usefixtures("clean_env")
def test_demo_table_is_not_cut_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    status = SimpleNamespace(
        fhir=SimpleNamespace(url="http://127.0.0.1:9/fhir"), dicomweb=SimpleNamespace(url=None)
    )
    report = SimpleNamespace(patients=2, resources_by_type={"Patient": 2})

    async def fake_seed(*args: Any) -> tuple[Any, None]:
        return report, None

    monkeypatch.setattr("agent.cli.demo.embedded.up", lambda state_dir: status)
    monkeypatch.setattr("agent.cli.demo.seed_synthetic", fake_seed)
    monkeypatch.setattr("agent.cli.demo.run_summaries", _fake_summaries)
    result = CliRunner().invoke(app, ["demo", "--patients", "2"])
    assert result.exit_code == 1, result.output
    _one_line_with(LONG_PROBLEM, result.stdout)
