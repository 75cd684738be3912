"""The Observations a lab trend may use (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource

from tools.writeback import is_ai_asserted, is_document_extraction

__all__ = ["trend_inputs"]


def trend_inputs(resources: Iterable[Resource]) -> list[Observation]:
    """Source results, including values transcribed from a lab report PDF (AI-labelled, but the
    lab's own numbers), never AI output such as earlier trends."""
    return [
        o
        for o in resources
        if isinstance(o, Observation) and (not is_ai_asserted(o) or is_document_extraction(o))
    ]
