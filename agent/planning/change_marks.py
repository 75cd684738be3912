"""Has anything changed since ChartAgent's last complete run for a patient? One round of searches
instead of a record read.

After a run (not a dry run, every write stored) the job keeps a *change mark* per patient and FHIR
server: `through`, the newest `meta.lastUpdated` of the record that run read, and what the run
itself wrote (each reference with the status it left there). The next run first searches the
types the planner decides on (`WATCHED`) for resources of the patient with `_lastUpdated=gt<since>`
(`through`, or later once a check verified it: below). Its own writes come back and are ignored
unless a person changed their status since (an approval, a rejection); anything else found means
the full path: read the record, plan, recompute what is new. Nothing found: the patient is
unchanged, at the cost of one mark read and one search per watched type.

The full path runs anyway when there is no mark, the run is a dry run, the run may now read
images and the marked one could not (deferred imaging work), or a search fails. A run whose
scheduled imaging reading stored nothing (a PACS or model outage) leaves no mark
(`undone_imaging`), so the next run plans the reading again.

A batch of patients can share one check (`check_cohort`): one search per watched type without a
patient filter, `_lastUpdated=gt<the oldest mark's since>`, grouped by patient and judged as
`find_change` judges each patient's own. The patients it finds unchanged end their runs without a
search of their own (`ChangeIndex`); the rest, and every patient when the window holds too many
resources or a search fails, check as above.

A mark's `since` is its `through` until a check moves it on: `verified`, an instant of the SERVER's
clock (`server_instant`: a search Bundle's `meta.lastUpdated`, less `VERIFY_MARGIN` for writes
stamped before and committed after it) taken before the check's searches began. A check that finds
the patient unchanged may set it (nothing newer than `through` up to then was anything but the
run's own writes as it left them); so may the run that leaves a mark, when a check's instant
preceded its record read. After a nightly run the marks' `since` is that night's, so the next
night's cohort window holds only what was written since: one small search per watched type for the
whole cohort, instead of every write on the server since the oldest record's newest resource.
A job also checks its batch once more at its end (`agent.jobs.activities.JobWorker.verify_batch`,
a fresh instant): the run reads its own writes back once and the marks of the patients still
unchanged move past them, so the next morning's window does not hold them.
The window is read in `_lastUpdated` order, each next page a new search from the last stamp seen
(offset paging can skip a resource when another is updated or deleted meanwhile, and a skipped one
would be behind the next check's `since` for good). A change that lands while a check or a run
is under way is newer than the instant taken before it, so the next check finds it.

Limits, by design of `_lastUpdated`: a hard delete leaves no trace (the record's next change or a
run without marks notices it); a resource updated during the marked run's read, before a later
resource of that read was updated too, may be missed until the next change.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from langgraph.store.base import BaseStore, GetOp, Item, PutOp
from pydantic import BaseModel, ConfigDict, ValidationError

from agent.planning.worklist import WorkItem, WorkKind
from fhir_adapters import FhirClient
from fhir_adapters.error_tree import ChartAgentError, ServiceError
from tools.record import PatientRecord, as_utc
from tools.writeback import is_ai_asserted
from tools.writeback.pending import PendingWrite, WriteKind, WriteOutcome
from tools.writeback.study_read import READ_SYSTEM

__all__ = [
    "COHORT_CHECK_LIMIT",
    "VERIFY_MARGIN",
    "WATCHED",
    "WINDOW_PER_PATIENT",
    "ChangeIndex",
    "ChangeMark",
    "ChangeMarks",
    "check_cohort",
    "find_change",
    "imaging_deferred",
    "mark_after_run",
    "server_instant",
    "undone_imaging",
]

# The types whose changes can change the plan (`agent.planning.worklist`): results and lab-report
# documents (trend inputs), imaging studies, and reports (ChartAgent's own, retired or approved).
WATCHED: Final = ("Observation", "DocumentReference", "ImagingStudy", "DiagnosticReport")
_PAGE: Final = 100
_NAMESPACE: Final = ("chartagent", "change-marks")
# A cohort-level check whose window holds more resources than this, plus `WINDOW_PER_PATIENT` per
# patient judged, is abandoned (each patient checks its own): past it, paging through the window
# costs more than the searches it saves. Each patient's own searches read its part of the window
# anyway (ChartAgent's own writes since its mark come back to be judged), so the bound grows with
# the batch: the morning after a first run, the window holds that run's writes (the benchmark's
# first run wrote or found 87 resources per patient, Provenance and Device included), and reading
# them once cost the server 0.024 CPU-s per patient against 0.116 for the per-patient searches.
COHORT_CHECK_LIMIT: Final = 5000
WINDOW_PER_PATIENT: Final = 200
# Pages of the cohort-level search (sekmet, Google, Azure and Medplum allow 1000; others clamp).
_COHORT_PAGE: Final = 1000
# How long before the server's clock reading a verified instant lies: the longest a write may take
# between the server stamping `meta.lastUpdated` and committing it (a large transaction Bundle on
# a database-backed server), so that no write stamped earlier becomes visible later.
VERIFY_MARGIN: Final = timedelta(seconds=60)
# The id the server-clock search asks for (a valid id that no one gives a patient).
_CLOCK_PROBE_ID: Final = "chartagent-clock-probe"
# Marks read or written per store call (SQLite's bound parameters).
_STORE_BATCH: Final = 500


class ChangeMark(BaseModel):
    model_config = ConfigDict(frozen=True)

    through: datetime
    # "Type/id" -> the status the run left there (None for a resource without one).
    written: dict[str, str | None]
    can_read_images: bool
    # The server's clock as of which the patient was found unchanged, or before which the marked
    # run began reading (`server_instant`); None: not known, checks start at `through`.
    verified: datetime | None = None

    @property
    def since(self) -> datetime:
        """Where the next change search starts: nothing up to it is a change."""
        if self.verified is None or self.verified < self.through:
            return self.through
        return self.verified


def mark_after_run(
    record: PatientRecord,
    pending: Iterable[PendingWrite],
    writes: Iterable[WriteOutcome],
    *,
    can_read_images: bool,
    due: Iterable[WorkItem] = (),
) -> ChangeMark | None:
    """The mark of a finished run; None when one cannot be trusted (a source resource without
    `meta.lastUpdated`, a write not stored, an imaging reading of `due` (the run's worklist) that
    wrote nothing: a PACS or model outage; without a mark the next run plans it again)."""
    outcomes = list(writes)
    pending = list(pending)
    if any(not w.stored for w in outcomes) or undone_imaging(due, pending, outcomes):
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


def undone_imaging(
    due: Iterable[WorkItem], pending: Iterable[PendingWrite], writes: Iterable[WriteOutcome]
) -> list[str]:
    """The keys of the imaging readings and comparisons of `due` without a stored report over
    exactly their studies (the report of a reading alone carries `READ_SYSTEM` in its code, as
    `agent.planning.worklist` tells them apart)."""
    by_key = {p.key: p for p in pending}
    done: set[tuple[bool, frozenset[str]]] = set()
    for outcome in writes:
        if outcome.kind is not WriteKind.IMAGING_REPORT or not outcome.stored or outcome.key not in by_key:
            continue
        for entry in by_key[outcome.key].bundle.get("entry") or ():
            report = entry.get("resource") or {}
            if report.get("resourceType") != "DiagnosticReport":
                continue
            codings = (report.get("code") or {}).get("coding") or ()
            single = any(c.get("system") == READ_SYSTEM for c in codings)
            studies = frozenset(str(s.get("reference")) for s in report.get("imagingStudy") or ())
            done.add((single, studies))
    undone = []
    for item in due:
        if item.kind not in (WorkKind.IMAGING_READ, WorkKind.IMAGING_COMPARISON):
            continue
        if (item.kind is WorkKind.IMAGING_READ, frozenset(item.inputs)) not in done:
            undone.append(item.key)
    return undone


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
    since = [("_lastUpdated", f"gt{mark.since.isoformat()}")]
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
    if stamp is not None and stamp <= mark.since:
        return False  # a server that compares at a coarser precision sends the read ones too
    ref = f"{rtype}/{raw.get('id')}"
    # ChartAgent's own write, as it left it, is no change.
    return not (ref in mark.written and raw.get("status") == mark.written[ref])


@dataclass(frozen=True)
class ChangeIndex:
    """What a cohort-level check found: the patients unchanged, each with the `through` of the
    mark it was judged against (a mark replaced since is checked again), and the server instant
    taken before the check's searches (`server_instant`; None when the server gave none)."""

    unchanged: Mapping[str, datetime]
    as_of: datetime | None = None

    def is_unchanged(self, patient_id: str, mark: ChangeMark) -> bool:
        return self.unchanged.get(patient_id) == mark.through

    def settles(self, patient_id: str, mark: ChangeMark, *, can_read_images: bool) -> bool:
        """The patient needs no run: unchanged against ``mark``, and no imaging work the marked
        run deferred can run now (``imaging_deferred``)."""
        deferred = imaging_deferred(mark, can_read_images=can_read_images)
        return self.is_unchanged(patient_id, mark) and not deferred


class _WindowTooLarge(ChartAgentError):
    """The cohort's change window holds more resources than a batch check reads, or cannot be paged
    safely: per-patient checks."""


async def server_instant(fhir: FhirClient, *, margin: timedelta = VERIFY_MARGIN) -> datetime | None:
    """An instant of the server's clock before every request sent after this returns, less `margin`:
    any write the server stamps later than it is found by a later `_lastUpdated=gt<it>` search.
    From the Bundle `meta.lastUpdated` of a search that matches nothing (an index lookup: cheap on
    any server; a server answering from a cached search gives an earlier time, which is safe): the
    server's clock, not ours, so no skew. None when the server sends none or the search fails."""
    try:
        async for page in fhir.search_pages("Patient", [("_id", _CLOCK_PROBE_ID)], max_pages=1):
            stamp = as_utc(_last_updated(page))
            return None if stamp is None else stamp - margin
    except ServiceError:
        return None
    return None


async def check_cohort(
    fhir: FhirClient,
    marks: Mapping[str, ChangeMark],
    *,
    can_read_images: bool,
    limit: int | None = None,
) -> ChangeIndex | None:
    """One search per watched type for the patients of `marks` together, from the oldest mark's
    `since`; None (each patient checks its own) when the window holds more than `limit` resources
    (by default `COHORT_CHECK_LIMIT` plus `WINDOW_PER_PATIENT` per patient judged), cannot be
    paged, or a search fails. The index's `as_of` is left to the caller."""
    judged = {p: m for p, m in marks.items() if not imaging_deferred(m, can_read_images=can_read_images)}
    if not judged:
        return ChangeIndex(unchanged={})
    start = min(m.since for m in judged.values()).isoformat()
    if limit is None:
        limit = COHORT_CHECK_LIMIT + WINDOW_PER_PATIENT * len(judged)
    seen = [0]

    async def window(rtype: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for params in fhir.flavour.expand_search(rtype, []):
            out += await _window_pages(fhir, rtype, params, start, seen, limit)
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


async def _window_pages(
    fhir: FhirClient, rtype: str, extra: list[tuple[str, str]], start: str, seen: list[int], limit: int
) -> list[dict[str, Any]]:
    """Every `rtype` resource stamped after `start`, oldest first. Each next page is a new search
    from the newest stamp seen (`ge`, the ones already read dropped): an update or a delete while
    paging shifts no resource past us, as an offset would."""
    out: list[dict[str, Any]] = []
    read: set[tuple[str, str]] = set()
    bound = f"gt{start}"
    while True:
        params = [
            *extra,
            ("_lastUpdated", bound),
            ("_sort", "_lastUpdated"),
            # Only what the judgement reads (`id` and `meta` always come along): a third of the bytes.
            ("_elements", "subject,status"),
        ]
        page = await _first_page(fhir, rtype, params)
        found = [
            e["resource"]
            for e in page.get("entry") or ()
            if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == rtype
        ]
        fresh = [r for r in found if (str(r.get("id")), str(_stamp_text(r))) not in read]
        seen[0] += len(fresh)
        if seen[0] > limit:
            raise _WindowTooLarge
        out += fresh
        read.update((str(r.get("id")), str(_stamp_text(r))) for r in fresh)
        if not _has_next(page):
            return out
        stamps = [_last_updated(r) for r in found]
        if not fresh or None in stamps or stamps != sorted(stamps):  # type: ignore[type-var]
            # A full page of one instant, without stamps, or not sorted (`_sort` ignored): no
            # stamp to go on from safely.
            raise _WindowTooLarge
        bound = f"ge{_stamp_text(found[-1])}"


async def _first_page(fhir: FhirClient, rtype: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    async for page in fhir.search_pages(rtype, params, count=_COHORT_PAGE, max_pages=1):
        return page
    return {}


def _has_next(page: Mapping[str, Any]) -> bool:
    return any(link.get("relation") == "next" for link in page.get("link") or () if isinstance(link, Mapping))


def _stamp_text(raw: Mapping[str, Any]) -> str | None:
    meta = raw.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    return stamp if isinstance(stamp, str) else None


def _patient_of(raw: Mapping[str, Any]) -> str | None:
    """The patient id of a watched resource's `subject` (relative or absolute reference)."""
    subject = raw.get("subject")
    ref = subject.get("reference") if isinstance(subject, Mapping) else None
    if not isinstance(ref, str) or "Patient/" not in ref:
        return None
    return ref.rsplit("Patient/", 1)[1].split("/", 1)[0] or None


def _last_updated(raw: Mapping[str, Any]) -> datetime | None:
    """`meta.lastUpdated` of a resource as the server sent it (an instant: full precision)."""
    stamp = _stamp_text(raw)
    if stamp is None:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


class ChangeMarks:
    """The marks of one FHIR server's patients in a LangGraph store (the checkpointer's database)."""

    def __init__(self, store: BaseStore, fhir_base_url: str, *, verified: datetime | None = None) -> None:
        self._store = store
        self._server = fhir_base_url
        server = hashlib.sha256(fhir_base_url.rstrip("/").encode()).hexdigest()[:16]
        self._namespace = (*_NAMESPACE, server)
        self._verified = verified

    def read_after(self, instant: datetime | None) -> ChangeMarks:
        """The same marks, for runs that read their records after the server's `instant`
        (`server_instant` before a batch's check): the marks they leave are verified as of it."""
        return ChangeMarks(self._store, self._server, verified=instant)

    async def get(self, patient_id: str) -> ChangeMark | None:
        return (await self.get_many([patient_id])).get(patient_id)

    async def get_many(self, patient_ids: Sequence[str]) -> dict[str, ChangeMark]:
        """The marks of those of `patient_ids` that have one (one store query per 500)."""
        out: dict[str, ChangeMark] = {}
        ids = list(dict.fromkeys(patient_ids))
        for i in range(0, len(ids), _STORE_BATCH):
            chunk = ids[i : i + _STORE_BATCH]
            items = await self._store.abatch([GetOp(self._namespace, p) for p in chunk])
            for patient_id, item in zip(chunk, items, strict=True):
                if not isinstance(item, Item):
                    continue
                try:
                    out[patient_id] = ChangeMark.model_validate(item.value)
                except ValidationError:
                    continue  # written by another version: the full path runs and writes a new one
        return out

    async def put(self, patient_id: str, mark: ChangeMark) -> None:
        if self._verified is not None and mark.verified is None:
            mark = mark.model_copy(update={"verified": self._verified})
        await self._store.aput(self._namespace, patient_id, mark.model_dump(mode="json"), index=False)

    async def verify(self, marks: Mapping[str, ChangeMark], instant: datetime) -> None:
        """Moves the `since` of `marks` (each found unchanged by a check whose searches began
        after the server's `instant`) on to it, in one store call per 500."""
        ops = [
            PutOp(
                self._namespace,
                p,
                m.model_copy(update={"verified": instant}).model_dump(mode="json"),
                index=False,
            )
            for p, m in marks.items()
            if m.since < instant
        ]
        for i in range(0, len(ops), _STORE_BATCH):
            await self._store.abatch(ops[i : i + _STORE_BATCH])

    async def forget(self, patient_id: str) -> None:
        await self._store.adelete(self._namespace, patient_id)
