"""The strings one fuzzed row prints, and what a perfect reader derives from them (pure).

A ``PrintedRow`` holds a result of a ``LabReport`` re-spelled by a ``FuzzStyle``: the name
(qualified, wrapped), the value (decimal comma, thousands separators, counts per microlitre),
the unit spelling, the range and the flag mark, next to the truth fields that do not depend on
the spelling (LOINC, UCUM, numbers, flag code).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from agent.testbed.cohort.labpdf.catalog import CATALOG
from agent.testbed.cohort.labpdf.fuzz.style import FlagStyle, FuzzStyle
from agent.testbed.cohort.labpdf.truth import LabResultTruth

__all__ = ["PrintedRow", "decimals_of", "format_value", "printed_row"]

# Names with the qualifiers labs print ("PSA, total"): the same test, the same LOINC code.
_QUALIFIED: Final = {
    "PSA, Total": "PSA, total",
    "TSH": "TSH, 3rd generation",
    "Hemoglobin A1c": "Hemoglobin A1c (NGSP)",
    "Creatinine": "Creatinine, serum",
    "Ferritin": "Ferritin, serum",
    "Sodium": "Sodium, serum",
    "Potassium": "Potassium, serum",
    "Iron": "Iron, serum",
    "Magnesium": "Magnesium, serum",
    "Vitamin B12": "Vitamin B12 (cobalamin)",
    "Hemoglobin": "Hemoglobin (Hb)",
}
# Other spellings of one unit, keyed by the catalog's printed unit.
_SPELLINGS: Final = {
    "mg/dL": ("mg/dl",),
    "g/dL": ("g/dl",),
    "ug/dL": ("µg/dL", "mcg/dL"),
    "mmol/L": ("mmol/l",),
    "umol/L": ("µmol/L", "µmol/l"),
    "nmol/L": ("nmol/l",),
    "pmol/L": ("pmol/l",),
    "10*3/uL": ("K/uL", "x10E3/uL", "10^3/µL", "thou/uL"),
    "10*6/uL": ("M/uL", "x10E6/uL", "10^6/µL"),
    "x10^9/L": ("10^9/L", "x10E9/L"),
    "x10^12/L": ("10^12/L", "x10E12/L"),
    "g/L": ("g/l",),
    "U/L": ("U/l", "IU/L"),
    "uIU/mL": ("µIU/mL",),
    "mIU/L": ("mIU/l",),
    "ng/mL": ("ng/ml",),
    "pg/mL": ("pg/ml",),
    "ng/L": ("ng/l",),
    "ug/L": ("µg/L",),
    "mg/L": ("mg/l",),
    "ng/dL": ("ng/dl",),
    "sec": ("s", "seconds"),
    "mm/h": ("mm/hr",),
    "fL": ("fl",),
    "mL/min/1.73m2": ("mL/min/1.73 m2", "ml/min/1.73m2"),
}
_COUNT_UNITS: Final = ("/uL", "/µL")  # a count per microlitre, printed in full ("7,200 /uL")
_ARROWS: Final = {"H": "↑", "HH": "↑↑", "L": "↓", "LL": "↓↓"}
_WRAP_AT: Final = 16  # names longer than this wrap when the style wraps


@dataclass(frozen=True, slots=True)
class PrintedRow:
    """One result as printed, with the truth a perfect reader returns for it."""

    key: str  # catalog key
    name_lines: tuple[str, ...]  # the name as printed, one string per line
    value_text: str
    unit_text: str
    range_text: str
    mark: str  # flag mark printed ("H", "*", an arrow; "" when none or bold)
    bold: bool  # the value printed in bold (abnormal)
    truth: LabResultTruth  # name, value, unit and range here are the printed ones
    flag: str | None  # H, L, HH, LL, A: what a perfect reader returns
    families: tuple[str, ...]

    @property
    def name(self) -> str:
        return " ".join(self.name_lines)


def format_value(value: float, places: int, comma: bool, thousands: bool) -> str:
    """``value`` with ``places`` decimals, a decimal comma or point, thousands grouped when asked."""
    text = f"{value:,.{places}f}" if thousands else f"{value:.{places}f}"
    return text.replace(",", " ").replace(".", ",").replace(" ", ".") if comma else text


def decimals_of(text: str) -> int:
    digits = text.lstrip("<>=")
    for mark in (".", ","):
        if mark in digits:
            return len(digits.split(mark)[1])
    return 0


def _range(low: float | None, high: float | None, places: int, style: FuzzStyle, thousands: bool) -> str:
    def num(v: float) -> str:
        return format_value(v, places, style.decimal_comma, thousands)

    dash = " - " if style.spaced_ranges else "-"
    if low is not None and high is not None:
        return f"{num(low)}{dash}{num(high)}"
    if high is not None:
        return f"<{' ' if style.spaced_ranges else ''}{num(high)}"
    if low is not None:
        return f">{' ' if style.spaced_ranges else ''}{num(low)}"
    return ""


def _flag(result: LabResultTruth, value: float | None, style: FuzzStyle) -> str | None:
    if result.flag is None:
        return None
    flag = result.flag.value
    if style.flag_style is FlagStyle.STAR:
        return "A"
    if style.flag_style is FlagStyle.CRITICAL and value is not None and flag in ("H", "L"):
        low, high = result.reference_low, result.reference_high
        span = (high - low) if low is not None and high is not None else (high or low or 0.0)
        if flag == "H" and high is not None and value > high + 0.35 * span:
            return "HH"
        if flag == "L" and low is not None and value < low - 0.25 * span:
            return "LL"
    return flag


def _mark(flag: str | None, style: FuzzStyle) -> str:
    if flag is None or style.flag_style is FlagStyle.BOLD:
        return ""
    if style.flag_style is FlagStyle.STAR:
        return "*"
    if style.flag_style is FlagStyle.ARROWS:
        return _ARROWS.get(flag, flag)
    return flag


def _wrap(name: str) -> tuple[str, ...]:
    words = name.split()
    if len(name) <= _WRAP_AT or len(words) < 2:
        return (name,)
    cut = max(1, len(words) // 2)
    return (" ".join(words[:cut]), " ".join(words[cut:]))


def printed_row(result: LabResultTruth, key: str, style: FuzzStyle, rng: random.Random) -> PrintedRow:
    """``result`` (as ``make_report`` planned it) re-spelled by ``style``."""
    families: list[str] = []
    form_unit = result.unit
    form = next((f for f in (CATALOG[key].us, CATALOG[key].si) if f.ucum == result.ucum), CATALOG[key].us)
    catalog_unit = form.unit
    places = decimals_of(result.value_text)
    ref_places = form.decimals
    value, low, high = result.value, result.reference_low, result.reference_high
    unit_text, ucum, thousands = form_unit, result.ucum, False
    if style.thousands and result.ucum == "10*3/uL" and value is not None and result.comparator is None:
        # A count per microlitre in full: 7.2 x10^3/uL printed as "7,200 /uL".
        value, places, ref_places, thousands = round(value * 1000), 0, 0, True
        low = None if low is None else round(low * 1000)
        high = None if high is None else round(high * 1000)
        unit_text, ucum = rng.choice(_COUNT_UNITS), "/uL"
        families.append("numbers:thousands")
    elif style.alt_units and catalog_unit in _SPELLINGS:
        unit_text = rng.choice(_SPELLINGS[catalog_unit])
        families.append("units:spelling")
    if value is None:
        value_text = result.value_text
    else:
        prefix = result.comparator.value if result.comparator else ""
        if prefix and style.spaced_ranges:
            prefix += " "  # "< 0.5": the comparator a word of its own
            families.append("numbers:spaced-comparator")
        value_text = prefix + format_value(value, places, style.decimal_comma, thousands)
    if not style.prints_range:
        range_text, low, high = "", None, None
    elif CATALOG[key].qualitative is not None:
        range_text = result.reference_text
    else:
        range_text = _range(low, high, ref_places, style, thousands)
    name = result.name
    if style.qualifiers and name in _QUALIFIED:
        name = _QUALIFIED[name]
        families.append("name:qualifier")
    lines = _wrap(name) if style.wrap_names else (name,)
    if len(lines) > 1:
        families.append("name:wrapped")
    flag = _flag(result, result.value, style)
    if flag is not None:
        families.append(f"flag:{style.flag_style}")
    truth = replace_truth(result, name, value, value_text, unit_text, ucum, low, high, range_text)
    return PrintedRow(
        key=key,
        name_lines=lines,
        value_text=value_text,
        unit_text=unit_text,
        range_text=range_text,
        mark=_mark(flag, style),
        bold=flag is not None and style.flag_style is FlagStyle.BOLD,
        truth=truth,
        flag=flag,
        families=tuple(families),
    )


def replace_truth(
    result: LabResultTruth,
    name: str,
    value: float | None,
    value_text: str,
    unit_text: str,
    ucum: str | None,
    low: float | None,
    high: float | None,
    range_text: str,
) -> LabResultTruth:
    """``result`` with the printed strings and the numbers derived from them."""
    return result.model_copy(
        update={
            "name": name,
            "value": value,
            "value_text": value_text,
            "unit": unit_text,
            "ucum": ucum,
            "reference_low": low,
            "reference_high": high,
            "reference_text": range_text,
        }
    )
