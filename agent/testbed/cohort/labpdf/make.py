"""Build a ``LabReport`` (the truth) from planned values: names, units, ranges, flags, identity.

Numeric values are planned in the conventional (US) unit and converted for SI labs. A string
value is printed as given except that its decimal point follows the lab (a comma lab prints
"<0.5" as "<0,5"); a censored string ("<0.5", ">90") is in the printed unit. Everything that
is not planned (report id, patient name, birth date, lab, reporting delay) comes from ``seed``,
unless the caller prints a known patient (``patient_name``, ``birth_date``, ``sex``); the seeded
draws are made either way, so the rest of the report does not depend on the overrides.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final

from agent.testbed.cohort.labpdf.catalog import AnalyteDef, Panel, UnitForm, analyte, panel_keys
from agent.testbed.cohort.labpdf.numbers import format_number, parse_censored, reference_text
from agent.testbed.cohort.labpdf.truth import Flag, LabReport, LabResultTruth

__all__ = ["Dialect", "make_report", "sample_results"]


class Dialect(StrEnum):
    """How a lab prints: units, unit spelling and decimal mark."""

    US = "us"  # mg/dL, 10*3/uL, decimal point
    US_LEGACY = "us_legacy"  # mg/dl, K/uL, decimal point
    SI = "si"  # mmol/L, x10^9/L, decimal point
    SI_COMMA = "si_comma"  # mmol/L, x10^9/L, decimal comma (a European lab)

    @property
    def si(self) -> bool:
        return self in (Dialect.SI, Dialect.SI_COMMA)

    @property
    def decimal_comma(self) -> bool:
        return self is Dialect.SI_COMMA


_LEGACY_SPELLING: Final = {
    "mg/dL": "mg/dl",
    "g/dL": "g/dl",
    "ug/dL": "mcg/dl",
    "10*3/uL": "K/uL",
    "10*6/uL": "M/uL",
}
_LABS: Final = {
    Dialect.US: ("Riverside General Hospital Laboratory", "Mercy Valley Medical Center Lab"),
    Dialect.US_LEGACY: ("Quantum Diagnostics Inc.", "Northstar Clinical Laboratories"),
    Dialect.SI: ("St Aldhelm's Hospital Pathology", "Harbourside Pathology Services"),
    Dialect.SI_COMMA: ("Laboratorium Musterstadt", "Labor Dr. Beispiel MVZ"),
}
_GIVEN: Final = (
    "Avery",
    "Jordan",
    "Casey",
    "Riley",
    "Morgan",
    "Quinn",
    "Taylor",
    "Rowan",
    "Emerson",
    "Hayden",
)
_FAMILY: Final = ("Testperson", "Synthetica", "Example", "Placeholder", "Sampleton", "Mockridge", "Fakeley")
_QUALITATIVE_ABNORMAL: Final = ("trace", "1+", "2+", "positive")


def _printed_unit(form: UnitForm, dialect: Dialect) -> str:
    return _LEGACY_SPELLING.get(form.unit, form.unit) if dialect is Dialect.US_LEGACY else form.unit


def _flag(value: float, form: UnitForm) -> Flag | None:
    if form.low is not None and value < form.low:
        return Flag.LOW
    if form.high is not None and value > form.high:
        return Flag.HIGH
    return None


def _result(
    row: AnalyteDef,
    planned: float | str,
    dialect: Dialect,
    note: str | None,
    panel: str,
    decimals: int | None = None,
) -> LabResultTruth:
    form = row.form(dialect.si)
    places = form.decimals if decimals is None else decimals
    comma = dialect.decimal_comma
    ref_text = row.qualitative or reference_text(form.low, form.high, form.decimals, comma)
    common = {
        "name": row.printed_name(dialect.si),
        "loinc": form.loinc,
        "unit": _printed_unit(form, dialect),
        "ucum": form.ucum,
        "reference_low": form.low,
        "reference_high": form.high,
        "reference_text": ref_text,
        "panel": panel,
        "note": note,
    }
    if isinstance(planned, str):
        text = planned.replace(".", ",") if comma else planned
        censored = parse_censored(text)
        if censored is not None:
            comparator, bound = censored
            return LabResultTruth(value=bound, value_text=text, comparator=comparator, flag=None, **common)
        abnormal = row.qualitative is not None and text != row.qualitative and text != "see note"
        return LabResultTruth(value=None, value_text=text, flag=Flag.ABNORMAL if abnormal else None, **common)
    if row.qualitative is not None:
        raise ValueError(
            f"{row.key} is reported as text ({row.qualitative!r}): plan a string, not {planned!r}"
        )
    value = round(planned * form.factor, places)
    text = format_number(value, places, comma)
    return LabResultTruth(value=value, value_text=text, flag=_flag(value, form), **common)


def make_report(
    patient_id: str,
    collected: datetime,
    results: Mapping[str, float | str],
    seed: int,
    *,
    dialect: Dialect = Dialect.US,
    notes: Mapping[str, str] | None = None,
    report_notes: Iterable[str] = (),
    panel_headers: Mapping[Panel, str] | None = None,
    patient_name: str | None = None,
    birth_date: date | None = None,
    sex: str | None = None,
    decimals: Mapping[str, int] | None = None,
) -> LabReport:
    """The truth of one report with ``results`` (catalog key -> planned value) in catalog panel order.

    ``notes`` maps a key to its footnote (required for a "see note" value); ``panel_headers``
    renames panels (a European lab's "KLINISCHE CHEMIE"). ``patient_name`` ("Family, Given"),
    ``birth_date`` and ``sex`` ("F" or "M") print a given patient instead of a seeded one;
    ``decimals`` prints a key's value with more places than the catalog's (a lab that reports
    cholesterol in mmol/L to 0.01), its reference range as the catalog prints it.
    """
    if sex is not None and sex not in ("F", "M"):
        raise ValueError(f"sex is printed as 'F' or 'M'; got {sex!r}")
    places = dict(decimals or {})
    unplanned = set(places) - set(results)
    if unplanned:
        raise ValueError(f"decimals for analytes without results: {sorted(unplanned)}")
    notes = dict(notes or {})
    for key, planned in results.items():
        if planned == "see note" and key not in notes:
            raise ValueError(f"{key} is 'see note': give its footnote in notes[{key!r}]")
    unknown = set(notes) - set(results)
    if unknown:
        raise ValueError(f"notes for analytes without results: {sorted(unknown)}")
    rows = sorted(
        (analyte(k) for k in results),
        key=lambda r: (list(Panel).index(r.panel), panel_keys(r.panel).index(r.key)),
    )
    headers = dict(panel_headers or {})
    printed = tuple(
        _result(
            r,
            results[r.key],
            dialect,
            notes.get(r.key),
            headers.get(r.panel, r.panel.value),
            places.get(r.key),
        )
        for r in rows
    )
    rng = random.Random(f"labpdf-report:{patient_id}:{seed}")
    # Every seeded draw is made in this order whatever is overridden (the corpus stays byte-identical).
    seeded_birth = date(1935, 1, 1) + timedelta(days=rng.randrange(0, 365 * 65))
    report_id = f"LR{rng.randrange(10**7, 10**8)}"
    seeded_name = f"{rng.choice(_FAMILY)}, {rng.choice(_GIVEN)}"
    seeded_sex = rng.choice(("F", "M"))
    return LabReport(
        report_id=report_id,
        patient_id=patient_id,
        patient_name=seeded_name if patient_name is None else patient_name,
        birth_date=seeded_birth if birth_date is None else birth_date,
        sex=seeded_sex if sex is None else sex,
        collected=collected,
        reported=collected + timedelta(hours=rng.randrange(2, 30), minutes=rng.randrange(0, 60)),
        lab_name=rng.choice(_LABS[dialect]),
        decimal_comma=dialect.decimal_comma,
        results=printed,
        notes=tuple(report_notes),
    )


def sample_results(keys: Iterable[str], seed: int, abnormal_rate: float = 0.2) -> dict[str, float | str]:
    """Plausible planned values (conventional units) for ``keys``; about ``abnormal_rate`` out of range."""
    rng = random.Random(f"labpdf-values:{seed}")
    out: dict[str, float | str] = {}
    for key in keys:
        row = analyte(key)
        if row.qualitative is not None:
            out[key] = rng.choice(_QUALITATIVE_ABNORMAL) if rng.random() < abnormal_rate else row.qualitative
            continue
        low, high = row.us.low, row.us.high
        if low is None and high is None:
            raise ValueError(f"{key} has no reference range to sample from")
        lo = low if low is not None else 0.3 * (high or 0.0)
        hi = high if high is not None else 1.8 * lo
        span = hi - lo
        if rng.random() < abnormal_rate:
            above = low is None or rng.random() < 0.6
            value = (
                hi + span * rng.uniform(0.1, 0.6) if above else max(lo - span * rng.uniform(0.1, 0.4), 0.0)
            )
        else:
            value = rng.uniform(lo + 0.05 * span, hi - 0.05 * span)
        out[key] = value
    return out
