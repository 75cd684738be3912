"""Which patients a job runs over: every patient, a Patient search, a Group, or a Bulk Data export.

    all                 every Patient of the server (a search)
    group:ID            the active members of Group/ID (a search for the Group, by `_id`)
    search:QUERY        the Patients matching QUERY, e.g. `search:address-state=MA&gender=female`
    export:all          Patient/$export (`_type=Patient`)
    export:group:ID     Group/ID/$export (`_type=Patient`)

Incremental (`since`): only the patients with data newer than `since` (ChartAgent's own output
as its runs write it does not count; a person's review of it does). An export asks for the
changed resources (`_since`, the watched types and Patient) and collects their patients; the
search kinds search `_lastUpdated=gt<since>` on the same types and keep the cohort's patients
(for `all`, every patient a change names: no listing of the whole server).

The resolution's `transaction_time` is where the next incremental run starts: the export's
`transactionTime`; for the search kinds the server's clock as the earliest searchset Bundle's
`meta.lastUpdated` shows it, else (a server that stamps no Bundles) the newest `meta.lastUpdated`
of what was read, a weaker mark: `transaction_time_source` says which.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict

from agent.planning.change_marks import WATCHED
from fhir_adapters import FhirClient
from fhir_adapters.bulk_export import (
    BulkExportClient,
    BulkExportHttpError,
    BulkExportIncomplete,
    ExportFile,
    ExportManifest,
    ExportRequest,
    StatusUrlCallback,
    fhir_instant,
)
from fhir_adapters.client import JsonDict
from fhir_adapters.error_tree import BadInputError
from tools.record import as_utc
from tools.writeback.approval import is_ai_output

__all__ = ["CohortKind", "CohortResolution", "CohortSpec", "CohortSpecError", "resolve_cohort"]

# The types whose changes make a patient worth a new run, and Patient itself.
CHANGE_TYPES: Final = (*WATCHED, "Patient")
_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# Parameters that change what a search returns rather than which patients match.
_SHAPING: Final = frozenset(
    {"_summary", "_elements", "_count", "_include", "_revinclude", "_sort", "_total", "_contained",
     "_containedType", "_format", "_pretty"}
)  # fmt: skip
_PAGE: Final = 500
TimeSource = Literal["export", "bundle", "newest-resource", "none"]


class CohortSpecError(BadInputError):
    """A cohort text that cannot be used; the message never quotes search values (they may be PHI)."""


class CohortKind(StrEnum):
    ALL = "all"
    GROUP = "group"
    SEARCH = "search"
    EXPORT_ALL = "export:all"
    EXPORT_GROUP = "export:group"


class CohortSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: CohortKind
    group_id: str | None = None
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> CohortSpec:
        text = text.strip()
        if text in ("all", "export:all"):
            return cls(kind=CohortKind(text))
        for prefix, kind in (("export:group:", CohortKind.EXPORT_GROUP), ("group:", CohortKind.GROUP)):
            if text.startswith(prefix):
                group_id = text[len(prefix) :]
                if not _ID.fullmatch(group_id):
                    raise CohortSpecError(f"cohort {prefix}ID: the Group id is not a FHIR id")
                return cls(kind=kind, group_id=group_id)
        if text.startswith("search:"):
            return cls(kind=CohortKind.SEARCH, query=_parse_query(text[len("search:") :]))
        raise CohortSpecError("cohort must be all, group:ID, search:QUERY, export:all or export:group:ID")

    @property
    def is_export(self) -> bool:
        return self.kind in (CohortKind.EXPORT_ALL, CohortKind.EXPORT_GROUP)

    def __str__(self) -> str:
        if self.group_id is not None:
            return f"{self.kind.value}:{self.group_id}"
        if self.kind is CohortKind.SEARCH:
            return "search:" + "&".join(f"{k}={v}" for k, v in self.query)
        return self.kind.value


def _parse_query(query: str) -> tuple[tuple[str, str], ...]:
    try:
        pairs = parse_qsl(query, keep_blank_values=False, strict_parsing=True)
    except ValueError:
        raise CohortSpecError("cohort search:QUERY: not a query string (name=value&...)") from None
    if not pairs:
        raise CohortSpecError("cohort search:QUERY: no search parameter")
    shaping = sorted({name for name, _ in pairs if name in _SHAPING})
    if shaping:
        raise CohortSpecError(f"cohort search:QUERY: {', '.join(shaping)} would change the result's shape")
    return tuple(pairs)


class CohortResolution(BaseModel):
    model_config = ConfigDict(frozen=True)

    patient_ids: tuple[str, ...]
    transaction_time: datetime | None
    transaction_time_source: TimeSource
    export_status_url: str | None = None


async def resolve_cohort(
    fhir: FhirClient,
    spec: CohortSpec,
    *,
    since: datetime | None,
    saved_status_url: str | None = None,
    on_status_url: StatusUrlCallback | None = None,
    bulk: BulkExportClient | None = None,
) -> CohortResolution:
    """The cohort's patients (sorted, unique); with `since` only those changed after it.

    Export kinds poll `saved_status_url` when given (a job resumed after a crash); a server that no
    longer knows it (404/410: jobs kept in memory) gets a new kick-off. `on_status_url` receives a
    new status URL before polling starts. `bulk` overrides the export client (polling policy).
    """
    if spec.is_export:
        found = await _by_export(bulk or BulkExportClient(fhir), spec, since, saved_status_url, on_status_url)
        if spec.group_id is None:
            return found
        # Servers differ on a Group export's inactive members (sekmet exports them): drop them,
        # so that export:group:ID and group:ID name the same patients.
        _, inactive = await _Searches(fhir).group_members(spec.group_id)
        kept = tuple(p for p in found.patient_ids if p not in inactive)
        return found.model_copy(update={"patient_ids": kept})
    searches = _Searches(fhir)
    ids: set[str] = set()
    if spec.kind is CohortKind.SEARCH:
        ids = await searches.patient_ids(list(spec.query))
    elif spec.kind is CohortKind.GROUP:
        ids, _ = await searches.group_members(str(spec.group_id))
    elif since is None:
        ids = await searches.patient_ids([])
    if since is not None:
        changed = await searches.changed_patients(since)
        # Every patient, changed ones only: the changes name them, no listing needed.
        ids = changed if spec.kind is CohortKind.ALL else ids & changed
    when, source = searches.transaction_time()
    return CohortResolution(patient_ids=tuple(sorted(ids)), transaction_time=when,
                            transaction_time_source=source)  # fmt: skip


# ---------------------------------------------------------------------------- search kinds


class _Searches:
    """Searches that note the server time of each first page and the newest resource seen."""

    def __init__(self, fhir: FhirClient) -> None:
        self._fhir = fhir
        self._bundle_times: list[datetime] = []
        self._newest: datetime | None = None

    async def _resources(self, rtype: str, params: list[tuple[str, str]]) -> AsyncIterator[JsonDict]:
        first = True
        async for page in self._fhir.search_pages(rtype, params, count=_PAGE):
            if first:
                stamp = _stamp(page)
                if stamp is not None:
                    self._bundle_times.append(stamp)
                first = False
            for entry in page.get("entry") or ():
                resource = entry.get("resource") if isinstance(entry, Mapping) else None
                search = entry.get("search") if isinstance(entry, Mapping) else None
                mode = search.get("mode") if isinstance(search, Mapping) else None
                if not isinstance(resource, dict) or mode not in (None, "match"):
                    continue  # `_include`d resources, OperationOutcomes about the search
                stamp = _stamp(resource)
                if stamp is not None and (self._newest is None or stamp > self._newest):
                    self._newest = stamp
                yield resource

    async def patient_ids(self, params: list[tuple[str, str]]) -> set[str]:
        return {
            str(r["id"])
            async for r in self._resources("Patient", [*params, ("_elements", "id")])
            if r.get("resourceType") == "Patient" and isinstance(r.get("id"), str)
        }

    async def group_members(self, group_id: str) -> tuple[set[str], set[str]]:
        """The Group's active and inactive patient members."""
        groups = [g async for g in self._resources("Group", [("_id", group_id)])]
        group = next(
            (g for g in groups if g.get("resourceType") == "Group" and g.get("id") == group_id), None
        )
        if group is None:
            raise CohortSpecError("cohort group:ID: no such Group on the FHIR server")
        active: set[str] = set()
        inactive: set[str] = set()
        for member in group.get("member") or ():
            patient = _patient_of(member.get("entity")) if isinstance(member, Mapping) else None
            if patient is not None:
                (inactive if member.get("inactive") is True else active).add(patient)
        return active, inactive - active

    async def changed_patients(self, since: datetime) -> set[str]:
        after = [("_lastUpdated", f"gt{fhir_instant(since)}")]

        async def one(rtype: str) -> set[str]:
            # Only what names the patient and tells ChartAgent's own output apart (servers without
            # `_elements` send everything).
            elements = ("_elements", "id" if rtype == "Patient" else "subject,meta,status,identifier")
            return {
                p
                async for r in self._resources(rtype, [*after, elements])
                if is_a_change(r)
                for p in _patients_of(r)
            }

        found = await asyncio.gather(*(one(t) for t in CHANGE_TYPES))
        return set().union(*found)

    def transaction_time(self) -> tuple[datetime | None, TimeSource]:
        if self._bundle_times:
            return min(self._bundle_times), "bundle"
        if self._newest is not None:
            return self._newest, "newest-resource"
        return None, "none"


# ---------------------------------------------------------------------------- export kinds


async def _by_export(
    bulk: BulkExportClient,
    spec: CohortSpec,
    since: datetime | None,
    saved_status_url: str | None,
    on_status_url: StatusUrlCallback | None,
) -> CohortResolution:
    request = ExportRequest(
        level="group" if spec.kind is CohortKind.EXPORT_GROUP else "patient",
        group_id=spec.group_id,
        types=("Patient",) if since is None else CHANGE_TYPES,
        since=since,
    )
    manifest: ExportManifest | None = None
    status_url = saved_status_url
    if status_url is not None:
        try:
            manifest = await bulk.wait(status_url)
        except BulkExportHttpError as exc:
            if exc.status not in (404, 410):
                raise
    if manifest is None:
        status_url, manifest = await bulk.export(request, on_status_url=on_status_url)
    if manifest.error:
        raise BulkExportIncomplete(
            f"bulk export finished with {len(manifest.error)} error file(s): some resources were not exported"
        )
    per_file = await bulk.read_files(manifest, _file_patients, types=request.types)
    return CohortResolution(
        patient_ids=tuple(sorted(set().union(*per_file))),
        transaction_time=manifest.transaction_time,
        transaction_time_source="export",
        export_status_url=status_url,
    )


async def _file_patients(file: ExportFile, resources: AsyncIterator[JsonDict]) -> set[str]:
    return {p async for r in resources if is_a_change(r) for p in _patients_of(r)}


# ChartAgent's outputs as its runs leave them: unreviewed, or retired by a newer summary.
_AS_WRITTEN: Final = frozenset({"preliminary", "cancelled"})


def is_a_change(resource: Mapping[str, Any]) -> bool:
    """Whether a resource updated since the last run makes its patient due: anything but
    ChartAgent's own output as its runs write it (a run's write-back would otherwise make every
    patient it summarized due again). A person's review (final, entered-in-error) is a change."""
    return not (is_ai_output(resource) and resource.get("status") in _AS_WRITTEN)


# ---------------------------------------------------------------------------- references


def _patients_of(resource: Mapping[str, Any]) -> Iterable[str]:
    """The Patient itself, or the patients a resource is about (`subject`, `patient`)."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return (rid,) if isinstance(rid, str) else ()
    found = (_patient_of(resource.get(name)) for name in ("subject", "patient"))
    return tuple(p for p in found if p is not None)


def _patient_of(reference: Any) -> str | None:
    """`x` of a reference to `Patient/x` (relative or absolute, versioned or not)."""
    ref = reference.get("reference") if isinstance(reference, Mapping) else None
    if not isinstance(ref, str):
        return None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient" and _ID.fullmatch(parts[-1]):
        return parts[-1]
    return None


def _stamp(resource: Mapping[str, Any]) -> datetime | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return as_utc(parsed)
