"""`chartagent extract-labs --model [--cross-check]`: scanned pages read by the (scripted) model are
printed after the grounded records, never with a bbox; disagreements are flagged with exit 1.

The backend is injected through `agent.cli.analyze.backend_factory`, as in the analyze CLI tests;
nothing in the configuration can select the scripted fake."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import _COMMAND_MODULES, analyze
from agent.cli.app import app
from tools.labs.pdf.drawing import write_pdf
from tools.medgemma.fake_backend import ScriptedBackend

for _module in _COMMAND_MODULES:
    importlib.import_module(_module)

TABLE = [
    (40, 60, "Collected: 2024-06-01"),
    (40, 100, "Test"), (200, 100, "Result"), (250, 100, "Flag"), (300, 100, "Units"),
    (40, 115, "Potassium"), (200, 115, "5.9"), (250, 115, "H"), (300, 115, "mmol/L"),
    (40, 128, "Sodium"), (200, 128, "140"), (300, 128, "mmol/L"),
]  # fmt: skip


def answer(*results: dict[str, object]) -> str:
    return "```json\n" + json.dumps({"results": list(results)}) + "\n```"


def run(tmp_path: Path, data: bytes, *args: str) -> tuple[int, str, str]:
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["extract-labs", str(path), "--json", *args])
    return result.exit_code, result.stdout, result.stderr


def test_scanned_page_values_follow_the_grounded_ones_unverified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = ScriptedBackend([answer({"name": "Hemoglobin", "value": 9.1, "unit": "g/dL", "flag": "L"})])
    monkeypatch.setattr(analyze, "backend_factory", lambda: backend)
    code, out, err = run(tmp_path, write_pdf([TABLE, []], image_pages=[1]), "--model")
    assert code == 1, err  # a page is only model-read: partial, for review
    records = json.loads(out)
    assert [r["name"] for r in records] == ["Potassium", "Sodium", "Hemoglobin"]
    grounded, model = records[:2], records[2]
    assert all(r["bbox"] is not None and "source" not in r for r in grounded)
    assert model["source"] == "model"
    assert model["status"] == "unverified"
    assert model["bbox"] is None
    assert (model["page"], model["loinc"], model["value"]) == (2, "718-7", 9.1)
    assert len(backend.requests) == 1


def test_cross_check_flags_a_disagreement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ScriptedBackend(
        [
            answer(
                {"name": "Potassium", "value": 5.9, "unit": "mmol/L", "flag": "H"},
                {"name": "Sodium", "value": 148, "unit": "mmol/L", "flag": "H"},
            )
        ]
    )
    monkeypatch.setattr(analyze, "backend_factory", lambda: backend)
    code, out, _ = run(tmp_path, write_pdf([TABLE]), "--model", "--cross-check")
    assert code == 1
    model = {r["name"]: r for r in json.loads(out) if r.get("source") == "model"}
    assert model["Potassium"]["status"] == "agrees"
    assert model["Sodium"]["status"] == "disagrees"
    assert "140" in model["Sodium"]["detail"]


def test_agreeing_cross_check_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ScriptedBackend(
        [
            answer(
                {"name": "Potassium", "value": 5.9, "unit": "mmol/L", "flag": "H"},
                {"name": "Sodium", "value": 140, "unit": "mmol/L"},
            )
        ]
    )
    monkeypatch.setattr(analyze, "backend_factory", lambda: backend)
    code, out, err = run(tmp_path, write_pdf([TABLE]), "--model", "--cross-check")
    assert code == 0, err
    assert {r["status"] for r in json.loads(out) if r.get("source") == "model"} == {"agrees"}


def test_model_without_a_configured_model_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analyze, "backend_factory", lambda: None)
    code, _, err = run(tmp_path, write_pdf([TABLE]), "--model")
    assert code == 2
    assert "No model configured" in err


def test_cross_check_needs_model(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, write_pdf([TABLE]), "--cross-check")
    assert code == 2
    assert "--cross-check needs --model" in err
