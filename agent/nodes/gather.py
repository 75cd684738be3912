"""Gather the patient's record from FHIR (concurrent per-type searches)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import SummarizeState
from tools.record import gather_record


async def gather(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    record = await gather_record(runtime.context.fhir, state["patient_id"])
    return {"record": record}
