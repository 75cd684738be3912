"""The analytes the generator can print: names, LOINC codes, units in two dialects, reference ranges.

Values are planned in the conventional (US) unit; a lab in the SI dialect prints
``value * si.factor`` in the SI unit. The SI form of a test measured in moles has its own code,
or None where no such code was verified (25-OH vitamin D in nmol/L). The codes are the
benchmark's ground truth and must equal ``tools.labs.loinc_catalog``'s for the same printed
test and unit (a test checks it); each is reviewed in ``tools/labs/LOINC_REVIEW.md``.
Reference ranges are adult ranges of a typical lab, not clinical guidance.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["CATALOG", "AnalyteDef", "Panel", "UnitForm", "analyte", "panel_keys"]


class Panel(StrEnum):
    """Panel headers as a hospital lab prints them."""

    CMP = "COMPREHENSIVE METABOLIC PANEL"
    CBC = "COMPLETE BLOOD COUNT WITH DIFFERENTIAL"
    LIPID = "LIPID PANEL"
    DIABETES = "DIABETES MONITORING"
    THYROID = "THYROID FUNCTION"
    URINALYSIS = "URINALYSIS"
    COAGULATION = "COAGULATION"
    IRON = "IRON STUDIES"
    VITAMINS = "VITAMINS"
    INFLAMMATION = "INFLAMMATORY MARKERS"
    CARDIAC = "CARDIAC MARKERS"
    CHEMISTRY = "CHEMISTRY"
    TUMOR = "TUMOR MARKERS"


@dataclass(frozen=True, slots=True)
class UnitForm:
    """How one dialect prints a test: unit, UCUM, factor from the planned value, range, precision."""

    unit: str
    ucum: str | None
    factor: float
    low: float | None
    high: float | None
    decimals: int
    loinc: str | None


@dataclass(frozen=True, slots=True)
class AnalyteDef:
    """One test: key, printed name, panel, the conventional form and the SI form."""

    key: str
    name: str
    panel: Panel
    us: UnitForm
    si: UnitForm
    qualitative: str | None = None  # the normal text for tests reported as text ("negative")
    si_name: str | None = None  # the name an SI lab prints when it measures another quantity

    def form(self, si: bool) -> UnitForm:
        return self.si if si else self.us

    def printed_name(self, si: bool) -> str:
        return (self.si_name or self.name) if si else self.name


def _same(
    unit: str, ucum: str | None, low: float | None, high: float | None, dec: int, loinc: str | None
) -> tuple[UnitForm, UnitForm]:
    form = UnitForm(unit, ucum, 1.0, low, high, dec, loinc)
    return form, form


def _a(
    key: str,
    name: str,
    panel: Panel,
    forms: tuple[UnitForm, UnitForm],
    qualitative: str | None = None,
    si_name: str | None = None,
) -> AnalyteDef:
    return AnalyteDef(key, name, panel, forms[0], forms[1], qualitative, si_name)


def _two(us: UnitForm, si: UnitForm) -> tuple[UnitForm, UnitForm]:
    return us, si


U = UnitForm
P = Panel
_DEFS: Final = (
    # comprehensive metabolic panel
    _a(
        "glucose",
        "Glucose",
        P.CMP,
        _two(
            U("mg/dL", "mg/dL", 1, 70, 99, 0, "2345-7"), U("mmol/L", "mmol/L", 0.0555, 3.9, 5.5, 1, "14749-6")
        ),
    ),
    _a(
        "bun",
        "Urea Nitrogen (BUN)",
        P.CMP,
        _two(
            U("mg/dL", "mg/dL", 1, 7, 20, 0, "3094-0"), U("mmol/L", "mmol/L", 0.357, 2.5, 7.1, 1, "22664-7")
        ),
        si_name="Urea",
    ),
    _a(
        "creatinine",
        "Creatinine",
        P.CMP,
        _two(
            U("mg/dL", "mg/dL", 1, 0.6, 1.2, 2, "2160-0"), U("umol/L", "umol/L", 88.4, 53, 106, 0, "14682-9")
        ),
    ),
    _a(
        "egfr",
        "eGFR (CKD-EPI 2021)",
        P.CMP,
        _same("mL/min/1.73m2", "mL/min/{1.73_m2}", 60, None, 0, "98979-8"),
    ),
    _a("sodium", "Sodium", P.CMP, _same("mmol/L", "mmol/L", 136, 145, 0, "2951-2")),
    _a("potassium", "Potassium", P.CMP, _same("mmol/L", "mmol/L", 3.5, 5.1, 1, "2823-3")),
    _a("chloride", "Chloride", P.CMP, _same("mmol/L", "mmol/L", 98, 107, 0, "2075-0")),
    _a("co2", "Carbon Dioxide, Total", P.CMP, _same("mmol/L", "mmol/L", 22, 29, 0, "2028-9")),
    _a(
        "calcium",
        "Calcium",
        P.CMP,
        _two(
            U("mg/dL", "mg/dL", 1, 8.6, 10.3, 1, "17861-6"),
            U("mmol/L", "mmol/L", 0.2495, 2.15, 2.55, 2, "2000-8"),
        ),
    ),
    _a(
        "protein",
        "Protein, Total",
        P.CMP,
        _two(U("g/dL", "g/dL", 1, 6.0, 8.3, 1, "2885-2"), U("g/L", "g/L", 10, 60, 83, 0, "2885-2")),
    ),
    _a(
        "albumin",
        "Albumin",
        P.CMP,
        _two(U("g/dL", "g/dL", 1, 3.5, 5.2, 1, "1751-7"), U("g/L", "g/L", 10, 35, 52, 0, "1751-7")),
    ),
    _a(
        "bilirubin",
        "Bilirubin, Total",
        P.CMP,
        _two(U("mg/dL", "mg/dL", 1, 0.1, 1.2, 1, "1975-2"), U("umol/L", "umol/L", 17.1, 2, 21, 0, "14631-6")),
    ),
    _a("alp", "Alkaline Phosphatase", P.CMP, _same("U/L", "U/L", 44, 147, 0, "6768-6")),
    _a("alt", "ALT (SGPT)", P.CMP, _same("U/L", "U/L", 7, 56, 0, "1742-6")),
    _a("ast", "AST (SGOT)", P.CMP, _same("U/L", "U/L", 10, 40, 0, "1920-8")),
    # complete blood count with differential
    _a(
        "wbc",
        "WBC",
        P.CBC,
        _two(
            U("10*3/uL", "10*3/uL", 1, 4.0, 11.0, 1, "6690-2"),
            U("x10^9/L", "10*9/L", 1, 4.0, 11.0, 1, "6690-2"),
        ),
    ),
    _a(
        "rbc",
        "RBC",
        P.CBC,
        _two(
            U("10*6/uL", "10*6/uL", 1, 4.2, 5.8, 2, "789-8"),
            U("x10^12/L", "10*12/L", 1, 4.2, 5.8, 2, "789-8"),
        ),
    ),
    _a(
        "hemoglobin",
        "Hemoglobin",
        P.CBC,
        _two(U("g/dL", "g/dL", 1, 13.5, 17.5, 1, "718-7"), U("g/L", "g/L", 10, 135, 175, 0, "718-7")),
    ),
    _a("hematocrit", "Hematocrit", P.CBC, _same("%", "%", 38.3, 48.6, 1, "4544-3")),
    _a("mcv", "MCV", P.CBC, _same("fL", "fL", 80, 100, 1, "787-2")),
    _a("mch", "MCH", P.CBC, _same("pg", "pg", 27, 33, 1, "785-6")),
    _a(
        "mchc",
        "MCHC",
        P.CBC,
        _two(U("g/dL", "g/dL", 1, 32, 36, 1, "786-4"), U("g/L", "g/L", 10, 320, 360, 0, "786-4")),
    ),
    _a("rdw", "RDW", P.CBC, _same("%", "%", 11.5, 14.5, 1, "788-0")),
    _a(
        "platelets",
        "Platelets",
        P.CBC,
        _two(
            U("10*3/uL", "10*3/uL", 1, 150, 400, 0, "777-3"), U("x10^9/L", "10*9/L", 1, 150, 400, 0, "777-3")
        ),
    ),
    _a("neut_pct", "Neutrophils %", P.CBC, _same("%", "%", 40, 70, 1, "770-8")),
    _a("lymph_pct", "Lymphocytes %", P.CBC, _same("%", "%", 20, 40, 1, "736-9")),
    _a("mono_pct", "Monocytes %", P.CBC, _same("%", "%", 2, 10, 1, "5905-5")),
    _a("eos_pct", "Eosinophils %", P.CBC, _same("%", "%", 0, 6, 1, "713-8")),
    _a("baso_pct", "Basophils %", P.CBC, _same("%", "%", 0, 2, 1, "706-2")),
    _a(
        "neut_abs",
        "Neutrophils, Absolute",
        P.CBC,
        _two(
            U("10*3/uL", "10*3/uL", 1, 1.8, 7.7, 1, "751-8"), U("x10^9/L", "10*9/L", 1, 1.8, 7.7, 1, "751-8")
        ),
    ),
    _a(
        "lymph_abs",
        "Lymphocytes, Absolute",
        P.CBC,
        _two(
            U("10*3/uL", "10*3/uL", 1, 1.0, 4.8, 1, "731-0"), U("x10^9/L", "10*9/L", 1, 1.0, 4.8, 1, "731-0")
        ),
    ),
    _a(
        "mono_abs",
        "Monocytes, Absolute",
        P.CBC,
        _two(
            U("10*3/uL", "10*3/uL", 1, 0.2, 0.95, 2, "742-7"),
            U("x10^9/L", "10*9/L", 1, 0.2, 0.95, 2, "742-7"),
        ),
    ),
    _a(
        "eos_abs",
        "Eosinophils, Absolute",
        P.CBC,
        _two(
            U("10*3/uL", "10*3/uL", 1, 0.0, 0.5, 2, "711-2"), U("x10^9/L", "10*9/L", 1, 0.0, 0.5, 2, "711-2")
        ),
    ),
    _a(
        "baso_abs",
        "Basophils, Absolute",
        P.CBC,
        _two(
            U("10*3/uL", "10*3/uL", 1, 0.0, 0.2, 2, "704-7"), U("x10^9/L", "10*9/L", 1, 0.0, 0.2, 2, "704-7")
        ),
    ),
    # lipids
    _a(
        "cholesterol",
        "Cholesterol, Total",
        P.LIPID,
        _two(
            U("mg/dL", "mg/dL", 1, None, 200, 0, "2093-3"),
            U("mmol/L", "mmol/L", 0.02586, None, 5.2, 1, "14647-2"),
        ),
    ),
    _a(
        "hdl",
        "HDL Cholesterol",
        P.LIPID,
        _two(
            U("mg/dL", "mg/dL", 1, 40, None, 0, "2085-9"),
            U("mmol/L", "mmol/L", 0.02586, 1.0, None, 1, "14646-4"),
        ),
    ),
    _a(
        "ldl",
        "LDL Cholesterol (calc)",
        P.LIPID,
        _two(
            U("mg/dL", "mg/dL", 1, None, 100, 0, "13457-7"),
            U("mmol/L", "mmol/L", 0.02586, None, 2.6, 1, "39469-2"),
        ),
    ),
    _a(
        "triglycerides",
        "Triglycerides",
        P.LIPID,
        _two(
            U("mg/dL", "mg/dL", 1, None, 150, 0, "2571-8"),
            U("mmol/L", "mmol/L", 0.01129, None, 1.7, 1, "14927-8"),
        ),
    ),
    # diabetes, thyroid
    _a("hba1c", "Hemoglobin A1c", P.DIABETES, _same("%", "%", 4.0, 5.6, 1, "4548-4")),
    _a(
        "tsh",
        "TSH",
        P.THYROID,
        _two(
            U("uIU/mL", "u[IU]/mL", 1, 0.45, 4.5, 2, "3016-3"),
            U("mIU/L", "m[IU]/L", 1, 0.45, 4.5, 2, "3016-3"),
        ),
    ),
    _a(
        "ft4",
        "Free T4",
        P.THYROID,
        _two(
            U("ng/dL", "ng/dL", 1, 0.82, 1.77, 2, "3024-7"),
            U("pmol/L", "pmol/L", 12.87, 10.6, 22.8, 1, "14920-3"),
        ),
    ),
    # urinalysis (dipstick)
    _a("urine_ph", "pH, Urine", P.URINALYSIS, _same("", None, 5.0, 8.0, 1, "5803-2")),
    _a("urine_sg", "Specific Gravity", P.URINALYSIS, _same("", None, 1.005, 1.03, 3, "5811-5")),
    _a("urine_protein", "Protein, Urine", P.URINALYSIS, _same("", None, None, None, 0, "5804-0"), "negative"),
    _a("urine_glucose", "Glucose, Urine", P.URINALYSIS, _same("", None, None, None, 0, "5792-7"), "negative"),
    _a("urine_nitrite", "Nitrite", P.URINALYSIS, _same("", None, None, None, 0, "5802-4"), "negative"),
    _a(
        "urine_leukocytes",
        "Leukocyte Esterase",
        P.URINALYSIS,
        _same("", None, None, None, 0, "5799-2"),
        "negative",
    ),
    # coagulation
    _a("pt", "Prothrombin Time", P.COAGULATION, _same("sec", "s", 11.0, 13.5, 1, "5902-2")),
    _a("inr", "INR", P.COAGULATION, _same("", "{INR}", 0.8, 1.1, 1, "6301-6")),
    _a("aptt", "aPTT", P.COAGULATION, _same("sec", "s", 25, 35, 1, "3173-2")),
    # iron studies, vitamins
    _a(
        "iron",
        "Iron",
        P.IRON,
        _two(
            U("ug/dL", "ug/dL", 1, 60, 170, 0, "2498-4"),
            U("umol/L", "umol/L", 0.179, 10.7, 30.4, 1, "14798-3"),
        ),
    ),
    _a(
        "ferritin",
        "Ferritin",
        P.IRON,
        _two(U("ng/mL", "ng/mL", 1, 24, 336, 0, "2276-4"), U("ug/L", "ug/L", 1, 24, 336, 0, "2276-4")),
    ),
    _a(
        "tibc",
        "TIBC",
        P.IRON,
        _two(
            U("ug/dL", "ug/dL", 1, 250, 450, 0, "2500-7"), U("umol/L", "umol/L", 0.179, 45, 81, 0, "14800-7")
        ),
    ),
    _a("tsat", "Transferrin Saturation", P.IRON, _same("%", "%", 20, 50, 0, "2502-3")),
    _a(
        "b12",
        "Vitamin B12",
        P.VITAMINS,
        _two(
            U("pg/mL", "pg/mL", 1, 232, 1245, 0, "2132-9"),
            U("pmol/L", "pmol/L", 0.738, 171, 919, 0, "14685-2"),
        ),
    ),
    _a(
        "folate",
        "Folate",
        P.VITAMINS,
        _two(
            U("ng/mL", "ng/mL", 1, 3.9, None, 1, "2284-8"),
            U("nmol/L", "nmol/L", 2.266, 8.8, None, 1, "14732-2"),
        ),
    ),
    _a(
        "vitamin_d",
        "Vitamin D, 25-Hydroxy",
        P.VITAMINS,
        _two(U("ng/mL", "ng/mL", 1, 30, 100, 0, "62292-8"), U("nmol/L", "nmol/L", 2.496, 75, 250, 0, None)),
    ),
    # inflammation, cardiac
    _a("crp", "C-Reactive Protein", P.INFLAMMATION, _same("mg/L", "mg/L", None, 5.0, 1, "1988-5")),
    # No method printed, so the method-less code (Westergren would be 4537-7).
    _a("esr", "Sedimentation Rate (ESR)", P.INFLAMMATION, _same("mm/h", "mm/h", 0, 20, 0, "30341-2")),
    _a("troponin_i", "Troponin I", P.CARDIAC, _same("ng/mL", "ng/mL", None, 0.04, 2, "10839-9")),
    _a(
        "bnp",
        "BNP",
        P.CARDIAC,
        _two(U("pg/mL", "pg/mL", 1, None, 100, 0, "30934-4"), U("ng/L", "ng/L", 1, None, 100, 0, "30934-4")),
    ),
    # other chemistry, tumour markers
    _a(
        "magnesium",
        "Magnesium",
        P.CHEMISTRY,
        _two(
            U("mg/dL", "mg/dL", 1, 1.7, 2.2, 1, "19123-9"),
            U("mmol/L", "mmol/L", 0.4114, 0.7, 0.91, 2, "2601-3"),
        ),
    ),
    _a(
        "phosphate",
        "Phosphorus",
        P.CHEMISTRY,
        _two(
            U("mg/dL", "mg/dL", 1, 2.5, 4.5, 1, "2777-1"),
            U("mmol/L", "mmol/L", 0.3229, 0.81, 1.45, 2, "14879-1"),
        ),
    ),
    _a(
        "uric_acid",
        "Uric Acid",
        P.CHEMISTRY,
        _two(
            U("mg/dL", "mg/dL", 1, 3.5, 7.2, 1, "3084-1"),
            U("umol/L", "umol/L", 59.48, 208, 428, 0, "14933-6"),
        ),
    ),
    _a(
        "psa",
        "PSA, Total",
        P.TUMOR,
        _two(U("ng/mL", "ng/mL", 1, None, 4.0, 2, "2857-1"), U("ug/L", "ug/L", 1, None, 4.0, 2, "2857-1")),
    ),
)

CATALOG: Final[dict[str, AnalyteDef]] = {d.key: d for d in _DEFS}


def analyte(key: str) -> AnalyteDef:
    """The catalog row for ``key``; raises ``KeyError`` naming the known keys."""
    try:
        return CATALOG[key]
    except KeyError:
        raise KeyError(f"unknown analyte {key!r}; known: {', '.join(sorted(CATALOG))}") from None


def panel_keys(panel: Panel) -> tuple[str, ...]:
    """The catalog keys printed under ``panel``, in print order."""
    return tuple(d.key for d in _DEFS if d.panel is panel)
