"""Record tools: the manifest, a search by type, code and date, conditions and medications.

All read the patient's gathered record (`ToolContext.record`, one read per run) and never another
patient's: the record is gathered with `patient=<the context's patient>` searches only.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Final

from fhir.resources.R4B.resource import Resource
from pydantic import Field

from tools.record import ResourceType, TypeSummary, codes_of, effective_time
from tools.registry.describe import describe
from tools.registry.model import Citation, ToolContext, ToolFact, ToolOutput
from tools.registry.registry import PatientScoped, Tool

__all__ = ["CONDITIONS_AND_MEDICATIONS", "RECORD_MANIFEST", "SEARCH_RESOURCES", "matches_code"]

_TOP_CODES: Final = 8


class ManifestInput(PatientScoped):
    pass


class ManifestOutput(ToolOutput):
    types: dict[str, TypeSummary]


async def record_manifest(ctx: ToolContext, _: ManifestInput) -> ManifestOutput:
    record = await ctx.record()
    facts = []
    patient = Citation(reference=f"Patient/{ctx.patient_id}")
    for rtype, summary in record.manifest.types.items():
        span = ""
        if summary.earliest and summary.latest:
            span = f", {summary.earliest.date().isoformat()} to {summary.latest.date().isoformat()}"
        codes = ", ".join(
            f"{c.display or c.code} ({c.code}) x{c.count}" if c.code else f"{c.display} x{c.count}"
            for c in summary.codes[:_TOP_CODES]
        )
        more = f" and {len(summary.codes) - _TOP_CODES} more codes" if len(summary.codes) > _TOP_CODES else ""
        text = f"{rtype}: {summary.count}{span}" + (f"; codes: {codes}{more}" if codes else "")
        facts.append(ToolFact(text=text, citations=(patient,)))
    note = None if facts else "the record holds no resources of the types read"
    return ManifestOutput(facts=facts, note=note, types=record.manifest.types)


class SearchInput(PatientScoped):
    resource_type: ResourceType = Field(description="The FHIR resource type to search.")
    code: str | None = Field(
        default=None, description="A code (e.g. LOINC 4548-4) or words of its display name (e.g. 'a1c')."
    )
    since: date | None = Field(default=None, description="Only resources on or after this date (YYYY-MM-DD).")
    until: date | None = Field(
        default=None, description="Only resources on or before this date (YYYY-MM-DD)."
    )
    limit: int = Field(default=20, ge=1, le=200, description="At most this many, newest first.")


class SearchOutput(ToolOutput):
    total: int  # matches before the limit


def matches_code(res: Resource, wanted: str) -> bool:
    """The resource's main code is `wanted`, or its display holds every word of it."""
    needle = wanted.strip().lower()
    if not needle:
        return True
    words = needle.split()
    for _system, code, display in codes_of(res.get_resource_type(), res):
        if code is not None and code.lower() == needle:
            return True
        if display and all(w in display.lower() for w in words):
            return True
    return False


def in_window(res: Resource, since: date | None, until: date | None) -> bool:
    if since is None and until is None:
        return True
    when = effective_time(res.get_resource_type(), res)
    if when is None:
        return False
    day = when.date()
    return (since is None or day >= since) and (until is None or day <= until)


async def search_resources(ctx: ToolContext, args: SearchInput) -> SearchOutput:
    record = await ctx.record()
    found = [
        r
        for r in record.of_type(args.resource_type)
        if (args.code is None or matches_code(r, args.code)) and in_window(r, args.since, args.until)
    ]
    found = newest_first(found)
    facts = [describe(r) for r in found[: args.limit]]
    note = None if found else f"no {args.resource_type} matched"
    return SearchOutput(facts=facts, note=note, total=len(found))


def newest_first(items: list[Resource]) -> list[Resource]:
    """Newest first; resources without a date last, in record order."""
    floor = datetime.combine(date.min, time.min).astimezone()

    def key(r: Resource) -> datetime:
        return effective_time(r.get_resource_type(), r) or floor

    return sorted(items, key=key, reverse=True)


class ConditionsInput(PatientScoped):
    include_inactive: bool = Field(
        default=False, description="Also resolved conditions and stopped medications."
    )


class ConditionsOutput(ToolOutput):
    conditions: int
    medications: int


_ACTIVE: Final = frozenset({"active", "recurrence", "relapse", "on-hold", "draft", None})


async def conditions_and_medications(ctx: ToolContext, args: ConditionsInput) -> ConditionsOutput:
    record = await ctx.record()
    facts: list[ToolFact] = []
    counts = {}
    for rtype in ("Condition", "MedicationRequest"):
        kept = [r for r in record.of_type(rtype) if args.include_inactive or _is_current(r)]
        counts[rtype] = len(kept)
        facts += [describe(r) for r in newest_first(kept)]
    note = None if facts else "no current conditions or medications in the record"
    return ConditionsOutput(
        facts=facts, note=note, conditions=counts["Condition"], medications=counts["MedicationRequest"]
    )


def _is_current(res: Resource) -> bool:
    status = getattr(res, "clinicalStatus", None)
    if status is not None:
        codes = {c.code for c in (status.coding or [])}
        return bool(codes & {"active", "recurrence", "relapse"})
    return getattr(res, "status", None) in _ACTIVE


RECORD_MANIFEST: Final = Tool(
    name="record_manifest",
    description=(
        "What the patient's record holds: per resource type the count, the date range and the most "
        "frequent codes. Call it first to see what can be searched."
    ),
    input_model=ManifestInput,
    output_model=ManifestOutput,
    run=record_manifest,
)
SEARCH_RESOURCES: Final = Tool(
    name="search_resources",
    description=(
        "Find the patient's resources of one type, optionally by code or display words and by date; "
        "newest first, each with its reference, value and date."
    ),
    input_model=SearchInput,
    output_model=SearchOutput,
    run=search_resources,
)
CONDITIONS_AND_MEDICATIONS: Final = Tool(
    name="conditions_and_medications",
    description="The patient's current conditions (problem list) and medication requests.",
    input_model=ConditionsInput,
    output_model=ConditionsOutput,
    run=conditions_and_medications,
)
