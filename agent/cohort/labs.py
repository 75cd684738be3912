"""Analytes of the synthetic cohort (labs and vital signs): codes, units, ranges, noise, and
the pure functions that turn a planned course into numbers.

Values are planned in conventional US units (the "canonical" unit of each spec) and only
converted to SI or relabelled with local codes when a resource is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from agent.cohort.codes import EPIC_LOCAL_LAB_SYSTEM, LOINC, Code

__all__ = [
    "ANALYTES",
    "Analyte",
    "AnalyteSpec",
    "Category",
    "Course",
    "SiForm",
    "analyte_for_coding",
    "course_sign",
    "creatinine_for_egfr",
    "egfr_ckd_epi_2021",
    "interpretation",
    "planned_value",
    "round_to",
]


class Course(StrEnum):
    """Clinical direction of a series over the follow-up (not the numeric direction)."""

    STABLE = "stable"
    IMPROVING = "improving"
    WORSENING = "worsening"


class Category(StrEnum):
    LABORATORY = "laboratory"
    VITAL_SIGNS = "vital-signs"


class Analyte(StrEnum):
    CREATININE = "creatinine"
    EGFR = "egfr"
    HBA1C = "hba1c"
    GLUCOSE = "glucose"
    HEMOGLOBIN = "hemoglobin"
    CHOLESTEROL_TOTAL = "cholesterol_total"
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


@dataclass(frozen=True)
class SiForm:
    """How a lab reports an analyte in SI units: si = canonical * scale + offset."""

    code: Code
    unit: str
    scale: float
    offset: float = 0.0
    decimals: int = 1

    def convert(self, canonical: float) -> float:
        return round_to(canonical * self.scale + self.offset, self.decimals)


def round_to(value: float, decimals: int) -> float:
    """Round for reporting; whole numbers come out as int so JSON shows `140`, not `140.0`."""
    return round(value) if decimals == 0 else round(value, decimals)


@dataclass(frozen=True)
class AnalyteSpec:
    analyte: Analyte
    category: Category
    loinc: Code
    unit: str  # UCUM, canonical (conventional US) unit
    decimals: int
    # Reference interval in the canonical unit; (female, male) where they differ.
    ref_low: tuple[float | None, float | None]
    ref_high: tuple[float | None, float | None]
    # SD of the visit-to-visit noise (analytical + biological) in the canonical unit.
    noise_sd: float
    # +1 when a rising value is clinically worse (creatinine), -1 when falling is (eGFR).
    worse_direction: int
    # Planned change per year of a non-stable course, in the canonical unit (magnitude).
    rate_per_year: float
    floor: float
    ceiling: float
    local_code: str | None = None
    si: SiForm | None = None

    def reference_range(self, female: bool) -> tuple[float | None, float | None]:
        i = 0 if female else 1
        return self.ref_low[i], self.ref_high[i]


def _lab(
    analyte: Analyte,
    loinc: tuple[str, str],
    unit: str,
    decimals: int,
    ref: tuple[float | None, float | None],
    noise_sd: float,
    worse_direction: int,
    rate_per_year: float,
    bounds: tuple[float, float],
    local_code: str | None,
    si: SiForm | None = None,
    *,
    ref_male: tuple[float | None, float | None] | None = None,
) -> AnalyteSpec:
    """A lab spec; `ref` is the reference interval, the female one where `ref_male` differs."""
    male = ref_male or ref
    return AnalyteSpec(
        analyte=analyte,
        category=Category.LABORATORY,
        loinc=Code(LOINC, *loinc),
        unit=unit,
        decimals=decimals,
        ref_low=(ref[0], male[0]),
        ref_high=(ref[1], male[1]),
        noise_sd=noise_sd,
        worse_direction=worse_direction,
        rate_per_year=rate_per_year,
        floor=bounds[0],
        ceiling=bounds[1],
        local_code=local_code,
        si=si,
    )


def _vital(
    analyte: Analyte,
    loinc: tuple[str, str],
    unit: str,
    decimals: int,
    noise_sd: float,
    worse_direction: int,
    rate_per_year: float,
    bounds: tuple[float, float],
) -> AnalyteSpec:
    return AnalyteSpec(
        analyte=analyte,
        category=Category.VITAL_SIGNS,
        loinc=Code(LOINC, *loinc),
        unit=unit,
        decimals=decimals,
        ref_low=(None, None),
        ref_high=(None, None),
        noise_sd=noise_sd,
        worse_direction=worse_direction,
        rate_per_year=rate_per_year,
        floor=bounds[0],
        ceiling=bounds[1],
    )


# Rates are at least 3 noise SDs per year, so a planned course is visible over the
# minimum two-year follow-up. The kidney course is planned in eGFR and measured as
# creatinine (eGFR is recomputed from it, as labs do); glucose, total cholesterol and
# diastolic BP follow other series (see `generate.py`). For these derived series the
# noise SD is indicative: eGFR's is the creatinine noise seen through CKD-EPI.
_A = Analyte
ANALYTES: dict[Analyte, AnalyteSpec] = {
    s.analyte: s
    for s in (
        _lab(_A.CREATININE, ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"), "mg/dL", 2,
             (0.59, 1.04), 0.035, +1, 0.15, (0.4, 8.0), "CREAT",
             SiForm(Code(LOINC, "14682-9", "Creatinine [Moles/volume] in Serum or Plasma"),
                    "umol/L", 88.42, decimals=0), ref_male=(0.74, 1.35)),
        _lab(_A.EGFR, ("62238-1", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] "
                       "in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI)"),
             "mL/min/{1.73_m2}", 0, (60.0, None), 3.5, -1, 5.5, (5.0, 130.0), "EGFR"),
        _lab(_A.HBA1C, ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), "%", 1,
             (None, 5.6), 0.15, +1, 0.6, (5.8, 12.5), "A1C",
             # IFCC units: mmol/mol = (NGSP % - 2.15) * 10.929.
             SiForm(Code(LOINC, "59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol"),
                    "mmol/mol", 10.929, -2.15 * 10.929, decimals=0)),
        _lab(_A.GLUCOSE, ("2345-7", "Glucose [Mass/volume] in Serum or Plasma"), "mg/dL", 0,
             (70.0, 99.0), 6.0, +1, 17.0, (60.0, 400.0), "GLU",
             SiForm(Code(LOINC, "14749-6", "Glucose [Moles/volume] in Serum or Plasma"),
                    "mmol/L", 1 / 18.016, decimals=1)),
        _lab(_A.HEMOGLOBIN, ("718-7", "Hemoglobin [Mass/volume] in Blood"), "g/dL", 1,
             (12.0, 15.5), 0.2, -1, 0.8, (7.0, 14.0), "HGB",
             SiForm(Code(LOINC, "718-7", "Hemoglobin [Mass/volume] in Blood"), "g/L", 10.0, decimals=0),
             ref_male=(13.5, 17.5)),
        _lab(_A.CHOLESTEROL_TOTAL, ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"), "mg/dL", 0,
             (None, 200.0), 5.0, +1, 26.0, (100.0, 350.0), "CHOL",
             SiForm(Code(LOINC, "14647-2", "Cholesterol [Moles/volume] in Serum or Plasma"),
                    "mmol/L", 0.02586, decimals=2)),
        _lab(_A.LDL, ("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay"),
             "mg/dL", 0, (None, 100.0), 6.0, +1, 20.0, (55.0, 240.0), "LDL",
             SiForm(Code(LOINC, "22748-8", "Cholesterol in LDL [Moles/volume] in Serum or Plasma"),
                    "mmol/L", 0.02586, decimals=2)),
        _lab(_A.HDL, ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma"), "mg/dL", 0,
             (50.0, None), 3.0, -1, 3.0, (25.0, 90.0), "HDL",
             SiForm(Code(LOINC, "14646-4", "Cholesterol in HDL [Moles/volume] in Serum or Plasma"),
                    "mmol/L", 0.02586, decimals=2), ref_male=(40.0, None)),
        _lab(_A.TRIGLYCERIDES, ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma"), "mg/dL", 0,
             (None, 150.0), 10.0, +1, 30.0, (60.0, 600.0), "TRIG",
             SiForm(Code(LOINC, "14927-8", "Triglyceride [Moles/volume] in Serum or Plasma"),
                    "mmol/L", 0.01129, decimals=2)),
        _lab(_A.POTASSIUM, ("2823-3", "Potassium [Moles/volume] in Serum or Plasma"), "mmol/L", 1,
             (3.5, 5.1), 0.1, +1, 0.3, (3.8, 6.4), "K"),
        _lab(_A.SODIUM, ("2951-2", "Sodium [Moles/volume] in Serum or Plasma"), "mmol/L", 0,
             (136.0, 145.0), 1.5, -1, 1.5, (125.0, 150.0), "NA"),
        _lab(_A.MAGNESIUM, ("19123-9", "Magnesium [Mass/volume] in Serum or Plasma"), "mg/dL", 1,
             (1.7, 2.2), 0.08, -1, 0.08, (1.0, 3.5), "MG",
             SiForm(Code(LOINC, "2601-3", "Magnesium [Moles/volume] in Serum or Plasma"),
                    "mmol/L", 0.4114, decimals=2)),
        _lab(_A.ALBUMIN, ("1751-7", "Albumin [Mass/volume] in Serum or Plasma"), "g/dL", 1,
             (3.5, 5.0), 0.15, -1, 0.15, (2.0, 5.5), "ALB",
             SiForm(Code(LOINC, "1751-7", "Albumin [Mass/volume] in Serum or Plasma"), "g/L", 10.0,
                    decimals=0)),
        _vital(_A.SYSTOLIC_BP, ("8480-6", "Systolic blood pressure"), "mm[Hg]", 0, 4.0, +1, 12.0,
               (100.0, 185.0)),
        _vital(_A.DIASTOLIC_BP, ("8462-4", "Diastolic blood pressure"), "mm[Hg]", 0, 2.0, +1, 6.0,
               (55.0, 115.0)),
        _vital(_A.BODY_WEIGHT, ("29463-7", "Body weight"), "kg", 1, 0.8, +1, 2.0, (40.0, 180.0)),
        _vital(_A.BMI, ("39156-5", "Body mass index (BMI) [Ratio]"), "kg/m2", 1, 0.3, +1, 0.7,
               (15.0, 60.0)),
        _vital(_A.HEART_RATE, ("8867-4", "Heart rate"), "/min", 0, 4.0, +1, 4.0, (45.0, 120.0)),
    )
}  # fmt: skip

_BY_CODING: dict[tuple[str, str], Analyte] = {}
for _spec in ANALYTES.values():
    _BY_CODING[(LOINC, _spec.loinc.code)] = _spec.analyte
    if _spec.local_code:
        _BY_CODING[(EPIC_LOCAL_LAB_SYSTEM, _spec.local_code)] = _spec.analyte
    if _spec.si:
        _BY_CODING[(_spec.si.code.system, _spec.si.code.code)] = _spec.analyte


def analyte_for_coding(system: str, code: str) -> Analyte | None:
    """The analyte a coding names (LOINC mass or molar form, or the Epic local code)."""
    return _BY_CODING.get((system, code))


def course_sign(spec: AnalyteSpec, course: Course) -> int:
    """Numeric direction of a course: worsening creatinine rises, worsening eGFR falls."""
    if course is Course.STABLE:
        return 0
    return spec.worse_direction if course is Course.WORSENING else -spec.worse_direction


def planned_value(spec: AnalyteSpec, baseline: float, course: Course, years: float) -> float:
    """Noise-free value `years` after the first visit: linear course, held within bounds."""
    value = baseline + course_sign(spec, course) * spec.rate_per_year * years
    return min(spec.ceiling, max(spec.floor, value))


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
