"""Parse raw FHIR JSON into `fhir.resources.R4B` models at the edge.

Validation reasons name the element path and the rule, never the offending value: values are
patient data (a malformed birthDate is still a birth date).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel, ConfigDict, ValidationError

from fhir_adapters.errors import ResourceParseError

__all__ = ["ParsedResources", "RejectedResource", "parse_many", "parse_resource"]

_MAX_REASONS = 3


class RejectedResource(BaseModel):
    """A resource that did not validate; kept out of the record but reported."""

    model_config = ConfigDict(frozen=True)

    resource_type: str
    id: str | None
    reason: str


class ParsedResources(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    resources: list[Resource]
    rejected: list[RejectedResource]
    # The JSON each of `resources` was parsed from, in the same order.
    sources: list[Mapping[str, Any]]


def parse_resource(raw: Mapping[str, Any]) -> Resource:
    """One R4B resource, or ResourceParseError(resource_type, id, reason)."""
    rtype = raw.get("resourceType")
    rid = raw.get("id")
    rid = rid if isinstance(rid, str) else None
    if not isinstance(rtype, str) or not rtype:
        raise ResourceParseError("?", rid, "no resourceType")
    try:
        cls = get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        raise ResourceParseError(rtype, rid, "unknown R4B resource type") from None
    try:
        return cast(Resource, cls.model_validate(dict(raw)))
    except ValidationError as exc:
        raise ResourceParseError(rtype, rid, _reason(exc)) from None


def parse_many(raws: Iterable[Mapping[str, Any]]) -> ParsedResources:
    """Parse each resource; the bad ones are reported in `rejected`, the rest go on."""
    resources: list[Resource] = []
    rejected: list[RejectedResource] = []
    sources: list[Mapping[str, Any]] = []
    for raw in raws:
        try:
            resources.append(parse_resource(raw))
        except ResourceParseError as exc:
            rejected.append(RejectedResource(resource_type=exc.resource_type, id=exc.id, reason=exc.reason))
        else:
            sources.append(raw)
    return ParsedResources(resources=resources, rejected=rejected, sources=sources)


def _reason(exc: ValidationError) -> str:
    # `from None` above and no `input` here: pydantic's own message embeds the offending value.
    parts = []
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    for err in errors[:_MAX_REASONS]:
        loc = ".".join(str(p) for p in err["loc"]) or "(resource)"
        parts.append(f"{loc}: {err['msg']}")
    if len(errors) > _MAX_REASONS:
        parts.append(f"and {len(errors) - _MAX_REASONS} more")
    return "; ".join(parts)
