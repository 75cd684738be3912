"""Is a result transcribed from a lab-report PDF already known? (pure)

A printed result duplicates a known one (an Observation of the record, or a row of a document
read earlier in the same run) when all three agree:

* **analyte**: the analyte table maps both codings to one analyte (so an Epic-style local code
  and a LOINC code of the same test match, ``tools.labs.analytes.analyte_for_coding``); codes the
  table does not know match on the same system and code;
* **time**: the same minute when both carry a time of day; the same calendar day in ``tz`` (the
  zone of the report's printed times) when either carries only a date;
* **value**: the same comparator, and numbers equal within half a unit of the last decimal the
  PDF prints (``"1.2"`` covers 1.15 to 1.25), after converting the known value to the PDF's unit
  (``tools.labs.units``, or the analyte's substance conversions); texts equal ignoring case and
  blanks. A unit that cannot be converted is not the same value.

Only the known Observation's collection time counts (``effective[x]``), never ``issued``: a
result with no collection time cannot be shown to be the same draw. Observations that were
entered in error or cancelled are no evidence of anything and are not compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Final

from fhir.resources.R4B.observation import Observation

from tools.labs.analytes import LOINC_SYSTEM, analyte_for_coding, get_analyte
from tools.labs.pdf.model import ExtractedLab
from tools.labs.plausibility import time_problem
from tools.labs.units import UnitConversionError, convert_dimensional, normalize_unit

__all__ = [
    "DuplicateFinder",
    "KnownResult",
    "exact_key",
    "known_from_extracted",
    "known_from_observation",
    "printed_decimals",
    "same_result",
]

_NOT_EVIDENCE: Final = frozenset({"entered-in-error", "cancelled"})
_DIGITS_RE: Final = re.compile(r"\d+(?:[.,]\d+)*")

AnalyteKey = tuple[str, ...]  # ("analyte", key) or ("code", system, code)


@dataclass(frozen=True, slots=True)
class KnownResult:
    """A result already known, reduced to what the duplicate rule compares."""

    reference: str  # "Observation/12", or where an earlier PDF row was printed
    analytes: frozenset[AnalyteKey]
    moment: datetime | None  # aware; None when only a date is known
    day: date  # the calendar day in the report's zone
    value: float | str
    unit: str | None  # normalised (UCUM where known)
    comparator: str | None


def _analyte_key(system: str | None, code: str) -> AnalyteKey:
    found = analyte_for_coding(system, code)
    return ("analyte", found.key) if found is not None else ("code", system or "", code)


def _text(value: str) -> str:
    return " ".join(value.split()).casefold()


def printed_decimals(value_text: str, value: float) -> int:
    """Decimals printed in ``value_text``: ``"4,2"`` -> 1, ``"<0.50"`` -> 2, ``"10,500"`` -> 0."""
    m = _DIGITS_RE.search(value_text)
    if m is None:
        return 0
    token = m.group(0)
    last = max(token.rfind("."), token.rfind(","))
    if last < 0:
        return 0
    decimals = len(token) - last - 1
    digits = int(re.sub(r"[.,]", "", token))
    # "10,500" read as 10500 groups thousands: the comma is no decimal mark.
    return decimals if math.isclose(digits / 10**decimals, abs(value), rel_tol=1e-9) else 0


def _as_moment(value: Any, tz: tzinfo) -> tuple[datetime | None, date] | None:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if time_problem(aware) is not None:
            return None  # 0001-01-01 or 9999-12-31: a placeholder (and no date arithmetic overflows)
        return aware, aware.astimezone(tz).date()
    if isinstance(value, date):
        midnight = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return None if time_problem(midnight) is not None else (None, value)
    return None  # a year or year-month: no day to compare


def known_from_observation(obs: Observation, tz: tzinfo = UTC) -> KnownResult | None:
    """``obs`` as a known result; ``None`` when it has no code, collection time or comparable value."""
    if obs.status in _NOT_EVIDENCE:
        return None
    analytes = frozenset(_analyte_key(c.system, str(c.code)) for c in (obs.code.coding or ()) if c.code)
    if not analytes:
        return None
    start = obs.effectivePeriod.start if obs.effectivePeriod is not None else None
    raw = next((v for v in (obs.effectiveDateTime, obs.effectiveInstant, start) if v is not None), None)
    when = _as_moment(raw, tz)
    if when is None:
        return None
    value: float | str
    unit: str | None = None
    comparator: str | None = None
    q = obs.valueQuantity
    if q is not None and q.value is not None:
        value, unit, comparator = float(q.value), normalize_unit(q.code or q.unit), q.comparator
    elif obs.valueString is not None:
        value = str(obs.valueString)
    elif obs.valueCodeableConcept is not None and obs.valueCodeableConcept.text:
        value = str(obs.valueCodeableConcept.text)
    elif obs.valueCodeableConcept is not None and obs.valueCodeableConcept.coding:
        display = next((c.display for c in obs.valueCodeableConcept.coding if c.display), None)
        if display is None:
            return None
        value = str(display)
    elif obs.valueInteger is not None:
        value = float(obs.valueInteger)
    else:
        return None
    return KnownResult(
        reference=f"Observation/{obs.id}" if obs.id else "Observation/?",
        analytes=analytes,
        moment=when[0],
        day=when[1],
        value=value,
        unit=unit,
        comparator=comparator,
    )


def _pdf_moment(lab: ExtractedLab, tz: tzinfo) -> tuple[datetime | None, date] | None:
    # The printed day is the day in the report's zone: no conversion.
    if lab.effective is None:
        return None
    if lab.effective_time is None:
        return None, lab.effective
    return datetime.combine(lab.effective, lab.effective_time, tzinfo=tz), lab.effective


def known_from_extracted(lab: ExtractedLab, reference: str, tz: tzinfo = UTC) -> KnownResult | None:
    """A printed row as a known result (for documents read later in the same run)."""
    when = _pdf_moment(lab, tz)
    if lab.loinc is None or when is None:
        return None
    return KnownResult(
        reference=reference,
        analytes=frozenset({_analyte_key(LOINC_SYSTEM, lab.loinc)}),
        moment=when[0],
        day=when[1],
        value=lab.value,
        unit=normalize_unit(lab.unit),
        comparator=lab.comparator,
    )


def _same_time(new: tuple[datetime | None, date], old: KnownResult) -> bool:
    moment, day = new
    if moment is not None and old.moment is not None:
        a = moment.astimezone(UTC).replace(second=0, microsecond=0)
        b = old.moment.astimezone(UTC).replace(second=0, microsecond=0)
        return a == b
    return day == old.day


def _same_number(lab: ExtractedLab, value: float, old: KnownResult, shared: frozenset[AnalyteKey]) -> bool:
    half = 0.5 * 10.0 ** -printed_decimals(lab.value_text, value)
    unit = normalize_unit(lab.unit)
    old_value = float(old.value)
    analyte_keys = [k for k in shared if k[0] == "analyte"]
    try:
        if analyte_keys:
            analyte = get_analyte(analyte_keys[0][1])
            if unit == old.unit:
                new_c, old_c, tol = value, old_value, half
            else:
                # Compare in the analyte's unit; the tolerance is carried through the same conversion.
                new_c = analyte.to_canonical(value, unit)
                old_c = analyte.to_canonical(old_value, old.unit)
                tol = abs(analyte.to_canonical(value + half, unit) - new_c)
        elif unit == old.unit:
            new_c, old_c, tol = value, old_value, half
        elif unit is None or old.unit is None:
            return False
        else:
            new_c, old_c, tol = value, convert_dimensional(old_value, old.unit, unit), half
    except UnitConversionError:
        return False
    return abs(new_c - old_c) <= tol * (1 + 1e-9) + 1e-12


def _matches(lab: ExtractedLab, new: KnownResult, old: KnownResult) -> bool:
    shared = new.analytes & old.analytes
    if not shared or (new.comparator or None) != (old.comparator or None):
        return False
    if not _same_time((new.moment, new.day), old):
        return False
    if isinstance(new.value, str) and isinstance(old.value, str):
        return _text(new.value) == _text(old.value)
    if isinstance(new.value, str) or isinstance(old.value, str):
        return False  # a number is never the same result as a text
    return _same_number(lab, new.value, old, shared)


def same_result(lab: ExtractedLab, old: KnownResult, tz: tzinfo = UTC) -> bool:
    """Whether the printed ``lab`` is the known result ``old`` (see the module docstring)."""
    new = known_from_extracted(lab, "new", tz)
    return new is not None and _matches(lab, new, old)


def exact_key(lab: ExtractedLab) -> Hashable:
    """Rows with equal keys are the same printed result (a cumulative report repeating a column)."""
    value = _text(lab.value) if isinstance(lab.value, str) else lab.value
    return (lab.loinc, lab.effective, lab.effective_time, value, normalize_unit(lab.unit), lab.comparator)


class DuplicateFinder:
    """The known results of one run: the record's Observations, then each document's rows as added."""

    def __init__(self, observations: Iterable[Observation], tz: tzinfo = UTC) -> None:
        self.tz = tz
        self._by_analyte: dict[AnalyteKey, list[KnownResult]] = {}
        for obs in observations:
            self._remember(known_from_observation(obs, tz))

    def _remember(self, known: KnownResult | None) -> None:
        if known is not None:
            for key in known.analytes:
                self._by_analyte.setdefault(key, []).append(known)

    def find(self, lab: ExtractedLab) -> str | None:
        """The reference of a known copy of ``lab``, or ``None``."""
        new = known_from_extracted(lab, "new", self.tz)
        if new is None:
            return None
        for key in sorted(new.analytes):
            for old in self._by_analyte.get(key, ()):
                if _matches(lab, new, old):
                    return old.reference
        return None

    def add(self, labs: Sequence[ExtractedLab], reference: str) -> None:
        """Rows of a document now written (or to be written): later documents compare with them."""
        for lab in labs:
            self._remember(known_from_extracted(lab, reference, self.tz))
