"""The patient compartment, as the stand-in's proxy enforces it (pure rules; the proxy does I/O).

A resource type is patient data when it has a patient reference field: Patient (its id) and the
types in `PATIENT_FIELD`. Provenance belongs to the compartment of its targets. Every other type
(Practitioner, Organization, Device, Medication, ...) is not patient data: scopes alone govern it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fhir_adapters.error_tree import BadInputError

# The field of each patient-data type that names its patient (and the search parameter, `patient`,
# that sekmet indexes from it for every type listed).
PATIENT_FIELD: Mapping[str, str] = {
    "Observation": "subject",
    "DiagnosticReport": "subject",
    "DocumentReference": "subject",
    "ImagingStudy": "subject",
    "Condition": "subject",
    "MedicationRequest": "subject",
    "Encounter": "subject",
    "Procedure": "subject",
    "Immunization": "patient",
    "AllergyIntolerance": "patient",
}
# Search parameters that name the patient of a compartment type (with or without a modifier).
PATIENT_SEARCH_PARAMS = frozenset({"patient", "subject"})


class CompartmentRefused(BadInputError):
    """The request reaches outside the token's patient compartment. The message names no patient."""


def is_patient_data(resource_type: str) -> bool:
    return resource_type == "Patient" or resource_type in PATIENT_FIELD or resource_type == "Provenance"


def parse_reference(ref: str) -> tuple[str, str] | None:
    """("Observation", "42") for `Observation/42`, an absolute URL ending so, or a versioned one."""
    parts = ref.split("?")[0].rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return parts[-2], parts[-1]


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """The patient id a Patient or a `PATIENT_FIELD` resource belongs to (None: none named)."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    field = PATIENT_FIELD.get(str(rtype))
    ref = resource.get(field) if field else None
    if not isinstance(ref, Mapping) or not isinstance(ref.get("reference"), str):
        return None
    parsed = parse_reference(ref["reference"])
    return parsed[1] if parsed is not None and parsed[0] == "Patient" else None


def provenance_targets(resource: Mapping[str, Any]) -> list[str]:
    targets = resource.get("target")
    if not isinstance(targets, Sequence):
        return []
    return [t["reference"] for t in targets if isinstance(t, Mapping) and isinstance(t.get("reference"), str)]


def directly_in(resource: Mapping[str, Any], patient_id: str) -> bool | None:
    """True/False for a Patient or `PATIENT_FIELD` resource; None for Provenance (its targets decide,
    see `targets_verdict`) and for types that are not patient data."""
    rtype = str(resource.get("resourceType"))
    if rtype == "Patient" or rtype in PATIENT_FIELD:
        return patient_of(resource) == patient_id
    return None


def targets_verdict(verdicts: Iterable[bool | None]) -> bool:
    """A Provenance is in the compartment when one target is and none is outside it."""
    seen = list(verdicts)
    return True in seen and False not in seen


def pin_search(resource_type: str, params: list[tuple[str, str]], patient_id: str) -> list[tuple[str, str]]:
    """The search parameters, restricted to the patient: a patient named in them must be this one;
    none named -> `_id` (Patient) or `patient` (compartment types) is added. Provenance searches are
    left as they are: the proxy filters their results by target."""
    if resource_type == "Patient":
        ids = [v for k, v in params if k.split(":")[0] == "_id"]
        if any(set(v.split(",")) != {patient_id} for v in ids):
            raise CompartmentRefused("search names another patient")
        return params if ids else [*params, ("_id", patient_id)]
    if resource_type not in PATIENT_FIELD:
        return params
    named = [v for k, v in params if k.split(":")[0] in PATIENT_SEARCH_PARAMS]
    for value in named:
        for one in value.split(","):
            parsed = parse_reference(one) if "/" in one else ("Patient", one)
            if parsed != ("Patient", patient_id):
                raise CompartmentRefused("search names another patient")
    return params if named else [*params, ("patient", f"Patient/{patient_id}")]
