"""Cohort texts: the five kinds parse, the rest is refused without echoing search values."""

from __future__ import annotations

import pytest

from agent.jobs.cohorts import CohortKind, CohortSpec, CohortSpecError
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
