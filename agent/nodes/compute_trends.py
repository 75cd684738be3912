"""Lab series and their trends from the gathered record (pure computation).

The run's clock (`RunContext.now`) bounds the results' times: a result dated after it (beyond a
day of skew) is excluded and reported, like an implausible value (`tools.labs.plausibility`).
"""

from __future__ import annotations

from datetime import datetime

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.facts import SummaryFacts
from agent.state import SummarizeState
from tools.labs.inputs import trend_inputs
from tools.labs.series import build_series
from tools.trends import compute_trend


def trends_at(state: SummarizeState, now: datetime) -> SummarizeState:
    """Series, trends and facts of the gathered record, with ``now`` as the run's clock."""
    record = state["record"]
    series = build_series(trend_inputs(record.of_type("Observation")), now=now)
    trends = [compute_trend(s) for s in series.series if s.points]
    facts = SummaryFacts.of(record.patient_id, trends, record.rejected, series.excluded())
    return {"series": series, "trends": trends, "facts": facts}


def compute_trends(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    return trends_at(state, runtime.context.now)
