"""Transactions whose answer is lost: resent or read back, never reported on a guess (issue 9).

The server is simulated (httpx.MockTransport) because the faults needed, a commit followed by a
lost answer, cannot be produced on demand by a real one; the live checks are in the reliability
suite (tests/integration/test_reliability.py).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from fhir_adapters import FhirClient, FhirInvalid, RetryPolicy
from fhir_adapters.confirmed import WriteNotStored, WriteOutcomeUnknown, post_transaction

BASE = "https://ehr.example/fhir"


def entry(n: int, rtype: str = "Observation") -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:00000000-0000-0000-0000-00000000000{n}",
        "resource": {"resourceType": rtype, "identifier": [{"system": "urn:x", "value": str(n)}]},
        "request": {"method": "POST", "url": rtype, "ifNoneExist": f"identifier=urn:x|{n}"},
    }


TX = {"resourceType": "Bundle", "type": "transaction", "entry": [entry(1), entry(2)]}


class Server:
    """A tiny transactional store: each transaction commits its entries (conditional creates)
    unless told to fail before the commit; ``lose`` answers a committed transaction with a fault."""

    def __init__(self, *, lose: list[str], fail_reads: bool = False, refuse: bool = False) -> None:
        self.lose = list(lose)  # per POST: "500" / "timeout" after committing, "500-before" without
        self.fail_reads = fail_reads
        self.refuse = refuse
        self.stored: dict[str, dict[str, Any]] = {}
        self.posts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            if self.fail_reads:
                raise httpx.ConnectError("down")
            value = request.url.params["identifier"].split("|", 1)[1]
            found = [self.stored[value]] if value in self.stored else []
            entries = [{"resource": r} for r in found]
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": entries})
        self.posts += 1
        if self.refuse:
            return httpx.Response(422, json={"resourceType": "OperationOutcome", "issue": []})
        fault = self.lose.pop(0) if self.lose else None
        if fault == "500-before":
            return httpx.Response(500)
        answers = []
        for e in json.loads(request.content)["entry"]:
            value = e["resource"]["identifier"][0]["value"]
            created = value not in self.stored
            self.stored.setdefault(value, {**e["resource"], "id": f"id{value}"})
            answers.append(
                {
                    "response": {
                        "status": "201 Created" if created else "200 OK",
                        "location": f"{e['request']['url']}/id{value}/_history/1",
                    }
                }
            )
        if fault == "500":
            return httpx.Response(500)
        if fault == "timeout":
            raise httpx.ReadTimeout("slow")
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": answers}
        )


async def no_sleep(_: float) -> None:
    return None


def client(server: Server) -> FhirClient:
    return FhirClient(
        BASE, transport=httpx.MockTransport(server), retry=RetryPolicy(max_attempts=2), sleep=no_sleep
    )


async def test_a_clean_answer_tells_created_and_existing() -> None:
    server = Server(lose=[])
    server.stored["2"] = {"resourceType": "Observation", "id": "id2"}
    async with client(server) as fhir:
        result = await post_transaction(fhir, TX)
    assert not result.read_back
    assert [(e.reference, e.created) for e in result.entries] == [
        ("Observation/id1", True),
        ("Observation/id2", False),
    ]


async def test_answers_lost_after_every_commit_are_settled_by_a_read_back() -> None:
    server = Server(lose=["500", "timeout"])  # both attempts committed (the second matched)
    async with client(server) as fhir:
        result = await post_transaction(fhir, TX)
    assert result.read_back
    assert [(e.reference, e.created) for e in result.entries] == [
        ("Observation/id1", None),
        ("Observation/id2", None),
    ]
    assert len(server.stored) == 2
    assert server.posts == 2


async def test_an_answer_lost_after_the_commit_and_resent_by_the_client_is_no_existing_write() -> None:
    server = Server(lose=["500"])  # committed; the client's own resend finds every entry there
    async with client(server) as fhir:
        result = await post_transaction(fhir, TX)
    # Not "already there" (nothing new written): the lost attempt may have written them.
    assert [(e.reference, e.created) for e in result.entries] == [
        ("Observation/id1", None),
        ("Observation/id2", None),
    ]
    assert server.posts == 2
    assert not result.read_back  # the resend's answer said so, no read was needed


async def test_a_transaction_never_stored_is_resent_once_then_reported_as_not_stored() -> None:
    server = Server(lose=["500-before"] * 4)
    async with client(server) as fhir:
        with pytest.raises(WriteNotStored, match="shows nothing of it stored"):
            await post_transaction(fhir, TX)
    assert server.posts == 4  # two sends of two attempts each
    assert server.stored == {}


async def test_a_resend_after_a_read_back_that_found_nothing_can_succeed() -> None:
    server = Server(lose=["500-before", "500-before"])
    async with client(server) as fhir:
        result = await post_transaction(fhir, TX)
    assert not result.read_back
    assert all(e.created for e in result.entries)


async def test_when_the_server_cannot_be_read_back_the_outcome_is_reported_unknown() -> None:
    server = Server(lose=["500", "500"], fail_reads=True)
    async with client(server) as fhir:
        with pytest.raises(WriteOutcomeUnknown, match="outcome is unknown") as raised:
            await post_transaction(fhir, TX)
    assert "nothing" not in str(raised.value)
    assert len(server.stored) == 2  # it was in fact stored: "unknown" was the true answer


async def test_a_refusal_is_the_servers_error_not_an_unknown_outcome() -> None:
    async with client(Server(lose=[], refuse=True)) as fhir:
        with pytest.raises(FhirInvalid):
            await post_transaction(fhir, TX)
