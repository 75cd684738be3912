"""The analyte-name -> LOINC table for printed lab reports (pure).

A printed report names a test ("Hgb", "Potassium, serum", "ALT (SGPT)", "fS-Glukose"); this
table maps those names to one LOINC code, its display and the default UCUM unit. The name is read
by ``tools.labs.printed_names`` (specimen prefixes and words, fasting, method words, accents,
German and Nordic words), then matched as printed, in any word order, and without the method
words the code does not depend on; a few names only make sense with their unit (``Neutrophils``
in % or in 10*3/uL, ``HbA1c`` in % or mmol/mol) or their panel (``Glucose`` under URINALYSIS).
A name that matches nothing, names a specimen the code is not for, or matches several codes that
the unit and panel do not separate, resolves to ``loinc=None`` with a reason and a ``detail``: it
is reported and counted, never guessed.

Every code (primary and molar) was reviewed against public material that reproduces LOINC
(the LOINC Top 2000 table, HL7 implementation guides); ``tools/labs/LOINC_REVIEW.md`` lists each
code with its long name, status and source, and what stays to check against a LOINC release.
Each code's check digit is validated at import (``is_valid_loinc``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final, Literal

from tools.labs.analytes import LOINC_SYSTEM as LOINC_SYSTEM
from tools.labs.analytes import Analyte, analyte_for_coding
from tools.labs.printed_names import DROPPABLE, PrintedName, SpecimenSaid, normalize_name, read_name
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
    # LOINC's system is Blood (whole blood or its cells), not Serum or Plasma: a name that says
    # serum or plasma ("S-Hb") never gets this code, a name that says whole blood ("B-Glucose")
    # only gets such codes.
    whole_blood: bool = False
    # Codes for another kind of unit than ``unit``: (unit, code), e.g. HbA1c in mmol/mol (IFCC).
    alt_units: tuple[tuple[str, str], ...] = ()
    # Method words that select another code in this test's family ("ifcc" for HbA1c): a name
    # with one of them never falls back to this entry by dropping the word.
    keeps: frozenset[str] = frozenset()
    # A generic urinalysis name ("Color", "pH", "Blood"): resolves only with urine context
    # (the name, a U- prefix or the panel heading), never as a fallback for a blood name.
    needs_context: bool = False
    # Synonyms of this entry that, like a ``needs_context`` entry's names, resolve only with
    # urine context: "pus cells" are leukocytes per high-power field in a urine sediment, and in
    # a stool examination too, so a bare "Pus cells" under no urine heading is refused.
    context_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a printed name resolved to: an entry, or ``None`` and why (``unknown``/``ambiguous``).

    ``detail`` says why in words ("ambiguous: 2 candidates (770-8, 751-8)"); ``candidates`` are
    the codes an ambiguous name could have meant, so a caller can count and list them.
    """

    name: str
    entry: CatalogEntry | None
    reason: Literal["matched", "unknown", "ambiguous", "no code for unit"]
    detail: str = ""
    candidates: tuple[str, ...] = ()

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
    whole_blood: bool = False,
    alt_units: tuple[tuple[str, str], ...] = (),
    keeps: frozenset[str] = frozenset(),
    needs_context: bool = False,
    context_names: tuple[str, ...] = (),
) -> CatalogEntry:
    return CatalogEntry(
        loinc,
        display,
        unit,
        (display, *names, *context_names),
        specimen,
        units,
        molar,
        whole_blood,
        alt_units,
        keeps,
        needs_context,
        context_names,
    )


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
        keeps=frozenset({"fasting"}),
    ),
    _e(
        "1558-6",
        "Glucose fasting",
        "mg/dL",
        "fasting glucose",
        "glucose fasting",
        "fbg",
        "fpg",
        "fasting blood glucose",
        "fasting blood sugar",
        "fbs",
        "fasting plasma glucose",
        molar="14771-0",
    ),
    # BUN printed in mmol/L is urea nitrogen in moles (14937-7); a lab that prints "Urea" in
    # mmol/L reports urea itself (22664-7). Same number (one N2 per urea), different LOINC component.
    _e(
        "3094-0",
        "Urea nitrogen",
        "mg/dL",
        "bun",
        "blood urea nitrogen",
        "urea nitrogen bun",
        "urea n",
        "urea nitrogen blood",
        "bun urea nitrogen",
        molar="14937-7",
    ),
    _e("22664-7", "Urea", "mmol/L", "urea serum", "urea"),
    _e("2160-0", "Creatinine", "mg/dL", "creat", "cr", "crea", "creatinine serum", molar="14682-9"),
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
        "co2 content",
        "carbon dioxide co2",
    ),
    # A report that prints "Bicarbonate" reports bicarbonate, which LOINC codes apart from total CO2.
    _e("1963-8", "Bicarbonate", "mmol/L", "hco3", "bicarbonate hco3", "hco3 bicarbonate", "bicarb"),
    _e("17861-6", "Calcium", "mg/dL", "ca", "calcium total", "total calcium", molar="2000-8"),
    _e("1994-3", "Calcium ionized", "mmol/L", "ionized calcium", "ica", "calcium ionised", whole_blood=True),
    _e("2885-2", "Protein total", "g/dL", "total protein", "tp", "protein"),
    _e("1751-7", "Albumin", "g/dL", "alb", units=("g/dL", "g/L"), keeps=frozenset({"bcg", "bcp"})),
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
        "t bil",
        "bili total",
        "bilirubin total tbil",
        molar="14631-6",
    ),
    _e(
        "1968-7",
        "Bilirubin direct",
        "mg/dL",
        "direct bilirubin",
        "dbil",
        # Not "conjugated bilirubin": LOINC keeps conjugated (and unconjugated) bilirubin apart
        # from direct and indirect (a different measurement), and neither term is reviewed here.
        molar="14629-0",
    ),
    _e(
        "1971-1",
        "Bilirubin indirect",
        "mg/dL",
        "indirect bilirubin",
        molar="14630-8",
    ),
    _e(
        "6768-6",
        "Alkaline phosphatase",
        "U/L",
        "alp",
        "alk phos",
        "alkaline phosphatase alp",
        "alkaline phosphatase alk phos",
        "alk phosphatase",
        "ap",
    ),
    _e(
        "1920-8",
        "AST",
        "U/L",
        "aspartate aminotransferase",
        "sgot",
        "ast sgot",
        "aspartate aminotransferase ast",
        "got",
        "ast got",
        "asat",
        "ast sgot got",
        "aspartate transaminase",
    ),
    _e(
        "1742-6",
        "ALT",
        "U/L",
        "alanine aminotransferase",
        "sgpt",
        "alt sgpt",
        "alanine aminotransferase alt",
        "gpt",
        "alt gpt",
        "alat",
        "alt sgpt gpt",
        "alanine transaminase",
    ),
    _e(
        "2324-2",
        "Gamma glutamyl transferase",
        "U/L",
        "ggt",
        "gamma gt",
        "ggtp",
        "gamma glutamyltransferase",
        "gamma gt ggt",
        "gamma glutamyl transpeptidase",
        "y gt",
        "ggt gamma gt",
    ),
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
    _e("33914-3", "eGFR (MDRD)", EGFR_UNIT, "egfr mdrd", "mdrd", "gfr mdrd", "egfr mdrd creatinine"),
    _e(
        "62238-1",
        "eGFR (CKD-EPI 2009)",
        EGFR_UNIT,
        "egfr ckd epi 2009",
        "egfr ckd epi",
        "ckd epi 2009",
        "egfr creatinine ckd epi 2009",
        "gfr ckd epi 2009",
    ),
    _e(
        "98979-8",
        "eGFR (CKD-EPI 2021)",
        EGFR_UNIT,
        "egfr ckd epi 2021",
        "egfr ckd epi",
        "egfr ckd epi 2021 creatinine",
        "egfr creatinine ckd epi 2021",
        "egfr ckd epi cr 2021",
        "egfr cr ckd epi 2021",
        "ckd epi 2021",
        "egfr 2021 ckd epi",
        "gfr ckd epi 2021",
    ),
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
    # Whole-blood terms (point-of-care and blood-gas analysers, Nordic "B-" names): only a name
    # that says whole blood gets them; a bare "Glucose" stays the serum/plasma term above.
    _e(
        "2339-0",
        "Glucose (whole blood)",
        "mg/dL",
        "glucose",
        "blood glucose whole",
        molar="15074-8",
        whole_blood=True,
        keeps=frozenset({"fasting"}),
    ),
    _e("2947-0", "Sodium (whole blood)", "mmol/L", "sodium", "na", whole_blood=True),
    _e("6298-4", "Potassium (whole blood)", "mmol/L", "potassium", "k", whole_blood=True),
    _e(
        "38483-4",
        "Creatinine (whole blood)",
        "mg/dL",
        "creatinine",
        "creat",
        "crea",
        molar="59826-8",
        whole_blood=True,
    ),
    _e("6299-2", "Urea nitrogen (whole blood)", "mg/dL", "urea nitrogen", "bun", whole_blood=True),
    # Albumin by dye-binding method: the method is part of the code (61151-7 BCG, 61152-5 BCP).
    _e("61151-7", "Albumin (BCG)", "g/dL", "albumin bcg", "albumin bromocresol green", "alb bcg"),
    _e("61152-5", "Albumin (BCP)", "g/dL", "albumin bcp", "albumin bromocresol purple", "alb bcp"),
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
        "leukocyte count",
        "wbc leukocytes",
        "white blood count",
        "leucocytes",
        "total wbc count",
        "tlc",
        whole_blood=True,
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
        "erythrocyte count",
        "rbc erythrocytes",
        "red blood count",
        whole_blood=True,
    ),
    _e(
        "718-7",
        "Hemoglobin",
        "g/dL",
        "hgb",
        "hb",
        "haemoglobin",
        "hb hemoglobin",
        molar="59260-0",
        whole_blood=True,
    ),
    _e(
        "4544-3",
        "Hematocrit",
        "%",
        "hct",
        "haematocrit",
        "packed cell volume",
        "pcv",
        "hct pcv",
        "packed cell volume hct",
        whole_blood=True,
    ),
    _e("787-2", "MCV", "fL", "mean corpuscular volume", "mean cell volume", whole_blood=True),
    _e("785-6", "MCH", "pg", "mean corpuscular hemoglobin", "mean cell hemoglobin", whole_blood=True),
    _e("786-4", "MCHC", "g/dL", "mean corpuscular hemoglobin concentration", whole_blood=True),
    _e(
        "788-0",
        "RDW",
        "%",
        "rdw cv",
        "red cell distribution width",
        "red cell distribution width cv",
        whole_blood=True,
    ),
    _e(
        "777-3",
        "Platelets",
        "10*3/uL",
        "plt",
        "platelet count",
        "platelet",
        "thrombocytes",
        "thrombocyte count",
        "platelets thrombocytes",
        "plt count",
        whole_blood=True,
    ),
    _e("32623-1", "MPV", "fL", "mean platelet volume", whole_blood=True),
    _e(
        "4679-7",
        "Reticulocytes",
        "%",
        "retic",
        "reticulocyte count",
        "reticulocytes percent",
        whole_blood=True,
    ),
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
        whole_blood=True,
    ),
    # Segmented neutrophils are a manual-differential term of their own, not the automated count.
    _e(
        "769-0",
        "Segmented neutrophils %",
        "%",
        "segmented neutrophils",
        "segs",
        "neutrophils segmented",
        whole_blood=True,
    ),
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
        whole_blood=True,
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
        whole_blood=True,
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
        whole_blood=True,
    ),
    _e(
        "5905-5",
        "Monocytes %",
        "%",
        "monocytes",
        "mono",
        "monos",
        "mono %",
        "monocytes percent",
        units=_PCT,
        whole_blood=True,
    ),
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
        whole_blood=True,
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
        whole_blood=True,
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
        whole_blood=True,
    ),
    _e(
        "706-2",
        "Basophils %",
        "%",
        "basophils",
        "baso",
        "basos",
        "baso %",
        "basophils percent",
        units=_PCT,
        whole_blood=True,
    ),
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
        whole_blood=True,
    ),
    _e("764-1", "Band neutrophils %", "%", "bands", "band neutrophils", "band forms", whole_blood=True),
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
        "hdl cholesterol hdl c",
        "hdl cholesterol",
        "high density lipoprotein",
        "high density lipoprotein cholesterol",
        "hdl cholesterol direct",
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
        "low density lipoprotein",
        "low density lipoprotein cholesterol",
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
    _e(
        "2571-8",
        "Triglycerides",
        "mg/dL",
        "trig",
        "trigs",
        "tg",
        "triglyceride",
        "triglycerides tg",
        "trig tg",
        molar="14927-8",
    ),
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
        "hemoglobin a1c ngsp",
        "hba1c ngsp",
        "a1c ngsp",
        "hba1c dcct",
        "hemoglobin a1c dcct",
        "glycated hemoglobin a1c",
        "hgba1c",
        "glycosylated hemoglobin a1c",
        whole_blood=True,
        alt_units=(("mmol/mol", "59261-8"),),
        keeps=frozenset({"ifcc"}),
    ),
    # HbA1c in IFCC units (mmol/mol) is its own term; "HbA1c" printed in mmol/mol lands here too
    # (the 4548-4 entry's alt_units).
    _e(
        "59261-8",
        "Hemoglobin A1c (IFCC)",
        "mmol/mol",
        "hba1c ifcc",
        "hemoglobin a1c ifcc",
        "a1c ifcc",
        "glycated hemoglobin ifcc",
        "hba1c mmol mol",
        whole_blood=True,
    ),
    _e(
        "27353-2",
        "Estimated average glucose",
        "mg/dL",
        "eag",
        "estimated average glucose eag",
        molar="53553-4",
        whole_blood=True,
    ),
    _e("20448-7", "Insulin", "u[IU]/mL", "insulin fasting"),
    _e("1986-9", "C-peptide", "ng/mL", "c peptide"),
    # --- thyroid ---
    _e(
        "3016-3",
        "TSH",
        "m[IU]/L",
        "thyroid stimulating hormone",
        "thyrotropin",
        "tsh 3rd generation",
        "tsh 3rd gen",
        "tsh ultrasensitive",
        "ultrasensitive tsh",
        "tsh basal",
        "sensitive tsh",
        "tsh sensitive",
        "s tsh",
        "tsh thyrotropin",
    ),
    _e(
        "3024-7",
        "Free T4",
        "ng/dL",
        "ft4",
        "t4 free",
        "thyroxine free",
        "free thyroxine",
        "free t4 ft4",
        "ft4 free t4",
        "t4 free ft4",
        "free thyroxine ft4",
        molar="14920-3",
    ),
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
    _e("2276-4", "Ferritin", "ng/mL", "ferritin serum"),
    _e(
        "2132-9",
        "Vitamin B12",
        "pg/mL",
        "b12",
        "cobalamin",
        "vitamin b 12",
        "cyanocobalamin",
        "vit b12",
        "vitamin b12 cobalamin",
        molar="14685-2",
    ),
    _e(
        "2284-8",
        "Folate",
        "ng/mL",
        "folic acid",
        "serum folate",
        "folate serum",
        "folic acid folate",
        "folate folic acid",
        molar="14732-2",
    ),
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
        "25 hydroxyvitamin d total",
        "vitamin d 25 hydroxy total",
        "vit d 25 hydroxy",
        "25 oh vit d",
        "25 hydroxy vit d",
    ),
    _e("13965-9", "Homocysteine", "umol/L"),
    # --- inflammation, cardiac ---
    _e(
        "1988-5",
        "C-reactive protein",
        "mg/L",
        "crp",
        "c reactive protein",
        "crp c reactive protein",
        "c reactive protein crp",
    ),
    _e(
        "30522-7",
        "hs-CRP",
        "mg/L",
        "hs crp",
        "high sensitivity crp",
        "crp high sensitivity",
        "hscrp",
        "c reactive protein high sensitivity",
        "hs crp high sensitivity",
        "cardio crp",
        "crp hs",
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
        whole_blood=True,
    ),
    _e("4537-7", "ESR (Westergren)", "mm/h", "esr westergren", "sed rate westergren", whole_blood=True),
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
    _e(
        "2857-1",
        "PSA",
        "ng/mL",
        "prostate specific antigen",
        "psa total",
        "total psa",
        "psa prostate specific antigen",
        "psa total prostate specific antigen",
    ),
    _e("10886-0", "Free PSA", "ng/mL", "psa free", "prostate specific antigen free", "free psa fpsa", "fpsa"),
    _e("2143-6", "Cortisol", "ug/dL", "cortisol am", "cortisol morning", "cortisol serum"),
    _e("2986-8", "Testosterone", "ng/dL", "testosterone total", "total testosterone", molar="14913-8"),
    # --- coagulation ---
    _e("5902-2", "Prothrombin time", "s", "pt", "protime", "prothrombin time pt"),
    _e("6301-6", "INR", "{INR}", "inr pt", "international normalized ratio", "pt inr"),
    _e(
        "3173-2",
        "aPTT",
        "s",
        "ptt",
        "activated partial thromboplastin time",
        "partial thromboplastin time",
        whole_blood=True,
    ),
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
        "albumin creatinine ratio urine",
        "microalbumin creatinine ratio urine",
        "alb creat ratio",
        specimen="urine",
    ),
    _e(
        "14957-5",
        "Microalbumin (urine)",
        "mg/L",
        "microalbumin",
        "urine microalbumin",
        "urine albumin",
        "albumin",
        "alb",
        specimen="urine",
        units=("mg/L", "ug/mL"),
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
    _e(
        "5778-6",
        "Color (urine)",
        None,
        "color",
        "colour",
        "urine color",
        specimen="urine",
        needs_context=True,
    ),
    _e(
        "5767-9",
        "Appearance (urine)",
        None,
        "appearance",
        "clarity",
        "urine appearance",
        specimen="urine",
        needs_context=True,
    ),
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
    _e("5803-2", "pH (urine)", None, "ph", "urine ph", specimen="urine", needs_context=True),
    _e("5804-0", "Protein (urine)", "mg/dL", "protein", "urine protein", "protein urine", specimen="urine"),
    _e("5792-7", "Glucose (urine)", "mg/dL", "glucose", "urine glucose", "glucose urine", specimen="urine"),
    _e(
        "5797-6",
        "Ketones (urine)",
        "mg/dL",
        "ketones",
        "ketone",
        "urine ketones",
        specimen="urine",
        needs_context=True,
    ),
    _e(
        "5794-3",
        "Blood (urine)",
        None,
        "blood",
        "occult blood",
        "urine blood",
        "hemoglobin urine",
        specimen="urine",
        needs_context=True,
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
        context_names=("pus cells",),
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

_System = Literal["sp", "wb", "urine"]
_URINE_PANEL_WORDS: Final = frozenset({"urine", "ur", "urinalysis", "ua", "urin", "harn", "spontanurin"})
# Units whose kind ``dimension_of`` does not know but that must not pass for another kind:
# HbA1c in % and in mmol/mol are two codes, free PSA in % is not free PSA in ng/mL.
_EXTRA_KINDS: Final[dict[str, str]] = {
    "%": "fraction (%)",
    "mmol/mol": "substance fraction (mmol/mol)",
    "mg/mmol": "mass per substance (mg/mmol)",
}


def _kind(unit: str | None) -> str | None:
    if unit is None:
        return None
    return dimension_of(unit) or _EXTRA_KINDS.get(unit)


def _system(entry: CatalogEntry) -> _System:
    if entry.specimen == "urine":
        return "urine"
    return "wb" if entry.whole_blood else "sp"


def _bag(words: tuple[str, ...]) -> str:
    # Word order is not identity: "T4, free" is "Free T4", "Protein, total" is "Total protein".
    return "|" + " ".join(sorted(words))


def _context_keys() -> frozenset[tuple[str, _System, str]]:
    """(key, system, code) of every ``context_names`` synonym: found only with urine context."""
    keys: set[tuple[str, _System, str]] = set()
    for entry in CATALOG:
        for raw in entry.context_names:
            words = read_name(raw, prefix=False).words
            keys |= {(key, _system(entry), entry.loinc) for key in (" ".join(words), _bag(words))}
    return frozenset(keys)


def _build_index() -> dict[tuple[str, _System], tuple[CatalogEntry, ...]]:
    index: dict[tuple[str, _System], list[CatalogEntry]] = {}
    for entry in CATALOG:
        for raw in entry.names:
            printed = read_name(raw, prefix=False)
            if not printed.words:
                raise ValueError(f"{entry.loinc}: synonym {raw!r} is empty once specimen words are dropped")
            for key in (printed.key, _bag(printed.words)):
                bucket = index.setdefault((key, _system(entry)), [])
                if entry not in bucket:
                    bucket.append(entry)
    return {k: tuple(v) for k, v in index.items()}


_INDEX: Final = _build_index()
_CONTEXT_KEYS: Final = _context_keys()


def _systems(said: SpecimenSaid | None, panel: str | None) -> tuple[_System, ...]:
    if said == "serum":
        return ("sp",)
    if said == "blood":
        return ("wb",)
    if said == "urine":
        return ("urine",)
    if said is not None:  # timed urine, capillary or arterial blood: terms the catalog lacks
        return ()
    if panel is not None and _URINE_PANEL_WORDS & set(normalize_name(panel).split()):
        return ("urine",)
    return ("sp", "wb", "urine")


def _lookup(
    printed: PrintedName, systems: tuple[_System, ...], context: bool
) -> tuple[tuple[CatalogEntry, ...], _System | None, str]:
    """Candidates for the printed words: exact, any order, then without method words."""
    dropped = tuple(w for w in printed.words if w not in DROPPABLE)
    gone = frozenset(printed.words) - frozenset(dropped)
    tries: list[tuple[str, frozenset[str]]] = [(printed.key, frozenset()), (_bag(printed.words), frozenset())]
    if gone and dropped:
        tries += [(" ".join(dropped), gone), (_bag(dropped), gone)]
    refused = ""
    for key, removed in tries:
        for system in systems:
            found = _INDEX.get((key, system), ())
            if system == "urine" and not context:
                found = tuple(
                    e for e in found if not e.needs_context and (key, system, e.loinc) not in _CONTEXT_KEYS
                )
            kept = tuple(e for e in found if not (e.keeps & removed))
            if found and not kept:
                refused = f"unknown: {', '.join(sorted(removed))} names another code than {found[0].loinc}"
            if kept:
                return kept, system, ""
    return (), None, refused


def _by_unit(candidates: tuple[CatalogEntry, ...], unit: str | None) -> tuple[CatalogEntry, ...]:
    if len(candidates) < 2 or unit is None:
        return candidates
    listed = tuple(c for c in candidates if unit in c.units)
    if len(listed) == 1:
        return listed
    kind = _kind(unit)
    same_kind = tuple(c for c in candidates if kind is not None and _kind(c.unit) == kind)
    return same_kind if len(same_kind) == 1 else candidates


def _resolve_printed(name: str, printed: PrintedName, unit: str | None, panel: str | None) -> Resolution:
    if not printed.words:
        return Resolution(name, None, "unknown", "unknown: no test name left")
    systems = _systems(printed.specimen, panel)
    if not systems:
        said = "a timed urine" if printed.specimen == "timed urine" else "this"
        return Resolution(name, None, "unknown", f"unknown: the catalog has no term for {said} specimen")
    context = systems == ("urine",)
    candidates, system, refused = _lookup(printed, systems, context)
    if not candidates:
        return Resolution(name, None, "unknown", refused or "unknown: name not in the catalog")
    norm_unit = normalize_unit(unit)
    if system != "urine" and printed.specimen is None and not context and norm_unit is not None:
        # "Albumin" in mg/L with no urine heading: serum albumin or urine albumin. Refuse.
        urine_found, _, _ = _lookup(printed, ("urine",), False)
        urine = [e for e in urine_found if norm_unit in e.units]
        if urine and not any(norm_unit in c.units for c in candidates):
            codes = tuple(c.loinc for c in (*candidates, *urine))
            return _ambiguous(name, codes)
    candidates = _by_unit(candidates, norm_unit)
    if len(candidates) > 1:
        return _ambiguous(name, tuple(c.loinc for c in candidates))
    return _check_unit(name, candidates[0], norm_unit)


def _ambiguous(name: str, codes: tuple[str, ...]) -> Resolution:
    return Resolution(
        name, None, "ambiguous", f"ambiguous: {len(codes)} candidates ({', '.join(codes)})", codes
    )


def _check_unit(name: str, entry: CatalogEntry, printed: str | None) -> Resolution:
    printed_kind = _kind(printed)
    entry_kind = _kind(entry.unit)
    if printed_kind is None or entry_kind is None or printed_kind == entry_kind:
        return Resolution(name, entry, "matched")
    # Another kind of quantity than the code's: LOINC codes the quantity, so glucose in mmol/L
    # is another code than glucose in mg/dL; without that code the result stays uncoded.
    if printed_kind == _MOLAR and entry_kind == _MASS and entry.molar is not None:
        return Resolution(name, replace(entry, loinc=entry.molar, unit=printed), "matched")
    for alt_unit, code in entry.alt_units:
        if _kind(alt_unit) == printed_kind:
            return Resolution(name, replace(entry, loinc=code, unit=printed), "matched")
    return Resolution(name, None, "no code for unit", f"no code for unit: {entry.loinc} is {entry_kind}")


_PAREN_RE: Final = re.compile(r"^(?P<out>[^()]*)\((?P<in>[^()]*)\)(?P<rest>[^()]*)$")


def _splits(name: str) -> list[list[str]]:
    """Ways to cut a name into parts that must each name the same test.

    "ALT (SGPT)" -> [["ALT", "SGPT"]]; "AST/GOT" -> [["AST", "GOT"]]; "Total Cholesterol-TC" and
    "Non-HDL Cholesterol-Non-HDL" -> a cut at each hyphen (the "name-ABBREVIATION" style).
    """
    match = _PAREN_RE.match(name)
    if match is not None:
        outer = f"{match['out']} {match['rest']}".strip(" ,;:")
        inner = [p.strip() for p in match["in"].split("/")]
        return [[outer, *inner]] if outer and all(inner) else []
    pieces = [p.strip() for p in name.split("/")]
    if len(pieces) > 1:
        return [pieces] if all(pieces) else []
    cuts = [i for i, c in enumerate(name) if c == "-"]
    return [
        [name[:i].strip(), name[i + 1 :].strip()] for i in cuts if name[:i].strip() and name[i + 1 :].strip()
    ]


@lru_cache(maxsize=8192)
def resolve(name: str, *, unit: str | None = None, panel: str | None = None) -> Resolution:
    """The catalog entry for a printed test name; the unit and panel heading break ties.

    Order: the name as read (specimen prefix and words, fasting, translations), its words in any
    order, then without method words the code does not depend on; a Nordic prefix that leaves
    nothing known is read as part of the name ("B-type natriuretic peptide"); a name with a
    parenthesis, slash or hyphen ("ALT (SGPT)", "AST/GOT", "Total Cholesterol-TC") resolves when
    every part names the same entry. ``panel`` is the heading the row was printed under: a
    URINALYSIS (or "urine") heading selects the urine rows. Several candidates that the unit
    does not separate -> ``ambiguous``. Pure, so cached: a report repeats its names page after page.
    """
    found = _resolve_printed(name, read_name(name), unit, panel)
    if found.reason == "unknown":
        plain = read_name(name, prefix=False)
        if plain != read_name(name):
            again = _resolve_printed(name, plain, unit, panel)
            found = again if again.reason != "unknown" else found
    if found.reason == "unknown":
        for parts in _splits(name):
            each = [_resolve_printed(name, read_name(p), unit, panel) for p in parts]
            codes = {r.loinc for r in each}
            if len(codes) == 1 and None not in codes:
                return each[0]
    return found


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
        for code in (entry.loinc, entry.molar, *(c for _, c in entry.alt_units)):
            if code is not None and not is_valid_loinc(code):
                raise ValueError(f"{code}: not a LOINC code (shape or check digit)")
        analyte = analyte_for_coding(LOINC_SYSTEM, entry.loinc)
        if analyte is not None and analyte.primary_loinc == entry.loinc and analyte.unit != entry.unit:
            raise ValueError(
                f"{entry.loinc}: unit {entry.unit} differs from the analyte table's {analyte.unit}"
            )


_check_against_analytes()
