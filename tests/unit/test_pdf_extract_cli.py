"""`chartagent extract-labs FILE.pdf --json`: records, warnings on stderr, exit codes 0 / 1 / 2."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from typer.testing import CliRunner

from agent.cli import _COMMAND_MODULES
from agent.cli.app import app
from tools.labs.pdf.drawing import write_pdf

for _module in (*_COMMAND_MODULES, "agent.cli.extract_labs"):
    importlib.import_module(_module)

TABLE = [
    (40, 60, "Collected: 2024-06-01"),
    (40, 100, "Test"), (200, 100, "Result"), (250, 100, "Flag"), (300, 100, "Units"),
    (380, 100, "Reference Range"),
    (40, 115, "Potassium"), (200, 115, "5.9"), (250, 115, "H"), (300, 115, "mmol/L"), (380, 115, "3.5-5.1"),
    (40, 128, "Nitrite"), (200, 128, "negative"), (300, 128, ""), (380, 128, "negative"),
]  # fmt: skip
KEYS = [
    "name", "loinc", "value", "unit", "comparator", "reference_low", "reference_high",
    "reference_text", "flag", "effective", "page", "bbox",
]  # fmt: skip


def run(tmp_path: Path, data: bytes, *args: str) -> tuple[int, str, str]:
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["extract-labs", str(path), *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_records_and_exit_0(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, write_pdf([[t for t in TABLE if t[2]]]), "--json")
    assert code == 0, err
    records = json.loads(out)
    assert [list(r) for r in records] == [KEYS, KEYS]
    k, nitrite = records
    assert (k["name"], k["loinc"], k["value"], k["flag"], k["effective"], k["page"]) == (
        "Potassium", "2823-3", 5.9, "H", "2024-06-01", 1
    )  # fmt: skip
    assert (k["reference_low"], k["reference_high"], len(k["bbox"])) == (3.5, 5.1, 4)
    assert nitrite["value"] == "negative"
    assert err == ""


def test_scanned_page_is_partial_exit_1_with_a_warning(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, write_pdf([[t for t in TABLE if t[2]], []], image_pages=[1]), "--json")
    assert code == 1
    assert len(json.loads(out)) == 2
    assert "pages needing the model (no text layer): 2" in err


def test_unreadable_input_exit_2_names_the_file(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, b"this is not a pdf", "--json")
    assert code == 2
    assert out == ""
    assert "report.pdf" in err


def test_page_limit_option(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, write_pdf([[t for t in TABLE if t[2]]] * 3), "--max-pages", "2")
    assert code == 2
    assert "--max-pages 3" in err


def test_table_output(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, write_pdf([[t for t in TABLE if t[2]]]))
    assert code == 0
    assert "Potassium" in out
    assert "2823-3" in out
