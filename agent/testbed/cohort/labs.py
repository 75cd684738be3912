"""Analytes of the synthetic cohort (labs and vital signs): what it takes from the project's
analyte table and what only the generator needs.

One analyte table: keys, LOINC codes, local codes, canonical units, unit conversions and
reference ranges come from ``tools.labs.analytes`` (the table the trend engine reads). This
module adds only generation parameters: which of the row's LOINC codes a result is sent under
(and its LOINC display), the SI form a lab in the SI dialect uses, reporting precision, the
measurement noise and a plausible band every generated value must stay in.

Values are generated in the row's canonical unit and only converted to the SI form or
relabelled with the local code when a resource is written; the SI conversion is the inverse of
the table's own ``Analyte.to_canonical``, so the engine reads back what was planned.

Noise is analytical variation only (no biological variation), kept at most a sixth of the
analyte's stability threshold: the cohort is a known-answer set whose planned courses a
correct trend engine must find, so noise must never pass for a course.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from agent.testbed.cohort.codes import LOINC, Code
from tools.labs import analytes as table

__all__ = [
    "ANALYTES",
    "Analyte",
    "AnalyteSpec",
    "Course",
    "Noise",
    "SiForm",
    "analyte_for_coding",
    "creatinine_for_egfr",
    "egfr_ckd_epi_2021",
    "interpretation",
    "round_to",
]


class Course(StrEnum):
    """Clinical direction of a series over the follow-up (not the numeric direction)."""

    STABLE = "stable"
    IMPROVING = "improving"
    WORSENING = "worsening"


class Analyte(StrEnum):
    """The rows of ``tools.labs.analytes`` the cohort generates; values are the table's keys."""

    CREATININE = "creatinine"
    EGFR = "egfr"
    HBA1C = "hba1c"
    GLUCOSE = "glucose"
    HEMOGLOBIN = "hemoglobin"
    CHOLESTEROL = "cholesterol"
    LDL = "ldl"
    HDL = "hdl"
    TRIGLYCERIDES = "triglycerides"
    POTASSIUM = "potassium"
    SODIUM = "sodium"
    MAGNESIUM = "magnesium"
    ALBUMIN = "albumin"
    SYSTOLIC_BP = "systolic_bp"
    DIASTOLIC_BP = "diastolic_bp"
    BODY_WEIGHT = "body_weight"
    BMI = "bmi"
    HEART_RATE = "heart_rate"

    @property
    def row(self) -> table.Analyte:
        """The analyte table's row for this key."""
        return table.get_analyte(self.value)


def round_to(value: float, decimals: int) -> float:
    """Round for reporting; whole numbers come out as int so JSON shows `140`, not `140.0`."""
    return round(value) if decimals == 0 else round(value, decimals)


@dataclass(frozen=True)
class Noise:
    """Measurement noise: SD = hypot(sd, cv * value), in the canonical unit."""

    sd: float = 0.0
    cv: float = 0.0

    def sd_at(self, value: float) -> float:
        return math.hypot(self.sd, self.cv * value)


@dataclass(frozen=True)
class SiForm:
    """How a lab in the SI dialect reports an analyte: a LOINC code and unit the table accepts."""

    code: Code
    unit: str
    decimals: int


@dataclass(frozen=True)
class AnalyteSpec:
    """Generation parameters of one analyte; everything else is read from ``row``."""

    analyte: Analyte
    code: Code  # the LOINC code results are sent under (one of the row's codes)
    decimals: int
    # Analytical noise; for derived series (eGFR, BMI) the value is indicative: their noise is
    # what the series they are computed from carries.
    noise: Noise
    plausible: tuple[float, float]  # every generated value (canonical unit) lies in this band
    si: SiForm | None = None

    def __post_init__(self) -> None:
        # Valid by construction: codes and units must be ones the analyte table reads back.
        row = self.row
        codes = [self.code] + ([self.si.code] if self.si else [])
        for code in codes:
            if code.system != LOINC or code.code not in row.loinc:
                raise ValueError(f"{code.code} is not a LOINC code of {row.key} in tools.labs.analytes")
        if self.si is not None:
            row.to_canonical(1.0, self.si.unit)  # raises UnitConversionError when not convertible

    @property
    def row(self) -> table.Analyte:
        return self.analyte.row

    @property
    def unit(self) -> str:
        return self.row.unit

    @property
    def local_code(self) -> str | None:
        return self.row.local_codes[0] if self.row.local_codes else None

    @property
    def reference(self) -> table.ReferenceRange:
        return self.row.reference

    def report(self, canonical: float, *, si: bool) -> float:
        """The reported number: canonical value, or its SI form, rounded as the lab rounds it."""
        if not si or self.si is None:
            return round_to(canonical, self.decimals)
        # The table's conversion to canonical is affine (factor, offset, dimensional steps):
        # invert it from two points rather than keeping a second copy of the factors.
        at0 = self.row.to_canonical(0.0, self.si.unit)
        per_unit = self.row.to_canonical(1.0, self.si.unit) - at0
        return round_to((canonical - at0) / per_unit, self.si.decimals)


_A = Analyte


def _loinc(code: str, display: str) -> Code:
    return Code(LOINC, code, display)


def _si(code: str, display: str, unit: str, decimals: int) -> SiForm:
    return SiForm(_loinc(code, display), unit, decimals)


_MASS = "[Mass/volume] in Serum or Plasma"
_MOLES = "[Moles/volume] in Serum or Plasma"

ANALYTES: Final[dict[Analyte, AnalyteSpec]] = {
    s.analyte: s
    for s in (
        AnalyteSpec(_A.CREATININE, _loinc("2160-0", f"Creatinine {_MASS}"), 2, Noise(cv=0.007), (0.4, 6.0),
                    _si("14682-9", f"Creatinine {_MOLES}", "umol/L", 0)),
        # CKD-EPI 2021 is what the generator computes, so its own LOINC code.
        AnalyteSpec(_A.EGFR, _loinc("98979-8", "Glomerular filtration rate/1.73 sq M.predicted "
                                    "[Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based "
                                    "formula (CKD-EPI 2021)"), 0, Noise(cv=1.2 * 0.007), (10.0, 120.0)),
        AnalyteSpec(_A.HBA1C, _loinc("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), 1,
                    Noise(sd=0.06), (5.5, 12.0),
                    _si("59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol",
                        "mmol/mol", 0)),
        AnalyteSpec(_A.GLUCOSE, _loinc("2345-7", f"Glucose {_MASS}"), 0, Noise(cv=0.02), (60.0, 320.0),
                    _si("14749-6", f"Glucose {_MOLES}", "mmol/L", 1)),
        AnalyteSpec(_A.HEMOGLOBIN, _loinc("718-7", "Hemoglobin [Mass/volume] in Blood"), 1, Noise(sd=0.1),
                    (7.0, 17.0), _si("718-7", "Hemoglobin [Mass/volume] in Blood", "g/L", 0)),
        AnalyteSpec(_A.CHOLESTEROL, _loinc("2093-3", f"Cholesterol {_MASS}"), 0, Noise(sd=2.5),
                    (120.0, 320.0), _si("14647-2", f"Cholesterol {_MOLES}", "mmol/L", 2)),
        AnalyteSpec(_A.LDL, _loinc("18262-6", f"Cholesterol in LDL {_MASS} by Direct assay"), 0,
                    Noise(sd=1.5), (60.0, 220.0),
                    _si("69419-0", f"Cholesterol in LDL {_MOLES} by Direct assay", "mmol/L", 2)),
        AnalyteSpec(_A.HDL, _loinc("2085-9", f"Cholesterol in HDL {_MASS}"), 0, Noise(sd=0.7), (30.0, 80.0),
                    _si("14646-4", f"Cholesterol in HDL {_MOLES}", "mmol/L", 2)),
        AnalyteSpec(_A.TRIGLYCERIDES, _loinc("2571-8", f"Triglyceride {_MASS}"), 0, Noise(cv=0.025),
                    (80.0, 400.0), _si("14927-8", f"Triglyceride {_MOLES}", "mmol/L", 2)),
        AnalyteSpec(_A.POTASSIUM, _loinc("2823-3", f"Potassium {_MOLES}"), 1, Noise(sd=0.05), (3.5, 6.5)),
        AnalyteSpec(_A.SODIUM, _loinc("2951-2", f"Sodium {_MOLES}"), 0, Noise(sd=0.4), (133.0, 146.0)),
        AnalyteSpec(_A.MAGNESIUM, _loinc("19123-9", f"Magnesium {_MASS}"), 1, Noise(sd=0.02), (1.6, 2.3),
                    _si("2601-3", f"Magnesium {_MOLES}", "mmol/L", 2)),
        AnalyteSpec(_A.ALBUMIN, _loinc("1751-7", f"Albumin {_MASS}"), 1, Noise(sd=0.04), (3.5, 4.8),
                    _si("1751-7", f"Albumin {_MASS}", "g/L", 0)),
        AnalyteSpec(_A.SYSTOLIC_BP, _loinc("8480-6", "Systolic blood pressure"), 0, Noise(sd=1.5),
                    (100.0, 170.0)),
        AnalyteSpec(_A.DIASTOLIC_BP, _loinc("8462-4", "Diastolic blood pressure"), 0, Noise(sd=0.6),
                    (55.0, 100.0)),
        AnalyteSpec(_A.BODY_WEIGHT, _loinc("29463-7", "Body weight"), 1, Noise(cv=0.003), (35.0, 180.0)),
        AnalyteSpec(_A.BMI, _loinc("39156-5", "Body mass index (BMI) [Ratio]"), 1, Noise(cv=0.003),
                    (20.0, 40.0)),
        AnalyteSpec(_A.HEART_RATE, _loinc("8867-4", "Heart rate"), 0, Noise(sd=1.5), (55.0, 95.0)),
    )
}  # fmt: skip


_KEYS: Final = frozenset(a.value for a in Analyte)


def analyte_for_coding(system: str, code: str) -> Analyte | None:
    """The cohort analyte a coding names, by the analyte table's lookup (LOINC or local code)."""
    row = table.analyte_for_coding(system, code)
    return None if row is None or row.key not in _KEYS else Analyte(row.key)


def interpretation(value: float, low: float | None, high: float | None) -> str:
    """HL7 v3 ObservationInterpretation code: H, L or N."""
    if high is not None and value > high:
        return "H"
    if low is not None and value < low:
        return "L"
    return "N"


def egfr_ckd_epi_2021(creatinine_mg_dl: float, age: float, female: bool) -> float:
    """CKD-EPI 2021 (race-free) creatinine equation, mL/min/1.73 m2."""
    kappa = 0.7 if female else 0.9
    alpha = -0.241 if female else -0.302
    ratio = creatinine_mg_dl / kappa
    egfr = 142.0 * math.pow(min(ratio, 1.0), alpha) * math.pow(max(ratio, 1.0), -1.200)
    return egfr * math.pow(0.9938, age) * (1.012 if female else 1.0)


def creatinine_for_egfr(egfr: float, age: float, female: bool) -> float:
    """Inverse of `egfr_ckd_epi_2021` (both branches), mg/dL."""
    kappa = 0.7 if female else 0.9
    alpha = -0.241 if female else -0.302
    at_kappa = 142.0 * math.pow(0.9938, age) * (1.012 if female else 1.0)  # eGFR when creatinine == kappa
    if egfr <= at_kappa:
        return kappa * math.pow(egfr / at_kappa, -1 / 1.200)
    return kappa * math.pow(egfr / at_kappa, 1 / alpha)
