"""Lab series and their trends from the gathered record (pure computation).

The run's clock (`RunContext.now`) bounds the results' times: a result dated after it (beyond a
day of skew) is excluded and reported, like an implausible value (`tools.labs.plausibility`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.facts import SummaryFacts
from agent.state import SummarizeState
from tools.labs.series import build_series
from tools.trends import compute_trend
from tools.writeback import is_ai_asserted, is_document_extraction


def trend_inputs(resources: Iterable[Resource]) -> list[Observation]:
    """The Observations a trend may use: source results, including values transcribed from a lab
    report PDF (AI-labelled, but the lab's own numbers), never AI output such as earlier trends."""
    return [
        o
        for o in resources
        if isinstance(o, Observation) and (not is_ai_asserted(o) or is_document_extraction(o))
    ]


def trends_at(state: SummarizeState, now: datetime) -> SummarizeState:
    """Series, trends and facts of the gathered record, with ``now`` as the run's clock."""
    record = state["record"]
    series = build_series(trend_inputs(record.of_type("Observation")), now=now)
    trends = [compute_trend(s) for s in series.series if s.points]
    facts = SummaryFacts.of(record.patient_id, trends, record.rejected, series.excluded())
    return {"series": series, "trends": trends, "facts": facts}


def compute_trends(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    return trends_at(state, runtime.context.now)
