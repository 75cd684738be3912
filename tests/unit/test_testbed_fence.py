"""The agent never depends on the test bed (synthetic cohort, embedded stack control, dataset
loaders): a deployment has a real EHR and PACS, and the graphs, nodes, jobs and tools must
run without any of it. Only the CLI's demo/seed/stack commands reach into it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCED = "agent.testbed"
# Everything that runs in a deployment. The CLI is the one place allowed to cross the fence.
AGENT_PARTS = ("agent/graphs", "agent/nodes", "agent/jobs", "agent/prompts", "tools", "fhir_adapters")
AGENT_MODULES = (
    "agent/context.py",
    "agent/state.py",
    "agent/facts.py",
    "agent/settings.py",
    "agent/connections.py",
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def agent_files() -> list[Path]:
    files = [ROOT / m for m in AGENT_MODULES]
    for part in AGENT_PARTS:
        files.extend(sorted((ROOT / part).rglob("*.py")))
    return files


def crosses_fence(path: Path) -> list[str]:
    return sorted(m for m in imported_modules(path) if m == FENCED or m.startswith(FENCED + "."))


def test_the_agent_parts_exist() -> None:
    # A renamed folder would make the fence check vacuous.
    files = agent_files()
    assert all(f.is_file() for f in files)
    assert len(files) > 100


@pytest.mark.parametrize("path", agent_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_agent_module_imports_the_testbed(path: Path) -> None:
    assert crosses_fence(path) == []


def test_the_check_sees_an_import_of_the_testbed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from agent.testbed.cohort import generate\nimport agent.testbed.stack\n")
    expected = ["agent.testbed.cohort", "agent.testbed.cohort.generate", "agent.testbed.stack"]
    assert crosses_fence(bad) == expected
