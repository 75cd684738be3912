from decimal import Decimal

import pytest
from fhir.resources.R4B.observation import Observation

from fhir_adapters.errors import ResourceParseError
from fhir_adapters.parsing import RejectedResource, parse_many, parse_resource


def obs(rid: str, **extra: object) -> dict[str, object]:
    return {"resourceType": "Observation", "id": rid, "status": "final", "code": {"text": "x"}, **extra}


def test_parse_resource_returns_r4b_model() -> None:
    res = parse_resource(obs("o1", valueQuantity={"value": 7.1, "unit": "%"}))
    assert isinstance(res, Observation)
    assert res.valueQuantity is not None
    assert res.valueQuantity.value == Decimal("7.1")


def test_parse_error_names_type_id_and_path_but_not_the_value() -> None:
    with pytest.raises(ResourceParseError) as info:
        parse_resource(obs("o2", valueQuantity={"value": "secret-abc"}))
    err = info.value
    assert (err.resource_type, err.id) == ("Observation", "o2")
    assert err.reason.startswith("valueQuantity.value:")
    assert "secret-abc" not in str(err)
    assert "secret-abc" not in err.reason
    assert err.__cause__ is None  # pydantic's message (with the value) is not chained


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"id": "x"}, "no resourceType"),
        ({"resourceType": "Nope", "id": "x"}, "unknown R4B resource type"),
        ({"resourceType": "Observation", "id": "x", "status": "final"}, "code: Field required"),
    ],
)
def test_parse_errors(raw: dict[str, object], reason: str) -> None:
    with pytest.raises(ResourceParseError, match=reason):
        parse_resource(raw)


def test_parse_many_keeps_the_good_and_reports_the_bad() -> None:
    parsed = parse_many([obs("a"), obs("b", valueQuantity={"value": "abc"}), obs("c")])
    assert [r.id for r in parsed.resources] == ["a", "c"]
    assert parsed.rejected == [
        RejectedResource(
            resource_type="Observation",
            id="b",
            reason="valueQuantity.value: Value error, Decimal value string does not match spec regex.",
        )
    ]
