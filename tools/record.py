"""The patient record tool: gather one patient's FHIR resources into a typed `PatientRecord`.

A thin shell (`gather_record`, which fetches) over a pure core (`build_record`, which parses,
sorts by type and summarises into a manifest the agent plans over: per type the count, the
codes seen and the date range).

On the wire, strategy "per-type" (default):
    GET {base}/Patient/{id}
    GET {base}/Observation?patient={id}&_count=1000   (one per type, concurrently; `next` followed)
    ...
strategy "everything":
    GET {base}/Patient/{id}/$everything?_type=...     (falls back to the searches above)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args

from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.resource import Resource
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from fhir_adapters import FhirClient, JsonDict, ParsedResources, RejectedResource, parse_many
from fhir_adapters.parsing import parse_resource
from tools.documents.attachments import without_inline_data

__all__ = [
    "DEFAULT_TYPES",
    "CodeCount",
    "PatientRecord",
    "RecordManifest",
    "ResourceType",
    "TypeSummary",
    "assemble_record",
    "build_manifest",
    "build_record",
    "codes_of",
    "content_key",
    "effective_time",
    "gather_record",
    "select_resources",
    "with_resources",
]

ResourceType = Literal[
    "Observation",
    "Condition",
    "MedicationRequest",
    "Encounter",
    "DiagnosticReport",
    "Procedure",
    "Immunization",
    "AllergyIntolerance",
    "ImagingStudy",
    "DocumentReference",
]
# The types a record gathers, in this order.
DEFAULT_TYPES: tuple[str, ...] = get_args(ResourceType)
# Large pages: each round trip to a remote EHR costs tens of ms; the flavour clamps to the server's maximum.
GATHER_PAGE_SIZE = 1000
_KEY_HASH_CHARS = 16

# Where each type keeps its main code and its clinically relevant date (first present wins).
_CODE_PATHS: Mapping[str, tuple[str, ...]] = {
    "MedicationRequest": ("medicationCodeableConcept",),
    "Encounter": ("type",),
    "Immunization": ("vaccineCode",),
    "ImagingStudy": ("modality", "procedureCode"),
    "DocumentReference": ("type",),
}
_DATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "MedicationRequest": ("authoredOn",),
    "Encounter": ("period.start",),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "AllergyIntolerance": ("onsetDateTime", "recordedDate"),
    "ImagingStudy": ("started",),
    "DocumentReference": ("date", "context.period.start"),
}


class CodeCount(BaseModel):
    model_config = ConfigDict(frozen=True)

    system: str | None
    code: str | None
    display: str | None
    count: int


class TypeSummary(BaseModel):
    count: int
    codes: list[CodeCount]
    earliest: datetime | None
    latest: datetime | None


class RecordManifest(BaseModel):
    """What the record holds, per resource type: what an agent picks types and codes from."""

    types: dict[str, TypeSummary] = Field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(t.count for t in self.types.values())


class PatientRecord(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    patient_id: str
    patient: Patient | None
    resources: dict[str, list[SerializeAsAny[Resource]]]
    manifest: RecordManifest
    rejected: list[RejectedResource]
    # "Type/id" -> `content_key` of the resource as the server sent it (what changed since a run).
    content_keys: dict[str, str] = Field(default_factory=dict)
    # Its dump per mode: a run's checkpointer dumps the state at every step, and dumping a few
    # hundred R4B resources costs tens of ms. A record is never changed once built (a record with
    # more resources is a new one: `with_resources`), so the first dump serves every later one.
    _dumps: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    # The JSON each resource was parsed from, by the resource's id(): a checkpoint's (python
    # mode) dump takes it instead of dumping the model (the record's dump was 14 % of a
    # checkpointed run's time); read back, the JSON is parsed into the same model as before.
    _sources: dict[int, Mapping[str, Any]] = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # The fields, not the cache of dumps.
        if not isinstance(other, PatientRecord):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in type(self).model_fields)

    __hash__ = None  # type: ignore[assignment]

    @model_serializer(mode="wrap")
    def _dump_once(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        plain = not (info.include or info.exclude or info.exclude_none or info.by_alias)
        if not plain:
            return dict(handler(self))
        if info.mode not in self._dumps:
            fast = info.mode == "python" and self._sources
            self._dumps[info.mode] = self._from_sources() if fast else handler(self)
        return self._dumps[info.mode]

    def _from_sources(self) -> dict[str, Any]:
        """The python-mode dump with each resource as the JSON it was parsed from."""

        def one(res: Resource) -> Any:
            source = self._sources.get(id(res))
            return dict(source) if source is not None else res.model_dump()

        return {
            "patient_id": self.patient_id,
            "patient": None if self.patient is None else one(self.patient),
            "resources": {rtype: [one(r) for r in items] for rtype, items in self.resources.items()},
            "manifest": self.manifest.model_dump(),
            "rejected": [r.model_dump() for r in self.rejected],
            "content_keys": dict(self.content_keys),
        }

    def keep_sources(self, parsed: Iterable[ParsedResources], earlier: PatientRecord | None = None) -> None:
        """Remember the JSON of `parsed`'s resources (and `earlier`'s) that this record holds, for
        the checkpoint's dump. Only those it holds: an id() outlives no object this record keeps."""
        held = {id(r) for items in self.resources.values() for r in items} | {id(self.patient)}
        pairs = [] if earlier is None else list(earlier._sources.items())
        for group in parsed:
            pairs += [(id(r), s) for r, s in zip(group.resources, group.sources, strict=True)]
        self._sources.update((key, source) for key, source in pairs if key in held)

    @field_validator("resources", mode="before")
    @classmethod
    def _typed(cls, value: Any) -> Any:
        """Resources given as JSON (a run's checkpoint read back) become their own R4B classes
        again, not the `Resource` base the annotation names."""
        if not isinstance(value, Mapping):
            return value
        return {
            rtype: [parse_resource(r) if isinstance(r, Mapping) else r for r in items]
            for rtype, items in value.items()
        }

    def of_type(self, resource_type: str) -> list[Resource]:
        return self.resources.get(resource_type, [])

    def content_key_of(self, res: Resource) -> str:
        """The resource's `content_key`: from the JSON the server sent, else from the parsed model
        (slower, ~0.3 ms, and not comparable with the former: use one source per record)."""
        key = self.content_keys.get(f"{res.get_resource_type()}/{res.id}")
        return key if key is not None else content_key(res.model_dump(mode="json"))


def content_key(raw: Mapping[str, Any]) -> str:
    """`Type/id#<hash>` of a resource's content: its JSON without `meta` and `text`, so that a
    server re-sending an unchanged resource with a new version gives the same key."""
    content = {k: v for k, v in raw.items() if k not in ("meta", "text")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:_KEY_HASH_CHARS]
    return f"{raw.get('resourceType')}/{raw.get('id')}#{digest}"


def _content_keys(raws: Iterable[JsonDict]) -> dict[str, str]:
    return {f"{r.get('resourceType')}/{r.get('id')}": content_key(r) for r in raws if r.get("id")}


async def gather_record(
    client: FhirClient,
    patient_id: str,
    *,
    types: Sequence[str] = DEFAULT_TYPES,
    strategy: Literal["per-type", "everything"] = "per-type",
    concurrent: bool = True,
) -> PatientRecord:
    """Fetch the patient and their `types` resources; malformed ones land in `rejected`."""
    if strategy == "everything":
        return build_record(patient_id, await client.everything(patient_id, types=types), types=types)

    keys: dict[str, str] = {}

    async def patient() -> ParsedResources:
        return parse_many(select_resources(patient_id, [await client.read("Patient", patient_id)], ()))

    async def of_type(rtype: str) -> ParsedResources:
        raws = await client.search_patient(rtype, patient_id, count=GATHER_PAGE_SIZE)
        if rtype == "DocumentReference":
            # Their PDFs stay on the server until a document is read (`fetch_pdfs` reads them then).
            raws = [without_inline_data(r) for r in raws]
        selected = select_resources(patient_id, raws, (rtype,))
        keys.update(_content_keys(selected))
        # Parsed as soon as this type arrives: R4B validation (~0.1 ms a resource) then overlaps
        # the other types' network waits instead of adding up after the last one.
        return parse_many(selected)

    if concurrent:
        groups = list(await asyncio.gather(patient(), *(of_type(t) for t in types)))
    else:  # one request after another, as an LLM-driven navigator does it
        groups = [await patient()]
        for t in types:
            groups.append(await of_type(t))
    return assemble_record(patient_id, groups, keys)


def build_record(
    patient_id: str, raws: Iterable[JsonDict], *, types: Sequence[str] = DEFAULT_TYPES
) -> PatientRecord:
    """Pure core: select, parse (bad resources to `rejected`), group by type, summarise."""
    selected = select_resources(patient_id, raws, types)
    return assemble_record(patient_id, [parse_many(selected)], _content_keys(selected))


def select_resources(patient_id: str, raws: Iterable[JsonDict], types: Iterable[str]) -> list[JsonDict]:
    """The patient's own Patient resource and resources of `types`, de-duplicated by type and id."""
    wanted = set(types)
    unique: dict[tuple[str, str], JsonDict] = {}
    anonymous: list[JsonDict] = []
    for raw in raws:
        rtype, rid = raw.get("resourceType"), raw.get("id")
        if rtype == "Patient" and rid != patient_id:
            continue  # e.g. a linked patient pulled in by $everything
        if rtype != "Patient" and rtype not in wanted:
            continue
        if isinstance(rtype, str) and isinstance(rid, str):
            unique.setdefault((rtype, rid), raw)
        else:
            anonymous.append(raw)
    return [*unique.values(), *anonymous]


def assemble_record(
    patient_id: str, groups: Iterable[ParsedResources], content_keys: Mapping[str, str] | None = None
) -> PatientRecord:
    patient: Patient | None = None
    by_type: dict[str, list[Resource]] = {}
    rejected: list[RejectedResource] = []
    groups = list(groups)
    for parsed in groups:
        rejected += parsed.rejected
        for res in parsed.resources:
            if isinstance(res, Patient):
                patient = res
            else:
                by_type.setdefault(res.get_resource_type(), []).append(res)
    record = PatientRecord(
        patient_id=patient_id,
        patient=patient,
        resources=by_type,
        manifest=build_manifest(by_type),
        rejected=rejected,
        content_keys=dict(content_keys or {}),
    )
    record.keep_sources(groups)
    return record


def with_resources(record: PatientRecord, raws: Iterable[JsonDict]) -> PatientRecord:
    """``record`` plus ``raws`` (resources just written, or about to be in a dry run), re-summarised.

    A resource already in the record (same type and id) is not added twice.
    """
    known = {(r.get_resource_type(), r.id) for items in record.resources.values() for r in items}
    fresh = [r for r in raws if (r.get("resourceType"), r.get("id")) not in known or r.get("id") is None]
    types = [*record.resources, *DEFAULT_TYPES]
    parsed = parse_many(select_resources(record.patient_id, fresh, types))
    by_type = {t: list(items) for t, items in record.resources.items()}
    for res in parsed.resources:
        if not isinstance(res, Patient):
            by_type.setdefault(res.get_resource_type(), []).append(res)
    joined = PatientRecord(
        patient_id=record.patient_id,
        patient=record.patient,
        resources=by_type,
        manifest=build_manifest(by_type),
        rejected=[*record.rejected, *parsed.rejected],
        content_keys={**record.content_keys, **_content_keys(fresh)},
    )
    joined.keep_sources([parsed], earlier=record)
    return joined


def build_manifest(resources: Mapping[str, Sequence[Resource]]) -> RecordManifest:
    summaries: dict[str, TypeSummary] = {}
    for rtype, items in sorted(resources.items()):
        codes: Counter[tuple[str | None, str | None, str | None]] = Counter()
        dates: list[datetime] = []
        for res in items:
            codes.update(codes_of(rtype, res))
            when = effective_time(rtype, res)
            if when is not None:
                dates.append(when)
        summaries[rtype] = TypeSummary(
            count=len(items),
            codes=[
                CodeCount(system=s, code=c, display=d, count=n)
                for (s, c, d), n in sorted(codes.items(), key=lambda kv: (-kv[1], str(kv[0])))
            ],
            earliest=min(dates, default=None),
            latest=max(dates, default=None),
        )
    return RecordManifest(types=summaries)


def _get(obj: Any, path: str) -> Any:
    for name in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


def codes_of(rtype: str, res: Resource) -> set[tuple[str | None, str | None, str | None]]:
    """(system, code, display) of the main code; each distinct code counted once per resource."""
    out: set[tuple[str | None, str | None, str | None]] = set()
    for path in _CODE_PATHS.get(rtype, ("code",)):
        value = _get(res, path)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            codings = getattr(item, "coding", None)
            if codings is None and hasattr(item, "code") and hasattr(item, "system"):
                codings = [item]  # a bare Coding (ImagingStudy.modality)
            if codings:
                out.update((c.system, c.code, c.display) for c in codings)
            elif getattr(item, "text", None):
                out.add((None, None, item.text))
        if out:
            break
    return out


def effective_time(rtype: str, res: Resource) -> datetime | None:
    for path in _DATE_PATHS.get(rtype, ()):
        when = as_utc(_get(res, path))
        if when is not None:
            return when
    return None


def as_utc(value: Any) -> datetime | None:
    """FHIR date/dateTime/instant (datetime, date, or partial 'YYYY'/'YYYY-MM' string) as UTC.

    ``None`` also for a time with no UTC equivalent (0001-01-01T00:00+05:00, 9999-12-31T23:00-05:00):
    a record may hold such placeholders, and one must not stop the whole record from being read.
    """
    if isinstance(value, datetime):
        try:
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        except OverflowError:
            return None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        parts = value.split("-")
        try:
            year, month = int(parts[0]), int(parts[1]) if len(parts) > 1 else 1
        except ValueError:
            return None
        try:
            return datetime(year, month, 1, tzinfo=UTC)
        except (ValueError, OverflowError):  # no such month, or a year out of range
            return None
    return None
