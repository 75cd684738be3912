"""A patient's gathered record kept between the service's runs, reused while the server shows
nothing new: a chat's follow-up question, or an MCP client's next tool call, instead of reading
and parsing the whole record again (a real chart's thousands of resources take a read of many
pages and about 0.1 ms of validation a resource).

Kept per caller, FHIR server and patient (`RecordKey`): the caller's label, user (`fhirUser`) and
scopes are part of the key, since what a grant, and the EHR for that user, lets it read is what the
record holds; the check's searches go with the caller's own grant, so one revoked meanwhile fails
them and nothing kept is served. A kept record is reused when it
is younger than `MAX_AGE_S` and a round of searches finds nothing of the patient's newer than the
instant the record was read at, as the server's clock gave it (`change_marks.server_instant`,
less the change-check margin for writes that commit after they are stamped): the Patient
(`_id`) and each type the record gathers (`_lastUpdated=gt<instant>`, one page). Anything found,
a failed search or no server instant: the record is read again.

A server that refuses such a search (a 400-class answer other than 401, 403 and 429) keeps nothing
afterwards: every check would fail the same way and cost its requests for nothing.

Limits, those of `_lastUpdated` (agent.planning.change_marks): a resource deleted outright
leaves no trace, so a kept record may hold it for up to `MAX_AGE_S` (EHRs mark errors
`entered-in-error`, an update, which is found).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from agent.service.principal import Principal
from fhir_adapters import FhirClient
from fhir_adapters.error_tree import ServiceError
from fhir_adapters.errors import FhirHttpError
from fhir_adapters.search import Param, patient_search_param
from tools.record import DEFAULT_TYPES, PatientRecord, gather_record

__all__ = [
    "MAX_AGE_S",
    "MAX_RECORDS",
    "MAX_RESOURCES",
    "MIN_RESOURCES",
    "RecordKey",
    "RecordReuse",
    "reused_record",
]

# How long a kept record may be reused at most, and how many records and resources are kept at
# most (the least recently used go first). A parsed resource takes about 8 KB (a 2,000-resource
# record, 15.7 MB by tracemalloc): 40,000 resources are about 310 MB of an API replica's memory.
MAX_AGE_S: Final = 600.0
MAX_RECORDS: Final = 256
MAX_RESOURCES: Final = 40_000
# A smaller record is read each time: its read costs about what the check does (11 searches; a
# read's client side is about 0.1 ms of CPU a resource), and under load the check's searches cost
# the server more (`bench/bench_chat_stream.py` on 150-resource records: p95 5.0-5.2 s with
# every record kept, 4.2-4.4 s without).
MIN_RESOURCES: Final = 500
# Changes found per type before the record is read again anyway: one is enough.
_PROBE_COUNT: Final = 1
# What a check found: nothing newer; something; no answer (a failure); or a refusal of the search
# itself (a server without `_lastUpdated` on some type).
Changes = Literal["none", "found", "unknown", "refused"]


@dataclass(frozen=True)
class RecordKey:
    # The principal's PHI-free label (a session's hash, a token's client id, a key's name) and its
    # user: tokens of one client carry one label, and an EHR may show its users different things.
    caller: str
    user: str | None
    scopes: str  # its scopes, space-separated and sorted
    fhir_base: str
    patient_id: str


@dataclass(frozen=True)
class _Kept:
    record: PatientRecord
    as_of: datetime  # the server's clock before the read, less the margin
    kept_at: float  # monotonic seconds


class RecordReuse:
    """The records kept by this process (each API replica has its own)."""

    def __init__(
        self,
        *,
        margin: timedelta,
        max_age_s: float = MAX_AGE_S,
        max_records: int = MAX_RECORDS,
        max_resources: int = MAX_RESOURCES,
        min_resources: int = MIN_RESOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_resources = min_resources
        self._margin = margin
        self._max_age_s = max_age_s
        self._max_records = max_records
        self._max_resources = max_resources
        self._resources = 0  # of the kept records, in all
        # FHIR servers that refused a check's search (400-class): each check would fail again.
        self._refusing: set[str] = set()
        self._clock = clock
        self._kept: OrderedDict[RecordKey, _Kept] = OrderedDict()
        # Keys whose record was too small to keep when last read: read again without the clock
        # probe (a request that only a kept record needs), least recently read forgotten first.
        self._small: OrderedDict[RecordKey, None] = OrderedDict()
        self.reused = 0  # how many reads a kept record spared (for tests and benchmarks)

    async def record(self, key: RecordKey, fhir: FhirClient) -> PatientRecord:
        """The patient's record: the kept one while nothing changed, else read (and kept)."""
        if key.fhir_base in self._refusing:
            return await gather_record(fhir, key.patient_id)
        if key in self._small:
            record = await gather_record(fhir, key.patient_id)
            if record.manifest.total >= self._min_resources:
                del self._small[key]  # grown: the next read probes the clock and keeps it
            else:
                self._small.move_to_end(key)
            return record
        kept = self._kept.get(key)
        if kept is not None and self._clock() - kept.kept_at < self._max_age_s:
            found = await _changes_since(fhir, key.patient_id, kept.as_of)
            if found == "none":
                self._kept.move_to_end(key)
                self.reused += 1
                return kept.record
            if found == "refused":  # this server takes no such search: keep nothing of it again
                self._refusing.add(key.fhir_base)
        # Here, not at the top: the service's runtime holds this store, and the CDS hook, which
        # shares the runtime, must load no planning (model) code.
        from agent.planning.change_marks import server_instant

        as_of = await server_instant(fhir, margin=self._margin)
        record = await gather_record(fhir, key.patient_id)
        self._forget(key)
        # Without the server's clock there is nothing to check against later; a small record is
        # cheaper read than checked; one larger than the whole budget would push every other out.
        if record.manifest.total < self._min_resources:
            self._small[key] = None
            while len(self._small) > self._max_records:
                self._small.popitem(last=False)
        elif (
            as_of is not None
            and record.manifest.total <= self._max_resources
            and key.fhir_base not in self._refusing
        ):
            self._kept[key] = _Kept(record=record, as_of=as_of, kept_at=self._clock())
            self._resources += record.manifest.total
            while len(self._kept) > self._max_records or self._resources > self._max_resources:
                self._forget(next(iter(self._kept)))
        return record

    @property
    def kept(self) -> tuple[int, int]:
        """(records, resources) kept now."""
        return len(self._kept), self._resources

    def _forget(self, key: RecordKey) -> None:
        gone = self._kept.pop(key, None)
        if gone is not None:
            self._resources -= gone.record.manifest.total


async def _changes_since(fhir: FhirClient, patient_id: str, instant: datetime) -> Changes:
    """Whether any resource of the patient is newer than `instant`: the first page of each search
    (the flavour's required splits included, as `FhirClient.search_patient` makes them)."""
    since: Param = ("_lastUpdated", f"gt{instant.isoformat()}")
    searches: list[tuple[str, list[Param]]] = [("Patient", [("_id", patient_id), since])]
    for resource_type in DEFAULT_TYPES:
        base: list[Param] = [(patient_search_param(resource_type), patient_id), since]
        searches += [(resource_type, s) for s in fhir.flavour.expand_search(resource_type, base)]

    async def changed(resource_type: str, params: list[Param]) -> bool:
        async for page in fhir.search_pages(resource_type, params, count=_PROBE_COUNT, max_pages=1):
            return bool(page.get("entry"))
        return False

    try:
        answers = await asyncio.gather(*(changed(t, p) for t, p in searches))
    except FhirHttpError as exc:
        return "refused" if 400 <= exc.status < 500 and exc.status not in (401, 403, 429) else "unknown"
    except ServiceError:
        return "unknown"
    return "found" if any(answers) else "none"


def reused_record(
    reuse: RecordReuse, principal: Principal, fhir_base: str, fhir: FhirClient, patient_id: str
) -> Callable[[], Awaitable[PatientRecord]]:
    """A `ToolContext.record_source` over `reuse` for this caller's view of the patient."""
    key = RecordKey(
        caller=principal.label,
        user=principal.fhir_user,
        scopes=principal.scopes.text,
        fhir_base=fhir_base,
        patient_id=patient_id,
    )
    return lambda: reuse.record(key, fhir)
