"""A person approves or rejects one of ChartAgent's AI results: a pure plan and one FHIR transaction.

Only ChartAgent's own AI output (AIAST plus our business identifier) of the patient named may be
reviewed: an Observation (a trend, a transcribed lab value, an image box) or a DiagnosticReport
(a summary, an imaging report), while it is ``preliminary``.

- **Approve**: ``status`` -> ``final``, and a new Provenance: ``target`` the version reviewed
  (``Type/id/_history/<version>``), ``recorded`` now, ``activity`` approve, one agent of type
  ``verifier`` whose ``who`` is the reviewer's ``fhirUser``.
- **Reject**: ``status`` -> ``entered-in-error`` (R4's status for a result that should not have
  been recorded); the reviewer's reason in the Provenance's ``reason`` and, on an Observation
  (DiagnosticReport has no ``note`` in R4), in a ``note``.

On the wire, one transaction, atomic:

```
POST {base}  Bundle transaction
  PUT  Observation/{id}   ifMatch: W/"<version read>"      the resource, status changed
  POST Provenance         ifNoneExist: _tag=urn:chartagent:review|<sha256 of (resource, action)>
```

The version check makes a concurrent change (another reviewer, a run retiring the report) fail
the whole transaction with 409/412: nothing is half-written. The Provenance's tag is derived from
the resource and the action only, so the review is idempotent: a second approve of a result
already ``final`` writes nothing and answers with the Provenance found by that tag.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from fhir_adapters import FhirClient, FhirConflict
from fhir_adapters.confirmed import post_transaction
from fhir_adapters.error_tree import BadInputError, ChartAgentError
from tools.text_safety import safe_text
from tools.writeback.ai_labels import AIAST
from tools.writeback.identifiers import AI_OUTPUT_SYSTEM, InputRef, business_identifier

__all__ = [
    "REVIEWABLE_TYPES",
    "REVIEW_SYSTEM",
    "TARGET_STATUS",
    "ReviewAction",
    "ReviewConflict",
    "ReviewOutcome",
    "ReviewPlan",
    "ReviewRefused",
    "apply_review",
    "is_ai_output",
    "plan_review",
    "review_tag",
]

ReviewAction = Literal["approve", "reject"]
REVIEWABLE_TYPES: Final = frozenset({"Observation", "DiagnosticReport"})
TARGET_STATUS: Final[dict[ReviewAction, str]] = {"approve": "final", "reject": "entered-in-error"}
# Provenance has no identifier in R4: the review's identifier travels as a meta.tag (as ours do).
REVIEW_SYSTEM: Final = "urn:chartagent:review"
_ENGINE: Final = "chartagent-review"
REASON_LIMIT: Final = 1000
_PARTICIPANT: Final = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_DATA_OPERATION: Final = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_ACTIVITY_DISPLAY: Final[dict[ReviewAction, str]] = {
    "approve": "Approved by a reviewer",
    "reject": "Rejected by a reviewer",
}


class ReviewRefused(BadInputError):
    """Not a result this patient's reviewer may review (not ours, another patient's, wrong type).
    ``other_patient``: the resource belongs to another patient (answered 403 by the API)."""

    def __init__(self, message: str, *, other_patient: bool = False) -> None:
        super().__init__(message)
        self.other_patient = other_patient


class ReviewConflict(ChartAgentError):
    """The result is not (or no longer) in a state this review applies to."""


class ReviewPlan(BaseModel):
    """What a review does: nothing (``bundle`` None: already in the target status) or the transaction."""

    model_config = ConfigDict(frozen=True)

    reference: str
    action: ReviewAction
    status: str
    tag: str  # "system|value" of the review's Provenance
    bundle: dict[str, Any] | None


class ReviewOutcome(BaseModel):
    """The API's answer: the result's status, its review Provenance, whether this call wrote it."""

    model_config = ConfigDict(frozen=True)

    reference: str
    action: ReviewAction
    status: str
    provenance: str | None = None
    written: bool = Field(description="False: the result was already reviewed so; nothing written")


def review_tag(reference: str, action: ReviewAction) -> str:
    """The review Provenance's tag: one per (resource, action), whoever reviews and whenever."""
    ident = business_identifier(engine=_ENGINE, task=action, inputs=[InputRef(reference=reference)])
    return f"{REVIEW_SYSTEM}|{ident.value}"


def is_ai_output(resource: Mapping[str, Any]) -> bool:
    """Written by ChartAgent (as JSON): AI-labelled (AIAST) and carrying our business identifier."""
    labelled = any(
        s.get("system") == AIAST["system"] and s.get("code") == AIAST["code"]
        for s in (resource.get("meta") or {}).get("security") or []
    )
    return labelled and any(i.get("system") == AI_OUTPUT_SYSTEM for i in resource.get("identifier") or [])


def _subject_is(resource: Mapping[str, Any], patient_id: str) -> bool:
    reference = str((resource.get("subject") or {}).get("reference") or "")
    want = f"Patient/{patient_id}"
    return reference == want or reference.endswith("/" + want)


def _updated(resource: Mapping[str, Any], status: str, note: str | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(resource))
    out["status"] = status
    if note is not None:
        out["note"] = [*(out.get("note") or []), {"text": note}]
    meta = {k: v for k, v in (out.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out["meta"] = meta
    return out


def _provenance(
    *, target: str, action: ReviewAction, reviewer: str, reason: str | None, tag: str, now: datetime
) -> dict[str, Any]:
    system, value = tag.split("|", 1)
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "meta": {"tag": [{"system": system, "code": value}]},
        "target": [{"reference": target}],
        "recorded": now.isoformat(),
        "activity": {
            "coding": [
                {"system": _DATA_OPERATION, "code": "UPDATE", "display": "revise"},
                {"system": REVIEW_SYSTEM, "code": action, "display": _ACTIVITY_DISPLAY[action]},
            ],
            "text": _ACTIVITY_DISPLAY[action],
        },
        "agent": [
            {
                "type": {"coding": [{"system": _PARTICIPANT, "code": "verifier", "display": "Verifier"}]},
                "who": {"reference": reviewer},
            }
        ],
    }
    if reason is not None:
        provenance["reason"] = [{"text": reason}]
    return provenance


def plan_review(
    resource: Mapping[str, Any],
    *,
    patient_id: str,
    action: ReviewAction,
    reviewer: str,
    now: datetime,
    reason: str | None = None,
) -> ReviewPlan:
    """The review of ``resource`` (as the server sent it); raises ``ReviewRefused``/``ReviewConflict``.

    ``reviewer``: the reviewer's ``fhirUser`` (``Practitioner/123``). ``reason``: required to reject.
    """
    rtype, rid = str(resource.get("resourceType")), resource.get("id")
    if rtype not in REVIEWABLE_TYPES or not rid:
        raise ReviewRefused(f"only Observations and DiagnosticReports are reviewed, not {rtype}")
    reference = f"{rtype}/{rid}"
    if not _subject_is(resource, patient_id):
        raise ReviewRefused("not this patient's result", other_patient=True)
    if not is_ai_output(resource):
        raise ReviewRefused(f"{reference} is not ChartAgent's AI output")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if "/" not in reviewer or reviewer.startswith("/"):
        raise ValueError("reviewer must be a reference such as Practitioner/123")
    if action == "reject":
        reason = safe_text(reason, limit=REASON_LIMIT)
        if not reason:
            raise ReviewConflict("a rejection needs a reason")
    else:
        reason = None
    target_status = TARGET_STATUS[action]
    tag = review_tag(reference, action)
    status = str(resource.get("status"))
    if status == target_status:
        return ReviewPlan(reference=reference, action=action, status=status, tag=tag, bundle=None)
    if status != "preliminary":
        raise ReviewConflict(f"{reference} is {status}: only a preliminary result is reviewed")
    version = (resource.get("meta") or {}).get("versionId")
    if not version:
        raise ReviewConflict(f"{reference} has no version to check the review against")
    note = None
    if action == "reject" and rtype == "Observation":
        note = f"Rejected by a reviewer: {reason}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": reference,
                "resource": _updated(resource, target_status, note),
                "request": {"method": "PUT", "url": reference, "ifMatch": f'W/"{version}"'},
            },
            {
                "resource": _provenance(
                    target=f"{reference}/_history/{version}",
                    action=action,
                    reviewer=reviewer,
                    reason=reason,
                    tag=tag,
                    now=now,
                ),
                "request": {"method": "POST", "url": "Provenance", "ifNoneExist": f"_tag={tag}"},
            },
        ],
    }
    return ReviewPlan(reference=reference, action=action, status=target_status, tag=tag, bundle=bundle)


async def _provenance_of(fhir: FhirClient, tag: str) -> str | None:
    found = await fhir.search("Provenance", [("_tag", tag), ("_elements", "id")], count=2)
    ids = sorted(str(p["id"]) for p in found if p.get("resourceType") == "Provenance" and p.get("id"))
    return f"Provenance/{ids[0]}" if ids else None


async def apply_review(
    fhir: FhirClient,
    resource_type: str,
    resource_id: str,
    *,
    patient_id: str,
    action: ReviewAction,
    reviewer: str,
    now: datetime,
    reason: str | None = None,
) -> ReviewOutcome:
    """Read the result, plan the review and post it in one transaction.

    A review that lost a race (the version changed under it) reads the result once more: when the
    other writer did the same review, its outcome is answered; otherwise ``ReviewConflict``.
    """
    for attempt in range(2):
        resource = await fhir.read(resource_type, resource_id)
        if resource.get("resourceType") != resource_type:
            raise ReviewRefused(f"{resource_type}/{resource_id} answered another resource type")
        plan = plan_review(
            resource, patient_id=patient_id, action=action, reviewer=reviewer, now=now, reason=reason
        )
        if plan.bundle is None:
            provenance = await _provenance_of(fhir, plan.tag)
            return ReviewOutcome(
                reference=plan.reference,
                action=action,
                status=plan.status,
                provenance=provenance,
                written=False,
            )
        try:
            result = await post_transaction(fhir, plan.bundle)
        except FhirConflict:
            if attempt == 0:
                continue
            raise ReviewConflict(f"{plan.reference} changed while it was reviewed") from None
        provenance_ref = result.entries[1].reference
        return ReviewOutcome(
            reference=plan.reference,
            action=action,
            status=plan.status,
            provenance=provenance_ref,
            written=True,
        )
    raise ReviewConflict(f"{resource_type}/{resource_id} changed while it was reviewed")
