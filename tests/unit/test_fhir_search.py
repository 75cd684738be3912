from datetime import UTC, date, datetime

import pytest

from fhir_adapters.search import (
    DatePrefix,
    SearchQuery,
    build_params,
    date_param,
    escape_value,
    patient_search_param,
    query_string,
    token,
    token_any,
)

LOINC = "http://loinc.org"


def test_token_forms() -> None:
    assert token("4548-4", LOINC) == "http://loinc.org|4548-4"
    assert token("4548-4") == "4548-4"
    assert token("x", "") == "|x"  # codes without a system


def test_token_values_are_escaped() -> None:
    assert escape_value(r"a,b|c$d\e") == r"a\,b\|c\$d\\e"
    assert token("a,b", "s|t") == r"s\|t|a\,b"


def test_token_any_is_an_or() -> None:
    assert token_any(LOINC, ["1", "2"]) == "http://loinc.org|1,http://loinc.org|2"
    with pytest.raises(ValueError, match="at least one"):
        token_any(LOINC, [])


def test_date_prefixes() -> None:
    assert date_param(date(2020, 1, 2), DatePrefix.GE) == "ge2020-01-02"
    assert date_param("2020", DatePrefix.LT) == "lt2020"
    assert date_param(datetime(2020, 1, 2, 3, 4, tzinfo=UTC)) == "eq2020-01-02T03:04:00+00:00"
    with pytest.raises(ValueError, match="time zone"):
        date_param(datetime(2020, 1, 2, 3, 4))


def test_build_params_keeps_order_and_repeats() -> None:
    params = build_params(
        [("date", "ge2020"), ("date", "lt2021"), ("_count", "5")],
        count=50,
        include=["Observation:patient"],
        revinclude=["Provenance:target"],
    )
    assert params == [
        ("date", "ge2020"),
        ("date", "lt2021"),
        ("_count", "50"),
        ("_include", "Observation:patient"),
        ("_revinclude", "Provenance:target"),
    ]
    assert build_params({"a": "1"}) == [("a", "1")]
    assert build_params(None) == []
    with pytest.raises(ValueError, match="_count"):
        build_params(count=-1)


def test_query_string_encodes_reserved_characters() -> None:
    assert query_string([("code", "http://loinc.org|4548-4")]) == "code=http%3A%2F%2Floinc.org%7C4548-4"


def test_patient_search_param() -> None:
    assert patient_search_param("Observation") == "patient"
    assert patient_search_param("Media") == "subject"
    assert patient_search_param("Patient") == "_id"


def test_search_query_builder_is_immutable() -> None:
    base = SearchQuery("Observation").for_patient("p1")
    q = (
        base.code(LOINC, "4548-4", "2345-7")
        .date("date", "2020", DatePrefix.GE)
        .count(100)
        .include("Observation:patient")
    )
    assert base.params == (("patient", "p1"),)
    assert q.to_params() == [
        ("patient", "p1"),
        ("code", "http://loinc.org|4548-4,http://loinc.org|2345-7"),
        ("date", "ge2020"),
        ("_count", "100"),
        ("_include", "Observation:patient"),
    ]
    assert q.to_url("http://x/fhir/").startswith("http://x/fhir/Observation?patient=p1&code=")
    assert SearchQuery("Patient").to_url("http://x/fhir") == "http://x/fhir/Patient"
