"""Cohort texts: the five kinds parse, the rest is refused without echoing search values; an
export cohort's patients from every reference form, and an export with error files refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from agent.jobs.cohorts import CohortKind, CohortSpec, CohortSpecError, resolve_cohort
from fhir_adapters import FhirClient
from fhir_adapters.bulk_export import BulkExportIncomplete
from fhir_adapters.error_tree import BadInputError


@pytest.mark.parametrize(
    ("text", "kind", "group_id", "query"),
    [
        ("all", CohortKind.ALL, None, ()),
        (" export:all ", CohortKind.EXPORT_ALL, None, ()),
        ("group:night-shift.1", CohortKind.GROUP, "night-shift.1", ()),
        ("export:group:g42", CohortKind.EXPORT_GROUP, "g42", ()),
        (
            "search:address-state=MA&gender=female",
            CohortKind.SEARCH,
            None,
            (("address-state", "MA"), ("gender", "female")),
        ),
        ("search:birthdate=ge1950-01-01&_tag=a%7Cb", CohortKind.SEARCH, None,
         (("birthdate", "ge1950-01-01"), ("_tag", "a|b"))),
    ],
)  # fmt: skip
def test_each_kind_parses(
    text: str, kind: CohortKind, group_id: str | None, query: tuple[tuple[str, str], ...]
) -> None:
    spec = CohortSpec.parse(text)
    assert (spec.kind, spec.group_id, spec.query) == (kind, group_id, query)
    assert CohortSpec.parse(str(spec)) == spec  # the canonical text round-trips
    assert spec.is_export == text.strip().startswith("export:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be all, group:ID"),
        ("everyone", "must be all, group:ID"),
        ("export:search:gender=male", "must be all, group:ID"),
        ("group:", "not a FHIR id"),
        ("group:a/b", "not a FHIR id"),
        ("export:group:" + "x" * 65, "not a FHIR id"),
        ("search:", "no search parameter"),
        ("search:family", "not a query string"),
        ("search:family=Smith&_count=5&_include=Patient:organization", "_count, _include would change"),
    ],
)
def test_bad_texts_are_refused_as_bad_input(text: str, message: str) -> None:
    with pytest.raises(CohortSpecError, match=message) as info:
        CohortSpec.parse(text)
    assert isinstance(info.value, BadInputError)
    assert "Smith" not in str(info.value)


# ------------------------------------------------------------------ an export cohort, served by a mock

BASE = "https://fhir.example.org/r4"


def export_server(
    output: list[dict[str, Any]], files: dict[str, bytes], errors: int = 0
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("$export"):
            return httpx.Response(202, headers={"Content-Location": f"{BASE}/status/1"})
        if path.endswith("/status/1"):
            manifest = {
                "transactionTime": "2026-12-04T10:00:00Z",
                "request": str(request.url),
                "requiresAccessToken": False,
                "output": output,
                "error": [{"type": "OperationOutcome", "url": f"{BASE}/files/e{i}"} for i in range(errors)],
            }
            return httpx.Response(200, json=manifest)
        return httpx.Response(200, content=files[path.rsplit("/", 1)[1]])

    return httpx.MockTransport(handler)


def lines(*resources: dict[str, Any]) -> bytes:
    return b"\n".join(json.dumps(r).encode() for r in resources)


async def test_an_export_cohort_collects_the_patients_of_every_reference_form() -> None:
    files = {
        "obs": lines(
            {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}},
            {
                "resourceType": "Observation",
                "id": "o2",
                "subject": {"reference": f"{BASE}/Patient/p2/_history/3"},
            },
            {"resourceType": "Observation", "id": "o3", "subject": {"reference": "Group/g1"}},
            {"resourceType": "Observation", "id": "o4"},
        ),
        "cov": lines({"resourceType": "Coverage", "id": "c1", "patient": {"reference": "Patient/p3"}}),
        "pat": lines({"resourceType": "Patient", "id": "p4"}, {"resourceType": "Patient", "id": "p1"}),
    }
    output = [{"type": t, "url": f"{BASE}/files/{n}"} for t, n in
              (("Observation", "obs"), ("Coverage", "cov"), ("Patient", "pat"))]  # fmt: skip
    async with FhirClient(BASE, transport=export_server(output, files)) as fhir:
        found = await resolve_cohort(
            fhir, CohortSpec.parse("export:all"), since=datetime(2026, 1, 1, tzinfo=UTC)
        )
    # Coverage is not among the types asked for: a server that sends more is not believed.
    assert found.patient_ids == ("p1", "p2", "p4")
    assert found.transaction_time == datetime(2026, 12, 4, 10, tzinfo=UTC)
    assert (found.transaction_time_source, found.export_status_url) == ("export", f"{BASE}/status/1")


async def test_an_export_with_error_files_is_not_taken_as_the_cohort() -> None:
    files = {"pat": lines({"resourceType": "Patient", "id": "p1"})}
    output = [{"type": "Patient", "url": f"{BASE}/files/pat"}]
    async with FhirClient(BASE, transport=export_server(output, files, errors=2)) as fhir:
        with pytest.raises(BulkExportIncomplete, match="2 error file"):
            await resolve_cohort(fhir, CohortSpec.parse("export:all"), since=None)
