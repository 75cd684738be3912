import json

import pytest

from fhir_adapters.errors import (
    FhirAuthError,
    FhirConflict,
    FhirHttpError,
    FhirInvalid,
    FhirNotFound,
    FhirRateLimited,
    FhirServerError,
    error_for_status,
    outcome_issues,
    redact_target,
)

OUTCOME = json.dumps(
    {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "required",
                "diagnostics": "Observation.code: missing",
                "expression": ["Observation.code"],
            }
        ],
    }
).encode()


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, FhirInvalid),
        (401, FhirAuthError),
        (403, FhirAuthError),
        (404, FhirNotFound),
        (410, FhirNotFound),
        (409, FhirConflict),
        (412, FhirConflict),
        (422, FhirInvalid),
        (429, FhirRateLimited),
        (500, FhirServerError),
        (501, FhirServerError),
        (503, FhirServerError),
        (418, FhirHttpError),
    ],
)
def test_status_mapping(status: int, cls: type[FhirHttpError]) -> None:
    err = error_for_status(status, "GET", "Patient/1")
    assert type(err) is cls
    assert err.status == status


def test_outcome_is_carried_in_the_error() -> None:
    err = error_for_status(422, "POST", "Observation", OUTCOME)
    assert err.issues[0].code == "required"
    assert err.issues[0].expression == ("Observation.code",)
    assert (
        str(err)
        == "POST Observation -> HTTP 422: error/required at Observation.code: Observation.code: missing"
    )


def test_oauth_error_body_and_junk() -> None:
    issues = outcome_issues(b'{"error": "invalid_client", "error_description": "bad signature"}')
    assert (issues[0].code, issues[0].diagnostics) == ("invalid_client", "bad signature")
    assert outcome_issues(b"<html>") == ()
    assert outcome_issues(b"[1]") == ()
    assert outcome_issues(None) == ()


def test_redact_target_drops_query_values() -> None:
    base = "https://ehr.example/fhir"
    url = f"{base}/Patient?family=Smith&birthdate=1970-01-01&family=Jones"
    assert redact_target(url, base) == "Patient?family&birthdate"
    assert redact_target(f"{base}/Patient/123", base) == "Patient/123"
    assert redact_target(base, base) == "/"
    err = error_for_status(400, "GET", redact_target(url, base))
    assert "Smith" not in str(err)
    assert "1970" not in str(err)
