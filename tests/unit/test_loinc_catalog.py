"""The name -> LOINC table: coverage, synonyms, units and panels as tie-breakers, no guessing."""

from __future__ import annotations

import pytest

from agent.testbed.cohort.labpdf.catalog import CATALOG as PDF_CATALOG
from agent.testbed.cohort.labs import ANALYTES as COHORT_ANALYTES
from tools.labs.analytes import ANALYTES, LOINC_SYSTEM, analyte_for_coding
from tools.labs.loinc_catalog import CATALOG, is_valid_loinc, normalize_name, resolve, to_default_unit
from tools.labs.units import UnitConversionError


def test_at_least_80_distinct_codes_and_no_code_listed_twice() -> None:
    codes = [e.loinc for e in CATALOG]
    assert len(set(codes)) >= 80
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize(
    ("printed", "unit", "code"),
    [
        ("Hgb", "g/dL", "718-7"),
        ("HEMOGLOBIN A1C", "%", "4548-4"),
        ("HbA1c", None, "4548-4"),
        ("ALT (SGPT)", "U/L", "1742-6"),
        ("Aspartate Aminotransferase (AST)", "U/L", "1920-8"),
        ("Potassium, Serum", "mmol/L", "2823-3"),
        ("BUN", "mg/dL", "3094-0"),
        ("Urea Nitrogen (BUN)", "mg/dL", "3094-0"),
        ("Carbon Dioxide, Total", "mmol/L", "2028-9"),
        ("Tot. Chol.", "mg/dL", "2093-3"),
        ("LDL Cholesterol (calc)", "mg/dL", "13457-7"),
        ("TSH", "uIU/mL", "3016-3"),
        ("Free T4", "ng/dL", "3024-7"),
        ("Vitamin D, 25-Hydroxy", "ng/mL", "62292-8"),
        ("PT", "sec", "5902-2"),
        ("INR", None, "6301-6"),
        ("NT-proBNP", "pg/mL", "33762-6"),
        ("hs-CRP", "mg/L", "30522-7"),
        ("Neutrophils, Absolute", "K/uL", "751-8"),
        ("Neutrophils %", "%", "770-8"),
        ("Lymphocytes", "%", "736-9"),
        ("Lymphocytes", "x10^9/L", "731-0"),
        ("Glucose", "mmol/L", "14749-6"),  # the molar code for a molar unit
        ("Urea", "mmol/L", "22664-7"),
        ("Creatinine", "umol/L", "14682-9"),
    ],
)
def test_synonyms_resolve(printed: str, unit: str | None, code: str) -> None:
    got = resolve(printed, unit=unit)
    assert (got.loinc, got.reason) == (code, "matched")


def test_panel_and_name_select_the_urine_rows() -> None:
    assert resolve("Glucose", panel="URINALYSIS").loinc == "5792-7"
    assert resolve("Glucose, Urine").loinc == "5792-7"
    assert resolve("Glucose", panel="CHEMISTRY").loinc == "2345-7"
    assert resolve("pH, Urine").loinc == "5803-2"
    # A urine name never falls back to a blood code.
    assert resolve("Ferritin, urine").loinc is None


@pytest.mark.parametrize("printed", ["Zonulin", "Troponin", "Widget factor 9", "D-dimer", ""])
def test_unknown_names_stay_unknown(printed: str) -> None:
    got = resolve(printed)
    assert (got.loinc, got.reason) == (None, "unknown")


def test_a_name_the_unit_does_not_separate_is_ambiguous() -> None:
    assert resolve("Neutrophils").reason == "ambiguous"
    assert resolve("Neutrophils", unit="mg/dL").reason == "ambiguous"


def test_a_unit_of_another_quantity_without_its_code_stays_uncoded() -> None:
    # No substance-concentration term for ferritin is in the catalog: pmol/L stays uncoded.
    assert (resolve("Ferritin", unit="pmol/L").loinc, resolve("Ferritin", unit="pmol/L").reason) == (
        None,
        "no code for unit",
    )
    assert resolve("Urea", unit="mg/dL").loinc is None  # urea mass is not urea nitrogen


@pytest.mark.parametrize(
    ("printed", "unit", "code"),
    [
        # Substance-concentration terms, see tools/labs/LOINC_REVIEW.md (LOINC Top 2000 table:
        # 14798-3 Iron [Moles/volume] in Serum or Plasma, 14800-7 Iron binding capacity [Moles/volume],
        # 14732-2 Folate [Moles/volume], 39469-2 Cholesterol in LDL [Moles/volume] by calculation,
        # 14937-7 Urea nitrogen [Moles/volume]; 59260-0 Hemoglobin [Moles/volume] in Blood).
        ("Iron", "umol/L", "14798-3"),
        ("TIBC", "umol/L", "14800-7"),
        ("Folate", "nmol/L", "14732-2"),
        ("LDL Cholesterol (calc)", "mmol/L", "39469-2"),
        ("BUN", "mmol/L", "14937-7"),
        ("Hemoglobin", "mmol/L", "59260-0"),
        ("Phosphorus", "mmol/L", "14879-1"),  # was 14879-4, a check-digit typo
    ],
)
def test_molar_units_select_the_molar_term(printed: str, unit: str, code: str) -> None:
    got = resolve(printed, unit=unit)
    assert (got.loinc, got.reason) == (code, "matched")


def test_corrected_terms() -> None:
    # See tools/labs/LOINC_REVIEW.md for the sources of each correction.
    assert resolve("Bilirubin, Indirect", unit="mg/dL").loinc == "1971-1"  # not 1971-6 (check digit)
    assert resolve("Urobilinogen", unit="mg/dL", panel="URINALYSIS").loinc == "20405-7"  # 5818-0 is Presence
    assert resolve("Bicarbonate", unit="mmol/L").loinc == "1963-8"  # total CO2 is 2028-9
    assert resolve("Segmented Neutrophils", unit="%").loinc == "769-0"
    # eGFR: no equation printed -> the method-less term; "CKD-EPI" without a year is ambiguous.
    assert resolve("eGFR", unit="mL/min/1.73m2").loinc == "69405-9"
    assert resolve("eGFR (MDRD)").loinc == "33914-3"
    assert resolve("eGFR (CKD-EPI 2021)").loinc == "98979-8"
    assert resolve("eGFR CKD-EPI").reason == "ambiguous"


def test_normalize_name() -> None:
    assert normalize_name("  Neutrophils,  ABS.  ") == "neutrophils abs"
    assert normalize_name("Lymph%") == "lymph %"


def test_codes_shared_with_the_analyte_table_use_its_unit_and_conversions() -> None:
    for entry in CATALOG:
        analyte = analyte_for_coding(LOINC_SYSTEM, entry.loinc)
        if analyte is not None and analyte.primary_loinc == entry.loinc:
            assert analyte.unit == entry.unit, entry
    glucose = resolve("Glucose").entry
    assert glucose is not None
    assert to_default_unit(glucose, 5.5, "mmol/L") == pytest.approx(99.1, abs=0.1)
    hgb = resolve("Hemoglobin").entry
    assert hgb is not None
    assert to_default_unit(hgb, 135, "g/L") == pytest.approx(13.5)
    with pytest.raises(UnitConversionError):
        to_default_unit(hgb, 1.0, "U/L")


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("2160-0", True),
        ("14682-9", True),
        ("1971-1", True),
        ("1971-6", False),  # the old indirect-bilirubin typo
        ("14879-4", False),  # the old molar-phosphate typo
        ("2160", False),
        ("2160-00", False),
        ("LP1234-5", False),
    ],
)
def test_is_valid_loinc(code: str, valid: bool) -> None:
    assert is_valid_loinc(code) is valid


def test_every_loinc_code_of_the_four_tables_has_a_valid_check_digit() -> None:
    codes = {c for e in CATALOG for c in (e.loinc, e.molar) if c is not None}
    codes |= {c for a in ANALYTES for c in a.loinc}
    codes |= {f.loinc for d in PDF_CATALOG.values() for f in (d.us, d.si) if f.loinc is not None}
    codes |= {s.code.code for s in COHORT_ANALYTES.values()}
    codes |= {s.si.code.code for s in COHORT_ANALYTES.values() if s.si is not None}
    assert len(codes) > 150
    assert sorted(c for c in codes if not is_valid_loinc(c)) == []


def test_the_generator_and_the_parser_agree_on_every_printed_test() -> None:
    # The benchmark truth (agent.testbed.cohort.labpdf.catalog) and the parser's table must give one code
    # for one printed name in one unit, in both dialects.
    for d in PDF_CATALOG.values():
        for si in (False, True):
            form = d.form(si)
            panel = d.panel.value
            got = resolve(d.printed_name(si), unit=form.ucum or form.unit or None, panel=panel)
            assert got.loinc == form.loinc, (d.key, si, got)
