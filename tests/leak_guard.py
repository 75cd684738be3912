"""pytest plugin: no test's captured output holds a token, a key, or a seeded patient's name or birth date.

After each phase of each test (setup, call, teardown) its captured stdout, stderr and log
records (the report's "Captured ... <phase>" sections) are scanned for:

- patient names and birth dates of the synthetic cohorts the tests seed (`generate_cohort`
  with the seeds and sizes in `COHORTS`; names as "Given Family", "Family, Given", the DICOM
  "Family^Given" and the FHIR HumanName JSON; birth dates in ISO and common printed forms);
- the static tokens, passwords and API keys the tests configure (`STATIC_SECRETS`), the values
  of the credential settings (`SECRET_SETTINGS`) while a test runs, bare JWTs and PEM private
  keys.

A hit fails that test (a passing call becomes a failure, a teardown an error) with a message that
names the test, the kind of leak and the output section, never the value. Loaded by
`tests/conftest.py`; `tests/unit/test_leak_guard.py` proves it fails a leaking test.

Demographics are drawn as the cohort draws them (`cohort_rng` + `draw_demographics`), without
generating the records: milliseconds for the whole table, once per session, on the first output
(plus importing `agent.testbed.cohort`). Text is scanned by shape (word pairs, date-shaped tokens) and
each candidate looked up in a set, so the cost does not grow with the number of patients.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from agent.testbed.cohort.demographics import Demographics

# (seed, patients, reference date; None: the cohort's default) of every cohort the tests seed;
# grep `generate_cohort(` when adding one. 12 patients is the demo's default, so smaller cohorts
# of a seed are covered too.
COHORTS: Final[tuple[tuple[int, int, date | None], ...]] = (
    *((seed, 12, None) for seed in (3, 5, 7, 8, 11, 12, 99, 4711)),
    (1, 300, None),
    (7, 12, date(2030, 1, 15)),
)
# Credentials the tests configure literally (short, common words such as "pw" or "tok" would
# match ordinary text and are left out).
STATIC_SECRETS: Final = (
    "s3cret",
    "pw-in-config-only",
    "sk-very-secret-key",
    "sk-secret",
    "not-a-valid-token",
    "tok-redaction-6c1f9a2e",
    "pw-redaction-0b7d",
    "tok-settings-test-9f3b2c",
    "key-settings-test-41d7e0",
)
SECRET_SETTINGS: Final = (
    "CHARTAGENT_FHIR_TOKEN",
    "CHARTAGENT_MODEL_API_KEY",
    "CHARTAGENT_DICOMWEB_PASSWORD",
)
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
_PEM_KEY: Final = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
_DATE_FORMATS: Final = ("%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%d/%m/%Y", "%d %b %Y")
_ENV_SEEN: Final = pytest.StashKey[set[str]]()


@dataclass(frozen=True)
class Leak:
    kind: str
    section: str


def cohort_demographics(seed: int, patients: int, reference_date: date | None = None) -> list[Demographics]:
    """The demographics of `generate_cohort(patients, seed, reference_date=...)`, in patient order."""
    # Imported on first use: `agent.testbed.cohort` takes a second to import, and most tests print nothing.
    from agent.testbed.cohort import REFERENCE_DATE
    from agent.testbed.cohort.demographics import cohort_rng, draw_demographics

    reference_date = reference_date or REFERENCE_DATE
    return [draw_demographics(cohort_rng(seed, i), reference_date) for i in range(patients)]


def name_forms(demo: Demographics) -> list[str]:
    return [
        f"{demo.given} {demo.family}",
        f"{demo.family}, {demo.given}",
        f"{demo.family}^{demo.given}",
    ]


# Candidates are found by shape, then looked up: a few set lookups a line, however many patients.
_WORD_PAIR: Final = re.compile(r"\b(?=([A-Za-z]+)(, |\^| )([A-Za-z]+)\b)")
_HUMANNAME: Final = re.compile(
    r'"family":\s*"([^"]+)",\s*"given":\s*\["([^"]+)"|"given":\s*\["([^"]+)"\],\s*"family":\s*"([^"]+)"'
)
_DATE_SHAPED: Final = re.compile(
    r"\b(?:\d{4}-\d{2}-\d{2}|\d{2}[./]\d{2}[./]\d{4}|\d{1,2} [A-Z][a-z]{2} \d{4})\b"
)


@dataclass(frozen=True)
class _Table:
    names: frozenset[tuple[str, str]]  # (given, family), lower case
    births: frozenset[str]  # every printed form


@cache
def _table() -> _Table:
    demos = [d for seed, n, ref in COHORTS for d in cohort_demographics(seed, n, ref)]
    return _Table(
        names=frozenset((d.given.lower(), d.family.lower()) for d in demos),
        births=frozenset(d.birth_date.strftime(f) for d in demos for f in _DATE_FORMATS),
    )


def _has_name(text: str, names: frozenset[tuple[str, str]]) -> bool:
    for m in _WORD_PAIR.finditer(text):
        first, sep, second = m.group(1).lower(), m.group(2), m.group(3).lower()
        if ((first, second) if sep == " " else (second, first)) in names:
            return True
    for m in _HUMANNAME.finditer(text):
        family, given = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(4), m.group(3))
        if (given.lower(), family.lower()) in names:
            return True
    return False


def find_leak(text: str, secrets: Iterable[str] = ()) -> str | None:
    """The kind of the first leak in `text`, or None."""
    if not text:
        return None
    table = _table()
    if _has_name(text, table.names):
        return "a patient name of a seeded cohort"
    if any(m.group(0) in table.births for m in _DATE_SHAPED.finditer(text)):
        return "a birth date of a seeded cohort"
    if any(s in text for s in (*STATIC_SECRETS, *secrets)):
        return "a token, password or API key that the tests configure"
    if _JWT.search(text):
        return "a JWT (bearer or assertion token)"
    if _PEM_KEY.search(text):
        return "a PEM private key"
    return None


def _env_secrets() -> set[str]:
    return {v for name in SECRET_SETTINGS if len(v := os.environ.get(name, "")) >= 4}


def scan_report(report: pytest.TestReport, secrets: Iterable[str] = ()) -> Leak | None:
    """The first leak in the sections this phase of `report` captured (stdout, stderr, log)."""
    secrets = tuple(secrets)
    for title, content in report.sections:
        if not title.endswith(f" {report.when}"):
            continue  # an earlier phase's section, already scanned with that phase
        kind = find_leak(content, secrets)
        if kind is not None:
            return Leak(kind, title.removeprefix("Captured ").lower())
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    seen = item.stash.setdefault(_ENV_SEEN, set())
    seen |= _env_secrets()  # settings a test set are gone by the time its teardown is reported
    leak = scan_report(report, seen)
    if leak is None:
        return report
    message = (
        f"leak check: {item.nodeid} wrote {leak.kind} to its captured {leak.section} "
        "(the value is not repeated here; run the test with -s to see the output)"
    )
    report.sections.append(("leak check", message))
    if report.outcome == "passed":
        report.outcome = "failed"
        report.longrepr = message
    return report
