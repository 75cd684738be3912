"""Lab and vital-sign series from FHIR R4 Observations (pure).

``build_series`` groups numeric results into one ``LabSeries`` per analyte when the analyte
table knows the code (so LOINC 2345-7 and a local ``GLU`` form one glucose series), else per
(system, code). Blood-pressure panels contribute their components (8480-6, 8462-4).

Kept: status final, amended, corrected or preliminary, a numeric ``valueQuantity`` without a
comparator, an effective time, an id (a point must be citable in ``derivedFrom``), a value and
a time that are physically plausible (``tools.labs.plausibility``). Everything else is listed in
``skipped`` with its reason, never dropped silently; ``SeriesSet.excluded()`` gives the skipped
results that carried a quantity (``REPORTED_REASONS``: no value, a comparator, no usable time,
a unit that does not convert, an implausible value or time, no valid code), which the facts and
the report list by reference. Reasons name units and limits, never the value or the date.

A second result at the same time with the same value is a duplicate (one draw reported twice,
e.g. by the lab's feed and transcribed from its PDF report); reported in different units, "the
same value" allows for the rounding of the printed value (0.5 %). Points are converted to the
series unit: the analyte's canonical unit, or for unknown codes the unit most of the
points carry (other units of the same dimension are converted, the rest skipped).

Effective time: ``effectiveDateTime``, ``effectiveInstant``, ``effectivePeriod.start``, then
``issued``. A date without time is read as midnight UTC; a date-time without offset (not
allowed by FHIR, but sent by some servers) as UTC; a year or year-month is too imprecise for a
trend and is skipped.

Record text that reaches the output (display names, units, codes) goes through
``tools.text_safety.safe_text``; a coding whose code or system carries characters that FHIR or a
reader cannot take (controls, bidi overrides, blanks) is not used.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any, Final

from fhir.resources.R4B.observation import Observation
from pydantic import AwareDatetime, BaseModel, ConfigDict

from fhir_adapters.error_tree import BadInputError
from tools.labs.analytes import ANALYTES, LOINC_SYSTEM, Analyte, analyte_for_coding, get_analyte
from tools.labs.plausibility import time_problem, value_problem
from tools.labs.units import UnitConversionError, convert_dimensional, normalize_unit
from tools.text_safety import safe_text

__all__ = [
    "REPORTED_REASONS",
    "USABLE_STATUSES",
    "LabPoint",
    "LabSeries",
    "MixedSubjectsError",
    "SeriesSet",
    "SkipReason",
    "SkippedPoint",
    "build_series",
]

USABLE_STATUSES: Final = frozenset({"final", "amended", "corrected", "preliminary"})


class MixedSubjectsError(BadInputError):
    """Observations of more than one subject were passed: a series is one patient's."""


class SkipReason(StrEnum):
    STATUS = "status"
    NO_ID = "no-id"
    NO_CODE = "no-code"
    NOT_NUMERIC = "not-numeric"  # no valueQuantity: a coded or text result, not a number
    NO_VALUE = "no-value"  # a valueQuantity without a value
    CENSORED = "censored"  # a comparator such as "<0.2": not an exact value
    NO_TIME = "no-time"
    IMPLAUSIBLE_TIME = "implausible-time"  # before 1900 or in the future (tools.labs.plausibility)
    UNIT = "unit"
    IMPLAUSIBLE_VALUE = "implausible-value"  # not finite, negative, beyond physical limits
    DUPLICATE = "duplicate"


# Results that carried a quantity but could not be a trend point: reported by reference in the
# facts and the report. Not reported: other statuses (cancelled, entered-in-error), results that
# are not numbers, duplicates (the same draw, kept once) and results without an id.
REPORTED_REASONS: Final = frozenset(
    {
        SkipReason.NO_CODE,
        SkipReason.NO_VALUE,
        SkipReason.CENSORED,
        SkipReason.NO_TIME,
        SkipReason.IMPLAUSIBLE_TIME,
        SkipReason.UNIT,
        SkipReason.IMPLAUSIBLE_VALUE,
    }
)
# Caps for record text: a display name, and a unit quoted in a reason.
DISPLAY_LIMIT: Final = 160
UNIT_LIMIT: Final = 40


class SkippedPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    observation_id: str | None
    code: str | None
    reason: SkipReason
    detail: str


class LabPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    time: AwareDatetime
    value: float  # in the series unit
    original_value: float
    original_unit: str | None
    observation_id: str
    # meta.versionId, else meta.lastUpdated: what identifies the exact input version.
    observation_version: str | None = None
    reference_low: float | None = None  # in the series unit
    reference_high: float | None = None
    interpretation: str | None = None  # first interpretation code, e.g. "H"

    @property
    def reference(self) -> str:
        return f"Observation/{self.observation_id}"


class LabSeries(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    system: str | None
    display: str
    unit: str | None
    analyte_key: str | None
    subject: str | None = None
    points: tuple[LabPoint, ...] = ()
    skipped: tuple[SkippedPoint, ...] = ()

    @property
    def analyte(self) -> Analyte | None:
        return None if self.analyte_key is None else get_analyte(self.analyte_key)

    def window(self, start: datetime | None = None, end: datetime | None = None) -> LabSeries:
        """The same series restricted to ``start <= time <= end``."""
        kept = tuple(
            p for p in self.points if (start is None or p.time >= start) and (end is None or p.time <= end)
        )
        return self.model_copy(update={"points": kept})


class SeriesSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str | None
    series: tuple[LabSeries, ...]
    skipped: tuple[SkippedPoint, ...]  # results that belong to no numeric series

    def by_analyte(self, key: str) -> LabSeries | None:
        return next((s for s in self.series if s.analyte_key == key), None)

    def by_code(self, code: str, system: str | None = LOINC_SYSTEM) -> LabSeries | None:
        return next((s for s in self.series if s.code == code and s.system == system), None)

    def excluded(self) -> tuple[SkippedPoint, ...]:
        """The skipped results to report (``REPORTED_REASONS``), from the set and every series,
        in a stable order (by id, code, reason): the same record gives the same list."""
        found = {
            p
            for p in (*self.skipped, *(p for s in self.series for p in s.skipped))
            if p.reason in REPORTED_REASONS
        }
        return tuple(sorted(found, key=lambda p: (p.observation_id or "", p.code or "", p.reason, p.detail)))


@dataclass(frozen=True, slots=True)
class _Raw:
    """One numeric measurement before unit conversion."""

    group: tuple[str, str | None, str]  # ("analyte", None, key) or ("code", system, code)
    system: str | None
    code: str
    display: str | None
    value: float
    unit: str | None
    ref_low: tuple[float, str | None] | None
    ref_high: tuple[float, str | None] | None
    when: datetime
    obs_id: str
    version: str | None
    interpretation: str | None


def _effective_time(obs: Observation) -> datetime | str | None:
    """An aware datetime, or a string saying why there is none usable."""
    period_start = obs.effectivePeriod.start if obs.effectivePeriod is not None else None
    raw: object = next(
        (v for v in (obs.effectiveDateTime, obs.effectiveInstant, period_start, obs.issued) if v is not None),
        None,
    )
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
    if isinstance(raw, date):
        return datetime.combine(raw, time(0), tzinfo=UTC)
    return "effective time is a year or a month only: too imprecise for a trend"


def _version(obs: Observation) -> str | None:
    if obs.meta is None:
        return None
    if obs.meta.versionId:
        return str(obs.meta.versionId)
    last: object = obs.meta.lastUpdated
    return last.isoformat() if isinstance(last, datetime) else (None if last is None else str(last))


def _first_code(concept: Any) -> str | None:
    for c in getattr(concept, "coding", None) or ():
        if c.code:
            return str(c.code)
    return None


def _range_bounds(
    ranges: Sequence[Any] | None,
) -> tuple[tuple[float, str | None] | None, tuple[float, str | None] | None]:
    for rr in ranges or ():
        low = rr.low
        high = rr.high
        if (low is not None and low.value is not None) or (high is not None and high.value is not None):
            return (
                None if low is None or low.value is None else (float(low.value), low.code or low.unit),
                None if high is None or high.value is None else (float(high.value), high.code or high.unit),
            )
    return None, None


def _clean_token(token: Any, limit: int) -> bool:
    """A code or system that output can carry as it is: no blanks at the ends, nothing unsafe."""
    text = str(token)
    return 0 < len(text) <= limit and safe_text(text, limit=None) == text


def _usable_coding(c: Any) -> bool:
    if not c.code or not _clean_token(c.code, 256):
        return False
    return c.system is None or (_clean_token(c.system, 1024) and " " not in str(c.system))


def _group_for(
    codings: Sequence[Any],
) -> tuple[tuple[str, str | None, str], str | None, str, str | None] | None:
    """(group key, system, code, display) from a CodeableConcept's codings, analyte first."""
    usable = [c for c in codings if _usable_coding(c)]
    for c in usable:
        found = analyte_for_coding(c.system, c.code)
        if found is not None:
            return ("analyte", None, found.key), c.system, str(c.code), c.display
    if not usable:
        return None
    chosen = next((c for c in usable if c.system == LOINC_SYSTEM), usable[0])
    return ("code", chosen.system, str(chosen.code)), chosen.system, str(chosen.code), chosen.display


def _measurements(obs: Observation) -> list[tuple[Any, Any, Any, Any]]:
    """(code, valueQuantity, referenceRange, interpretation) for the observation and its components."""
    found: list[tuple[Any, Any, Any, Any]] = []
    has_value = any(
        getattr(obs, f"value{t}", None) is not None
        for t in ("Quantity", "CodeableConcept", "String", "Boolean", "Integer", "Range", "Ratio")
    )
    if has_value or not obs.component:
        found.append((obs.code, obs.valueQuantity, obs.referenceRange, obs.interpretation))
    for comp in obs.component or ():
        found.append((comp.code, comp.valueQuantity, comp.referenceRange, comp.interpretation))
    return found


def _censored(comparator: Any) -> str:
    shown = safe_text(str(comparator), limit=8)
    if comparator in ("<", "<=", ">=", ">"):
        return f"comparator {shown!r}: a limit, not an exact value"
    return f"comparator {shown!r} is not a FHIR comparator: not an exact value"


def _unusable_time(when: datetime | str | None, now: datetime | None) -> tuple[SkipReason, str] | None:
    if when is None:
        return SkipReason.NO_TIME, "no effective[x] and no issued"
    if isinstance(when, str):
        return SkipReason.NO_TIME, when
    problem = time_problem(when, now)
    return None if problem is None else (SkipReason.IMPLAUSIBLE_TIME, problem)


def _collect(
    observations: Iterable[Observation], now: datetime | None
) -> tuple[str | None, list[_Raw], list[SkippedPoint]]:
    subject: str | None = None
    raws: list[_Raw] = []
    skipped: list[SkippedPoint] = []
    for obs in observations:
        obs_id = None if obs.id is None else str(obs.id)
        head_code = safe_text(_first_code(obs.code), limit=64) or None

        def skip(
            reason: SkipReason, detail: str, code: str | None = head_code, oid: str | None = obs_id
        ) -> None:
            skipped.append(SkippedPoint(observation_id=oid, code=code, reason=reason, detail=detail))

        ref = obs.subject.reference if obs.subject is not None else None
        if ref:
            if subject is not None and ref != subject:
                raise MixedSubjectsError(f"observations of {subject} and {ref} cannot form one series set")
            subject = str(ref)
        if obs.status not in USABLE_STATUSES:
            skip(SkipReason.STATUS, f"status {safe_text(str(obs.status), limit=32)!r} is not a usable result")
            continue
        if obs_id is None:
            skip(SkipReason.NO_ID, "an Observation without id cannot be cited in derivedFrom")
            continue
        when = _effective_time(obs)
        # Checked before any date arithmetic: year 1 or 9999 must not reach a conversion.
        unusable_time = _unusable_time(when, now)
        for concept, qty, ranges, interp in _measurements(obs):
            group = _group_for(concept.coding or ())
            if qty is None:
                skip(
                    SkipReason.NOT_NUMERIC,
                    "no valueQuantity: not a numeric result",
                    code=None if group is None else group[2],
                )
                continue
            if group is None:
                skip(SkipReason.NO_CODE, "no coding with a usable code", code=None)
                continue
            key, system, code, display = group
            if qty.value is None:
                skip(SkipReason.NO_VALUE, "a valueQuantity without a value", code=code)
                continue
            if qty.comparator is not None:
                skip(SkipReason.CENSORED, _censored(qty.comparator), code=code)
                continue
            if unusable_time is not None or not isinstance(when, datetime):
                reason, detail = unusable_time or (SkipReason.NO_TIME, "no usable time")
                skip(reason, detail, code=code)
                continue
            low, high = _range_bounds(ranges)
            raws.append(
                _Raw(
                    group=key,
                    system=system,
                    code=code,
                    display=safe_text(display or concept.text, limit=DISPLAY_LIMIT) or None,
                    value=float(qty.value),
                    unit=safe_text(qty.code or qty.unit, limit=UNIT_LIMIT) or None,
                    ref_low=low,
                    ref_high=high,
                    when=when,
                    obs_id=obs_id,
                    version=_version(obs),
                    interpretation=_first_code(interp[0]) if interp else None,
                )
            )
    return subject, raws, skipped


def _series_unit(raws: Sequence[_Raw], analyte: Analyte | None) -> str | None:
    if analyte is not None:
        return analyte.unit
    # The unit most points carry; ties go to the latest point's unit (the lab's current practice).
    counts = Counter(normalize_unit(r.unit) for r in raws)
    latest = max(raws, key=lambda r: r.when)
    best = max(counts.values())
    tied = {u for u, n in counts.items() if n == best}
    return normalize_unit(latest.unit) if normalize_unit(latest.unit) in tied else sorted(tied, key=str)[0]


def _converter(analyte: Analyte | None, series_unit: str | None) -> Callable[[float, str | None], float]:
    def convert(value: float, unit: str | None) -> float:
        if analyte is not None:
            return analyte.to_canonical(value, unit)
        norm = normalize_unit(unit)
        if norm == series_unit:
            return value
        if norm is None or series_unit is None:
            raise UnitConversionError(str(unit), str(series_unit), "unit missing")
        return convert_dimensional(value, norm, series_unit)

    return convert


def _series_code(raws: Sequence[_Raw], analyte: Analyte | None) -> tuple[str, str | None, str]:
    if analyte is None:
        first = raws[0]
        return first.code, first.system, first.display or first.code
    # The LOINC code most results carried (2339-0 blood glucose stays 2339-0); local-only
    # series get the analyte's primary LOINC code.
    loincs = Counter(r.code for r in raws if r.system == LOINC_SYSTEM)
    if not loincs:
        return analyte.primary_loinc, LOINC_SYSTEM, analyte.display
    best = max(loincs.values())
    code = next(c for c in analyte.loinc if loincs.get(c) == best)
    return code, LOINC_SYSTEM, analyte.display


# One draw reported twice in two units (the lab's feed in mg/dL, its PDF transcribed in umol/L)
# differs by the rounding of the printed value: up to half a unit in the last printed digit,
# about 0.5 % for a value printed with three significant digits.
_CROSS_UNIT_TOLERANCE: Final = 0.005


def _same_value(point: LabPoint, value: float, unit: str | None) -> bool:
    """Whether ``value`` (series unit) at ``point``'s time is ``point`` again: equal, or within
    the rounding of a unit conversion when the two were reported in different units."""
    scale = max(1.0, abs(value))
    if abs(point.value - value) <= 1e-9 * scale:
        return True
    if normalize_unit(point.original_unit) == normalize_unit(unit):
        return False
    return abs(point.value - value) <= _CROSS_UNIT_TOLERANCE * max(abs(point.value), abs(value))


def _build_one(raws: list[_Raw], subject: str | None) -> LabSeries:
    kind, _, ident = raws[0].group
    analyte = get_analyte(ident) if kind == "analyte" else None
    unit = _series_unit(raws, analyte)
    convert = _converter(analyte, unit)
    code, system, display = _series_code(raws, analyte)
    points: list[LabPoint] = []
    skipped: list[SkippedPoint] = []

    def bound(b: tuple[float, str | None] | None, fallback_unit: str | None) -> float | None:
        if b is None:
            return None
        try:
            value = convert(b[0], safe_text(b[1], limit=UNIT_LIMIT) or fallback_unit)
        except UnitConversionError:
            return None  # a range we cannot read is no range; the value itself is kept
        # An absurd bound (1e308, not finite) is no range either; a lab's 0 low bound stays.
        return None if value_problem(value, None) else value

    for r in sorted(raws, key=lambda r: (r.when, r.obs_id)):
        try:
            value = convert(r.value, r.unit)
        except UnitConversionError as exc:
            skipped.append(
                SkippedPoint(observation_id=r.obs_id, code=r.code, reason=SkipReason.UNIT, detail=str(exc))
            )
            continue
        problem = value_problem(value, analyte)
        if problem is not None:
            skipped.append(
                SkippedPoint(
                    observation_id=r.obs_id, code=r.code, reason=SkipReason.IMPLAUSIBLE_VALUE, detail=problem
                )
            )
            continue
        dup = next((p for p in points if p.time == r.when and _same_value(p, value, r.unit)), None)
        if dup is not None:
            skipped.append(
                SkippedPoint(
                    observation_id=r.obs_id,
                    code=r.code,
                    reason=SkipReason.DUPLICATE,
                    detail=f"same time and value as {dup.reference}",
                )
            )
            continue
        points.append(
            LabPoint(
                time=r.when,
                value=value,
                original_value=r.value,
                original_unit=r.unit,
                observation_id=r.obs_id,
                observation_version=r.version,
                reference_low=bound(r.ref_low, r.unit),
                reference_high=bound(r.ref_high, r.unit),
                interpretation=r.interpretation,
            )
        )
    return LabSeries(
        code=code,
        system=system,
        display=display,
        unit=unit,
        analyte_key=None if analyte is None else analyte.key,
        subject=subject,
        points=tuple(points),
        skipped=tuple(skipped),
    )


def build_series(observations: Iterable[Observation], *, now: datetime | None = None) -> SeriesSet:
    """Group numeric Observation results into series; see the module docstring for the rules.

    ``now``: the run's clock; a result dated more than a day after it is excluded (without it,
    only dates from 2200 on are). Raises ``MixedSubjectsError`` when the observations belong to
    more than one subject.
    """
    subject, raws, skipped = _collect(observations, now)
    groups: dict[tuple[str, str | None, str], list[_Raw]] = defaultdict(list)
    for r in raws:
        groups[r.group].append(r)
    series = [_build_one(g, subject) for g in groups.values()]
    # Known analytes in table order, then unknown codes by display: a stable order for reports.
    order = {a.key: i for i, a in enumerate(ANALYTES)}
    series.sort(key=lambda s: (order.get(s.analyte_key or "", len(order)), s.display.lower(), s.code))
    return SeriesSet(subject=subject, series=tuple(series), skipped=tuple(skipped))
