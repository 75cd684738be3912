"""Known-answer tests for UCUM normalisation and the analyte table's conversions."""

from __future__ import annotations

import pytest

from tools.labs.analytes import (
    ANALYTES,
    LOINC_SYSTEM,
    GoodDirection,
    StabilityThreshold,
    analyte_for_coding,
    analyte_for_local_code,
    get_analyte,
)
from tools.labs.units import UnitConversionError, convert_dimensional, normalize_unit


@pytest.mark.parametrize(
    ("raw", "ucum"),
    [
        ("mg/dl", "mg/dL"),
        ("MG/DL", "mg/dL"),
        (" mmol/l ", "mmol/L"),
        ("umol/L", "umol/L"),
        ("µmol/L", "umol/L"),  # micro sign U+00B5
        ("μmol/L", "umol/L"),  # Greek mu U+03BC
        ("mL/min/{1.73_m2}", "mL/min/{1.73_m2}"),
        ("mL/min/1.73m2", "mL/min/{1.73_m2}"),
        ("ml/min/1.73 m2", "mL/min/{1.73_m2}"),
        ("mL/min/1.73m^2", "mL/min/{1.73_m2}"),
        ("mL/min/1.73.m2", "mL/min/{1.73_m2}"),
        ("%", "%"),
        ("g/dL", "g/dL"),
        ("10*3/uL", "10*3/uL"),
        ("K/uL", "10*3/uL"),
        ("mmHg", "mm[Hg]"),
        # UCUM's equivalent is the case-sensitive atom "eq" (HL7 ucum-common lists "meq/L",
        # "milliequivalent per liter"): the printed "mEq/L" normalises to "meq/L".
        ("mEq/L", "meq/L"),
        ("meq/l", "meq/L"),
        ("lbs", "[lb_av]"),
        # Per cubic millimetre is per microlitre; "cells" is an annotation.
        ("/cumm", "/uL"),
        ("cells/cumm", "/uL"),
        ("/mm³", "/uL"),
        ("cells/µL", "/uL"),
        ("million/mm3", "10*6/uL"),
        ("Million/cumm", "10*6/uL"),
        ("furlongs/fortnight", "furlongs/fortnight"),  # unknown: passed through, not guessed
        ("", None),
        (None, None),
    ],
)
def test_normalize_unit(raw: str | None, ucum: str | None) -> None:
    assert normalize_unit(raw) == ucum


@pytest.mark.parametrize(
    ("key", "value", "unit", "expected"),
    [
        ("glucose", 5.5, "mmol/L", 99.088),
        ("glucose", 99.0, "mg/dl", 99.0),
        ("creatinine", 88.42, "umol/L", 1.0),
        ("creatinine", 176.84, "µmol/L", 2.0),
        ("creatinine", 0.08842, "mmol/L", 1.0),  # dimensional step to umol/L, then molar
        ("ldl", 2.6, "mmol/L", 100.542),
        ("hdl", 1.0, "mmol/L", 38.67),
        ("cholesterol", 5.0, "mmol/L", 193.35),
        ("triglycerides", 1.7, "mmol/L", 150.569),
        ("hemoglobin", 135.0, "g/L", 13.5),
        ("hemoglobin", 8.0, "mmol/L", 12.888),
        ("hba1c", 53.0, "mmol/mol", 0.09148 * 53 + 2.152),  # ~7.0 %
        ("hba1c", 48.0, "mmol/mol", 0.09148 * 48 + 2.152),  # ~6.5 %
        ("potassium", 4.1, "mEq/L", 4.1),
        ("sodium", 140.0, "meq/l", 140.0),
        ("magnesium", 0.85, "mmol/L", 0.85 * 2.4305),
        ("magnesium", 1.7, "mEq/L", 1.7 * 1.21525),
        ("albumin", 40.0, "g/L", 4.0),
        ("egfr", 55.0, "mL/min/1.73m2", 55.0),
        ("egfr", 55.0, "mL/min", 55.0),
        ("bun", 5.0, "mmol/L", 14.005),
        ("uacr", 3.0, "mg/mmol", 26.526),
        ("body_weight", 176.37, "[lb_av]", 176.37 * 0.45359237),
    ],
)
def test_analyte_conversion(key: str, value: float, unit: str, expected: float) -> None:
    assert get_analyte(key).to_canonical(value, unit) == pytest.approx(expected, rel=1e-9)


def test_hba1c_ifcc_known_values() -> None:
    # Published anchor points of the master equation: 48 mmol/mol = 6.5 %, 53 = 7.0 %.
    a1c = get_analyte("hba1c")
    assert a1c.to_canonical(48, "mmol/mol") == pytest.approx(6.5, abs=0.05)
    assert a1c.to_canonical(53, "mmol/mol") == pytest.approx(7.0, abs=0.05)


@pytest.mark.parametrize(
    ("key", "unit"),
    [("creatinine", "mg/g"), ("glucose", "%"), ("potassium", "mg/dL"), ("egfr", "mL/s"), ("ldl", None)],
)
def test_unconvertible_unit_raises(key: str, unit: str | None) -> None:
    with pytest.raises(UnitConversionError):
        get_analyte(key).to_canonical(1.0, unit)


def test_dimensional_conversion() -> None:
    assert convert_dimensional(1.0, "g/dL", "mg/dL") == pytest.approx(1000.0)
    assert convert_dimensional(1.0, "mmol/L", "umol/L") == pytest.approx(1000.0)
    with pytest.raises(UnitConversionError):
        convert_dimensional(1.0, "mmol/L", "mg/dL")  # needs a molar mass: not dimensional


def test_lookup_by_loinc_and_local_code() -> None:
    for code in ("33914-3", "62238-1", "48642-3", "48643-1", "98979-8", "69405-9"):
        assert analyte_for_coding(LOINC_SYSTEM, code) is get_analyte("egfr")
    for code in ("2345-7", "2339-0", "41653-7"):
        assert analyte_for_coding(LOINC_SYSTEM, code) is get_analyte("glucose")
    assert analyte_for_coding("urn:oid:1.2.840.114350.1.13.0.1.7.2.768282", "GLU") is get_analyte("glucose")
    assert analyte_for_local_code("a1c") is get_analyte("hba1c")
    assert analyte_for_local_code("K") is get_analyte("potassium")
    # A local code is not a LOINC code and vice versa.
    assert analyte_for_coding(LOINC_SYSTEM, "GLU") is None
    assert analyte_for_coding("http://example.org/local", "2345-7") is None
    assert analyte_for_coding(LOINC_SYSTEM, None) is None


def test_table_covers_required_analytes() -> None:
    keys = {a.key for a in ANALYTES}
    required = {
        "creatinine", "egfr", "bun", "hba1c", "glucose", "hemoglobin", "ldl", "hdl", "cholesterol",
        "triglycerides", "potassium", "sodium", "magnesium", "albumin", "uacr",
        "systolic_bp", "diastolic_bp", "body_weight", "bmi",
    }  # fmt: skip
    assert required <= keys
    for a in ANALYTES:
        assert a.threshold_source
        # Every accepted unit really converts; the canonical unit converts to itself.
        assert a.to_canonical(1.0, a.unit) == 1.0
        for conv in a.conversions:
            a.to_canonical(1.0, conv.unit)
        if a.good_direction is GoodDirection.IN_RANGE:
            assert a.reference.low is not None or a.reference.high is not None


def test_stability_threshold_combination() -> None:
    egfr = get_analyte("egfr").stability
    assert egfr.magnitude(80.0) == pytest.approx(5.0)  # 25 % of 80 is 20: the smaller bound wins
    assert egfr.magnitude(12.0) == pytest.approx(3.0)  # 25 % of 12 is 3
    glucose = get_analyte("glucose").stability
    assert glucose.magnitude(80.0) == pytest.approx(15.0)
    assert glucose.magnitude(200.0) == pytest.approx(30.0)  # 15 % of 200: the larger bound wins
    assert StabilityThreshold(absolute=None, relative=0.3).magnitude(0.0) == 0.0
    with pytest.raises(ValueError, match="absolute or a relative"):
        StabilityThreshold(absolute=None)
