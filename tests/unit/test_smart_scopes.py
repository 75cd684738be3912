"""SMART scope parsing: v2 and v1 forms, malformed scopes, query-narrowed scopes."""

from __future__ import annotations

import pytest

from fhir_adapters.smart_scopes import ScopeSet, parse_resource_scope


@pytest.mark.parametrize(
    ("text", "rtype", "verbs"),
    [
        ("patient/Observation.rs", "Observation", "rs"),
        ("patient/*.cruds", "*", "cruds"),
        ("user/DiagnosticReport.cu", "DiagnosticReport", "cu"),
        ("system/*.read", "*", "rs"),
        ("patient/*.write", "*", "cud"),
        ("patient/*.*", "*", "cruds"),
    ],
)
def test_resource_scopes(text: str, rtype: str, verbs: str) -> None:
    scope = parse_resource_scope(text)
    assert scope is not None
    assert scope.resource_type == rtype
    assert scope.interactions == frozenset(verbs)


@pytest.mark.parametrize("text", ["openid", "launch", "patient/Observation.sr", "patient/obs.rs", "x/*.rs"])
def test_not_resource_scopes(text: str) -> None:
    assert parse_resource_scope(text) is None


def test_allows_by_type_interaction_and_context() -> None:
    scopes = ScopeSet.parse("launch openid fhirUser patient/*.rs patient/Observation.c")
    assert scopes.allows("Observation", "r")
    assert scopes.allows("Observation", "c")
    assert not scopes.allows("DiagnosticReport", "c")
    assert not scopes.allows("Observation", "u")
    assert not scopes.allows("Observation", "r", contexts=("system",))
    assert scopes.has("launch")
    assert not scopes.has("offline_access")


def test_query_narrowed_scope_grants_nothing() -> None:
    scopes = ScopeSet.parse("patient/Observation.rs?category=laboratory")
    assert not scopes.allows("Observation", "r")


def test_narrowing() -> None:
    granted = ScopeSet.parse("patient/*.rs openid")
    assert granted.narrowed_to(ScopeSet.parse("patient/*.rs patient/*.cud")).names == {"patient/*.rs"}
