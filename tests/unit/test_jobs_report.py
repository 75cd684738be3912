"""The end report of `chartagent jobs run` and `retry-failed` (agent.cli.jobs._report): a small
cohort is listed whole; a large one (a nightly job's) lists only the patients not done or
unchanged, at most 50, with the failures' reasons counted and the command that lists them all."""

from __future__ import annotations

import pytest
import typer

from agent.cli.jobs import _report
from agent.jobs.ledger import PatientRow, PatientStatus

RUN = "nightly-1"


def _row(i: int, status: PatientStatus, reason: str | None = None) -> PatientRow:
    return PatientRow(
        run_id=RUN,
        patient_id=f"p{i:04d}",
        status=status,
        attempts=1,
        reason=reason,
        written=[],
        started_at=None,
        finished_at=None,
        seconds=None,
    )


def test_a_small_cohort_is_listed_whole(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_row(i, "done") for i in range(30)]
    _report(RUN, rows)
    out = capsys.readouterr().out
    assert all(r.patient_id in out for r in rows)
    assert "30 done, 0 unchanged, 0 failed" in out
    assert "jobs status" not in out


def test_a_large_cohort_lists_what_needs_attention_and_counts_the_reasons(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = (
        [_row(i, "done") for i in range(150)]
        + [_row(i, "unchanged") for i in range(150, 170)]
        + [_row(i, "failed", "fhir: the server answered 503") for i in range(170, 195)]
        + [_row(i, "failed", "lab PDF: encrypted") for i in range(195, 200)]
    )
    with pytest.raises(typer.Exit) as ended:
        _report(RUN, rows)
    assert ended.value.exit_code == 1
    out = capsys.readouterr().out
    assert all(r.patient_id in out for r in rows if r.status == "failed")
    assert not any(r.patient_id in out for r in rows if r.status != "failed")
    assert "30 of the 30 patients not done or unchanged" in " ".join(out.split())
    reasons = [line for line in out.splitlines() if "503" in line or "encrypted" in line]
    # Each failed row names its reason, and the tally gives each reason once with its count.
    assert any("25" in line and "503" in line for line in reasons)
    assert any(" 5 " in line and "encrypted" in line for line in reasons)
    assert f"chartagent jobs status {RUN} [--json]" in out
    assert f"chartagent jobs retry-failed {RUN}" in out
    assert "150 done, 20 unchanged, 30 failed" in out


def test_at_most_fifty_of_the_failed_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_row(i, "done") for i in range(100)] + [_row(i, "failed", "x") for i in range(100, 180)]
    with pytest.raises(typer.Exit):
        _report(RUN, rows)
    out = capsys.readouterr().out
    listed = [r.patient_id for r in rows if r.patient_id in out]
    assert len(listed) == 50
    assert "50 of the 80 patients not done or unchanged" in " ".join(out.split())  # a title may wrap
