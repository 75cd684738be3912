"""Run the summarization graph over many patients: bounded concurrency, one failure never
stops the batch, and what each patient's run did is reported."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel, ValidationError

from agent.context import RunContext
from agent.graphs.summarize import build_summarize_graph, summarize_graph
from agent.planning.change_marks import mark_after_run
from agent.planning.worklist import WorkKind
from agent.state import SummarizeState
from fhir_adapters import FhirClient
from fhir_adapters.confirmed import WriteNotStored, WriteOutcomeUnknown
from fhir_adapters.error_tree import ChartAgentError, defect_text, raised_at
from tools.documents.summary import document_problem
from tools.writeback.pending import WriteKind

# unknown: the write's answer was lost and the server could not be read back: it may hold it.
Status = Literal["written", "unchanged", "dry-run", "no-labs", "failed", "unknown"]

log = logging.getLogger(__name__)


class PatientOutcome(BaseModel):
    patient_id: str
    status: Status
    series: int = 0
    # Resources of the record that failed R4B parsing: reported (ids in the facts), not used.
    rejected: int = 0
    created: dict[str, int] = {}
    existing: dict[str, int] = {}
    # Found on the server by a read-back after the write's answer was lost (created by this run
    # or an earlier one: which, the server cannot tell).
    confirmed: dict[str, int] = {}
    # Earlier current reports that this run's reports replaced ("DiagnosticReport/<id>").
    superseded: list[str] = []
    # Observations transcribed from lab-report PDFs by this run (in a dry run: that would be).
    from_documents: int = 0
    # Lab-report documents that could not be read: "DocumentReference/<id>: <problem>".
    document_errors: list[str] = []
    # One line per imaging comparison (analysed, skipped or failed, with the reason).
    imaging: list[str] = []
    # Names the failing step and the problem; carries no patient data.
    error: str | None = None


async def list_patient_ids(client: FhirClient) -> list[str]:
    patients = await client.search("Patient", [("_elements", "id")], count=500)
    return sorted(str(p["id"]) for p in patients if "id" in p)


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total)


def outcome_of(patient_id: str, state: SummarizeState, *, dry_run: bool) -> PatientOutcome:
    """The patient's outcome from the outcomes of its writes. The analyses' (summary, imaging
    reports) give the status and the counts; the lab-report transcriptions are counted in
    ``from_documents`` and their problems listed in ``document_errors``, as before."""
    trends = state.get("trends") or []
    rejected = len(state["record"].rejected) if "record" in state else 0
    documents = state.get("documents")
    analyses = [w for w in state.get("writes") or [] if w.kind is not WriteKind.DOCUMENT_TRANSCRIPTION]
    common = {
        "patient_id": patient_id,
        "rejected": rejected,
        "series": len(trends),
        "from_documents": documents.written + documents.confirmed if documents else 0,
        "document_errors": [document_problem(d) for d in documents.failed] if documents else [],
        "imaging": list(state.get("imaging_lines") or []),
    }
    if state.get("unchanged_since"):
        # Nothing changed since the last complete run: the record was not even read.
        return PatientOutcome.model_validate({**common, "status": "unchanged"})
    worklist = state.get("worklist")
    if worklist is not None and not worklist.items and worklist.previous_reports:
        # Nothing new since the last run: nothing recomputed, nothing written.
        return PatientOutcome.model_validate({**common, "status": "unchanged"})
    if not analyses:
        # Nothing analysed was written: transcriptions only, no lab series at all, or (the labs
        # unchanged, an imaging read failed) nothing new.
        labs_due = worklist is None or bool(worklist.of_kind(WorkKind.LAB_SUMMARY))
        status: Status = "no-labs" if labs_due and not trends else "unchanged"
        if common["from_documents"] and not dry_run:
            status = "written"
        return PatientOutcome.model_validate({**common, "status": status})
    if dry_run:
        return PatientOutcome.model_validate({**common, "status": "dry-run"})
    pending = {p.key: p for p in state.get("pending") or []}
    problems = [w for w in analyses if w.status in ("failed", "unknown")]
    counts = {
        "created": _summed([w.created for w in analyses]),
        "existing": _summed([w.existing for w in analyses]),
        "confirmed": _summed([w.confirmed for w in analyses]),
        "superseded": [ref for w in analyses for ref in w.superseded],
    }
    if problems:
        # Each analysis is its own transaction: what the others wrote is counted, the failed one named.
        status = "failed" if any(w.status == "failed" for w in problems) else "unknown"
        error = "; ".join(
            f"{pending[w.key].label if w.key in pending else w.kind.value}: {w.error}" for w in problems
        )
        return PatientOutcome.model_validate({**common, **counts, "status": status, "error": error})
    changed = any((counts["created"], counts["confirmed"], counts["superseded"], common["from_documents"]))
    return PatientOutcome.model_validate(
        {**common, **counts, "status": "written" if changed else "unchanged"}
    )


@dataclass(frozen=True)
class Checkpointing:
    """A batch that keeps checkpoints: each patient's run is the thread `<run_id>/<patient id>`.
    Run the same `run_id` again after a crash: a finished patient is reported from its checkpoint,
    an interrupted one resumes where it stopped, the rest start."""

    saver: BaseCheckpointSaver[Any]
    run_id: str

    def thread_id(self, patient_id: str) -> str:
        return f"{self.run_id}/{patient_id}"

    async def forget(self, patient_ids: Sequence[str]) -> None:
        """Delete the run's checkpoints of these patients: once the whole run is reported they
        served only a resume after a crash, and each holds the patient's record at every step
        (about 8 MB a patient on the demo cohort)."""
        for patient_id in patient_ids:
            await self.saver.adelete_thread(self.thread_id(patient_id))


async def summarize_patient(
    ctx: RunContext, patient_id: str, checkpointing: Checkpointing | None = None
) -> SummarizeState:
    config: RunnableConfig = {"max_concurrency": ctx.max_concurrency}
    if checkpointing is None:
        graph = summarize_graph
        start: SummarizeState | None = {"patient_id": patient_id}
    else:
        graph = build_summarize_graph().compile(checkpointer=checkpointing.saver, name="summarize")
        config["configurable"] = {"thread_id": checkpointing.thread_id(patient_id)}
        snapshot = await graph.aget_state(config)
        if snapshot.values and not snapshot.next:
            return snapshot.values  # type: ignore[return-value]  # finished earlier in this run
        # Interrupted earlier in this run: None resumes from the last checkpoint.
        start = None if snapshot.next else {"patient_id": patient_id}
    result = cast(SummarizeState, await graph.ainvoke(start, config=config, context=ctx))
    await _leave_mark(ctx, patient_id, result)
    return result


async def _leave_mark(ctx: RunContext, patient_id: str, state: SummarizeState) -> None:
    """A complete run (every write stored) marks the patient; any other leaves no trusted mark."""
    if ctx.change_marks is None or ctx.dry_run or "record" not in state:
        return
    mark = mark_after_run(
        state["record"],
        state.get("pending") or (),
        state.get("writes") or (),
        can_read_images=ctx.can_read_images,
        due=worklist.items if (worklist := state.get("worklist")) is not None else (),
    )
    if mark is None:
        await ctx.change_marks.forget(patient_id)
    else:
        await ctx.change_marks.put(patient_id, mark)


async def summarize_many(
    ctx: RunContext,
    patient_ids: Sequence[str],
    *,
    on_done: Callable[[PatientOutcome, SummarizeState | None], None] | None = None,
    checkpointing: Checkpointing | None = None,
) -> list[PatientOutcome]:
    """Summarise each patient in turn; the FHIR client bounds request concurrency within one."""
    outcomes: list[PatientOutcome] = []
    for patient_id in patient_ids:
        state: SummarizeState | None = None
        # The per-patient boundary: whatever one patient's record does, the batch goes on and the
        # patient is reported. Only cancellation (and interpreter exits) pass through.
        try:
            state = await summarize_patient(ctx, patient_id, checkpointing)
            outcome = outcome_of(patient_id, state, dry_run=ctx.dry_run)
        except WriteOutcomeUnknown as exc:
            outcome = PatientOutcome(patient_id=patient_id, status="unknown", error=f"summary: {exc}")
        except Exception as exc:
            outcome = PatientOutcome(patient_id=patient_id, status="failed", error=describe_failure(exc))
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome, state)
    return outcomes


def describe_failure(exc: Exception) -> str:
    """Our own errors (`ChartAgentError`: a service failed, the input is bad, ...) carry PHI-free
    messages; pydantic's would echo input values, so only the failing fields are named."""
    if isinstance(exc, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        return f"invalid data in {exc.title}: {', '.join(fields[:5])}"
    if isinstance(exc, WriteNotStored):
        return f"summary: {exc}"
    if isinstance(exc, ChartAgentError):
        return f"{type(exc).__name__}: {exc}"
    # Anything else is a defect of ours. Its message may quote record data, so only the type and
    # where it was raised are reported (and logged).
    log.error("unexpected %s at %s", type(exc).__name__, raised_at(exc))
    return f"{defect_text(exc)}; please report it"
