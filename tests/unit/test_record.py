"""tools.record: the pure core (build_record/manifest) and gather_record over MockTransport."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from fhir_adapters import FhirClient, FhirNotFound
from tools.record import DEFAULT_TYPES, CodeCount, build_record, gather_record, with_resources

LOINC = "http://loinc.org"
BASE = "https://ehr.example/fhir"


def obs(rid: str, code: str, when: str, value: Any = 7.0) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code, "display": f"d{code}"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value},
    }


PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}
CONDITION = {
    "resourceType": "Condition",
    "id": "c1",
    "subject": {"reference": "Patient/p1"},
    "code": {"text": "CKD stage 3"},
    "onsetDateTime": "2015-06",
}


def test_build_record_groups_parses_and_summarises() -> None:
    raws = [
        PATIENT,
        obs("o1", "4548-4", "2020-01-02T10:00:00+02:00"),
        obs("o2", "4548-4", "2019-03-01"),
        obs("o3", "2345-7", "2021"),
        obs("o1", "4548-4", "2020-01-02T10:00:00+02:00"),  # duplicate (e.g. two Epic categories)
        CONDITION,
        {"resourceType": "Practitioner", "id": "dr"},  # not asked for
        {"resourceType": "Patient", "id": "other"},  # a linked patient from $everything
    ]
    record = build_record("p1", raws)
    assert record.patient is not None
    assert record.patient.id == "p1"
    assert sorted(record.resources) == ["Condition", "Observation"]
    assert all(isinstance(o, Observation) for o in record.of_type("Observation"))
    summary = record.manifest.types["Observation"]
    assert summary.count == 3
    assert summary.codes == [
        CodeCount(system=LOINC, code="4548-4", display="d4548-4", count=2),
        CodeCount(system=LOINC, code="2345-7", display="d2345-7", count=1),
    ]
    assert summary.earliest == datetime(2019, 3, 1, tzinfo=UTC)
    assert summary.latest == datetime(2021, 1, 1, tzinfo=UTC)
    condition = record.manifest.types["Condition"]
    assert condition.codes == [CodeCount(system=None, code=None, display="CKD stage 3", count=1)]
    assert condition.earliest == datetime(2015, 6, 1, tzinfo=UTC)
    assert record.manifest.total == 4
    assert record.rejected == []
    assert '"resourceType":"Observation"' in record.model_dump_json()  # full resources serialise


def test_malformed_resources_are_rejected_and_the_rest_kept() -> None:
    record = build_record("p1", [PATIENT, obs("ok", "1", "2020"), obs("bad", "1", "2020", value="abc")])
    assert [o.id for o in record.of_type("Observation")] == ["ok"]
    assert [(r.resource_type, r.id) for r in record.rejected] == [("Observation", "bad")]
    assert "valueQuantity.value" in record.rejected[0].reason
    assert record.manifest.types["Observation"].count == 1


def test_malformed_patient_is_rejected_not_fatal() -> None:
    record = build_record("p1", [{**PATIENT, "birthDate": "01/01/1970"}, CONDITION])
    assert record.patient is None
    assert [(r.resource_type, r.id) for r in record.rejected] == [("Patient", "p1")]
    assert "01/01/1970" not in record.rejected[0].reason
    assert record.manifest.types["Condition"].count == 1


class FakeEhr:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.005)
        self.in_flight -= 1
        path = request.url.path.removeprefix("/fhir/")
        self.paths.append(path)
        if path == "Patient/p1":
            return httpx.Response(200, json=PATIENT)
        if path == "Patient/p1/$everything":
            entries = [
                PATIENT,
                obs("o1", "1", "2020"),
                CONDITION,
                {"resourceType": "Organization", "id": "org"},
            ]
            return httpx.Response(
                200,
                json={
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": [{"resource": r} for r in entries],
                },
            )
        if path.startswith("Patient/"):
            return httpx.Response(404)
        q = parse_qs(request.url.query.decode())
        assert q["patient"] == ["p1"]
        assert q["_count"] == ["1000"]
        by_type: dict[str, list[dict[str, Any]]] = {
            "Observation": [obs("o1", "1", "2020"), obs("o2", "1", "2021", value="abc")],
            "Condition": [CONDITION],
        }
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r} for r in by_type.get(path, [])],
            },
        )


@pytest.mark.parametrize("concurrent", [True, False])
async def test_gather_record_per_type(concurrent: bool) -> None:
    ehr = FakeEhr()
    async with FhirClient(BASE, transport=httpx.MockTransport(ehr), flavour="sekmet") as client:
        record = await gather_record(client, "p1", concurrent=concurrent)
    assert sorted(ehr.paths) == sorted(["Patient/p1", *DEFAULT_TYPES])
    assert (ehr.peak > 1) is concurrent
    assert [o.id for o in record.of_type("Observation")] == ["o1"]
    assert [r.id for r in record.rejected] == ["o2"]
    assert record.patient is not None
    assert record.manifest.types["Condition"].count == 1


async def test_gather_record_everything() -> None:
    ehr = FakeEhr()
    async with FhirClient(BASE, transport=httpx.MockTransport(ehr)) as client:
        record = await gather_record(client, "p1", strategy="everything", types=["Observation", "Condition"])
    assert ehr.paths == ["Patient/p1/$everything"]
    assert sorted(record.resources) == ["Condition", "Observation"]
    assert record.patient is not None


async def test_gather_record_unknown_patient() -> None:
    ehr = FakeEhr()
    async with FhirClient(BASE, transport=httpx.MockTransport(ehr)) as client:
        with pytest.raises(FhirNotFound):
            await gather_record(client, "nobody", types=["Condition"], concurrent=False)


def test_a_checkpoint_dumps_each_resource_as_the_json_it_was_parsed_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.checkpoints import checkpoint_serde

    raws = [PATIENT, obs("o1", "4548-4", "2020-01-02T10:00:00+02:00", value=5.20), CONDITION]
    record = build_record("p1", [*raws, obs("bad", "1", "2020", value="abc")])
    more = with_resources(record, [obs("o2", "4548-4", "2021-02-03", value=6)])

    def no_model_dump(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a resource was dumped from its model")

    with monkeypatch.context() as patched:
        patched.setattr(Observation, "model_dump", no_model_dump)
        patched.setattr(Patient, "model_dump", no_model_dump)
        dumped = more.model_dump()
    assert dumped["patient"] == PATIENT
    assert dumped["resources"]["Observation"] == [raws[1], obs("o2", "4548-4", "2021-02-03", value=6)]
    assert [r["id"] for r in dumped["rejected"]] == ["bad"]
    # Read back (as a checkpoint is), the JSON gives the same record, and the record read back
    # (no JSON kept) dumps from its models, into the same record again.
    serde = checkpoint_serde()
    back = serde.loads_typed(serde.dumps_typed(more))
    assert back == more
    assert serde.loads_typed(serde.dumps_typed(back)) == more
    # Other modes are the models' dumps, as before.
    assert more.model_dump(mode="json")["resources"]["Observation"][0]["valueQuantity"]["value"] == 5.2
