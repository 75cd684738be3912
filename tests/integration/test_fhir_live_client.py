"""FhirClient against the real embedded FHIR server (sekmet) on loopback.

Every test tags its resources with a fresh code so tests never see each other's data on the
shared server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fhir_adapters import (
    FhirClient,
    FhirInvalid,
    FhirOutcomeUnknown,
    FhirServerError,
    RetryPolicy,
)

pytestmark = pytest.mark.integration

TAG_SYSTEM = "urn:chartagent:test"
ID_SYSTEM = "urn:chartagent:test-id"
LOINC = "http://loinc.org"


def tag() -> str:
    return uuid.uuid4().hex


def patient(pid: str, tag_code: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag_code}]}}


def observation(oid: str, pid: str, tag_code: str, value: Any = 5.0, *, code: bool = True) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag_code}]},
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2024-01-01",
        "valueQuantity": {"value": value, "unit": "mmol/L"},
    }
    if code:
        res["code"] = {"coding": [{"system": LOINC, "code": "2345-7"}]}
    return res


def put_transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


@pytest.fixture
async def fhir(fhir_base_url: str) -> AsyncIterator[FhirClient]:
    async with FhirClient(fhir_base_url, flavour="sekmet") as client:
        yield client


async def test_capabilities_detect_the_flavour(fhir: FhirClient) -> None:
    assert (await fhir.capabilities())["resourceType"] == "CapabilityStatement"
    assert (await fhir.detect_flavour()).name == "sekmet"


async def test_paging_across_pages(fhir: FhirClient) -> None:
    t = tag()
    pid = f"pg-{t[:12]}"
    await fhir.transaction(
        put_transaction([patient(pid, t), *(observation(f"{pid}-{i}", pid, t) for i in range(45))])
    )
    pages = [p async for p in fhir.search_pages("Observation", [("_tag", f"{TAG_SYSTEM}|{t}")], count=10)]
    assert [len(p.get("entry", [])) for p in pages] == [10, 10, 10, 10, 5]
    found = await fhir.search("Observation", [("_tag", f"{TAG_SYSTEM}|{t}")], count=10)
    assert sorted(r["id"] for r in found) == sorted(f"{pid}-{i}" for i in range(45))


async def test_include_brings_the_patient(fhir: FhirClient) -> None:
    t = tag()
    pid = f"inc-{t[:12]}"
    await fhir.transaction(put_transaction([patient(pid, t), observation(f"{pid}-o", pid, t)]))
    found = await fhir.search("Observation", {"_tag": f"{TAG_SYSTEM}|{t}"}, include=["Observation:patient"])
    assert sorted((r["resourceType"], r["id"]) for r in found) == [
        ("Observation", f"{pid}-o"),
        ("Patient", pid),
    ]


async def test_transaction_is_atomic(fhir: FhirClient) -> None:
    t = tag()
    pid = f"tx-{t[:12]}"
    bundle = put_transaction(
        [patient(pid, t), observation(f"{pid}-ok", pid, t), observation(f"{pid}-bad", pid, t, code=False)]
    )
    with pytest.raises(FhirInvalid) as info:
        await fhir.transaction(bundle)
    assert info.value.issues  # the server's OperationOutcome travels with the error
    assert await fhir.search("Patient", {"_tag": f"{TAG_SYSTEM}|{t}"}) == []
    assert await fhir.search("Observation", {"_tag": f"{TAG_SYSTEM}|{t}"}) == []


async def test_conditional_create_is_idempotent(fhir: FhirClient) -> None:
    t = tag()
    res = observation("ignored", "nobody", t)
    del res["id"], res["subject"]
    res["identifier"] = [{"system": ID_SYSTEM, "value": t}]
    cond = [("identifier", f"{ID_SYSTEM}|{t}")]
    first = await fhir.create(res, if_none_exist=cond)
    second = await fhir.create(res, if_none_exist=cond)
    assert first["id"] == second["id"]
    assert len(await fhir.search("Observation", cond)) == 1


async def test_batch_entries_fail_independently(fhir: FhirClient) -> None:
    t = tag()
    pid = f"batch-{t[:12]}"
    bundle = put_transaction([patient(pid, t), observation(f"{pid}-bad", pid, t, code=False)])
    bundle["type"] = "batch"
    out = await fhir.batch(bundle)
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses[0].startswith("20")
    assert not statuses[1].startswith("2")


class FaultTransport(httpx.AsyncBaseTransport):
    """Wraps the real transport: answers the first requests with canned faults, then forwards.

    A fault is an HTTP status (with headers) or "hang": the request is held past the client's read
    timeout (httpx enforces timeouts inside the real transport, so the wrapper enforces the same
    deadline and raises ReadTimeout as httpx would).
    """

    def __init__(self, faults: list[tuple[int, dict[str, str]] | str]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.faults = list(faults)
        self.requests: list[tuple[float, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((time.monotonic(), request.url.path))
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "hang":
                read_timeout = request.extensions["timeout"]["read"]
                try:
                    await asyncio.wait_for(asyncio.sleep(3600), timeout=read_timeout)
                except TimeoutError:
                    raise httpx.ReadTimeout(
                        "injected: no answer within the read timeout", request=request
                    ) from None
            assert isinstance(fault, tuple)
            status, headers = fault
            return httpx.Response(status, headers=headers, request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2)


async def test_retries_429_with_retry_after_then_reaches_the_server(
    fhir_base_url: str, fhir: FhirClient
) -> None:
    t = tag()
    pid = f"r429-{t[:12]}"
    await fhir.transaction(put_transaction([patient(pid, t)]))
    transport = FaultTransport([(429, {"Retry-After": "1"}), (503, {})])
    async with FhirClient(fhir_base_url, transport=transport, retry=FAST_RETRY) as client:
        assert (await client.read("Patient", pid))["id"] == pid
    (t0, _), (t1, _), (t2, _) = transport.requests
    assert t1 - t0 >= 0.95  # Retry-After: 1 honoured (not the 50 ms backoff)
    assert t2 - t1 < 0.5


async def test_transaction_retried_on_429_and_503_commits_once(fhir_base_url: str, fhir: FhirClient) -> None:
    t = tag()
    pid = f"rtx-{t[:12]}"
    transport = FaultTransport([(503, {}), (429, {"Retry-After": "0"})])
    async with FhirClient(fhir_base_url, transport=transport, retry=FAST_RETRY) as client:
        await client.transaction(put_transaction([patient(pid, t), observation(f"{pid}-o", pid, t)]))
    assert len(transport.requests) == 3
    assert len(await fhir.search("Observation", {"_tag": f"{TAG_SYSTEM}|{t}"})) == 1


async def test_timeouts_are_retried_for_reads_not_for_transactions(
    fhir_base_url: str, fhir: FhirClient
) -> None:
    t = tag()
    pid = f"rto-{t[:12]}"
    await fhir.transaction(put_transaction([patient(pid, t)]))
    transport = FaultTransport(["hang"])
    async with FhirClient(fhir_base_url, transport=transport, retry=FAST_RETRY, timeout=0.3) as client:
        assert (await client.read("Patient", pid))["id"] == pid
        transport.faults = ["hang"]
        # A PUT transaction may have been committed: not resent, and its outcome is unknown.
        with pytest.raises(FhirOutcomeUnknown, match="ReadTimeout"):
            await client.transaction(put_transaction([observation(f"{pid}-o", pid, t)]))
    assert len(transport.requests) == 3


async def test_gateway_errors_exhaust_the_budget(fhir_base_url: str) -> None:
    transport = FaultTransport([(502, {})] * 4)
    async with FhirClient(fhir_base_url, transport=transport, retry=FAST_RETRY) as client:
        with pytest.raises(FhirServerError) as info:
            await client.read("Patient", "whatever")
    assert info.value.status == 502
    assert len(transport.requests) == 4


async def test_everything_and_its_fallback(fhir_base_url: str, fhir: FhirClient) -> None:
    t = tag()
    pid = f"ev-{t[:12]}"
    condition = {
        "resourceType": "Condition",
        "id": f"{pid}-c",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"text": "x"},
    }
    await fhir.transaction(put_transaction([patient(pid, t), observation(f"{pid}-o", pid, t), condition]))
    expected = [("Condition", f"{pid}-c"), ("Observation", f"{pid}-o"), ("Patient", pid)]

    everything = await fhir.everything(pid, types=["Observation", "Condition"])
    assert sorted((r["resourceType"], r["id"]) for r in everything) == expected

    # A server that answers 501 to $everything: per-type searches instead.
    transport = FaultTransport([(501, {})])
    async with FhirClient(fhir_base_url, transport=transport) as client:
        fallback = await client.everything(pid, types=["Observation", "Condition"])
    assert sorted((r["resourceType"], r["id"]) for r in fallback) == expected
    assert transport.requests[0][1].endswith("/$everything")

    # A flavour known to lack it never asks.
    async with FhirClient(fhir_base_url, flavour="cerner") as client:
        assert (
            sorted(
                (r["resourceType"], r["id"])
                for r in await client.everything(pid, types=["Observation", "Condition"])
            )
            == expected
        )
