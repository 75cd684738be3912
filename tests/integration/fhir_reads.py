"""Plain-HTTP reads of a FHIR server for integration checks, independent of the client under test."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from agent.testbed.cohort import Cohort
from agent.testbed.cohort.load import seed_cohort
from fhir_adapters import FhirClient
from tools.writeback import AI_OUTPUT_SYSTEM

WRITTEN_TYPES = ("Observation", "DiagnosticReport", "Provenance", "Device")


async def get(url: str, **params: str) -> Any:
    async with httpx.AsyncClient(timeout=30) as http:
        # httpx replaces the URL's own query with `params` even when it is empty: a paging
        # link would lose its offset and loop for ever.
        resp = await http.get(url, params=params) if params else await http.get(url)
    resp.raise_for_status()
    return resp.json()


async def count(base: str, rtype: str, **params: str) -> int:
    return int((await get(f"{base}/{rtype}", **params, _summary="count"))["total"])


async def totals(base: str) -> dict[str, int]:
    return {t: await count(base, t) for t in WRITTEN_TYPES}


async def search(base: str, rtype: str, **params: str) -> list[Any]:
    """Every match, following `next` links."""
    out: list[Any] = []
    bundle = await get(f"{base}/{rtype}", **params, _count="500")
    while True:
        out += [e["resource"] for e in bundle.get("entry", [])]
        nxt = next((link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None)
        if nxt is None:
            return out
        bundle = await get(nxt)


def server_with(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    """A FHIR server of its own holding only ``cohort``, so that counts are exact."""
    base = fhir_server_factory()

    async def load() -> None:
        async with FhirClient(base) as client:
            await seed_cohort(client, cohort)

    asyncio.run(load())
    return base


async def duplicate_identifiers(base: str) -> dict[str, int]:
    """Business identifiers (and Provenance tags) of ChartAgent's output held more than once."""
    seen: Counter[str] = Counter()
    for rtype in ("Observation", "DiagnosticReport", "Device"):
        for r in await search(base, rtype, _elements="identifier"):
            seen.update(i["value"] for i in r.get("identifier", []) if i.get("system") == AI_OUTPUT_SYSTEM)
    for p in await search(base, "Provenance", _elements="meta"):
        seen.update(
            t["code"] for t in p.get("meta", {}).get("tag", []) if t.get("system") == AI_OUTPUT_SYSTEM
        )
    return {k: n for k, n in seen.items() if n > 1}


async def post_newer_creatinine(client: FhirClient, base: str, patient: str, value: float = 2.9) -> None:
    """A new creatinine result arrives (a copy of the patient's feed result, later and higher):
    the next run's summary differs from the last."""
    creatinine = next(
        o
        for o in await search(
            base, "Observation", subject=f"Patient/{patient}", code="http://loinc.org|2160-0"
        )
        if "security" not in o.get("meta", {})
    )
    newer = {k: v for k, v in creatinine.items() if k not in ("id", "meta", "identifier")}
    newer["effectiveDateTime"] = "2026-11-30T08:00:00Z"
    newer["valueQuantity"] = {**creatinine["valueQuantity"], "value": value}
    await client.create(newer)
