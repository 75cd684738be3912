"""Which of ChartAgent's DiagnosticReports is the patient's current longitudinal summary (pure).

One reading for the planner (what the next run compares with), the patient API and the CDS
Hooks card: ours (AI-labelled, with our business identifier), not retired, not an imaging
report, coded as the lab-trend summary; the newest by `issued`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from tools.record import as_utc
from tools.writeback.ai_labels import is_ai_asserted
from tools.writeback.builders import SUMMARY_REPORT_CODE
from tools.writeback.identifiers import AI_OUTPUT_SYSTEM

__all__ = ["CURRENT_STATUSES", "is_ours", "newest_summary"]

# Statuses of a report that still stands (entered-in-error, cancelled: retired).
CURRENT_STATUSES: Final = frozenset({"preliminary", "final", "amended", "corrected", "partial"})


def is_ours(report: DiagnosticReport) -> bool:
    """Written by ChartAgent: AI-labelled and carrying our business identifier."""
    return is_ai_asserted(report) and any(i.system == AI_OUTPUT_SYSTEM for i in report.identifier or ())


def _is_current_summary(report: DiagnosticReport) -> bool:
    return (
        is_ours(report)
        and report.status in CURRENT_STATUSES
        and not report.imagingStudy
        and any(
            (c.system, c.code) == (SUMMARY_REPORT_CODE["system"], SUMMARY_REPORT_CODE["code"])
            for c in report.code.coding or ()
        )
    )


def newest_summary(resources: Iterable[Any]) -> DiagnosticReport | None:
    """The newest of ChartAgent's longitudinal summaries among `resources` that is not retired."""
    summaries = [r for r in resources if isinstance(r, DiagnosticReport) and _is_current_summary(r)]
    return max(
        summaries, key=lambda r: (as_utc(r.issued) is not None, as_utc(r.issued), r.id or ""), default=None
    )
