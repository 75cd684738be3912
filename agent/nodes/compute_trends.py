"""Lab series and their trends from the gathered record (pure computation)."""

from __future__ import annotations

from collections.abc import Iterable

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource

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


def compute_trends(state: SummarizeState) -> SummarizeState:
    record = state["record"]
    series = build_series(trend_inputs(record.of_type("Observation")))
    trends = [compute_trend(s) for s in series.series if s.points]
    facts = SummaryFacts.of(record.patient_id, trends, record.rejected)
    return {"series": series, "trends": trends, "facts": facts}
