"""Before the record is read: has anything changed since the last complete run? (`agent.planning.
change_marks`). Nothing changed: the run ends here, at the cost of one round of searches, or of
none when the batch's cohort-level check (`RunContext.change_index`) found the patient unchanged."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.planning.change_marks import find_change, imaging_deferred
from agent.state import SummarizeState
from fhir_adapters.error_tree import ServiceError


async def check_changes(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    if ctx.change_marks is None or ctx.dry_run or not ctx.check_changes:
        return {}
    mark = await ctx.change_marks.get(state["patient_id"])
    if mark is None:
        return {}
    index = ctx.change_index
    if (
        index is not None
        and index.is_unchanged(state["patient_id"], mark)
        and not imaging_deferred(mark, can_read_images=ctx.can_read_images)
    ):
        return {"unchanged_since": mark.through.isoformat()}
    try:
        reason = await find_change(ctx.fhir, state["patient_id"], mark, can_read_images=ctx.can_read_images)
    except ServiceError:
        return {}  # the full path reads the record and reports the server's problem itself
    if reason is not None:
        return {}
    return {"unchanged_since": mark.through.isoformat()}
