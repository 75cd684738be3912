"""Invalid CHARTAGENT_* settings: one line per problem naming the variable, no value, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.settings import SettingsError, load_settings

TOKEN = "tok-settings-test-9f3b2c"
API_KEY = "key-settings-test-41d7e0"
HTTP_URL = "http://ehr.internal.example/fhir"

# One of each kind of command; all of them check the settings before they run.
COMMANDS = [
    ["stack", "status"], ["stack", "down"], ["seed"], ["summarize", "--all", "--dry-run"], ["demo"],
    ["imaging", "prepare", "missing.dcm"], ["analyze", "missing.dcm"], ["extract-labs", "missing.pdf"],
]  # fmt: skip


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHARTAGENT_")}
    clean["CHARTAGENT_STATE_DIR"] = str(cwd / "state")
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_clean_line(result: subprocess.CompletedProcess[str], variable: str, *secrets: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "input_value" not in output
    for secret in secrets:
        assert secret not in output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert variable in lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_plain_http_in_production_is_one_line_without_secrets(command: list[str], tmp_path: Path) -> None:
    env = {
        "CHARTAGENT_ENVIRONMENT": "production",
        "CHARTAGENT_FHIR_URL": HTTP_URL,
        "CHARTAGENT_FHIR_TOKEN": TOKEN,
        "CHARTAGENT_MODEL_API_KEY": API_KEY,
    }
    result = _run(command, env, tmp_path)
    _assert_one_clean_line(result, "CHARTAGENT_FHIR_URL", TOKEN, API_KEY, HTTP_URL)
    assert "https://" in result.stderr  # the rule


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("CHARTAGENT_FHIR_MAX_CONCURRENCY", "abc", "integer"),
        ("CHARTAGENT_LAB_TIMEZONE", "Mars/Olympus_Mons", "IANA time zone"),
        ("CHARTAGENT_FHIR_FLAVOUR", "nosuchserver", "flavour"),
    ],
)
def test_an_invalid_value_is_named_by_its_variable_not_shown(
    variable: str, value: str, rule: str, tmp_path: Path
) -> None:
    env = {variable: value, "CHARTAGENT_FHIR_TOKEN": TOKEN}
    result = _run(["summarize", "--all", "--dry-run"], env, tmp_path)
    _assert_one_clean_line(result, variable, TOKEN, value)
    assert rule in result.stderr


def test_help_still_renders_with_invalid_settings(tmp_path: Path) -> None:
    result = _run(["summarize", "--help"], {"CHARTAGENT_LAB_TIMEZONE": "Mars/Olympus_Mons"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_load_settings_lists_every_problem_without_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTAGENT_FHIR_MAX_CONCURRENCY", "0")
    monkeypatch.setenv("CHARTAGENT_MODEL_DTYPE", "float8")
    monkeypatch.setenv("CHARTAGENT_MODEL_API_KEY", API_KEY)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    problems = caught.value.problems
    assert [p.split(":")[0].split(" ")[0] for p in problems] == [
        "CHARTAGENT_FHIR_MAX_CONCURRENCY",
        "CHARTAGENT_MODEL_DTYPE",
    ]
    text = str(caught.value)
    assert "float8" not in text
    assert API_KEY not in text
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_an_incomplete_smart_client_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTAGENT_SMART_CLIENT_ID", "client-x")
    with pytest.raises(SettingsError, match="CHARTAGENT_SMART_PRIVATE_KEY") as caught:
        load_settings()
    assert "client-x" not in str(caught.value)
