"""The analyte-name -> LOINC table for printed lab reports (pure).

A printed report names a test ("Hgb", "Potassium, serum", "ALT (SGPT)"); this table maps those
names to one LOINC code, its display and the default UCUM unit. Matching is on a normalised
name (case, punctuation, blanks, specimen words such as "serum"); a few names only make sense
with their unit (``Neutrophils`` in % or in 10*3/uL) or their panel (``Glucose`` under
URINALYSIS). A name that matches nothing, or matches several codes that the unit and panel do
not separate, resolves to ``loinc=None`` with a reason: it is reported, never guessed.

Every code (primary and molar) was reviewed against public material that reproduces LOINC
(the LOINC Top 2000 table, HL7 implementation guides); ``tools/labs/LOINC_REVIEW.md`` lists each
code with its long name, status and source, and what stays to check against a LOINC release.
Each code's check digit is validated at import (``is_valid_loinc``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final, Literal

from tools.labs.analytes import LOINC_SYSTEM as LOINC_SYSTEM
from tools.labs.analytes import Analyte, analyte_for_coding
from tools.labs.units import (
    EGFR_UNIT,
    UnitConversionError,
    convert_dimensional,
    dimension_of,
    normalize_unit,
)

__all__ = [
    "CATALOG",
    "CatalogEntry",
    "Resolution",
    "Specimen",
    "is_valid_loinc",
    "normalize_name",
    "resolve",
    "to_default_unit",
]

Specimen = Literal["blood", "urine"]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    loinc: str
    display: str
    unit: str | None  # default UCUM unit; None for qualitative (ordinal/nominal) tests
    names: tuple[str, ...]  # synonyms as printed; normalised at import
    specimen: Specimen = "blood"
    # Units (normalised UCUM) that select this entry when several share a name: "%" vs a count.
    units: tuple[str, ...] = ()
    # The code when the report prints a substance unit (mmol/L) for a test whose default is a
    # mass unit (mg/dL): LOINC codes the quantity, so glucose in mmol/L is 14749-6, not 2345-7.
    # None: no molar code known here, the result stays uncoded rather than mis-coded.
    molar: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a printed name resolved to: an entry, or ``None`` and why (``unknown``/``ambiguous``)."""

    name: str
    entry: CatalogEntry | None
    reason: Literal["matched", "unknown", "ambiguous", "no code for unit"]

    @property
    def loinc(self) -> str | None:
        return self.entry.loinc if self.entry else None


_COUNT = ("10*3/uL", "10*9/L")
_MOLAR: Final = dimension_of("mmol/L")
_MASS: Final = dimension_of("mg/dL")
_PCT = ("%",)


def _e(
    loinc: str,
    display: str,
    unit: str | None,
    *names: str,
    specimen: Specimen = "blood",
    units: tuple[str, ...] = (),
    molar: str | None = None,
) -> CatalogEntry:
    return CatalogEntry(loinc, display, unit, (display, *names), specimen, units, molar)


CATALOG: Final[tuple[CatalogEntry, ...]] = (
    # --- basic / comprehensive metabolic panel ---
    _e(
        "2345-7",
        "Glucose",
        "mg/dL",
        "glucose serum",
        "glu",
        "blood glucose",
        "glucose random",
        molar="14749-6",
    ),
    _e(
        "1558-6",
        "Glucose fasting",
        "mg/dL",
        "fasting glucose",
        "glucose fasting",
        "fbg",
        "fpg",
        molar="14771-0",
    ),
    # BUN printed in mmol/L is urea nitrogen in moles (14937-7); a lab that prints "Urea" in
    # mmol/L reports urea itself (22664-7). Same number (one N2 per urea), different LOINC component.
    _e(
        "3094-0", "Urea nitrogen", "mg/dL", "bun", "blood urea nitrogen", "urea nitrogen bun", molar="14937-7"
    ),
    _e("22664-7", "Urea", "mmol/L", "urea serum"),
    _e("2160-0", "Creatinine", "mg/dL", "creat", "cr", "crea", molar="14682-9"),
    _e("2951-2", "Sodium", "mmol/L", "na", "sodium na"),
    _e("2823-3", "Potassium", "mmol/L", "k", "potassium k"),
    _e("2075-0", "Chloride", "mmol/L", "cl", "chloride cl"),
    _e(
        "2028-9",
        "Carbon dioxide total",
        "mmol/L",
        "co2",
        "total co2",
        "tco2",
        "carbon dioxide",
        "co2 total",
    ),
    # A report that prints "Bicarbonate" reports bicarbonate, which LOINC codes apart from total CO2.
    _e("1963-8", "Bicarbonate", "mmol/L", "hco3", "bicarbonate hco3"),
    _e("17861-6", "Calcium", "mg/dL", "ca", "calcium total", "total calcium", molar="2000-8"),
    _e("1994-3", "Calcium ionized", "mmol/L", "ionized calcium", "ica", "calcium ionised"),
    _e("2885-2", "Protein total", "g/dL", "total protein", "tp", "protein"),
    _e("1751-7", "Albumin", "g/dL", "alb"),
    _e("10834-0", "Globulin", "g/dL", "glob"),
    _e("1759-0", "Albumin/Globulin ratio", None, "a g ratio", "albumin globulin ratio", "ag ratio"),
    _e(
        "1975-2",
        "Bilirubin total",
        "mg/dL",
        "total bilirubin",
        "tbil",
        "t bili",
        "bilirubin",
        molar="14631-6",
    ),
    _e(
        "1968-7",
        "Bilirubin direct",
        "mg/dL",
        "direct bilirubin",
        "dbil",
        "conjugated bilirubin",
        molar="14629-0",
    ),
    _e(
        "1971-1",
        "Bilirubin indirect",
        "mg/dL",
        "indirect bilirubin",
        "unconjugated bilirubin",
        molar="14630-8",
    ),
    _e("6768-6", "Alkaline phosphatase", "U/L", "alp", "alk phos", "alkaline phosphatase alp"),
    _e(
        "1920-8",
        "AST",
        "U/L",
        "aspartate aminotransferase",
        "sgot",
        "ast sgot",
        "aspartate aminotransferase ast",
    ),
    _e(
        "1742-6", "ALT", "U/L", "alanine aminotransferase", "sgpt", "alt sgpt", "alanine aminotransferase alt"
    ),
    _e("2324-2", "Gamma glutamyl transferase", "U/L", "ggt", "gamma gt", "ggtp", "gamma glutamyltransferase"),
    _e("2532-0", "Lactate dehydrogenase", "U/L", "ldh", "ld"),
    _e("2157-6", "Creatine kinase", "U/L", "ck", "cpk", "creatine kinase total"),
    _e("13969-1", "CK-MB", "ng/mL", "ck mb", "creatine kinase mb"),
    _e("1798-8", "Amylase", "U/L", "amy"),
    _e("3040-3", "Lipase", "U/L", "lip"),
    _e("33037-3", "Anion gap", "mmol/L", "agap", "anion gap calc"),
    _e("3097-3", "BUN/Creatinine ratio", None, "bun creatinine ratio", "bun creat ratio"),
    # eGFR without an equation is LOINC's method-less term; a named equation selects its own term.
    # "CKD-EPI" without a year is the 2009 equation (62238-1) or the 2021 refit (98979-8): ambiguous.
    _e(
        "69405-9",
        "eGFR",
        EGFR_UNIT,
        "egfr",
        "gfr estimated",
        "estimated gfr",
        "estimated glomerular filtration rate",
    ),
    _e("33914-3", "eGFR (MDRD)", EGFR_UNIT, "egfr mdrd"),
    _e("62238-1", "eGFR (CKD-EPI 2009)", EGFR_UNIT, "egfr ckd epi 2009", "egfr ckd epi"),
    _e("98979-8", "eGFR (CKD-EPI 2021)", EGFR_UNIT, "egfr ckd epi 2021", "egfr ckd epi"),
    _e("19123-9", "Magnesium", "mg/dL", "mg", "magnesium mg", molar="2601-3"),
    _e(
        "2777-1",
        "Phosphate",
        "mg/dL",
        "phosphorus",
        "phos",
        "phosphate inorganic",
        "inorganic phosphorus",
        molar="14879-1",
    ),
    _e("3084-1", "Uric acid", "mg/dL", "urate", molar="14933-6"),
    _e("2692-2", "Osmolality", "mosm/kg", "serum osmolality", "osmolality serum"),
    _e("2524-7", "Lactate", "mmol/L", "lactic acid"),
    _e("33863-2", "Cystatin C", "mg/L"),
    _e("14338-8", "Prealbumin", "mg/dL", "transthyretin"),
    # --- CBC with differential ---
    _e(
        "6690-2",
        "WBC",
        "10*3/uL",
        "white blood cells",
        "white blood cell count",
        "leukocytes",
        "wbc count",
        "white cell count",
        "total leukocyte count",
    ),
    _e(
        "789-8",
        "RBC",
        "10*6/uL",
        "red blood cells",
        "red blood cell count",
        "erythrocytes",
        "rbc count",
        "red cell count",
    ),
    _e("718-7", "Hemoglobin", "g/dL", "hgb", "hb", "haemoglobin", molar="59260-0"),
    _e("4544-3", "Hematocrit", "%", "hct", "haematocrit", "packed cell volume", "pcv"),
    _e("787-2", "MCV", "fL", "mean corpuscular volume", "mean cell volume"),
    _e("785-6", "MCH", "pg", "mean corpuscular hemoglobin", "mean cell hemoglobin"),
    _e("786-4", "MCHC", "g/dL", "mean corpuscular hemoglobin concentration"),
    _e("788-0", "RDW", "%", "rdw cv", "red cell distribution width", "red cell distribution width cv"),
    _e("777-3", "Platelets", "10*3/uL", "plt", "platelet count", "platelet", "thrombocytes"),
    _e("32623-1", "MPV", "fL", "mean platelet volume"),
    _e("4679-7", "Reticulocytes", "%", "retic", "reticulocyte count", "reticulocytes percent"),
    _e(
        "770-8",
        "Neutrophils %",
        "%",
        "neutrophils",
        "neut",
        "neutrophil",
        "neut %",
        "neutrophils percent",
        units=_PCT,
    ),
    # Segmented neutrophils are a manual-differential term of their own, not the automated count.
    _e("769-0", "Segmented neutrophils %", "%", "segmented neutrophils", "segs", "neutrophils segmented"),
    _e(
        "751-8",
        "Neutrophils #",
        "10*3/uL",
        "neutrophils",
        "neut",
        "neutrophil",
        "neut #",
        "absolute neutrophils",
        "neutrophils absolute",
        "anc",
        "absolute neutrophil count",
        units=_COUNT,
    ),
    _e(
        "736-9",
        "Lymphocytes %",
        "%",
        "lymphocytes",
        "lymph",
        "lymphs",
        "lymph %",
        "lymphocytes percent",
        units=_PCT,
    ),
    _e(
        "731-0",
        "Lymphocytes #",
        "10*3/uL",
        "lymphocytes",
        "lymph",
        "lymphs",
        "lymph #",
        "absolute lymphocytes",
        "lymphocytes absolute",
        "alc",
        units=_COUNT,
    ),
    _e("5905-5", "Monocytes %", "%", "monocytes", "mono", "monos", "mono %", "monocytes percent", units=_PCT),
    _e(
        "742-7",
        "Monocytes #",
        "10*3/uL",
        "monocytes",
        "mono",
        "monos",
        "mono #",
        "absolute monocytes",
        "monocytes absolute",
        units=_COUNT,
    ),
    _e(
        "713-8",
        "Eosinophils %",
        "%",
        "eosinophils",
        "eos",
        "eosinophil",
        "eos %",
        "eosinophils percent",
        units=_PCT,
    ),
    _e(
        "711-2",
        "Eosinophils #",
        "10*3/uL",
        "eosinophils",
        "eos",
        "eosinophil",
        "eos #",
        "absolute eosinophils",
        "eosinophils absolute",
        units=_COUNT,
    ),
    _e("706-2", "Basophils %", "%", "basophils", "baso", "basos", "baso %", "basophils percent", units=_PCT),
    _e(
        "704-7",
        "Basophils #",
        "10*3/uL",
        "basophils",
        "baso",
        "basos",
        "baso #",
        "absolute basophils",
        "basophils absolute",
        units=_COUNT,
    ),
    _e("764-1", "Band neutrophils %", "%", "bands", "band neutrophils", "band forms"),
    # --- lipids ---
    _e(
        "2093-3",
        "Cholesterol total",
        "mg/dL",
        "total cholesterol",
        "cholesterol",
        "chol",
        "tc",
        molar="14647-2",
    ),
    _e(
        "2085-9",
        "HDL cholesterol",
        "mg/dL",
        "hdl",
        "hdl c",
        "cholesterol in hdl",
        "hdl chol",
        molar="14646-4",
    ),
    # A bare "LDL" does not say calculated or measured: 2089-1 is the method-less code.
    _e(
        "2089-1",
        "LDL cholesterol",
        "mg/dL",
        "ldl",
        "ldl c",
        "cholesterol in ldl",
        "ldl chol",
        molar="22748-8",
    ),
    _e(
        "13457-7",
        "LDL cholesterol (calculated)",
        "mg/dL",
        "ldl calculated",
        "ldl calc",
        "ldl c calc",
        "ldl cholesterol calc",
        "ldl cholesterol calculated",
        "ldl friedewald",
        molar="39469-2",
    ),
    _e(
        "18262-6",
        "LDL cholesterol (direct)",
        "mg/dL",
        "ldl direct",
        "direct ldl",
        "ldl cholesterol direct",
        molar="69419-0",
    ),
    _e("2571-8", "Triglycerides", "mg/dL", "trig", "trigs", "tg", "triglyceride", molar="14927-8"),
    _e(
        "43396-1",
        "Non-HDL cholesterol",
        "mg/dL",
        "non hdl",
        "non hdl c",
        "non hdl cholesterol",
        molar="70204-3",
    ),
    _e("13458-5", "VLDL cholesterol", "mg/dL", "vldl", "vldl c", "vldl cholesterol calc", molar="66126-4"),
    _e(
        "9830-1",
        "Cholesterol/HDL ratio",
        None,
        "chol hdl ratio",
        "total cholesterol hdl ratio",
        "tc hdl ratio",
    ),
    _e("10835-7", "Lipoprotein(a)", "mg/dL", "lp a", "lipoprotein a"),
    _e("1884-6", "Apolipoprotein B", "mg/dL", "apo b", "apob"),
    # --- diabetes ---
    _e(
        "4548-4",
        "Hemoglobin A1c",
        "%",
        "hba1c",
        "a1c",
        "hb a1c",
        "glycated hemoglobin",
        "glycohemoglobin",
        "haemoglobin a1c",
        "glycosylated hemoglobin",
    ),
    _e(
        "27353-2",
        "Estimated average glucose",
        "mg/dL",
        "eag",
        "estimated average glucose eag",
        molar="53553-4",
    ),
    _e("20448-7", "Insulin", "u[IU]/mL", "insulin fasting"),
    _e("1986-9", "C-peptide", "ng/mL", "c peptide"),
    # --- thyroid ---
    _e("3016-3", "TSH", "m[IU]/L", "thyroid stimulating hormone", "thyrotropin", "tsh 3rd generation"),
    _e("3024-7", "Free T4", "ng/dL", "ft4", "t4 free", "thyroxine free", "free thyroxine", molar="14920-3"),
    _e(
        "3051-0",
        "Free T3",
        "pg/mL",
        "ft3",
        "t3 free",
        "free triiodothyronine",
        "triiodothyronine free",
        molar="14928-6",
    ),
    _e("3026-2", "Total T4", "ug/dL", "t4 total", "thyroxine", "t4", "thyroxine total", molar="14921-1"),
    _e(
        "3053-6",
        "Total T3",
        "ng/dL",
        "t3 total",
        "t3",
        "triiodothyronine",
        "triiodothyronine total",
        molar="14930-2",
    ),
    # --- iron studies, vitamins ---
    _e("2498-4", "Iron", "ug/dL", "serum iron", "fe", "iron total", molar="14798-3"),
    _e("2500-7", "TIBC", "ug/dL", "total iron binding capacity", "iron binding capacity", molar="14800-7"),
    _e(
        "2502-3",
        "Transferrin saturation",
        "%",
        "iron saturation",
        "tsat",
        "transferrin sat",
        "percent saturation",
        "iron sat",
    ),
    _e("3034-6", "Transferrin", "mg/dL"),
    _e("2276-4", "Ferritin", "ng/mL"),
    _e(
        "2132-9",
        "Vitamin B12",
        "pg/mL",
        "b12",
        "cobalamin",
        "vitamin b 12",
        "cyanocobalamin",
        molar="14685-2",
    ),
    _e("2284-8", "Folate", "ng/mL", "folic acid", "serum folate", "folate serum", molar="14732-2"),
    _e(
        "62292-8",
        "25-hydroxyvitamin D",
        "ng/mL",
        "vitamin d",
        "vitamin d 25 hydroxy",
        "25 oh vitamin d",
        "25 hydroxy vitamin d",
        "vitamin d 25 oh",
        "25 oh d",
        "vit d 25 oh",
        "vitamin d total",
    ),
    _e("13965-9", "Homocysteine", "umol/L"),
    # --- inflammation, cardiac ---
    _e("1988-5", "C-reactive protein", "mg/L", "crp", "c reactive protein"),
    _e(
        "30522-7",
        "hs-CRP",
        "mg/L",
        "hs crp",
        "high sensitivity crp",
        "crp high sensitivity",
        "hscrp",
        "c reactive protein high sensitivity",
    ),
    _e(
        "30341-2",
        "ESR",
        "mm/h",
        "erythrocyte sedimentation rate",
        "sed rate",
        "sedimentation rate",
        "sedimentation rate esr",
        "esr sed rate",
    ),
    _e("4537-7", "ESR (Westergren)", "mm/h", "esr westergren", "sed rate westergren"),
    _e("33959-8", "Procalcitonin", "ng/mL", "pct"),
    _e("10839-9", "Troponin I", "ng/mL", "tni", "ctni", "cardiac troponin i", "troponin i cardiac"),
    _e(
        "89579-7",
        "Troponin I (high sensitivity)",
        "ng/L",
        "hs troponin i",
        "hs tni",
        "hs ctni",
        "troponin i high sensitivity",
        "high sensitivity troponin i",
    ),
    _e("6598-7", "Troponin T", "ug/L", "tnt", "ctnt", "cardiac troponin t", "troponin t cardiac"),
    _e(
        "67151-1",
        "Troponin T (high sensitivity)",
        "ng/L",
        "hs troponin t",
        "hs tnt",
        "hs ctnt",
        "troponin t high sensitivity",
        "high sensitivity troponin t",
    ),
    _e("30934-4", "BNP", "pg/mL", "b type natriuretic peptide", "brain natriuretic peptide"),
    _e("33762-6", "NT-proBNP", "pg/mL", "nt pro bnp", "ntprobnp", "n terminal pro bnp", "nt probnp"),
    _e("2639-3", "Myoglobin", "ng/mL"),
    _e("4542-7", "Haptoglobin", "mg/dL"),
    # --- hormones, tumour markers ---
    _e("2857-1", "PSA", "ng/mL", "prostate specific antigen", "psa total", "total psa"),
    _e("10886-0", "Free PSA", "ng/mL", "psa free", "prostate specific antigen free"),
    _e("2143-6", "Cortisol", "ug/dL", "cortisol am", "cortisol serum"),
    _e("2986-8", "Testosterone", "ng/dL", "testosterone total", "total testosterone", molar="14913-8"),
    # --- coagulation ---
    _e("5902-2", "Prothrombin time", "s", "pt", "protime", "prothrombin time pt"),
    _e("6301-6", "INR", "{INR}", "inr pt", "international normalized ratio", "pt inr"),
    _e("3173-2", "aPTT", "s", "ptt", "activated partial thromboplastin time", "partial thromboplastin time"),
    _e("3255-7", "Fibrinogen", "mg/dL", "fibrinogen activity"),
    _e("48065-7", "D-dimer FEU", "ng/mL{FEU}", "d dimer feu"),
    _e("48066-5", "D-dimer DDU", "ng/mL{DDU}", "d dimer ddu"),
    # --- urine chemistry ---
    _e(
        "9318-7",
        "Albumin/Creatinine ratio (urine)",
        "mg/g",
        "uacr",
        "acr",
        "albumin creatinine ratio",
        "microalbumin creatinine ratio",
        "urine albumin creatinine ratio",
        specimen="urine",
    ),
    _e(
        "14957-5",
        "Microalbumin (urine)",
        "mg/L",
        "microalbumin",
        "urine microalbumin",
        "urine albumin",
        specimen="urine",
    ),
    _e("2161-8", "Creatinine (urine)", "mg/dL", "urine creatinine", "creatinine urine", specimen="urine"),
    _e(
        "2890-2",
        "Protein/Creatinine ratio (urine)",
        "mg/mg",
        "upcr",
        "protein creatinine ratio",
        "urine protein creatinine ratio",
        specimen="urine",
    ),
    # --- urinalysis (names under a URINALYSIS panel, or with "urine" in the name) ---
    _e("5778-6", "Color (urine)", None, "color", "colour", "urine color", specimen="urine"),
    _e("5767-9", "Appearance (urine)", None, "appearance", "clarity", "urine appearance", specimen="urine"),
    _e(
        "5811-5",
        "Specific gravity (urine)",
        None,
        "specific gravity",
        "sp gr",
        "sg",
        "urine specific gravity",
        specimen="urine",
    ),
    _e("5803-2", "pH (urine)", None, "ph", "urine ph", specimen="urine"),
    _e("5804-0", "Protein (urine)", "mg/dL", "protein", "urine protein", "protein urine", specimen="urine"),
    _e("5792-7", "Glucose (urine)", "mg/dL", "glucose", "urine glucose", "glucose urine", specimen="urine"),
    _e("5797-6", "Ketones (urine)", "mg/dL", "ketones", "ketone", "urine ketones", specimen="urine"),
    _e(
        "5794-3",
        "Blood (urine)",
        None,
        "blood",
        "occult blood",
        "urine blood",
        "hemoglobin urine",
        specimen="urine",
    ),
    _e(
        "5799-2",
        "Leukocyte esterase (urine)",
        None,
        "leukocyte esterase",
        "leukocytes",
        "leuk esterase",
        specimen="urine",
    ),
    _e("5802-4", "Nitrite (urine)", None, "nitrite", "nitrites", "urine nitrite", specimen="urine"),
    _e("5770-3", "Bilirubin (urine)", None, "bilirubin", "urine bilirubin", specimen="urine"),
    # 5818-0 is urobilinogen [Presence] (ordinal); a result in mg/dL is the mass term 20405-7.
    _e("20405-7", "Urobilinogen (urine)", "mg/dL", "urobilinogen", "urine urobilinogen", specimen="urine"),
    _e(
        "5821-4",
        "WBC (urine sediment)",
        "/[HPF]",
        "wbc",
        "wbc hpf",
        "urine wbc",
        "white blood cells",
        specimen="urine",
    ),
    _e(
        "13945-1",
        "RBC (urine sediment)",
        "/[HPF]",
        "rbc",
        "rbc hpf",
        "urine rbc",
        "red blood cells",
        specimen="urine",
    ),
)

# Printed words that add nothing to the identity of a test.
_NOISE: Final = frozenset({"serum", "plasma", "ser", "plas", "s", "p", "level", "lvl", "result", "test"})
_URINE_WORDS: Final = frozenset({"urine", "ur", "urinalysis", "ua"})
_ABBREVIATIONS: Final = {
    "tot": "total",
    "chol": "cholesterol",
    "hgb": "hemoglobin",
    "haemoglobin": "hemoglobin",
    "calc": "calculated",
    "abs": "absolute",
    "no": "#",
    "pct": "%",
    "percent": "%",
}


def normalize_name(name: str) -> str:
    """Lower case, punctuation to blanks (``%`` and ``#`` kept), blanks collapsed."""
    text = name.lower().replace("µ", "u")
    text = re.sub(r"[^a-z0-9%#]+", " ", text)
    text = re.sub(r"([%#])", r" \1 ", text)
    return " ".join(text.split())


def _reduced(norm: str) -> tuple[str, bool]:
    """``norm`` without specimen noise, with abbreviations expanded; and whether it said urine."""
    words = norm.split()
    urine = any(w in _URINE_WORDS for w in words)
    kept = [_ABBREVIATIONS.get(w, w) for w in words if w not in _NOISE and w not in _URINE_WORDS]
    return " ".join(kept), urine


def _build_index() -> dict[tuple[str, Specimen], tuple[CatalogEntry, ...]]:
    index: dict[tuple[str, Specimen], list[CatalogEntry]] = {}
    for entry in CATALOG:
        for raw in entry.names:
            key, _ = _reduced(normalize_name(raw))
            if not key:
                raise ValueError(f"{entry.loinc}: synonym {raw!r} is empty once specimen words are dropped")
            bucket = index.setdefault((key, entry.specimen), [])
            if entry not in bucket:
                bucket.append(entry)
    return {k: tuple(v) for k, v in index.items()}


_INDEX: Final = _build_index()


def resolve(name: str, *, unit: str | None = None, panel: str | None = None) -> Resolution:
    """The catalog entry for a printed test name; the unit and panel heading break ties.

    ``panel`` is the heading the row was printed under: a URINALYSIS (or "urine") heading
    selects the urine rows. Several candidates that the unit does not separate -> ``ambiguous``.
    """
    key, says_urine = _reduced(normalize_name(name))
    if not key:
        return Resolution(name, None, "unknown")
    panel_urine = panel is not None and bool(_URINE_WORDS & set(normalize_name(panel).split()))
    specimens: tuple[Specimen, ...] = ("urine",) if (says_urine or panel_urine) else ("blood", "urine")
    candidates: tuple[CatalogEntry, ...] = ()
    # A urine name never falls back to a blood code: it stays unknown instead.
    for specimen in specimens:
        candidates = _INDEX.get((key, specimen), ())
        if candidates:
            break
    if not candidates:
        return Resolution(name, None, "unknown")
    if len(candidates) > 1:
        norm_unit = normalize_unit(unit)
        by_unit = [c for c in candidates if norm_unit is not None and norm_unit in c.units]
        if len(by_unit) != 1:
            return Resolution(name, None, "ambiguous")
        candidates = (by_unit[0],)
    entry = candidates[0]
    printed = normalize_unit(unit)
    printed_dim = dimension_of(printed) if printed else None
    entry_dim = dimension_of(entry.unit) if entry.unit else None
    if printed_dim is None or entry_dim is None or printed_dim == entry_dim:
        return Resolution(name, entry, "matched")
    # Another kind of quantity than the code's: LOINC codes the quantity, so glucose in mmol/L
    # is another code than glucose in mg/dL; without that code the result stays uncoded.
    if printed_dim == _MOLAR and entry_dim == _MASS and entry.molar is not None:
        return Resolution(name, replace(entry, loinc=entry.molar, unit=printed), "matched")
    return Resolution(name, None, "no code for unit")


def to_default_unit(entry: CatalogEntry, value: float, unit: str | None) -> float:
    """``value`` in the entry's default unit; ``UnitConversionError`` when no conversion is known.

    Uses the analyte table's substance conversions (mmol/L glucose -> mg/dL) where the code is
    one of its analytes, else a same-dimension step (g/L -> g/dL).
    """
    norm = normalize_unit(unit)
    if entry.unit is None or norm is None:
        raise UnitConversionError(str(unit), str(entry.unit), "no unit to convert")
    if norm == entry.unit:
        return value
    analyte: Analyte | None = analyte_for_coding(LOINC_SYSTEM, entry.loinc)
    if analyte is not None and analyte.unit == entry.unit:
        return analyte.to_canonical(value, norm)
    return convert_dimensional(value, norm, entry.unit)


_LOINC_RE: Final = re.compile(r"^(\d{1,7})-(\d)$")


def is_valid_loinc(code: str) -> bool:
    """Whether ``code`` has the LOINC shape ``NNNNN-C`` and its mod-10 check digit is right.

    LOINC's check digit is the Luhn mod-10 of the number: it catches one mistyped digit and most
    swaps of neighbours (it is how 1971-6 and 14879-4 were found to be typos), not a wrong code.
    """
    match = _LOINC_RE.match(code)
    if match is None:
        return False
    total = 0
    for position, char in enumerate(reversed(match.group(1))):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit // 10 + digit % 10
    return (10 - total % 10) % 10 == int(match.group(2))


def _check_against_analytes() -> None:
    # A code in both tables must not carry two different default units.
    for entry in CATALOG:
        for code in (entry.loinc, entry.molar):
            if code is not None and not is_valid_loinc(code):
                raise ValueError(f"{code}: not a LOINC code (shape or check digit)")
        analyte = analyte_for_coding(LOINC_SYSTEM, entry.loinc)
        if analyte is not None and analyte.primary_loinc == entry.loinc and analyte.unit != entry.unit:
            raise ValueError(
                f"{entry.loinc}: unit {entry.unit} differs from the analyte table's {analyte.unit}"
            )


_check_against_analytes()
