"""Run the summarization graph over many patients: bounded concurrency, one failure never
stops the batch, and what each patient's run did is reported."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ValidationError

from agent.context import RunContext
from agent.graphs.summarize import summarize_graph
from agent.state import SummarizeState
from fhir_adapters import FhirClient, FhirError, ResourceParseError
from tools.medgemma.errors import ModelError

Status = Literal["written", "unchanged", "dry-run", "no-labs", "failed"]


class PatientOutcome(BaseModel):
    patient_id: str
    status: Status
    series: int = 0
    # Resources of the record that failed R4B parsing: reported (ids in the facts), not used.
    rejected: int = 0
    created: dict[str, int] = {}
    existing: dict[str, int] = {}
    # Names the failing step and the problem; carries no patient data.
    error: str | None = None


async def list_patient_ids(client: FhirClient) -> list[str]:
    patients = await client.search("Patient", [("_elements", "id")], count=500)
    return sorted(str(p["id"]) for p in patients if "id" in p)


def outcome_of(patient_id: str, state: SummarizeState, *, dry_run: bool) -> PatientOutcome:
    trends = state.get("trends") or []
    rejected = len(state["record"].rejected) if "record" in state else 0
    if not trends:
        return PatientOutcome(patient_id=patient_id, status="no-labs", rejected=rejected)
    if dry_run:
        return PatientOutcome(patient_id=patient_id, status="dry-run", series=len(trends), rejected=rejected)
    written = state["written"]
    return PatientOutcome(
        patient_id=patient_id,
        status="written" if written["created"] else "unchanged",
        series=len(trends),
        rejected=rejected,
        created=written["created"],
        existing=written["existing"],
    )


async def summarize_patient(ctx: RunContext, patient_id: str) -> SummarizeState:
    result: SummarizeState = await summarize_graph.ainvoke({"patient_id": patient_id}, context=ctx)  # type: ignore[assignment]
    return result


async def summarize_many(
    ctx: RunContext,
    patient_ids: Sequence[str],
    *,
    on_done: Callable[[PatientOutcome, SummarizeState | None], None] | None = None,
) -> list[PatientOutcome]:
    """Summarise each patient in turn; the FHIR client bounds request concurrency within one."""
    outcomes: list[PatientOutcome] = []
    for patient_id in patient_ids:
        state: SummarizeState | None = None
        try:
            state = await summarize_patient(ctx, patient_id)
            outcome = outcome_of(patient_id, state, dry_run=ctx.dry_run)
        except (FhirError, ModelError, ResourceParseError, ValidationError, ValueError) as exc:
            outcome = PatientOutcome(patient_id=patient_id, status="failed", error=describe_failure(exc))
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome, state)
    return outcomes


def describe_failure(exc: Exception) -> str:
    """Our own errors carry PHI-free messages; pydantic's would echo input values, so only
    the failing fields are named."""
    if isinstance(exc, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        return f"invalid data in {exc.title}: {', '.join(fields[:5])}"
    return f"{type(exc).__name__}: {exc}"
