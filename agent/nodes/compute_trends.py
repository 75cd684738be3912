"""Lab series and their trends from the gathered record (pure computation)."""

from __future__ import annotations

from fhir.resources.R4B.observation import Observation

from agent.facts import SummaryFacts
from agent.state import SummarizeState
from tools.labs.series import build_series
from tools.trends import compute_trend
from tools.writeback import is_ai_asserted


def compute_trends(state: SummarizeState) -> SummarizeState:
    record = state["record"]
    observations = [
        o for o in record.of_type("Observation") if isinstance(o, Observation) and not is_ai_asserted(o)
    ]
    series = build_series(observations)
    trends = [compute_trend(s) for s in series.series if s.points]
    facts = SummaryFacts.of(record.patient_id, trends, record.rejected)
    return {"series": series, "trends": trends, "facts": facts}
