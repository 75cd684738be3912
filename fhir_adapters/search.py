"""Pure FHIR search builders: parameters are ordered `(name, value)` pairs; nothing here touches the network.

Pairs (not a dict) because FHIR repeats names: `date=ge2020&date=lt2021` is an AND of two
conditions, `_include` appears once per include.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from urllib.parse import urlencode

__all__ = [
    "DatePrefix",
    "Param",
    "Params",
    "SearchQuery",
    "build_params",
    "date_param",
    "escape_value",
    "patient_search_param",
    "query_string",
    "token",
    "token_any",
]

Param = tuple[str, str]
Params = Sequence[Param] | Mapping[str, str]


class DatePrefix(StrEnum):
    """Comparison prefixes of date/number/quantity search (FHIR R4 3.1.1.4.2)."""

    EQ = "eq"
    NE = "ne"
    GT = "gt"
    LT = "lt"
    GE = "ge"
    LE = "le"
    SA = "sa"
    EB = "eb"
    AP = "ap"


# Most patient-compartment types search by `patient`; these only offer `subject` in R4.
_SUBJECT_ONLY = frozenset({"Media", "Specimen", "Communication", "Basic"})


def escape_value(value: str) -> str:
    """Escape FHIR search separators inside one value (`\\`, `,`, `|`, `$`)."""
    out = value.replace("\\", "\\\\")
    for ch in (",", "|", "$"):
        out = out.replace(ch, "\\" + ch)
    return out


def token(code: str, system: str | None = None) -> str:
    """`system|code`; `code` alone matches any system, `system=""` matches codes without a system."""
    if system is None:
        return escape_value(code)
    return f"{escape_value(system)}|{escape_value(code)}"


def token_any(system: str | None, codes: Iterable[str]) -> str:
    """Comma-joined tokens: an OR of codes within one parameter."""
    values = [token(c, system) for c in codes]
    if not values:
        raise ValueError("token_any needs at least one code")
    return ",".join(values)


def date_param(value: date | datetime | str, prefix: DatePrefix = DatePrefix.EQ) -> str:
    """`ge2020-01-01`. Datetimes must carry a time zone (FHIR instants/dateTimes with time do)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetime search values need a time zone")
        text = value.isoformat()
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = value
    return f"{prefix.value}{text}"


def patient_search_param(resource_type: str) -> str:
    """The search parameter that links `resource_type` to a patient."""
    if resource_type == "Patient":
        return "_id"
    return "subject" if resource_type in _SUBJECT_ONLY else "patient"


def _pairs(params: Params | None) -> list[Param]:
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    return [(str(k), str(v)) for k, v in items]


def build_params(
    params: Params | None = None,
    *,
    count: int | None = None,
    include: Iterable[str] = (),
    revinclude: Iterable[str] = (),
) -> list[Param]:
    """Full parameter list; `count` replaces any `_count` already in `params`."""
    out = _pairs(params)
    if count is not None:
        if count < 0:
            raise ValueError("_count must be >= 0")
        out = [p for p in out if p[0] != "_count"] + [("_count", str(count))]
    out += [("_include", i) for i in include]
    out += [("_revinclude", r) for r in revinclude]
    return out


def query_string(params: Sequence[Param]) -> str:
    return urlencode(list(params))


@dataclass(frozen=True)
class SearchQuery:
    """An immutable search: `SearchQuery("Observation").where("patient", "p1").code(LOINC, "4548-4")`."""

    resource_type: str
    params: tuple[Param, ...] = ()

    def where(self, name: str, value: str) -> SearchQuery:
        return SearchQuery(self.resource_type, (*self.params, (name, value)))

    def for_patient(self, patient_id: str) -> SearchQuery:
        return self.where(patient_search_param(self.resource_type), patient_id)

    def code(self, system: str | None, *codes: str, name: str = "code") -> SearchQuery:
        return self.where(name, token_any(system, codes))

    def date(
        self, name: str, value: date | datetime | str, prefix: DatePrefix = DatePrefix.EQ
    ) -> SearchQuery:
        return self.where(name, date_param(value, prefix))

    def count(self, n: int) -> SearchQuery:
        return SearchQuery(self.resource_type, tuple(build_params(self.params, count=n)))

    def include(self, *targets: str) -> SearchQuery:
        return SearchQuery(self.resource_type, tuple(build_params(self.params, include=targets)))

    def revinclude(self, *targets: str) -> SearchQuery:
        return SearchQuery(self.resource_type, tuple(build_params(self.params, revinclude=targets)))

    def to_params(self) -> list[Param]:
        return list(self.params)

    def to_url(self, base_url: str) -> str:
        qs = query_string(self.params)
        url = f"{base_url.rstrip('/')}/{self.resource_type}"
        return f"{url}?{qs}" if qs else url
