"""The leak check (tests/leak_guard.py) fails a test that prints a seeded patient's name or birth
date, or a token: positive controls run in an inner pytest session (pytester)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import leak_guard
import pytest
from leak_guard import COHORTS, cohort_demographics, find_leak, name_forms

from agent.testbed.cohort import generate_cohort

INNER = """
import logging
import sys

import pytest

from agent.testbed.cohort import generate_cohort


def _patient():
    return next(r for r in generate_cohort(1, 7, lab_documents=False).patients[0].resources
                if r["resourceType"] == "Patient")


def test_prints_a_name():
    name = _patient()["name"][0]
    print("hello", name["given"][0], name["family"])


def test_logs_a_birth_date():
    logging.getLogger("inner").warning("born %s", _patient()["birthDate"])


def test_writes_a_token_to_stderr():
    sys.stderr.write("Authorization: Bearer sk-very-secret-key\\n")


def test_prints_a_configured_setting(monkeypatch):
    monkeypatch.setenv("CHARTAGENT_FHIR_TOKEN", "tok-only-in-the-env-1234")
    print("token is tok-only-in-the-env-1234")


@pytest.fixture
def noisy():
    yield
    print("teardown of", _patient()["name"][0]["family"] + ",", _patient()["name"][0]["given"][0])


def test_leaks_in_teardown(noisy):
    pass


def test_prints_nothing_sensitive():
    print("patient ca-7-0: 3 lab series, status written")
"""


def test_a_leaking_test_is_failed_naming_the_kind_not_the_value(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_inner=INNER)
    # A separate process: in-process, the inner tests' log records would reach this test's log.
    here = str(Path(leak_guard.__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    result = pytester.runpytest_subprocess("-p", "leak_guard", "-p", "no:cacheprovider", "-p", "no:asyncio")
    capsys.readouterr()  # pytester echoes the inner output: it is the inner session's, not a leak here
    result.assert_outcomes(passed=2, failed=4, errors=1)  # the teardown leak: call passed, teardown errs
    out = result.stdout.str()
    for test, kind in [
        ("test_prints_a_name", "a patient name of a seeded cohort to its captured stdout call"),
        ("test_logs_a_birth_date", "a birth date of a seeded cohort to its captured log call"),
        ("test_writes_a_token_to_stderr", "a token, password or API key that the tests configure"),
        ("test_prints_a_configured_setting", "a token, password or API key that the tests configure"),
        ("test_leaks_in_teardown", "a patient name of a seeded cohort to its captured stdout teardown"),
    ]:
        assert f"leak check: test_inner.py::{test} wrote {kind}" in out
    # The failure message does not repeat what leaked (pytest's own "Captured" sections do, as
    # with any failing test; they stay in the inner session).
    patient = next(
        r
        for r in generate_cohort(1, 7, lab_documents=False).patients[0].resources
        if r["resourceType"] == "Patient"
    )
    values = [patient["birthDate"], patient["name"][0]["family"], "sk-very-secret-key", "tok-only-in-the-env"]
    messages = [line for line in out.splitlines() if "leak check:" in line]
    assert len(messages) >= 5
    assert not [m for m in messages if any(v in m for v in values)]


def test_the_table_matches_the_generated_cohorts() -> None:
    for seed, patients, reference_date in (COHORTS[0], COHORTS[-1]):
        if reference_date is None:
            cohort = generate_cohort(2, seed, lab_documents=False)
        else:
            cohort = generate_cohort(2, seed, reference_date=reference_date, lab_documents=False)
        expected = cohort_demographics(seed, patients, reference_date)[:2]
        for patient, demo in zip(cohort.patients, expected, strict=True):
            record = next(r for r in patient.resources if r["resourceType"] == "Patient")
            assert record["birthDate"] == demo.birth_date.isoformat()
            assert f"{record['name'][0]['given'][0]} {record['name'][0]['family']}" in name_forms(demo)


def test_ordinary_output_passes_and_the_check_is_cheap() -> None:
    find_leak("warm up: the table is built once per session")
    start = time.perf_counter()
    text = "patient ca-7-0 written: 17 lab series, 2024-03-08 creatinine 1.3 mg/dL\n" * 2000
    assert find_leak(text) is None
    assert time.perf_counter() - start < 0.5
