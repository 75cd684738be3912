"""Has anything changed since ChartAgent's last complete run for a patient? One round of searches
instead of a record read.

After a run (not a dry run, every write stored) the job keeps a *change mark* per patient and FHIR
server: `through`, the newest `meta.lastUpdated` of the record that run read, and what the run
itself wrote (each reference with the status it left there). The next run first searches the
types the planner decides on (`WATCHED`) for resources of the patient with
`_lastUpdated=gt<through>`. Its own writes come back and are ignored unless a person changed their
status since (an approval, a rejection); anything else found means the full path: read the
record, plan, recompute what is new. Nothing found: the patient is unchanged, at the cost of one
mark read and one search per watched type.

The full path runs anyway when there is no mark, the run is a dry run, the run may now read
images and the marked one could not (deferred imaging work), or a search fails.

A batch of patients can share one check (`check_cohort`): one search per watched type without a
patient filter, `_lastUpdated=gt<the oldest mark's through>`, grouped by patient and judged as
`find_change` judges each patient's own. The patients it finds unchanged end their runs without a
search of their own (`ChangeIndex`); the rest, and every patient when the window holds too many
resources or a search fails, check as above. The check is as of the batch's start: a change that
arrives while the batch runs is noticed by the next run (the unchanged run leaves its mark as is).
The window is server-wide and starts at the oldest mark's `through` (the newest resource that
patient's record held), so it holds every write on the server since then: cheap when the marks are
recent, a server-bound page-through (or a fall-back past the limit) when one record is old.

Limits, by design of `_lastUpdated`: a hard delete leaves no trace (the record's next change or a
run without marks notices it); a resource updated during the marked run's read, before a later
resource of that read was updated too, may be missed until the next change.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from langgraph.store.base import BaseStore
from pydantic import BaseModel, ConfigDict, ValidationError

from fhir_adapters import FhirClient
from fhir_adapters.error_tree import ChartAgentError, ServiceError
from tools.record import PatientRecord, as_utc
from tools.writeback import is_ai_asserted
from tools.writeback.pending import PendingWrite, WriteOutcome

__all__ = [
    "COHORT_CHECK_LIMIT",
    "WATCHED",
    "ChangeIndex",
    "ChangeMark",
    "ChangeMarks",
    "check_cohort",
    "find_change",
    "imaging_deferred",
    "mark_after_run",
]

# The types whose changes can change the plan (`agent.planning.worklist`): results and lab-report
# documents (trend inputs), imaging studies, and reports (ChartAgent's own, retired or approved).
WATCHED: Final = ("Observation", "DocumentReference", "ImagingStudy", "DiagnosticReport")
_PAGE: Final = 100
_NAMESPACE: Final = ("chartagent", "change-marks")
# A cohort-level check whose window holds more resources than this is abandoned (each patient
# checks its own): past it, paging through the window costs more than the searches it saves.
COHORT_CHECK_LIMIT: Final = 5000
# Pages of the cohort-level search (sekmet, Google, Azure and Medplum allow 1000; others clamp).
_COHORT_PAGE: Final = 1000


class ChangeMark(BaseModel):
    model_config = ConfigDict(frozen=True)

    through: datetime
    # "Type/id" -> the status the run left there (None for a resource without one).
    written: dict[str, str | None]
    can_read_images: bool


def mark_after_run(
    record: PatientRecord,
    pending: Iterable[PendingWrite],
    writes: Iterable[WriteOutcome],
    *,
    can_read_images: bool,
) -> ChangeMark | None:
    """The mark of a finished run; None when one cannot be trusted (a source resource without
    `meta.lastUpdated`, a write not stored)."""
    outcomes = list(writes)
    if any(not w.stored for w in outcomes):
        return None
    times = []
    resources = [r for group in record.resources.values() for r in group]
    for resource in [record.patient, *resources] if record.patient is not None else resources:
        meta = getattr(resource, "meta", None)
        stamp = as_utc(getattr(meta, "lastUpdated", None))
        if stamp is not None:
            times.append(stamp)
        elif not is_ai_asserted(resource):
            # ChartAgent's own writes joined into the record as built (the stored transcriptions)
            # carry no server stamp; anything else without one cannot be checked later.
            return None
    if not times:
        return None
    by_key = {p.key: p for p in pending}
    written: dict[str, str | None] = {}
    for outcome in outcomes:
        bundle = by_key[outcome.key].bundle if outcome.key in by_key else {}
        for entry in bundle.get("entry") or ():
            ref = _entry_reference(entry, outcome.references)
            if ref is not None:
                written[ref] = (entry.get("resource") or {}).get("status")
    return ChangeMark(through=max(times), written=written, can_read_images=can_read_images)


def _entry_reference(entry: Mapping[str, Any], references: Mapping[str, str]) -> str | None:
    request = entry.get("request") or {}
    if request.get("method") == "PUT":
        url = str(request.get("url") or "")
        return url.split("?")[0] if url.count("/") == 1 else None
    full_url = entry.get("fullUrl")
    return references.get(full_url) if isinstance(full_url, str) else None


async def find_change(
    fhir: FhirClient, patient_id: str, mark: ChangeMark, *, can_read_images: bool
) -> str | None:
    """Why the full path must run (PHI-free), or None when nothing changed since `mark`."""
    if imaging_deferred(mark, can_read_images=can_read_images):
        return "imaging work was deferred: a model and a PACS are configured now"
    since = [("_lastUpdated", f"gt{mark.through.isoformat()}")]
    found = await asyncio.gather(*(fhir.search_patient(t, patient_id, since, count=_PAGE) for t in WATCHED))
    for rtype, resources in zip(WATCHED, found, strict=True):
        if any(_is_change(rtype, raw, mark) for raw in resources):
            return f"{rtype} changed since the last run"
    return None


def imaging_deferred(mark: ChangeMark, *, can_read_images: bool) -> bool:
    """The marked run deferred imaging work that this run can do."""
    return can_read_images and not mark.can_read_images


def _is_change(rtype: str, raw: Mapping[str, Any], mark: ChangeMark) -> bool:
    stamp = as_utc(_last_updated(raw))
    if stamp is not None and stamp <= mark.through:
        return False  # a server that compares at a coarser precision sends the read ones too
    ref = f"{rtype}/{raw.get('id')}"
    # ChartAgent's own write, as it left it, is no change.
    return not (ref in mark.written and raw.get("status") == mark.written[ref])


@dataclass(frozen=True)
class ChangeIndex:
    """What a cohort-level check found: the patients unchanged, each with the `through` of the
    mark it was judged against (a mark replaced since is checked again)."""

    unchanged: Mapping[str, datetime]

    def is_unchanged(self, patient_id: str, mark: ChangeMark) -> bool:
        return self.unchanged.get(patient_id) == mark.through


class _WindowTooLarge(ChartAgentError):
    """The cohort's change window holds more resources than a batch check reads: per-patient checks."""


async def check_cohort(
    fhir: FhirClient,
    marks: Mapping[str, ChangeMark],
    *,
    can_read_images: bool,
    limit: int = COHORT_CHECK_LIMIT,
) -> ChangeIndex | None:
    """One search per watched type for the patients of `marks` together; None (each patient checks
    its own) when the window holds more than `limit` resources or a search fails."""
    judged = {p: m for p, m in marks.items() if not imaging_deferred(m, can_read_images=can_read_images)}
    if not judged:
        return ChangeIndex(unchanged={})
    since = [
        ("_lastUpdated", f"gt{min(m.through for m in judged.values()).isoformat()}"),
        # Only what the judgement reads (`id` and `meta` always come along): a third of the bytes.
        ("_elements", "subject,status"),
    ]
    seen = [0]

    async def window(rtype: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for params in fhir.flavour.expand_search(rtype, since):
            async for page in fhir.search_pages(rtype, params, count=_COHORT_PAGE):
                found = [
                    e["resource"]
                    for e in page.get("entry") or ()
                    if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == rtype
                ]
                seen[0] += len(found)
                if seen[0] > limit:
                    raise _WindowTooLarge
                out.extend(found)
        return out

    tasks = [asyncio.ensure_future(window(t)) for t in WATCHED]
    try:
        found = await asyncio.gather(*tasks)
    except (ServiceError, _WindowTooLarge):
        for task in tasks:  # the other types' paging stops too
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return None
    changed: set[str] = set()
    for rtype, resources in zip(WATCHED, found, strict=True):
        for raw in resources:
            patient = _patient_of(raw)
            if patient is None or patient in changed:
                continue
            mark = judged.get(patient)
            if mark is not None and _is_change(rtype, raw, mark):
                changed.add(patient)
    return ChangeIndex(unchanged={p: m.through for p, m in judged.items() if p not in changed})


def _patient_of(raw: Mapping[str, Any]) -> str | None:
    """The patient id of a watched resource's `subject` (relative or absolute reference)."""
    subject = raw.get("subject")
    ref = subject.get("reference") if isinstance(subject, Mapping) else None
    if not isinstance(ref, str) or "Patient/" not in ref:
        return None
    return ref.rsplit("Patient/", 1)[1].split("/", 1)[0] or None


def _last_updated(raw: Mapping[str, Any]) -> datetime | None:
    """`meta.lastUpdated` of a resource as the server sent it (an instant: full precision)."""
    meta = raw.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


class ChangeMarks:
    """The marks of one FHIR server's patients in a LangGraph store (the checkpointer's database)."""

    def __init__(self, store: BaseStore, fhir_base_url: str) -> None:
        self._store = store
        server = hashlib.sha256(fhir_base_url.rstrip("/").encode()).hexdigest()[:16]
        self._namespace = (*_NAMESPACE, server)

    async def get(self, patient_id: str) -> ChangeMark | None:
        item = await self._store.aget(self._namespace, patient_id)
        if item is None:
            return None
        try:
            return ChangeMark.model_validate(item.value)
        except ValidationError:
            return None  # written by another version: the full path runs and writes a new one

    async def get_many(self, patient_ids: Sequence[str]) -> dict[str, ChangeMark]:
        """The marks of those of `patient_ids` that have one."""
        found = await asyncio.gather(*(self.get(p) for p in patient_ids))
        return {p: m for p, m in zip(patient_ids, found, strict=True) if m is not None}

    async def put(self, patient_id: str, mark: ChangeMark) -> None:
        await self._store.aput(self._namespace, patient_id, mark.model_dump(mode="json"), index=False)

    async def forget(self, patient_id: str) -> None:
        await self._store.adelete(self._namespace, patient_id)
