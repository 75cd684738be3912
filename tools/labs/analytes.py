"""The analyte table: what ChartAgent knows about each lab or vital-sign series.

Each ``Analyte`` row carries its LOINC codes (primary first), Epic-style local codes, the
canonical UCUM unit every point is converted to, the accepted units with their conversion
to canonical, the direction that counts as better, a stability threshold (the smallest change
with clinical meaning) and a default adult reference range.

Thresholds: the source of each is in the ``threshold_source`` field and repeated in a comment.
Where no guideline defines a meaningful change, the source says ``heuristic`` and gives the
reasoning: those numbers are engineering choices to be reviewed by a clinician, not facts.

Reference ranges are sex-agnostic adult defaults, used only when the lab did not send its own
``referenceRange`` (the lab's own range wins, see ``tools.labs.series``).

Lookup: ``analyte_for_coding(system, code)`` (LOINC by code, any other system by local code),
``analyte_for_local_code(code)`` and ``get_analyte(key)``.

The LOINC codes of each row were reviewed (name, property, system, method) in
``tools/labs/LOINC_REVIEW.md``; unit codes are UCUM (milliequivalents are ``meq/L``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from tools.labs.units import (
    EGFR_UNIT,
    UnitConversionError,
    convert_dimensional,
    dimension_of,
    normalize_unit,
)

__all__ = [
    "ANALYTES",
    "LOINC_SYSTEM",
    "Analyte",
    "GoodDirection",
    "ReferenceRange",
    "StabilityThreshold",
    "UnitConversion",
    "analyte_for_coding",
    "analyte_for_local_code",
    "get_analyte",
]

LOINC_SYSTEM: Final = "http://loinc.org"


class GoodDirection(StrEnum):
    LOWER = "lower"  # lower is better (e.g. LDL, HbA1c)
    HIGHER = "higher"  # higher is better (e.g. eGFR, HDL)
    IN_RANGE = "in_range"  # closer to the reference range is better (e.g. potassium)
    NONE = "none"  # no intrinsic better direction (e.g. body weight): change is reported, not judged


@dataclass(frozen=True, slots=True)
class UnitConversion:
    """``canonical = value * factor + offset`` for values in ``unit`` (a normalised UCUM code)."""

    unit: str
    factor: float
    offset: float = 0.0

    def to_canonical(self, value: float) -> float:
        return value * self.factor + self.offset


@dataclass(frozen=True, slots=True)
class StabilityThreshold:
    """The smallest change of clinical meaning, absolute (canonical unit) and/or relative (fraction).

    ``combine="min"``: a change is significant once it reaches *either* bound (eGFR: 5 units,
    or 25 % when eGFR is so low that 25 % is less than 5). ``combine="max"``: it must reach
    *both* (glucose: 15 mg/dL or 15 %, whichever is larger, like meter accuracy limits).
    """

    absolute: float | None
    relative: float | None = None
    combine: Literal["min", "max"] = "min"

    def __post_init__(self) -> None:
        if self.absolute is None and self.relative is None:
            raise ValueError("a stability threshold needs an absolute or a relative bound")
        if (self.absolute is not None and self.absolute <= 0) or (
            self.relative is not None and self.relative <= 0
        ):
            raise ValueError("stability bounds must be positive")

    def magnitude(self, baseline: float) -> float:
        """The change (in the canonical unit) that counts as significant from ``baseline``."""
        bounds = [] if self.absolute is None else [self.absolute]
        if self.relative is not None and baseline != 0:
            bounds.append(self.relative * abs(baseline))
        if not bounds:
            # Only a relative bound and a zero baseline: any non-zero change is significant.
            return 0.0
        return min(bounds) if self.combine == "min" else max(bounds)


@dataclass(frozen=True, slots=True)
class ReferenceRange:
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"reference low {self.low} is above high {self.high}")


@dataclass(frozen=True, slots=True)
class Analyte:
    key: str
    display: str
    loinc: tuple[str, ...]  # primary first
    local_codes: tuple[str, ...]
    unit: str  # canonical UCUM code
    conversions: tuple[UnitConversion, ...]  # units that need substance knowledge (molar mass, valence)
    good_direction: GoodDirection
    stability: StabilityThreshold
    threshold_source: str
    reference: ReferenceRange = field(default_factory=ReferenceRange)
    category: Literal["laboratory", "vital-signs"] = "laboratory"

    @property
    def primary_loinc(self) -> str:
        return self.loinc[0]

    def to_canonical(self, value: float, unit: str | None) -> float:
        """Convert ``value`` in ``unit`` (any spelling) to ``self.unit``; raise ``UnitConversionError``.

        Order: the same unit; a substance-specific conversion; a dimensional step to the
        canonical unit; a dimensional step to a unit that has a substance-specific conversion
        (creatinine in mmol/L goes through umol/L).
        """
        norm = normalize_unit(unit)
        if norm is None:
            raise UnitConversionError(str(unit), self.unit, "no unit given")
        if norm == self.unit:
            return value
        for conv in self.conversions:
            if conv.unit == norm:
                return conv.to_canonical(value)
        if dimension_of(norm) is not None and dimension_of(norm) == dimension_of(self.unit):
            return convert_dimensional(value, norm, self.unit)
        for conv in self.conversions:
            if dimension_of(norm) is not None and dimension_of(norm) == dimension_of(conv.unit):
                return conv.to_canonical(convert_dimensional(value, norm, conv.unit))
        raise UnitConversionError(norm, self.unit, f"no conversion known for {self.display}")


_MG_DL: Final = "mg/dL"
_MMOL_L: Final = "mmol/L"

ANALYTES: Final[tuple[Analyte, ...]] = (
    Analyte(
        key="creatinine",
        display="Creatinine",
        loinc=("2160-0", "38483-4", "14682-9", "59826-8"),
        local_codes=("CREAT", "CR", "CRE"),
        unit=_MG_DL,
        conversions=(UnitConversion("umol/L", 1 / 88.42),),  # molar mass 113.1 g/mol
        # Rising creatinine is the concern tracked in CKD/AKI; a fall is not a harm signal.
        good_direction=GoodDirection.LOWER,
        # KDIGO 2012 AKI criterion: a rise of >= 0.3 mg/dL.
        stability=StabilityThreshold(absolute=0.3),
        threshold_source="KDIGO 2012 AKI criterion: rise >= 0.3 mg/dL",
        reference=ReferenceRange(0.6, 1.3),
    ),
    Analyte(
        key="egfr",
        display="eGFR",
        loinc=(
            "33914-3",
            "62238-1",
            "48642-3",
            "48643-1",
            "98979-8",
            "69405-9",
            "50044-7",
            "88293-6",
            "88294-4",
        ),
        local_codes=("EGFR", "GFR", "GFRE"),
        unit=EGFR_UNIT,
        # Synthea and some feeds send "mL/min" for an eGFR code; the LOINC code itself defines
        # the quantity as normalised to 1.73 m2, so the number is the same.
        conversions=(UnitConversion("mL/min", 1.0),),
        good_direction=GoodDirection.HIGHER,
        # KDIGO 2012 CKD progression: sustained decline > 5 mL/min/1.73m2 (per year), or a
        # 25 % drop; whichever bound is reached first counts.
        stability=StabilityThreshold(absolute=5.0, relative=0.25, combine="min"),
        threshold_source="KDIGO 2012 CKD progression: decline > 5 mL/min/1.73m2 or >= 25 %",
        reference=ReferenceRange(60.0, None),
    ),
    Analyte(
        key="bun",
        display="Urea nitrogen (BUN)",
        # Only urea *nitrogen* mass codes and molar codes: a urea *mass* code in mg/dL would be
        # 2.14x off if read as BUN, so those are left unknown rather than mis-converted.
        loinc=("3094-0", "6299-2", "14937-7", "22664-7"),
        local_codes=("BUN",),  # not "UREA": urea mass would be misread as BUN
        unit=_MG_DL,
        conversions=(UnitConversion(_MMOL_L, 2.801),),  # 2 N atoms per urea: 28.01 g/mol
        good_direction=GoodDirection.LOWER,
        # heuristic: about 2x the within-subject biological variation of urea (~14 % of ~15 mg/dL).
        stability=StabilityThreshold(absolute=5.0),
        threshold_source="heuristic: ~2x within-subject biological variation at typical values",
        reference=ReferenceRange(7.0, 20.0),
    ),
    Analyte(
        key="hba1c",
        display="Hemoglobin A1c",
        loinc=("4548-4", "17856-6", "4549-2", "59261-8"),
        local_codes=("A1C", "HBA1C", "HGBA1C"),
        unit="%",
        # IFCC mmol/mol to NGSP %: the NGSP/IFCC master equation.
        conversions=(UnitConversion("mmol/mol", 0.09148, 2.152),),
        good_direction=GoodDirection.LOWER,
        # 0.5 % (5.5 mmol/mol): the commonly cited minimal clinically important difference.
        stability=StabilityThreshold(absolute=0.5),
        threshold_source="commonly cited minimal clinically important difference: 0.5 %",
        reference=ReferenceRange(None, 5.7),
    ),
    Analyte(
        key="glucose",
        display="Glucose",
        loinc=("2345-7", "2339-0", "41653-7", "14749-6", "15074-8"),
        local_codes=("GLU", "GLUC", "GLUCOSE"),
        unit=_MG_DL,
        conversions=(UnitConversion(_MMOL_L, 18.016),),  # molar mass 180.16 g/mol
        good_direction=GoodDirection.IN_RANGE,  # both hypo- and hyperglycaemia harm
        # ISO 15197:2013 meter accuracy: +-15 mg/dL below 100, +-15 % above; smaller changes
        # are within measurement error.
        stability=StabilityThreshold(absolute=15.0, relative=0.15, combine="max"),
        threshold_source="ISO 15197:2013 accuracy limits: 15 mg/dL or 15 %, whichever is larger",
        reference=ReferenceRange(70.0, 99.0),  # fasting
    ),
    Analyte(
        key="hemoglobin",
        display="Hemoglobin",
        loinc=("718-7", "20509-6", "59260-0"),
        local_codes=("HGB", "HB"),
        unit="g/dL",
        conversions=(UnitConversion(_MMOL_L, 1.611),),  # monomer 16.11 kDa; g/L goes through g/dL
        good_direction=GoodDirection.IN_RANGE,
        # 1 g/dL: about the rise from one unit of red cells; the usual clinically noted change.
        stability=StabilityThreshold(absolute=1.0),
        threshold_source="about the change from one unit of red cells (1 g/dL)",
        reference=ReferenceRange(12.0, 17.5),  # union of adult female and male ranges
    ),
    Analyte(
        key="ldl",
        display="LDL cholesterol",
        loinc=("13457-7", "18262-6", "2089-1", "22748-8", "39469-2", "69419-0"),
        local_codes=("LDL", "LDLC", "LDL-C"),
        unit=_MG_DL,
        conversions=(UnitConversion(_MMOL_L, 38.67),),  # cholesterol 386.65 g/mol
        good_direction=GoodDirection.LOWER,
        # heuristic: 10 mg/dL, below the within-subject variation is noise; trials report
        # effects in steps of this size.
        stability=StabilityThreshold(absolute=10.0),
        threshold_source="heuristic: 10 mg/dL, about the within-subject variation of LDL",
        reference=ReferenceRange(None, 100.0),
    ),
    Analyte(
        key="hdl",
        display="HDL cholesterol",
        loinc=("2085-9", "14646-4"),
        local_codes=("HDL", "HDLC", "HDL-C"),
        unit=_MG_DL,
        conversions=(UnitConversion(_MMOL_L, 38.67),),
        good_direction=GoodDirection.HIGHER,
        # heuristic: 5 mg/dL, roughly 10 % of a typical value.
        stability=StabilityThreshold(absolute=5.0),
        threshold_source="heuristic: 5 mg/dL, about 10 % of a typical value",
        reference=ReferenceRange(40.0, None),
    ),
    Analyte(
        key="cholesterol",
        display="Total cholesterol",
        loinc=("2093-3", "14647-2"),
        local_codes=("CHOL", "TCHOL"),
        unit=_MG_DL,
        conversions=(UnitConversion(_MMOL_L, 38.67),),
        good_direction=GoodDirection.LOWER,
        # heuristic: 20 mg/dL, about 10 % of the 200 mg/dL decision limit.
        stability=StabilityThreshold(absolute=20.0),
        threshold_source="heuristic: 20 mg/dL, about 10 % of the 200 mg/dL decision limit",
        reference=ReferenceRange(None, 200.0),
    ),
    Analyte(
        key="triglycerides",
        display="Triglycerides",
        loinc=("2571-8", "14927-8"),
        local_codes=("TRIG", "TG"),
        unit=_MG_DL,
        conversions=(UnitConversion(_MMOL_L, 88.57),),  # triolein 885.7 g/mol
        good_direction=GoodDirection.LOWER,
        # heuristic: 20 %, about the within-subject biological variation of triglycerides.
        stability=StabilityThreshold(absolute=None, relative=0.20),
        threshold_source="heuristic: 20 %, about the within-subject biological variation",
        reference=ReferenceRange(None, 150.0),
    ),
    Analyte(
        key="potassium",
        display="Potassium",
        loinc=("2823-3", "6298-4"),
        local_codes=("K", "POT", "POTASSIUM"),
        unit=_MMOL_L,
        conversions=(UnitConversion("meq/L", 1.0),),  # monovalent
        good_direction=GoodDirection.IN_RANGE,
        # 0.5 mmol/L: the step used to grade hyper/hypokalaemia severity.
        stability=StabilityThreshold(absolute=0.5),
        threshold_source="0.5 mmol/L, the step between potassium severity grades",
        reference=ReferenceRange(3.5, 5.1),
    ),
    Analyte(
        key="sodium",
        display="Sodium",
        loinc=("2951-2", "2947-0"),
        local_codes=("NA", "SOD", "SODIUM"),
        unit=_MMOL_L,
        conversions=(UnitConversion("meq/L", 1.0),),  # monovalent
        good_direction=GoodDirection.IN_RANGE,
        # heuristic: 3 mmol/L, about the reference change value of sodium (~2.5 %).
        stability=StabilityThreshold(absolute=3.0),
        threshold_source="heuristic: 3 mmol/L, about the reference change value",
        reference=ReferenceRange(135.0, 145.0),
    ),
    Analyte(
        key="magnesium",
        display="Magnesium",
        loinc=("19123-9", "2601-3"),
        local_codes=("MG", "MAG"),
        unit=_MG_DL,
        conversions=(
            UnitConversion(_MMOL_L, 2.4305),  # 24.305 g/mol
            UnitConversion("meq/L", 1.21525),  # divalent: 1 meq/L = 0.5 mmol/L
        ),
        good_direction=GoodDirection.IN_RANGE,
        # heuristic: 0.2 mg/dL, about 10 % of the middle of the range.
        stability=StabilityThreshold(absolute=0.2),
        threshold_source="heuristic: 0.2 mg/dL, about 10 % of mid-range",
        reference=ReferenceRange(1.7, 2.2),
    ),
    Analyte(
        key="albumin",
        display="Albumin",
        loinc=("1751-7", "61151-7", "61152-5"),
        local_codes=("ALB", "ALBUMIN"),
        unit="g/dL",
        conversions=(),  # g/L is dimensional
        good_direction=GoodDirection.HIGHER,  # low albumin is the harm signal
        # heuristic: 0.3 g/dL, about 2x the analytical plus biological variation.
        stability=StabilityThreshold(absolute=0.3),
        threshold_source="heuristic: 0.3 g/dL, about 2x analytical plus biological variation",
        reference=ReferenceRange(3.5, 5.0),
    ),
    Analyte(
        key="uacr",
        display="Urine albumin/creatinine ratio",
        loinc=("9318-7", "14959-1", "32294-1", "14958-3"),
        local_codes=("UACR", "MALB/CR", "ACR"),
        unit="mg/g",
        conversions=(UnitConversion("mg/mmol", 8.842),),  # creatinine 113.1 g/mol
        good_direction=GoodDirection.LOWER,
        # NKF/FDA/EMA workshop (2018): a 30 % change in albuminuria is a meaningful surrogate.
        stability=StabilityThreshold(absolute=None, relative=0.30),
        threshold_source="NKF/FDA/EMA 2018 workshop: a 30 % change in albuminuria",
        reference=ReferenceRange(None, 30.0),
    ),
    Analyte(
        key="systolic_bp",
        display="Systolic blood pressure",
        loinc=("8480-6",),
        local_codes=("SBP", "BPSYS"),
        unit="mm[Hg]",
        conversions=(),
        good_direction=GoodDirection.IN_RANGE,
        # heuristic: 10 mmHg, the step between ACC/AHA 2017 categories and a typical drug effect.
        stability=StabilityThreshold(absolute=10.0),
        threshold_source="heuristic: 10 mmHg, the step between ACC/AHA 2017 categories",
        reference=ReferenceRange(90.0, 129.0),
        category="vital-signs",
    ),
    Analyte(
        key="diastolic_bp",
        display="Diastolic blood pressure",
        loinc=("8462-4",),
        local_codes=("DBP", "BPDIA"),
        unit="mm[Hg]",
        conversions=(),
        good_direction=GoodDirection.IN_RANGE,
        # heuristic: 5 mmHg, half the systolic step (ACC/AHA 2017 diastolic categories are 10 apart).
        stability=StabilityThreshold(absolute=5.0),
        threshold_source="heuristic: 5 mmHg, half the ACC/AHA 2017 category step",
        reference=ReferenceRange(60.0, 79.0),
        category="vital-signs",
    ),
    Analyte(
        key="body_weight",
        display="Body weight",
        loinc=("29463-7", "3141-9"),
        local_codes=("WT", "WEIGHT"),
        unit="kg",
        conversions=(),
        good_direction=GoodDirection.NONE,  # loss and gain are each good or bad by context
        # 5 %: the usual definition of clinically significant (e.g. unintentional) weight change.
        stability=StabilityThreshold(absolute=None, relative=0.05),
        threshold_source="5 % weight change, the usual definition of clinically significant change",
        category="vital-signs",
    ),
    Analyte(
        key="bmi",
        display="Body mass index",
        loinc=("39156-5",),
        local_codes=("BMI",),
        unit="kg/m2",
        conversions=(),
        good_direction=GoodDirection.IN_RANGE,
        # heuristic: 1 kg/m2, about 3 kg at average height.
        stability=StabilityThreshold(absolute=1.0),
        threshold_source="heuristic: 1 kg/m2, about 3 kg at average adult height",
        reference=ReferenceRange(18.5, 24.9),
        category="vital-signs",
    ),
    Analyte(
        key="heart_rate",
        display="Heart rate",
        loinc=("8867-4",),
        local_codes=("HR", "PULSE"),
        unit="/min",
        conversions=(),
        good_direction=GoodDirection.IN_RANGE,  # both brady- and tachycardia harm
        # heuristic: 10 /min; resting rate varies by several beats per minute between visits,
        # and 60-100 /min (the adult range) is four such steps wide.
        stability=StabilityThreshold(absolute=10.0),
        threshold_source="heuristic: 10 /min, above the usual visit-to-visit variation of resting rate",
        reference=ReferenceRange(60.0, 100.0),
        category="vital-signs",
    ),
)


def _index(
    rows: tuple[Analyte, ...],
) -> tuple[Mapping[str, Analyte], Mapping[str, Analyte], Mapping[str, Analyte]]:
    by_key: dict[str, Analyte] = {}
    by_loinc: dict[str, Analyte] = {}
    by_local: dict[str, Analyte] = {}
    for row in rows:
        for table, keys in ((by_key, (row.key,)), (by_loinc, row.loinc), (by_local, row.local_codes)):
            for raw in keys:
                k = raw.upper() if table is by_local else raw
                if k in table:
                    # A code that maps to two analytes would silently merge series.
                    raise ValueError(f"analyte code {k!r} is listed twice")
                table[k] = row
    return by_key, by_loinc, by_local


_BY_KEY, _BY_LOINC, _BY_LOCAL = _index(ANALYTES)


def get_analyte(key: str) -> Analyte:
    """The analyte with this key; ``KeyError`` if there is none."""
    return _BY_KEY[key]


def analyte_for_local_code(code: str) -> Analyte | None:
    """Match an Epic-style local code (case-insensitive), whatever the local system URI is."""
    return _BY_LOCAL.get(code.strip().upper())


def analyte_for_coding(system: str | None, code: str | None) -> Analyte | None:
    """LOINC codings match by LOINC code; any other system (they vary per site) by local code."""
    if not code:
        return None
    if system == LOINC_SYSTEM:
        return _BY_LOINC.get(code.strip())
    return analyte_for_local_code(code)
