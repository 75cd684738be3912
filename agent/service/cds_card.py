"""The CDS Hooks 2.0 `patient-view` answer: at most one card, from ChartAgent's latest AI summary (pure).

The card shows what a run already wrote to the chart; nothing here computes or asks a model
(agent.service.cds_hooks reads the resources, this module only formats them). Its summary is the
report's conclusion cut to 140 characters on a word boundary; its detail says the text is
AI-generated and whether a clinician has approved it (status final) or not (preliminary).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from pydantic import BaseModel, ConfigDict, Field

from tools.writeback.builders import DIRECTION_SYSTEM, TREND_CODE_SYSTEM
from tools.writeback.summaries import newest_summary

__all__ = [
    "SOURCE_LABEL",
    "SUMMARY_MAX_CHARS",
    "Card",
    "CardLink",
    "CardSource",
    "CdsResponse",
    "current_summary_of",
    "summary_card",
    "summary_response",
    "trim_summary",
    "worsened_analytes",
]

# CDS Hooks 2.0: a card's summary "SHALL be <140 characters"; the issue asks for at most 140.
SUMMARY_MAX_CHARS: Final = 140
# The detail repeats the whole conclusion up to this length (an EHR shows it in a side panel).
DETAIL_MAX_CHARS: Final = 2000
SOURCE_LABEL: Final = "ChartAgent (AI-generated, MedGemma)"
_ELLIPSIS: Final = "\u2026"
# Card ids are derived from the report's reference and version: one card per report version.
_CARD_NAMESPACE: Final = uuid.UUID("5b0c1f0e-8f0a-4d4e-9a57-3c2f6f6b7a11")


class CardSource(BaseModel):
    label: str


class CardLink(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    label: str
    url: str
    type: Literal["absolute", "smart"]
    # Passed by the EHR to the launched app (SMART `appContext`): which report the card is about.
    app_context: str | None = Field(default=None, alias="appContext")


class Card(BaseModel):
    uuid: str
    summary: str = Field(max_length=SUMMARY_MAX_CHARS)
    detail: str
    indicator: Literal["info", "warning", "critical"]
    source: CardSource
    links: list[CardLink]


class CdsResponse(BaseModel):
    cards: list[Card] = Field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The wire form (CDS Hooks field names; no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def trim_summary(text: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """`text` on one line, at most `limit` characters: cut at the last word boundary that fits,
    with an ellipsis; a single word longer than the limit is cut inside it."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    room = flat[: limit - len(_ELLIPSIS) + 1]  # one more: a space there means the word ended
    cut = room.rfind(" ")
    head = room[:cut] if cut > 0 else room[: limit - len(_ELLIPSIS)]
    return head.rstrip(" ,;:-") + _ELLIPSIS


def worsened_analytes(trends: Iterable[Observation]) -> list[str]:
    """The analytes of the trend Observations whose direction is `worsened` (in their order)."""
    names: list[str] = []
    for obs in trends:
        direction = analyte = None
        for comp in obs.component or ():
            codes = {c.code for c in comp.code.coding or () if c.system == TREND_CODE_SYSTEM}
            value = comp.valueCodeableConcept
            if value is None:
                continue
            if "direction" in codes:
                direction = next((c.code for c in value.coding or () if c.system == DIRECTION_SYSTEM), None)
            elif "analyte" in codes:
                analyte = value.text or next((c.display for c in value.coding or () if c.display), None)
        if direction == "worsened":
            names.append(analyte or "a result")
    return names


def _status_line(status: str) -> str:
    if status == "final":
        return "Status: **final** (approved by a clinician)."
    return f"Status: **{status}** (not yet reviewed by a clinician; verify before clinical use)."


def summary_card(report: DiagnosticReport, trends: Sequence[Observation], *, launch_url: str) -> Card:
    """The card of one summary report; `trends`: its result Observations (for the indicator)."""
    reference = f"DiagnosticReport/{report.id}"
    conclusion = (report.conclusion or "").strip() or (report.code.text or "Laboratory trend summary")
    worse = worsened_analytes(trends)
    detail = [
        "AI-generated summary of the laboratory trends in the chart (ChartAgent, MedGemma).",
        _status_line(str(report.status)),
    ]
    if worse:
        detail.append(f"Worsened: {', '.join(worse)}.")
    detail.append("")
    detail.append(trim_summary(conclusion, DETAIL_MAX_CHARS))
    version = report.meta.versionId if report.meta is not None else None
    return Card(
        uuid=str(uuid.uuid5(_CARD_NAMESPACE, f"{reference}/_history/{version or ''}")),
        summary=trim_summary(conclusion),
        detail="\n".join(detail),
        indicator="warning" if worse else "info",
        source=CardSource(label=SOURCE_LABEL),
        links=[
            CardLink(
                label="Open ChartAgent",
                url=launch_url,
                type="smart",
                app_context=json.dumps({"summary": reference}),
            )
        ],
    )


def _about(resource: Any, patient_id: str) -> bool:
    """The resource's subject is the patient (servers may give absolute references)."""
    subject = getattr(getattr(resource, "subject", None), "reference", None) or ""
    return subject == f"Patient/{patient_id}" or subject.endswith(f"/Patient/{patient_id}")


def current_summary_of(resources: Iterable[Any], patient_id: str) -> DiagnosticReport | None:
    """The newest current AI summary among `resources` that is about `patient_id`."""
    return newest_summary(r for r in resources if _about(r, patient_id))


def summary_response(resources: Iterable[Any], *, patient_id: str, launch_url: str) -> CdsResponse:
    """The hook's answer from a patient's DiagnosticReports (and their `_include`d results):
    one card for the newest current AI summary of `patient_id`, or none."""
    items = list(resources)
    report = current_summary_of(items, patient_id)
    if report is None:
        return CdsResponse()
    wanted = {r.reference for r in report.result or () if r.reference}
    trends = [o for o in items if isinstance(o, Observation) and f"Observation/{o.id}" in wanted]
    return CdsResponse(cards=[summary_card(report, trends, launch_url=launch_url)])
