"""FhirClient against `httpx.MockTransport` handlers: paging, link safety, retries, errors, $everything."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from fhir_adapters import (
    FhirClient,
    FhirError,
    FhirInvalid,
    FhirNotFound,
    FhirOutcomeUnknown,
    FhirProtocolError,
    FhirRateLimited,
    FhirServerError,
    FhirTransportError,
    RetryPolicy,
)

BASE = "https://ehr.example/fhir"
Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps:
    """Injected sleep: records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(handler: Any, sleeps: Sleeps | None = None, **kw: Any) -> FhirClient:
    kw.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=1.0, rng=lambda: 0.5))
    return FhirClient(BASE, transport=httpx.MockTransport(handler), sleep=sleeps or Sleeps(), **kw)


def bundle(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


def obs(i: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{i}"}


def paging_handler(total: int, seen: list[httpx.Request], *, next_base: str = BASE) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        q = parse_qs(request.url.query.decode())
        count, offset = int(q["_count"][0]), int(q.get("_offset", ["0"])[0])
        page = [obs(i) for i in range(offset, min(total, offset + count))]
        nxt = None
        if offset + count < total:
            nxt = f"{next_base}/Observation?patient=p1&_count={count}&_offset={offset + count}"
        return httpx.Response(200, json=bundle(page, nxt))

    return handle


async def test_search_follows_next_links_across_pages() -> None:
    seen: list[httpx.Request] = []
    async with client(paging_handler(25, seen)) as fhir:
        resources = await fhir.search("Observation", [("patient", "p1")], count=10)
    assert [r["id"] for r in resources] == [f"o{i}" for i in range(25)]
    assert len(seen) == 3
    assert seen[0].url.path == "/fhir/Observation"
    assert seen[0].headers["accept"] == "application/fhir+json"


async def test_search_pages_and_max_pages() -> None:
    seen: list[httpx.Request] = []
    async with client(paging_handler(25, seen)) as fhir:
        pages = [p async for p in fhir.search_pages("Observation", {"patient": "p1"}, count=10)]
        limited = await fhir.search("Observation", {"patient": "p1"}, count=10, max_pages=2)
    assert [len(p["entry"]) for p in pages] == [10, 10, 5]
    assert len(limited) == 20


async def test_include_and_revinclude_are_sent() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=bundle([obs(1), {"resourceType": "Patient", "id": "p1"}]))

    async with client(handle) as fhir:
        out = await fhir.search(
            "Observation",
            {"patient": "p1"},
            include=["Observation:patient"],
            revinclude=["Provenance:target"],
        )
    q = parse_qs(seen[0].url.query.decode())
    assert q["_include"] == ["Observation:patient"]
    assert q["_revinclude"] == ["Provenance:target"]
    assert [r["resourceType"] for r in out] == ["Observation", "Patient"]


async def test_cross_origin_next_link_is_refused_before_any_request() -> None:
    seen: list[httpx.Request] = []
    async with client(paging_handler(25, seen, next_base="https://evil.example/fhir")) as fhir:
        with pytest.raises(FhirProtocolError, match="another origin"):
            await fhir.search("Observation", {"patient": "p1"}, count=10)
    assert [r.url.host for r in seen] == ["ehr.example"]


async def test_count_is_clamped_by_flavour() -> None:
    seen: list[httpx.Request] = []
    async with client(paging_handler(5, seen), flavour="epic") as fhir:
        await fhir.search("Condition", {"patient": "p1"}, count=1000)
    assert parse_qs(seen[0].url.query.decode())["_count"] == ["100"]


def flaky(
    failures: list[httpx.Response | Exception], ok: httpx.Response, seen: list[httpx.Request]
) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if failures:
            failure = failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return ok

    return handle


OK_PATIENT = httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})


async def test_429_honours_retry_after() -> None:
    seen: list[httpx.Request] = []
    sleeps = Sleeps()
    handler = flaky([httpx.Response(429, headers={"Retry-After": "2"})], OK_PATIENT, seen)
    async with client(handler, sleeps) as fhir:
        assert (await fhir.read("Patient", "p1"))["id"] == "p1"
    assert len(seen) == 2
    assert sleeps.waits == [2.0]


async def test_503_backs_off_with_jitter() -> None:
    seen: list[httpx.Request] = []
    sleeps = Sleeps()
    handler = flaky([httpx.Response(503), httpx.Response(503)], OK_PATIENT, seen)
    async with client(handler, sleeps) as fhir:
        await fhir.read("Patient", "p1")
    assert sleeps.waits == [0.5, 1.0]  # rng 0.5 * 1s * 2**(attempt-1)


async def test_timeouts_are_retried_for_reads() -> None:
    seen: list[httpx.Request] = []
    handler = flaky([httpx.ReadTimeout("slow"), httpx.ConnectError("refused")], OK_PATIENT, seen)
    async with client(handler) as fhir:
        await fhir.read("Patient", "p1")
    assert len(seen) == 3


async def test_retry_budget_exhausted_raises_typed_error() -> None:
    seen: list[httpx.Request] = []
    handler = flaky([httpx.Response(429, headers={"Retry-After": "1"})] * 5, OK_PATIENT, seen)
    async with client(handler) as fhir:
        with pytest.raises(FhirRateLimited) as info:
            await fhir.read("Patient", "p1")
    assert len(seen) == 3
    assert info.value.retry_after == 1.0

    seen.clear()
    handler = flaky([httpx.ReadTimeout("slow")] * 5, OK_PATIENT, seen)
    async with client(handler) as fhir:
        with pytest.raises(FhirTransportError, match="GET Patient/p1 failed: ReadTimeout"):
            await fhir.read("Patient", "p1")


TX = {"resourceType": "Bundle", "type": "transaction", "entry": []}
TX_OK = httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response"})


@pytest.mark.parametrize("failure", [httpx.Response(429), httpx.Response(503), httpx.ConnectError("refused")])
async def test_transaction_is_retried_when_not_processed(failure: httpx.Response | Exception) -> None:
    seen: list[httpx.Request] = []
    async with client(flaky([failure], TX_OK, seen)) as fhir:
        assert (await fhir.transaction(TX))["type"] == "transaction-response"
    assert len(seen) == 2
    assert seen[0].headers["content-type"] == "application/fhir+json"
    assert json.loads(seen[1].content) == TX


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (httpx.Response(500), FhirServerError),
        (httpx.Response(502), FhirServerError),
        (httpx.Response(504), FhirServerError),
        (httpx.ReadTimeout("slow"), FhirTransportError),
        (httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
         FhirTransportError),
    ],
)  # fmt: skip
async def test_transaction_is_not_retried_when_maybe_processed(
    failure: httpx.Response | Exception, cause: type[FhirError]
) -> None:
    """A plain transaction may have been committed: not resent, and the error says the outcome
    is unknown (never "nothing written"), with the HTTP or transport error as its cause."""
    seen: list[httpx.Request] = []
    async with client(flaky([failure], TX_OK, seen)) as fhir:
        with pytest.raises(FhirOutcomeUnknown) as raised:
            await fhir.transaction(TX)
    assert len(seen) == 1
    assert isinstance(raised.value.__cause__, cause)
    assert "outcome unknown" in str(raised.value)


TX_CONDITIONAL = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:00000000-0000-0000-0000-000000000001",
            "resource": {"resourceType": "Device"},
            "request": {"method": "POST", "url": "Device", "ifNoneExist": "identifier=urn:x|1"},
        }
    ],
}


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500),
        httpx.Response(502),
        httpx.Response(504),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    ],
)
async def test_conditional_only_transaction_is_resent_after_unknown_outcome(
    failure: httpx.Response | Exception,
) -> None:
    """Every entry a conditional create: a resend matches what a committed first attempt wrote."""
    seen: list[httpx.Request] = []
    async with client(flaky([failure], TX_OK, seen)) as fhir:
        assert (await fhir.transaction(TX_CONDITIONAL))["type"] == "transaction-response"
    assert len(seen) == 2
    assert json.loads(seen[0].content) == json.loads(seen[1].content) == TX_CONDITIONAL


async def test_conditional_only_transaction_still_unknown_after_the_retry_budget() -> None:
    seen: list[httpx.Request] = []
    failures: list[httpx.Response | Exception] = [httpx.ReadTimeout("slow")] * 3
    async with client(flaky(failures, TX_OK, seen)) as fhir:
        with pytest.raises(FhirOutcomeUnknown):
            await fhir.transaction(TX_CONDITIONAL)
    assert len(seen) == 3  # max_attempts of the test client


async def test_transaction_success_with_garbled_body_is_an_unknown_outcome() -> None:
    garbled = httpx.Response(200, content=b'{"resourceType": "Bundle", "entr')
    async with client(flaky([], garbled, [])) as fhir:
        with pytest.raises(FhirOutcomeUnknown, match="could not be read"):
            await fhir.transaction(TX)


async def test_read_is_retried_on_500() -> None:
    seen: list[httpx.Request] = []
    ok = httpx.Response(200, json={"resourceType": "Patient", "id": "p"})
    async with client(flaky([httpx.Response(500)], ok, seen)) as fhir:
        assert (await fhir.read("Patient", "p"))["id"] == "p"
    assert len(seen) == 2


async def test_conditional_create_sends_if_none_exist_and_is_retried_on_timeout() -> None:
    seen: list[httpx.Request] = []
    created = httpx.Response(201, json={"resourceType": "Observation", "id": "new"})
    async with client(flaky([httpx.ReadTimeout("slow")], created, seen)) as fhir:
        res = await fhir.create({"resourceType": "Observation"}, if_none_exist=[("identifier", "urn:x|1")])
    assert res["id"] == "new"
    assert len(seen) == 2
    assert seen[0].headers["if-none-exist"] == "identifier=urn%3Ax%7C1"
    assert seen[0].url.path == "/fhir/Observation"


async def test_plain_create_is_not_retried_on_timeout() -> None:
    seen: list[httpx.Request] = []
    created = httpx.Response(201, json={"resourceType": "Observation", "id": "new"})
    async with client(flaky([httpx.ReadTimeout("slow")], created, seen)) as fhir:
        with pytest.raises(FhirOutcomeUnknown):
            await fhir.create({"resourceType": "Observation"})
    assert len(seen) == 1


async def test_create_with_minimal_return_reads_location() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, headers={"Location": f"{BASE}/Observation/o9/_history/1"})
        return httpx.Response(200, json={"resourceType": "Observation", "id": "o9"})

    async with client(handle) as fhir:
        assert (await fhir.create({"resourceType": "Observation"}))["id"] == "o9"


async def test_error_carries_outcome_and_no_query_values() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad param"}],
    }

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=outcome)

    async with client(handle) as fhir:
        with pytest.raises(FhirInvalid) as info:
            await fhir.search("Patient", {"family": "Smith", "birthdate": "1970-01-01"})
    msg = str(info.value)
    assert msg == "GET Patient?family&birthdate -> HTTP 400: error/invalid: bad param"
    assert "Smith" not in msg
    assert "1970" not in msg
    assert info.value.status == 400
    assert info.value.issues[0].code == "invalid"


async def test_non_json_body_is_a_protocol_error() -> None:
    async with client(lambda r: httpx.Response(200, text="<html>")) as fhir:
        with pytest.raises(FhirProtocolError, match="non-JSON"):
            await fhir.read("Patient", "p1")


async def test_redirects_are_not_followed() -> None:
    redirect = httpx.Response(302, headers={"Location": "https://evil.example/fhir/Patient/p1"})
    async with client(lambda r: redirect) as fhir:
        with pytest.raises(FhirProtocolError, match="redirect"):
            await fhir.read("Patient", "p1")


async def test_bundle_type_is_checked() -> None:
    async with client(lambda r: TX_OK) as fhir:
        with pytest.raises(ValueError, match="transaction"):
            await fhir.transaction({"resourceType": "Bundle", "type": "batch"})


async def test_concurrency_is_bounded_by_one_shared_semaphore() -> None:
    in_flight = 0
    peak = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        if request.url.path.endswith("/Patient/p1"):
            return OK_PATIENT
        return httpx.Response(200, json=bundle([]))

    async with client(handle, max_concurrency=3) as fhir:
        await asyncio.gather(
            *(fhir.read("Patient", "p1") for _ in range(6)), *(fhir.search("Condition", {}) for _ in range(6))
        )
    assert peak == 3


def everything_handler(seen: list[str], *, everything_status: int = 200) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path.removeprefix("/fhir/"))
        path = request.url.path
        if path.endswith("/$everything"):
            if everything_status != 200:
                return httpx.Response(everything_status)
            return httpx.Response(
                200,
                json=bundle(
                    [
                        {"resourceType": "Patient", "id": "p1"},
                        obs(1),
                        {"resourceType": "Practitioner", "id": "dr"},
                    ]
                ),
            )
        if path.endswith("/Patient/p1"):
            return OK_PATIENT
        rtype = path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=bundle([{"resourceType": rtype, "id": f"{rtype}-1"}]))

    return handle


async def test_everything_uses_the_operation_and_filters_types() -> None:
    seen: list[str] = []
    async with client(everything_handler(seen)) as fhir:
        out = await fhir.everything("p1", types=["Observation"])
        everything = await fhir.everything("p1")
    assert seen == ["Patient/p1/$everything", "Patient/p1/$everything"]
    assert [r["id"] for r in out] == ["p1", "o1"]
    assert len(everything) == 3


@pytest.mark.parametrize("status", [404, 400, 501])
async def test_everything_falls_back_to_per_type_searches(status: int) -> None:
    seen: list[str] = []
    async with client(everything_handler(seen, everything_status=status)) as fhir:
        out = await fhir.everything("p1", types=["Observation", "Condition"])
    assert seen[0] == "Patient/p1/$everything"
    assert sorted(seen[1:]) == ["Condition", "Observation", "Patient/p1"]
    assert sorted(r["id"] for r in out) == ["Condition-1", "Observation-1", "p1"]


async def test_everything_errors_other_than_unsupported_propagate() -> None:
    seen: list[str] = []
    async with client(
        everything_handler(seen, everything_status=500), retry=RetryPolicy(max_attempts=1)
    ) as fhir:
        with pytest.raises(FhirServerError):
            await fhir.everything("p1", types=["Observation"])


async def test_flavour_without_everything_never_calls_it() -> None:
    seen: list[str] = []
    async with client(everything_handler(seen), flavour="cerner") as fhir:
        await fhir.everything("p1", types=["Condition"])
        with pytest.raises(FhirError, match="pass `types`"):
            await fhir.everything("p1")
    assert "Patient/p1/$everything" not in seen


async def test_epic_observations_are_searched_per_category_and_deduplicated() -> None:
    categories: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        q = parse_qs(request.url.query.decode())
        categories.append(q["category"][0])
        assert q["patient"] == ["p1"]
        # o1 is both a lab and a vital sign; an _include'd Patient is not an Observation.
        return httpx.Response(
            200, json=bundle([obs(1), obs(len(categories) + 1), {"resourceType": "Patient", "id": "p1"}])
        )

    async with client(handle, flavour="epic") as fhir:
        out = await fhir.search_patient("Observation", "p1")
    assert sorted(categories) == ["laboratory", "social-history", "vital-signs"]
    assert sorted(r["id"] for r in out) == ["o1", "o2", "o3", "o4"]


async def test_not_found_read() -> None:
    async with client(lambda r: httpx.Response(404)) as fhir:
        with pytest.raises(FhirNotFound, match="GET Patient/x -> HTTP 404"):
            await fhir.read("Patient", "x")


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="absolute"):
        FhirClient("ehr.example/fhir")
    with pytest.raises(ValueError, match="either"):
        FhirClient(BASE, http=httpx.AsyncClient(), transport=httpx.MockTransport(lambda r: OK_PATIENT))
