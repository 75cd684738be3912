"""The bad-record corpus shared by tests/unit/test_summarize_bad_records.py (in-memory FHIR
handler) and tests/integration/test_bad_records.py (the real embedded server): the Observation
builder, the good results that must still trend, the bad results that must each be reported
with a reason, and the check that no control or bidi character reaches the output."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
LOCAL = "urn:oid:1.2.3.4.local-lab"
# C0 controls but tab and newlines, DEL, CSI, and the bidi embeddings, overrides, isolates and marks.
UNSAFE = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + [
    "\x7f",
    "\x9b",
    *"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
]
# An escape and a bidi override in the Vitamin D results' unit: they must not reach the output.
VITAMIN_D_UNIT = "ng/mL\x1b\u202e"


def mg_dl(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}


def observation(
    oid: str,
    patient: str,
    when: str | None,
    quantity: dict[str, Any] | None,
    *,
    code: str = "2160-0",
    system: str = LOINC,
    display: str | None = None,
    category: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A final Observation; `category` is an observation-category code ("laboratory")."""
    coding: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    body: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final"}
    if category is not None:
        kind = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}
        body["category"] = [{"coding": [kind]}]
    body |= {"subject": {"reference": f"Patient/{patient}"}, "code": {"coding": [coding]}, **extra}
    if when is not None:
        body["effectiveDateTime"] = when
    if quantity is not None:
        body["valueQuantity"] = quantity
    return body


def local_pair(
    p: str, prefix: str, code: str, display: str, unit: str, *, category: str | None = None
) -> list[dict[str, Any]]:
    """Two results of a local code the analyte table does not know: its name and unit come
    from the record into the output."""
    return [
        observation(
            f"{p}-{prefix}{i}",
            p,
            when,
            {"value": v, "unit": unit},
            code=code,
            system=LOCAL,
            display=display,
            category=category,
        )
        for i, (v, when) in enumerate([(18.0, "2024-02-01"), (34.0, "2024-09-01")])
    ]


def good(p: str, vitamin_d: str, *, category: str | None = None) -> list[dict[str, Any]]:
    """Three creatinine results that worsen (1.0, 1.3, 1.6 mg/dL, the last on 2025-01-10) and
    two Vitamin D results under a local code named `vitamin_d`."""
    return [
        observation(f"{p}-cr1", p, "2024-01-10T08:00:00Z", mg_dl(1.0), category=category),
        observation(f"{p}-cr2", p, "2024-06-10T08:00:00Z", mg_dl(1.3), category=category),
        observation(f"{p}-cr3", p, "2025-01-10T08:00:00Z", mg_dl(1.6), category=category),
        *local_pair(p, "vd", "VITD25", vitamin_d, VITAMIN_D_UNIT, category=category),
    ]


# id suffix -> (changes to a good creatinine result, the reason reported); each test module
# adds its own cases, among them a year-9999 time.
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "year1": ({"effectiveDateTime": "0001-01-01"}, "implausible-time"),
    "future": ({"effectiveDateTime": "2099-01-01"}, "implausible-time"),
    "old": ({"effectiveDateTime": "1850-03-01"}, "implausible-time"),
    "negative": ({"valueQuantity": mg_dl(-5.0)}, "implausible-value"),
    "huge": ({"valueQuantity": mg_dl(1e308)}, "implausible-value"),
    "tiny": ({"valueQuantity": mg_dl(1e-300)}, "implausible-value"),
    "banana": ({"valueQuantity": {"value": 1.2, "unit": "banana"}}, "unit"),
    "kg": ({"valueQuantity": {"value": 1.2, "unit": "kg", "code": "kg"}}, "unit"),
    "novalue": ({"valueQuantity": {"unit": "mg/dL"}}, "no-value"),
    "approx": ({"valueQuantity": mg_dl(1.2) | {"comparator": "~"}}, "censored"),
    "yearonly": ({"effectiveDateTime": "2024"}, "no-time"),
}


def changed(
    p: str, changes: dict[str, dict[str, Any]], *, category: str | None = None
) -> list[dict[str, Any]]:
    """A creatinine result of 2024-03-01 once per id suffix, with that suffix's changes."""
    base = observation("", p, "2024-03-01T08:00:00Z", mg_dl(1.2), category=category)
    return [base | {"id": f"{p}-{suffix}"} | change for suffix, change in changes.items()]


def strings(node: Any, *, attachments: bool = True) -> list[str]:
    """Every string in a JSON value; with `attachments`, a text attachment's base64 `data` is
    decoded in its place."""
    if isinstance(node, dict):
        found = [
            s
            for k, v in node.items()
            if not (attachments and k == "data")
            for s in strings(v, attachments=attachments)
        ]
        if attachments and str(node.get("contentType", "")).startswith("text/") and "data" in node:
            found.append(base64.b64decode(node["data"]).decode("utf-8"))
        return found
    if isinstance(node, list):
        return [s for v in node for s in strings(v, attachments=attachments)]
    return [node] if isinstance(node, str) else []
