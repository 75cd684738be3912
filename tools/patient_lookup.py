"""Patient lookup tools: MRN by name + birth date, Patient by MRN, age at a given time.

Thin shells over pure helpers (`mrn_of`, `patient_age`, `matches_name`). Servers match
`given`/`family` by prefix (FHIR string search: "Dan" finds "Dana"), so every match is
re-checked exactly here before it is believed.

On the wire:
    find_patient_mrn(c, given, family, birthdate)  GET {base}/Patient?given=..&family=..&birthdate=YYYY-MM-DD
    find_patient_by_mrn(c, mrn)                    GET {base}/Patient?identifier=<mrn>
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from fhir_adapters import FhirClient, JsonDict, token
from fhir_adapters.error_tree import BadInputError

__all__ = [
    "MR_SYSTEM",
    "AmbiguousPatientError",
    "find_patient_by_mrn",
    "find_patient_mrn",
    "matches_name",
    "mrn_of",
    "patient_age",
]

MR_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"


class AmbiguousPatientError(BadInputError):
    """Several distinct patients match a lookup that must name one."""

    def __init__(self, what: str, count: int) -> None:
        self.count = count
        # No query values in the message: they are patient data.
        super().__init__(f"{count} patients match the {what}; refine the query")


def _is_mr(identifier: Mapping[str, Any]) -> bool:
    codings = (identifier.get("type") or {}).get("coding") or []
    return any(c.get("system") == MR_SYSTEM and c.get("code") == "MR" for c in codings)


def mrn_of(patient: Mapping[str, Any]) -> str | None:
    """The value of the identifier typed MR (v2-0203), or None."""
    for identifier in patient.get("identifier") or []:
        if _is_mr(identifier) and isinstance(identifier.get("value"), str):
            return str(identifier["value"])
    return None


def matches_name(patient: Mapping[str, Any], given: str, family: str) -> bool:
    """Exact (case-insensitive) match on one HumanName: family, and the given names in order."""
    want_given = given.casefold().split()
    for name in patient.get("name") or []:
        if str(name.get("family", "")).casefold() != family.casefold():
            continue
        names = [g.casefold() for g in name.get("given") or []]
        if names[: len(want_given)] == want_given or " ".join(names) == " ".join(want_given):
            return True
    return False


def patient_age(patient: Mapping[str, Any], at: datetime) -> int:
    """Age in whole years (rounded down) on the calendar date of `at`, in `at`'s own time zone."""
    raw = patient.get("birthDate")
    if not isinstance(raw, str) or len(raw) != 10:
        raise ValueError("patient has no full birthDate (YYYY-MM-DD)")
    born = date.fromisoformat(raw)
    today = at.date()
    if today < born:
        raise ValueError("`at` is before the birth date")
    # A 29 February birthday counts as reached on 1 March in common years.
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


async def find_patient_mrn(client: FhirClient, given: str, family: str, birthdate: date | str) -> str | None:
    """MRN of the one patient with this name and birth date; None when there is none (or it
    has no MR-typed identifier)."""
    born = birthdate.isoformat() if isinstance(birthdate, date) else birthdate
    found = await client.search("Patient", [("given", given), ("family", family), ("birthdate", born)])
    matches = [
        p
        for p in found
        if p.get("resourceType") == "Patient"
        and p.get("birthDate") == born
        and matches_name(p, given, family)
    ]
    mrns = {m for m in (mrn_of(p) for p in matches) if m is not None}
    if len(mrns) > 1:
        raise AmbiguousPatientError("name and birth date", len(mrns))
    return mrns.pop() if mrns else None


async def find_patient_by_mrn(client: FhirClient, mrn: str) -> JsonDict | None:
    """The Patient whose MR-typed identifier is `mrn` (any identifier system)."""
    found = await client.search("Patient", [("identifier", token(mrn))])
    matches = {p["id"]: p for p in found if p.get("resourceType") == "Patient" and mrn_of(p) == mrn}
    if len(matches) > 1:
        raise AmbiguousPatientError("MRN", len(matches))
    return next(iter(matches.values()), None)
