"""The stand-in's compartment rules and scope granting (pure)."""

from __future__ import annotations

import pytest

from agent.testbed.ehr.compartment import (
    CompartmentRefused,
    directly_in,
    parse_reference,
    patient_of,
    pin_search,
    targets_verdict,
)
from agent.testbed.ehr.scope_grant import grantable
from fhir_adapters.smart_scopes import ScopeSet


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("Patient/42", ("Patient", "42")),
        ("http://h/fhir/Observation/7", ("Observation", "7")),
        ("Observation/7/_history/2", ("Observation", "7")),
        ("urn:uuid:abc", None),
        ("42", None),
    ],
)
def test_parse_reference(ref: str, parsed: tuple[str, str] | None) -> None:
    assert parse_reference(ref) == parsed


def test_patient_of_and_directly_in() -> None:
    obs = {"resourceType": "Observation", "subject": {"reference": "Patient/a"}}
    assert patient_of(obs) == "a"
    assert directly_in(obs, "a") is True
    assert directly_in(obs, "b") is False
    # A patient-data resource naming no patient (or a group) is outside every compartment.
    assert directly_in({"resourceType": "Observation"}, "a") is False
    assert directly_in({"resourceType": "Observation", "subject": {"reference": "Group/a"}}, "a") is False
    assert directly_in({"resourceType": "Immunization", "patient": {"reference": "Patient/a"}}, "a") is True
    assert directly_in({"resourceType": "Patient", "id": "a"}, "a") is True
    # Not patient data, and Provenance (its targets decide): no verdict here.
    assert directly_in({"resourceType": "Practitioner", "id": "a"}, "a") is None
    assert directly_in({"resourceType": "Provenance"}, "a") is None


def test_provenance_needs_one_target_inside_and_none_outside() -> None:
    assert targets_verdict([True, None]) is True
    assert targets_verdict([True, False]) is False
    assert targets_verdict([None]) is False
    assert targets_verdict([]) is False


def test_pin_search_adds_the_patient() -> None:
    assert pin_search("Observation", [("code", "x")], "a") == [("code", "x"), ("patient", "Patient/a")]
    assert pin_search("Patient", [], "a") == [("_id", "a")]
    # Types outside the compartment and Provenance (filtered by the proxy) are left alone.
    assert pin_search("Practitioner", [("name", "x")], "a") == [("name", "x")]
    assert pin_search("Provenance", [], "a") == []


@pytest.mark.parametrize(
    "params",
    [
        [("patient", "Patient/a")],
        [("patient", "a")],
        [("subject", "Patient/a")],
        [("subject:Patient", "a")],
        [("patient", "a,Patient/a")],
    ],
)
def test_pin_search_keeps_the_own_patient(params: list[tuple[str, str]]) -> None:
    assert pin_search("Observation", params, "a") == params


@pytest.mark.parametrize(
    ("rtype", "params"),
    [
        ("Observation", [("patient", "b")]),
        ("Observation", [("patient", "a,b")]),
        ("Observation", [("subject", "Group/a")]),
        ("Observation", [("patient:missing", "true")]),
        ("Observation", [("patient", "a"), ("subject", "Patient/b")]),
        ("Patient", [("_id", "b")]),
        ("Patient", [("_id", "a,b")]),
    ],
)
def test_pin_search_refuses_another_patient(rtype: str, params: list[tuple[str, str]]) -> None:
    with pytest.raises(CompartmentRefused):
        pin_search(rtype, params, "a")


def test_grantable_keeps_registered_and_narrower_scopes() -> None:
    allowed = ScopeSet.parse("launch openid patient/*.rs system/*.rs user/Observation.cruds")
    requested = ScopeSet.parse(
        "launch patient/Observation.r patient/*.cruds system/Patient.rs user/Observation.cu "
        "user/Patient.r patient/Observation.rs?category=laboratory offline_access"
    )
    assert grantable(allowed, requested).names == {
        "launch",
        "patient/Observation.r",
        "system/Patient.rs",
        "user/Observation.cu",
    }
