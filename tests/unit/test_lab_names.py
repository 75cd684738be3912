"""Printed lab-test names to LOINC beyond the exact catalog names: synonyms, abbreviations,
qualifiers, specimen and method words, other languages; and the refusals (ambiguous, unknown)."""

from __future__ import annotations

import pytest

from tools.labs.loinc_catalog import resolve
from tools.labs.printed_names import fold_text, read_name

# Every synonym family: each printed form resolves to the one code (unit given where the lab
# would print one; None where a report may leave it out).
FAMILIES: dict[str, list[tuple[str, str | None]]] = {
    "718-7": [
        ("Hgb", "g/dL"),
        ("Hb", "g/dL"),
        ("Hemoglobin", None),
        ("Haemoglobin", "g/L"),
        ("Hämoglobin", "g/dl"),
    ],
    "6690-2": [
        ("WBC", "10^3/uL"),
        ("Leukocytes", None),
        ("White Blood Cells", "K/uL"),
        ("Leukozyten", "/nl"),
    ],
    "789-8": [
        ("RBC", "M/uL"),
        ("Erythrocytes", None),
        ("Red Blood Cell Count", None),
        ("Erythrozyten", None),
    ],
    "777-3": [("Plt", None), ("Platelets", "K/uL"), ("Thrombocytes", None), ("Thrombozyten", "/nl")],
    "4544-3": [("Hct", "%"), ("PCV", "%"), ("Hematocrit", None), ("Hämatokrit", "%")],
    "787-2": [("MCV", "fL"), ("Mean corpuscular volume", None)],
    "785-6": [("MCH", "pg")],
    "786-4": [("MCHC", "g/dL")],
    "788-0": [("RDW", "%"), ("RDW-CV", "%")],
    "1742-6": [
        ("ALT", "U/L"),
        ("SGPT", None),
        ("GPT", None),
        ("ALT (SGPT)", None),
        ("ALT (GPT)", "U/L"),
        ("ALT/GPT", None),
    ],
    "1920-8": [
        ("AST", "U/L"),
        ("SGOT", None),
        ("GOT", None),
        ("AST/GOT", None),
        ("Aspartate aminotransferase (AST/SGOT)", None),
    ],
    "2160-0": [("Creat", "mg/dL"), ("Creatinine", "mg/dL"), ("Crea", None), ("Kreatinin", "mg/dl")],
    "14682-9": [("Creatinine", "umol/L"), ("Kreatinin", "µmol/l"), ("S-Kreatinin", "umol/L")],
    "3094-0": [
        ("BUN", "mg/dL"),
        ("Urea nitrogen", None),
        ("Blood Urea Nitrogen", None),
        ("Harnstoff-N", "mg/dl"),
    ],
    "22664-7": [("Urea", "mmol/L"), ("Harnstoff", "mmol/l")],
    "69405-9": [
        ("eGFR", "mL/min/1.73m2"),
        ("Estimated GFR", None),
        ("GFR, estimated", None),
        ("eGFR (calculated)", None),
    ],
    "98979-8": [
        ("eGFR (CKD-EPI 2021)", None),
        ("eGFR CKD-EPI 2021", None),
        ("eGFR, CKD-EPI 2021 (creatinine)", None),
    ],
    "33914-3": [("eGFR (MDRD)", None), ("GFR, MDRD", None)],
    "62238-1": [("eGFR (CKD-EPI 2009)", None)],
    "4548-4": [
        ("HbA1c", "%"),
        ("A1c", None),
        ("Glycohemoglobin", None),
        ("Hemoglobin A1c (NGSP)", "%"),
        ("HbA1c (DCCT)", "%"),
    ],
    "59261-8": [("HbA1c", "mmol/mol"), ("HbA1c (IFCC)", None), ("Hemoglobin A1c (IFCC)", "mmol/mol")],
    "3016-3": [
        ("TSH", "uIU/mL"),
        ("TSH, 3rd generation", "mIU/L"),
        ("TSH (3rd gen)", None),
        ("TSH basal", None),
    ],
    "3024-7": [("fT4", "ng/dL"), ("Free T4", None), ("T4, free", None), ("freies T4", None)],
    "2857-1": [("PSA", "ng/mL"), ("PSA, total", "ng/mL"), ("Total PSA", None)],
    "10886-0": [("PSA, free", "ng/mL"), ("Free PSA", None)],
    "2089-1": [("LDL-C", "mg/dL"), ("LDL", None)],
    "13457-7": [("LDL Cholesterol (calc)", "mg/dL"), ("LDL-C, calculated", None)],
    "2085-9": [("HDL-C", "mg/dL"), ("HDL Cholesterol", None), ("HDL-Cholesterin", "mg/dl")],
    "2571-8": [("Trig", "mg/dL"), ("TG", None), ("Triglycerides", None), ("Triglyceride", "mg/dl")],
    "2093-3": [("Cholesterol, total", "mg/dL"), ("Total cholesterol", None), ("Cholesterin", "mg/dl")],
    "2951-2": [
        ("Na", "mmol/L"),
        ("Sodium", "mEq/L"),
        ("Natrium", "mmol/l"),
        ("S-Na", None),
        ("Sodium, serum", None),
    ],
    "2823-3": [("K", "mmol/L"), ("Potassium", None), ("Kalium", "mmol/l"), ("P-Kalium", None)],
    "2075-0": [("Cl", "mmol/L"), ("Chloride", None), ("Chlorid", None)],
    "2028-9": [("CO2", "mmol/L"), ("Total CO2", None), ("Carbon dioxide, total", None)],
    "1963-8": [("Bicarbonate", "mmol/L"), ("HCO3", None)],
    "17861-6": [("Ca", "mg/dL"), ("Calcium", None), ("Calcium, total", None)],
    "6768-6": [("Alk Phos", "U/L"), ("ALP", None), ("Alkaline phosphatase", None)],
    "1975-2": [
        ("T. Bili", "mg/dL"),
        ("Total bilirubin", None),
        ("Bilirubin, total", None),
        ("Bilirubin gesamt", None),
    ],
    "1988-5": [("CRP", "mg/L"), ("C-reactive protein", None)],
    "30522-7": [("hs-CRP", "mg/L"), ("CRP, high sensitivity", None), ("hsCRP", None)],
    "2276-4": [("Ferritin", "ng/mL"), ("Ferritin, serum", "ug/L")],
    "2132-9": [("B12", "pg/mL"), ("Vitamin B12", None), ("Vit B12", None)],
    "2284-8": [("Folate", "ng/mL"), ("Folic acid", None)],
    "62292-8": [("Vit D 25-OH", "ng/mL"), ("25-OH Vitamin D", None), ("Vitamin D, 25-Hydroxy", None)],
    "9318-7": [("UACR", "mg/g"), ("Albumin/Creatinine ratio", None), ("Microalbumin/Creatinine Ratio", None)],
    "14957-5": [("Urine albumin", "mg/L"), ("Microalbumin", None), ("U-Albumin", "mg/L")],
    "1558-6": [
        ("Glucose, fasting", "mg/dL"),
        ("Fasting glucose", None),
        ("Glukose nüchtern", "mg/dl"),
        ("Glucose nüchtern", None),
    ],
    "14771-0": [("fP-Glukos", "mmol/L"), ("fS-Glucose", "mmol/L")],
    "2345-7": [("Glucose", "mg/dL"), ("Glu", None), ("Glukose", "mg/dl"), ("P-Glucose", "mg/dL")],
}


@pytest.mark.parametrize(
    ("code", "printed", "unit"),
    [(code, name, unit) for code, forms in FAMILIES.items() for name, unit in forms],
)
def test_every_synonym_family_resolves_to_its_code(code: str, printed: str, unit: str | None) -> None:
    got = resolve(printed, unit=unit)
    assert (got.loinc, got.reason) == (code, "matched"), got


@pytest.mark.parametrize(
    ("printed", "unit", "code"),
    [
        # Qualifiers that select another term.
        ("PSA, total", "ng/mL", "2857-1"),
        ("PSA, free", "ng/mL", "10886-0"),
        ("CRP", "mg/L", "1988-5"),
        ("hs-CRP", "mg/L", "30522-7"),
        ("Hemoglobin A1c (NGSP)", "%", "4548-4"),
        ("Hemoglobin A1c (IFCC)", "mmol/mol", "59261-8"),
        ("Troponin T", "ug/L", "6598-7"),
        ("Troponin T, high sensitivity", "ng/L", "67151-1"),
        # Method words: those LOINC codes apart select their code...
        ("eGFR (CKD-EPI 2021)", "mL/min/1.73m2", "98979-8"),
        ("eGFR (MDRD)", "mL/min/1.73m2", "33914-3"),
        ("Albumin (BCG)", "g/dL", "61151-7"),
        ("Albumin (BCP)", "g/L", "61152-5"),
        ("LDL Cholesterol, direct", "mg/dL", "18262-6"),
        # ... and those the method-less term covers fall away.
        ("Creatinine (enzymatic)", "mg/dL", "2160-0"),
        ("Creatinine, Jaffe", "umol/L", "14682-9"),
        ("Kreatinin (enzymatisch)", "mg/dl", "2160-0"),
        ("ALT (IFCC)", "U/L", "1742-6"),
        ("GGT (IFCC)", "U/L", "2324-2"),
        ("Globulin, calculated", "g/dL", "10834-0"),
        ("Sodium (ISE)", "mmol/L", "2951-2"),
    ],
)
def test_qualifiers_and_methods_select_the_right_code(printed: str, unit: str, code: str) -> None:
    got = resolve(printed, unit=unit)
    assert (got.loinc, got.reason) == (code, "matched"), got


@pytest.mark.parametrize(
    ("printed", "unit", "code"),
    [
        # Serum/plasma words and prefixes keep serum/plasma terms.
        ("S-Creatinine", "umol/L", "14682-9"),
        ("P-Glucose", "mmol/L", "14749-6"),
        ("Potassium, plasma", "mmol/L", "2823-3"),
        ("Glucose (serum)", "mg/dL", "2345-7"),
        # Whole blood selects the Blood terms.
        ("B-Glucose", "mmol/L", "15074-8"),
        ("Glucose, whole blood", "mg/dL", "2339-0"),
        ("B-Hb", "g/L", "718-7"),
        ("B-Leukocytes", "10^9/L", "6690-2"),
        ("Sodium (whole blood)", "mmol/L", "2947-0"),
        # Fasting prefixes and words.
        ("fS-Glucose", "mmol/L", "14771-0"),
        ("fP-Glukos", "mmol/L", "14771-0"),
        # Urine words, prefixes and headings select the urine terms.
        ("U-Albumin", "mg/L", "14957-5"),
        ("Glucose, urine", None, "5792-7"),
        ("Creatinine, urine", "mg/dL", "2161-8"),
        ("Urin-Kreatinin", "mg/dl", "2161-8"),
    ],
)
def test_specimen_words_and_prefixes_select_the_right_code(printed: str, unit: str | None, code: str) -> None:
    got = resolve(printed, unit=unit)
    assert (got.loinc, got.reason) == (code, "matched"), got


def test_unit_and_panel_separate_serum_albumin_from_urine_albumin() -> None:
    assert resolve("Albumin", unit="g/dL").loinc == "1751-7"
    assert resolve("Albumin", unit="g/L").loinc == "1751-7"
    assert resolve("Albumin", unit="mg/L", panel="URINE CHEMISTRY").loinc == "14957-5"
    assert resolve("Albumin", unit="mg/L", panel="Spontanurin").loinc == "14957-5"
    # mg/L and no urine heading: a serum albumin in the wrong unit or a urine albumin. Refused.
    got = resolve("Albumin", unit="mg/L")
    assert (got.loinc, got.reason) == (None, "ambiguous")
    assert set(got.candidates) == {"1751-7", "14957-5"}
    assert got.detail == "ambiguous: 2 candidates (1751-7, 14957-5)"


def test_the_printed_unit_selects_the_code_of_its_kind_of_quantity() -> None:
    assert resolve("HbA1c", unit="%").loinc == "4548-4"
    assert resolve("HbA1c", unit="mmol/mol").loinc == "59261-8"
    assert resolve("Glucose", unit="mmol/L").loinc == "14749-6"
    assert resolve("Neutrophils", unit="%").loinc == "770-8"
    assert resolve("Neutrophils", unit="/nl").loinc == "751-8"


@pytest.mark.parametrize(
    ("printed", "unit", "panel", "reason", "candidates"),
    [
        ("Neutrophils", None, None, "ambiguous", ("770-8", "751-8")),
        ("Lymphocytes", "mg/dL", None, "ambiguous", ("736-9", "731-0")),
        ("eGFR CKD-EPI", None, None, "ambiguous", ("62238-1", "98979-8")),
        ("Albumin", "mg/L", None, "ambiguous", ("1751-7", "14957-5")),
        # A contradiction between the name's method and the unit: no code.
        ("HbA1c (IFCC)", "%", None, "no code for unit", ()),
        # Units whose terms were not verified: uncoded, never the mass code.
        ("PSA, free", "%", None, "no code for unit", ()),
        ("Harnstoff", "mg/dl", None, "no code for unit", ()),
        ("Vitamin D, 25-OH", "nmol/L", None, "no code for unit", ()),
        ("Albumin/Creatinine ratio", "mg/mmol", None, "no code for unit", ()),
        # A method word the entry's family codes apart is never dropped.
        ("HbA1c nach IFCC", None, None, "unknown", ()),
        # Specimens the catalog has no terms for: whole blood in a serum name, timed urine,
        # capillary blood; and a name that says two specimens.
        ("S-Hb", "g/L", None, "unknown", ()),
        ("Hemoglobin, plasma", "mg/dL", None, "unknown", ()),
        ("dU-Protein", "g/24h", None, "unknown", ()),
        ("Protein, 24 hour urine", "mg/24h", None, "unknown", ()),
        ("cB-Glucose", "mmol/L", None, "unknown", ()),
        ("Glucose, serum or whole blood", "mg/dL", None, "unknown", ()),
        ("S-Glucose, urine", "mg/dL", None, "unknown", ()),
        # Generic urinalysis names need urine context.
        ("Color", None, None, "unknown", ()),
        ("pH", None, None, "unknown", ()),
        ("Blood", None, None, "unknown", ()),
        ("Ketones", None, None, "unknown", ()),
        # Parts that name different tests: no code.
        ("BUN/Creatinine", None, None, "unknown", ()),
    ],
)
def test_refusals(
    printed: str, unit: str | None, panel: str | None, reason: str, candidates: tuple[str, ...]
) -> None:
    got = resolve(printed, unit=unit, panel=panel)
    assert (got.loinc, got.reason, got.candidates) == (None, reason, candidates), got
    assert got.detail.startswith(reason.split()[0])


def test_generic_urinalysis_names_resolve_under_a_urine_heading() -> None:
    assert resolve("Color", panel="URINALYSIS").loinc == "5778-6"
    assert resolve("pH", panel="Urinalysis").loinc == "5803-2"
    assert resolve("Blood", panel="URINE").loinc == "5794-3"
    assert resolve("U-pH").loinc == "5803-2"


@pytest.mark.parametrize(
    ("printed", "unit", "code"),
    [
        # "Name-ABBREVIATION" (a style of some labs' English reports): both sides name one test.
        ("High-Density Lipoprotein-HDL", "mmol/L", "14646-4"),
        ("Total Cholesterol-TC", "mmol/L", "14647-2"),
        ("Non-HDL Cholesterol-Non-HDL", "mmol/L", "70204-3"),
        ("Fasting Blood Glucose-FBG", "mmol/L", "14771-0"),
        ("Glycated Hemoglobin-HbA1c", "%", "4548-4"),
    ],
)
def test_name_and_abbreviation_joined_by_a_hyphen(printed: str, unit: str, code: str) -> None:
    assert resolve(printed, unit=unit).loinc == code


def test_fasting_is_never_dropped_onto_the_random_glucose_term() -> None:
    assert resolve("Fasting blood glucose", unit="mg/dL").loinc == "1558-6"
    assert resolve("Glucose nüchtern, Vollblut", unit="mg/dl").reason == "unknown"
    # Sides that name different tests, or a side that names none, give no code.
    assert resolve("Postprandial Blood Glucose-PBG", unit="mmol/L").loinc is None
    assert resolve("LDL-HDL", unit="mg/dL").loinc is None


def test_a_nordic_prefix_that_leaves_nothing_known_is_part_of_the_name() -> None:
    assert resolve("B-type natriuretic peptide", unit="pg/mL").loinc == "30934-4"
    assert resolve("C-reactive protein", unit="mg/L").loinc == "1988-5"
    assert resolve("p-ANCA").reason == "unknown"


NEGATIVES = [
    "Page 1 of 2",
    "Page 2",
    "Date of birth",
    "DOB",
    "Physician",
    "Ordering physician",
    "Patient name",
    "Patient",
    "Sex: Male",
    "Age",
    "123 Main Street",
    "1600 Pennsylvania Avenue NW, Washington, DC 20500",
    "Springfield, IL 62704",
    "Phone",
    "Fax",
    "Collected",
    "Received",
    "Reported",
    "Specimen",
    "Sample type: Serum",
    "Serum",
    "Whole blood",
    "Urine",
    "Reference range",
    "Units",
    "Result",
    "Flag",
    "Test",
    "Comment",
    "Laboratory director",
    "Final report",
    "CHEMISTRY",
    "Hematology",
    "Medical record number",
    "Accession",
    "Signature",
    "Fasting",
    "Calculated",
]


@pytest.mark.parametrize("printed", NEGATIVES)
def test_words_around_the_results_never_resolve(printed: str) -> None:
    for unit in (None, "mg/dL"):
        for panel in (None, "URINALYSIS"):
            got = resolve(printed, unit=unit, panel=panel)
            assert got.loinc is None, (printed, unit, panel, got)


def test_fold_and_read_name() -> None:
    assert fold_text("Hämoglobin µmol/l Glukose nüchtern") == "hamoglobin umol/l glukose nuchtern"
    printed = read_name("fS-Glukose")
    assert (printed.words, printed.specimen, printed.fasting) == (("glucose", "fasting"), "serum", True)
    assert read_name("Glucose, whole blood").specimen == "blood"
    assert read_name("dU-Protein").specimen == "timed urine"
    assert read_name("B-type natriuretic peptide", prefix=False).words == (
        "b",
        "type",
        "natriuretic",
        "peptide",
    )


def test_pus_cells_resolve_only_with_urine_context() -> None:
    # Leukocytes per high-power field in a urine sediment (5821-4, reviewed); a stool examination
    # prints "Pus cells" too, so without a urine heading or word the name is refused.
    assert resolve("Pus Cells", unit="/hpf", panel="URINALYSIS (URINE R/E)").loinc == "5821-4"
    assert resolve("Urine pus cells").loinc == "5821-4"
    assert resolve("Pus Cells", unit="/hpf").loinc is None
    assert resolve("Pus cells", panel="STOOL EXAMINATION").loinc is None
    assert resolve("WBC", unit="10*3/uL").loinc == "6690-2"  # the blood count is untouched


# Portuguese and Spanish blood-count names (reviewed 2026-12-04): the codes of their English names.
@pytest.mark.parametrize(
    ("printed", "unit", "code"),
    [
        ("Eritrócitos", "10*6/uL", "789-8"),
        ("Hemácias", "10*6/uL", "789-8"),
        ("Hemoglobina", "g/dL", "718-7"),
        ("Hematócrito", "%", "4544-3"),
        ("VCM", "fL", "787-2"),
        ("HCM", "pg", "785-6"),
        ("CHCM", "g/dL", "786-4"),
        ("Leucócitos", "/uL", "6690-2"),
        ("Plaquetas", "/uL", "777-3"),
        ("Contagem de plaquetas", "/uL", "777-3"),
        ("Recuento de plaquetas", "/uL", "777-3"),
        ("Neutrófilos", "%", "770-8"),
        ("Neutrófilos", "/uL", "751-8"),
        ("Linfócitos", "%", "736-9"),
        ("Linfócitos", "/uL", "731-0"),
        ("Monócitos", "%", "5905-5"),
        ("Monócitos", "/uL", "742-7"),
        ("Eosinófilos", "%", "713-8"),
        ("Eosinófilos", "/uL", "711-2"),
        ("Basófilos", "%", "706-2"),
        ("Basófilos", "/uL", "704-7"),
    ],
)
def test_portuguese_and_spanish_blood_count_names(printed: str, unit: str, code: str) -> None:
    assert resolve(printed, unit=unit).loinc == code


def test_a_named_ldl_equation_is_calculated_ldl() -> None:
    assert resolve("LDL Chol Calc (NIH)", unit="mg/dL").loinc == "13457-7"
    assert resolve("LDL Friedewald", unit="mg/dL").loinc == "13457-7"
    assert resolve("LDL Cholesterol", unit="mg/dL").loinc == "2089-1"
    assert read_name("LDL Chol Calc (NIH)").words == ("ldl", "cholesterol", "calculated")


@pytest.mark.parametrize(
    "printed", ["Conjugated Bilirubin", "Unconjugated Bilirubin", "Bilirubin, conjugated"]
)
def test_conjugated_bilirubin_is_not_coded_as_direct_or_indirect(printed: str) -> None:
    """LOINC keeps conjugated and unconjugated bilirubin apart from direct and indirect: uncoded."""
    assert resolve(printed).loinc is None
    assert resolve("Direct Bilirubin").loinc == "1968-7"
    assert resolve("Indirect Bilirubin").loinc == "1971-1"
