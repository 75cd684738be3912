"""The fault-injecting proxy (fault_proxy.py) in front of the real embedded FHIR server.

Plain httpx clients, so these tests check the proxy, not the FHIR client: which faults reach the
server, what the client sees, that clean traffic passes unchanged, that a seed fixes the faults.
Every test tags its Patients with a fresh identifier on the shared server.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fault_proxy import (
    FORWARDED_KINDS,
    NOT_FORWARDED_KINDS,
    FaultKind,
    FaultPlan,
    FaultProxy,
    ProxyEvent,
    ScriptedFault,
)
from fhir_reads import count

from fhir_adapters import FhirClient, FhirProtocolError
from fhir_adapters.flavours import GENERIC, SEKMET

pytestmark = pytest.mark.integration

ID_SYSTEM = "urn:chartagent:fault-proxy-test"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def fresh_id() -> str:
    return uuid.uuid4().hex


def patient(ident: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": ID_SYSTEM, "value": ident}]}


async def stored(base: str, ident: str) -> int:
    """Patients with this identifier on the server (read directly, not through the proxy)."""
    return await count(base, "Patient", identifier=f"{ID_SYSTEM}|{ident}")


async def seed(base: str, ident: str, n: int) -> list[str]:
    async with httpx.AsyncClient(timeout=30) as http:
        ids = []
        for _ in range(n):
            resp = await http.post(f"{base}/Patient", json=patient(ident), headers=FHIR_JSON)
            resp.raise_for_status()
            ids.append(resp.json()["id"])
    return ids


async def settled(proxy: FaultProxy, seq: int, *, timeout_s: float = 5.0) -> ProxyEvent:
    """The event for request `seq` once the upstream has answered it (bounded wait)."""
    async with asyncio.timeout(timeout_s):
        while True:
            event = next((e for e in proxy.log if e.seq == seq), None)
            if event is not None and (event.upstream_status is not None or event.done):
                return event
            await asyncio.sleep(0.02)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def without_bundle_stamp(body: bytes) -> bytes:
    """A searchset's bytes without its per-response id and lastUpdated (everything else kept)."""
    return re.sub(rb'^\{"resourceType":"Bundle","id":"[^"]+","meta":\{"lastUpdated":"[^"]+"\}', b"", body)


async def test_clean_traffic_passes_byte_for_byte(fhir_base_url: str, client: httpx.AsyncClient) -> None:
    ident = fresh_id()
    ids = await seed(fhir_base_url, ident, 3)
    params = {"identifier": f"{ID_SYSTEM}|{ident}", "_count": "2"}
    async with FaultProxy(fhir_base_url) as proxy:
        assert proxy.base_url.endswith("/fhir")
        assert proxy.base_url != fhir_base_url
        assert proxy.base_url.split("/fhir")[0] == proxy.origin

        direct_read = await client.get(f"{fhir_base_url}/Patient/{ids[0]}")
        proxied_read = await client.get(f"{proxy.base_url}/Patient/{ids[0]}")
        assert proxied_read.status_code == direct_read.status_code == 200
        assert proxied_read.content == direct_read.content
        drop = {"date", "connection"}
        assert {k: v for k, v in proxied_read.headers.items() if k not in drop} == {
            k: v for k, v in direct_read.headers.items() if k not in drop
        }

        direct_search = await client.get(f"{fhir_base_url}/Patient", params=params)
        proxied_search = await client.get(f"{proxy.base_url}/Patient", params=params)
        assert proxied_search.status_code == 200
        assert without_bundle_stamp(proxied_search.content) == without_bundle_stamp(direct_search.content)
        assert without_bundle_stamp(proxied_search.content) != proxied_search.content  # the mask matched
        # The upstream's own absolute links are left alone (its port, not the proxy's).
        assert all(link["url"].startswith(fhir_base_url) for link in proxied_search.json()["link"])

        created = await client.post(f"{proxy.base_url}/Patient", json=patient(ident), headers=FHIR_JSON)
        assert created.status_code == 201
        assert created.headers["location"].startswith(f"{fhir_base_url}/Patient/")
        assert await stored(fhir_base_url, ident) == 4

        # Keep-alive: one httpx client, one connection to the proxy.
        assert proxy.connections == 1
        log = proxy.log
    assert [(e.method, e.path, e.fault, e.forwarded, e.upstream_status) for e in log] == [
        ("GET", f"/fhir/Patient/{ids[0]}", None, True, 200),
        ("GET", "/fhir/Patient", None, True, 200),
        ("POST", "/fhir/Patient", None, True, 201),
    ]
    assert log[1].params == ("identifier", "_count")
    assert ident not in repr(log)  # query values are never kept


@pytest.mark.parametrize("kind", sorted(NOT_FORWARDED_KINDS), ids=str)
async def test_pre_forward_faults_never_reach_the_server(
    fhir_base_url: str, client: httpx.AsyncClient, kind: FaultKind
) -> None:
    ident = fresh_id()
    plan = FaultPlan(script=(ScriptedFault(kind, method="POST"),))
    async with FaultProxy(fhir_base_url, plan) as proxy:
        url = f"{proxy.base_url}/Patient"
        if kind is FaultKind.RESET_BEFORE:
            with pytest.raises(httpx.TransportError):
                await client.post(url, json=patient(ident), headers=FHIR_JSON)
        else:
            resp = await client.post(url, json=patient(ident), headers=FHIR_JSON)
            assert resp.status_code == int(kind.value[:3])
            assert resp.json()["resourceType"] == "OperationOutcome"
            if kind is not FaultKind.ERROR_BEFORE:
                assert resp.headers["retry-after"] == "0"
        assert await stored(fhir_base_url, ident) == 0

        # The script is spent: the next POST goes through (on the same connection unless reset).
        resp = await client.post(url, json=patient(ident), headers=FHIR_JSON)
        assert resp.status_code == 201
        assert await stored(fhir_base_url, ident) == 1
        assert proxy.connections == (2 if kind is FaultKind.RESET_BEFORE else 1)
        first, second = proxy.log
    assert (first.fault, first.forwarded, first.upstream_status) == (kind, False, None)
    assert (second.fault, second.forwarded, second.upstream_status) == (None, True, 201)
    assert proxy.counts() == {"requests": 2, "forwarded": 1, "faulted": 1, kind.value: 1}


@pytest.mark.parametrize("kind", sorted(FORWARDED_KINDS - {FaultKind.REWRITE_LINKS}), ids=str)
async def test_post_forward_faults_commit_upstream(fhir_base_url: str, kind: FaultKind) -> None:
    ident = fresh_id()
    plan = FaultPlan(script=(ScriptedFault(kind, method="POST", path=r"/Patient$"),), slow_s=1.0)
    async with FaultProxy(fhir_base_url, plan) as proxy, httpx.AsyncClient(timeout=0.4) as client:
        call = client.post(f"{proxy.base_url}/Patient", json=patient(ident), headers=FHIR_JSON)
        if kind is FaultKind.ERROR_AFTER:
            assert (await call).status_code == 500
        elif kind is FaultKind.SLOW:
            with pytest.raises(httpx.ReadTimeout):
                await call
        elif kind is FaultKind.CUT:
            with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|complete message body"):
                await call
        else:
            with pytest.raises(httpx.TransportError):
                await call
        event = await settled(proxy, 0)
        assert (event.fault, event.forwarded, event.upstream_status) == (kind, True, 201)
        # The server committed it although the client saw a failure.
        assert await stored(fhir_base_url, ident) == 1


async def test_rewrite_links_moves_paging_links_to_another_origin(
    fhir_base_url: str, client: httpx.AsyncClient
) -> None:
    ident = fresh_id()
    await seed(fhir_base_url, ident, 3)
    params = {"identifier": f"{ID_SYSTEM}|{ident}", "_count": "1"}
    rewrite = ScriptedFault(FaultKind.REWRITE_LINKS, method="GET", path=r"/Patient$")
    async with FaultProxy(fhir_base_url, FaultPlan(script=(rewrite,))) as proxy:
        direct = (await client.get(f"{fhir_base_url}/Patient", params=params)).json()
        resp = await client.get(f"{proxy.base_url}/Patient", params=params)
        rewritten = resp.json()  # httpx checked the fixed Content-Length
        assert int(resp.headers["content-length"]) == len(resp.content)
        assert rewritten["entry"] == direct["entry"]
        for old, new in zip(direct["link"], rewritten["link"], strict=True):
            assert new["relation"] == old["relation"]
            assert new["url"] == old["url"].replace(fhir_base_url, "http://fault-proxy.invalid/fhir")
        next_url = next(link["url"] for link in rewritten["link"] if link["relation"] == "next")
        for flavour in (GENERIC, SEKMET):
            with pytest.raises(FhirProtocolError, match="another origin"):
                flavour.resolve_link(next_url, proxy.base_url)
        assert proxy.log[-1].detail.endswith("rewrote 4 links")

        # Another loopback port: generic refuses it, sekmet maps it back onto the proxy.
        proxy.set_plan(FaultPlan(script=(rewrite,), rewrite_origin="http://127.0.0.1:9"))
        page = (await client.get(f"{proxy.base_url}/Patient", params=params)).json()
        loopback_next = next(link["url"] for link in page["link"] if link["relation"] == "next")
        assert loopback_next.startswith("http://127.0.0.1:9/fhir/Patient?")
        with pytest.raises(FhirProtocolError):
            GENERIC.resolve_link(loopback_next, proxy.base_url)
        assert SEKMET.resolve_link(loopback_next, proxy.base_url).startswith(f"{proxy.base_url}/Patient?")


async def test_fhir_client_behind_the_proxy_needs_the_sekmet_flavour(fhir_base_url: str) -> None:
    ident = fresh_id()
    await seed(fhir_base_url, ident, 3)
    params = {"identifier": f"{ID_SYSTEM}|{ident}"}
    async with FaultProxy(fhir_base_url) as proxy:
        async with FhirClient(proxy.base_url, flavour="sekmet") as fhir:
            assert len(await fhir.search("Patient", params, count=1)) == 3
        # Every page went through the proxy.
        assert [e.params[-1] for e in proxy.log] == ["_count", "_offset", "_offset"]
        async with FhirClient(proxy.base_url, flavour="generic") as fhir:
            with pytest.raises(FhirProtocolError, match="another origin"):
                await fhir.search("Patient", params, count=1)


def test_seeded_plan_is_reproducible() -> None:
    kinds = (FaultKind.TOO_MANY_REQUESTS, FaultKind.UNAVAILABLE, FaultKind.CUT)
    plan = FaultPlan(seed=7, rate=0.2, kinds=kinds)
    sequence = plan.sequence(500)
    assert FaultPlan(seed=7, rate=0.2, kinds=kinds).sequence(500) == sequence
    assert FaultPlan(seed=8, rate=0.2, kinds=kinds).sequence(500) != sequence
    faulted = [k for k in sequence if k is not None]
    assert 0.15 < len(faulted) / len(sequence) < 0.25
    assert set(faulted) == set(kinds)
    assert FaultPlan(seed=7, rate=0.0).sequence(50) == [None] * 50
    assert None not in FaultPlan(seed=7, rate=1.0).sequence(50)


async def test_seeded_plan_replays_the_same_faults_live(fhir_base_url: str) -> None:
    kinds = (FaultKind.TOO_MANY_REQUESTS, FaultKind.UNAVAILABLE, FaultKind.ERROR_BEFORE)
    # Only GETs are eligible: the POST neither draws a fault nor uses up an index.
    plan = FaultPlan(seed=11, rate=0.5, kinds=kinds, methods=frozenset({"get"}))

    async def run() -> list[int]:
        statuses = []
        async with FaultProxy(fhir_base_url, plan) as proxy, httpx.AsyncClient(timeout=10) as http:
            created = await http.post(
                f"{proxy.base_url}/Patient", json=patient(fresh_id()), headers=FHIR_JSON
            )
            assert created.status_code == 201
            read_url = f"{proxy.base_url}/Patient/{created.json()['id']}"
            for _ in range(12):
                statuses.append((await http.get(read_url)).status_code)
            assert [e.fault for e in proxy.log[1:]] == plan.sequence(12)
            assert proxy.connections == 1
        return statuses

    first = await run()
    assert await run() == first
    expected = [200 if k is None else int(k.value[:3]) for k in plan.sequence(12)]
    assert first == expected
    assert 200 in first
    assert set(first) != {200}


async def test_chunked_request_bodies_are_forwarded(fhir_base_url: str, client: httpx.AsyncClient) -> None:
    ident = fresh_id()
    body = httpx.Request("POST", "http://x", json=patient(ident)).content

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    async with FaultProxy(fhir_base_url) as proxy:
        resp = await client.post(f"{proxy.base_url}/Patient", content=chunks(), headers=FHIR_JSON)
    assert resp.status_code == 201
    assert resp.request.headers["transfer-encoding"] == "chunked"
    assert await stored(fhir_base_url, ident) == 1
