"""One line of text and its citation for a FHIR resource (pure): what a tool tells a model.

Record text (displays, units, notes) is made safe (`tools.text_safety`) and short. It stays data:
the planner reads it inside tool results, never as an instruction.
"""

from __future__ import annotations

from typing import Any, Final

from fhir.resources.R4B.resource import Resource

from tools.narrative import format_number, unit_display
from tools.record import codes_of, effective_time
from tools.registry.model import Citation, ToolFact
from tools.text_safety import safe_text

__all__ = ["code_label", "describe", "reference_of"]

_TEXT_LIMIT: Final = 120


def reference_of(res: Resource) -> str:
    return f"{res.get_resource_type()}/{res.id}"


def code_label(res: Resource) -> str:
    """The main code's display (else its code), safe and short."""
    codes = sorted(codes_of(res.get_resource_type(), res), key=lambda c: (c[2] is None, str(c)))
    for system, code, display in codes:
        label = safe_text(display or code or system, limit=_TEXT_LIMIT)
        if label:
            return label
    return "(no code)"


def _status(res: Resource) -> str | None:
    for path in ("clinicalStatus", "status"):
        value: Any = getattr(res, path, None)
        if value is None:
            continue
        if isinstance(value, str):
            return safe_text(value, limit=30)
        coding = getattr(value, "coding", None) or []
        if coding and coding[0].code:
            return safe_text(coding[0].code, limit=30)
    return None


def _quantity(res: Resource) -> tuple[float | str | None, str | None]:
    quantity = getattr(res, "valueQuantity", None)
    if quantity is not None and quantity.value is not None:
        unit = quantity.code or quantity.unit
        return float(quantity.value), safe_text(unit, limit=30) or None if unit else None
    concept = getattr(res, "valueCodeableConcept", None)
    if concept is not None:
        text = concept.text or (concept.coding[0].display if concept.coding else None)
        return (safe_text(text, limit=_TEXT_LIMIT) or None), None
    string = getattr(res, "valueString", None)
    if isinstance(string, str):
        return safe_text(string, limit=_TEXT_LIMIT) or None, None
    return None, None


def describe(res: Resource) -> ToolFact:
    """`Observation Hemoglobin A1c: 7.2 % on 2024-05-01 (final)`, cited with value and time."""
    rtype = res.get_resource_type()
    when = effective_time(rtype, res)
    value, unit = _quantity(res) if rtype == "Observation" else (None, None)
    parts = [f"{rtype} {code_label(res)}"]
    if value is not None:
        shown = format_number(value) if isinstance(value, float) else value
        parts[0] += f": {shown}" + (f" {unit_display(unit)}" if unit else "")
    if when is not None:
        parts.append(f"on {when.date().isoformat()}")
    status = _status(res)
    if status:
        parts.append(f"({status})")
    citation = Citation(
        reference=reference_of(res),
        value=value,
        unit=unit,
        time=when.isoformat() if when is not None else None,
    )
    return ToolFact(text=" ".join(parts), citations=(citation,))
