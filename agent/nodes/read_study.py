"""One imaging study read alone (chest X-ray localization, whole-slide description) through the
configured model (`tools.imaging_review.read.read_study`): a fan-out branch of its own.

A read whose images or answer cannot be used writes nothing and says why; a ready one is one
pending write (its report, box Observations, overlay, Device and Provenance), posted by the write node.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState
from fhir_adapters.parsing import parse_many
from tools.imaging_review.read import read_study as read_one
from tools.record import build_record


class StudyTask(TypedDict):
    patient_id: str
    study: str  # "ImagingStudy/<id>"
    studies: list[dict[str, Any]]  # the record's ImagingStudy resources
    reports: list[dict[str, Any]]  # the DiagnosticReports over this study (to retire an older read)


async def read_study(state: StudyTask, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    studies = build_record(state["patient_id"], state["studies"], types=("ImagingStudy",))
    read = await read_one(
        studies,
        state["study"],
        dicomweb=ctx.dicomweb,
        model=ctx.model,
        now=ctx.now,
        fhir=ctx.fhir,
        current=parse_many(state["reports"]).resources,
    )
    return {"imaging_lines": [read.summary], "pending": [read.pending] if read.pending is not None else []}
