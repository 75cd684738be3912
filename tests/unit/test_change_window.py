"""The cohort-level change window's paging (`change_marks.check_cohort`), against a scripted server:
pages follow each other by `_lastUpdated=ge<last stamp>` with the resources read already dropped
(and not counted against the limit); a server that ignores `_sort` (unsorted pages) or a full page
of one instant cannot be paged safely, and the check gives up. Servers that do these are not at
hand, hence the scripted transport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from agent.planning import change_marks
from agent.planning.change_marks import ChangeMark, check_cohort, server_instant
from fhir_adapters import FhirClient

BASE = "http://fhir.test/fhir"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stamp(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def observation(rid: str, patient: str, seconds: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "meta": {"lastUpdated": stamp(seconds)},
    }


class Server:
    """Observations only; pages of `page` resources, `_lastUpdated=gt|ge` honoured, sorted unless
    `sort` is False; every request's query recorded."""

    def __init__(self, observations: list[dict[str, Any]], *, page: int, sort: bool = True) -> None:
        self.observations = observations
        self.page = page
        self.sort = sort
        self.queries: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.url.query.decode()))
        self.queries.append(params)
        found: list[dict[str, Any]] = []
        if request.url.path.endswith("/Observation"):
            bound = params["_lastUpdated"]
            op, at = bound[:2], datetime.fromisoformat(bound[2:])
            found = [
                o
                for o in self.observations
                if (t := datetime.fromisoformat(o["meta"]["lastUpdated"])) > at or (op == "ge" and t == at)
            ]
            if self.sort:
                found.sort(key=lambda o: o["meta"]["lastUpdated"])
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "meta": {"lastUpdated": stamp(3600)},
            "entry": [{"resource": o} for o in found[: self.page]],
            "link": [{"relation": "next", "url": f"{BASE}/Observation?page=2"}]
            if len(found) > self.page
            else [],
        }
        return httpx.Response(200, json=bundle)


def mark(written: dict[str, str | None]) -> ChangeMark:
    return ChangeMark(through=T0, written=written, can_read_images=False)


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(change_marks, "_COHORT_PAGE", 2)


async def test_pages_follow_by_the_last_stamp_and_drop_what_was_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(change_marks, "_COHORT_PAGE", 3)
    # Two of p1's own writes share an instant; the next page starts at it and reads them again.
    observations = [
        observation("own-1", "p1", 10),
        observation("own-2", "p1", 20),
        observation("own-3", "p1", 20),
        observation("new", "p2", 30),
    ]
    server = Server(observations, page=3)
    own: dict[str, str | None] = {f"Observation/own-{i}": "final" for i in (1, 2, 3)}
    marks = {"p1": mark(own), "p2": mark({})}
    async with FhirClient(BASE, transport=httpx.MockTransport(server)) as fhir:
        # Four resources in the window: the two read twice are not counted against the limit.
        index = await check_cohort(fhir, marks, can_read_images=False, limit=4)
    assert index is not None
    assert dict(index.unchanged) == {"p1": T0}
    bounds = [q["_lastUpdated"] for q in server.queries if "_lastUpdated" in q and "_sort" in q]
    assert bounds[0] == f"gt{T0.isoformat()}"
    assert bounds.count(f"ge{stamp(20)}") == 1  # Observation's second page; the other types had one


async def test_unsorted_pages_or_a_full_page_of_one_instant_give_up() -> None:
    unsorted = [observation("b", "p1", 20), observation("a", "p1", 10), observation("c", "p1", 30)]
    same = [observation(f"s{i}", "p1", 10) for i in range(3)]
    for observations, sort in ((unsorted, False), (same, True)):
        async with FhirClient(
            BASE, transport=httpx.MockTransport(Server(observations, page=2, sort=sort))
        ) as fhir:
            assert await check_cohort(fhir, {"p1": mark({})}, can_read_images=False) is None


async def test_the_server_instant_is_its_bundle_stamp_less_the_margin() -> None:
    async with FhirClient(BASE, transport=httpx.MockTransport(Server([], page=2))) as fhir:
        instant = await server_instant(fhir, margin=timedelta(seconds=60))
    assert instant == T0 + timedelta(seconds=3600 - 60)

    def no_stamp(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})

    async with FhirClient(BASE, transport=httpx.MockTransport(no_stamp)) as fhir:
        assert await server_instant(fhir) is None
