"""Bulk Data client: the faults a real server does not produce on demand (a long 202, 429 while
polling, Retry-After as an HTTP date, a download that fails or is cut and succeeds on retry, a
line that is not JSON), over httpx.MockTransport with a fake clock and sleep."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fhir_adapters import FhirClient
from fhir_adapters.auth import StaticBearer
from fhir_adapters.bulk_export import (
    BulkExportClient,
    BulkExportHttpError,
    BulkExportTimeout,
    ExportFile,
    ExportManifest,
    ExportRequest,
    PollPolicy,
    fhir_instant,
)
from fhir_adapters.errors import FhirProtocolError, FhirTransportError
from fhir_adapters.retry import RetryPolicy

BASE = "https://fhir.example.org/r4"
STATUS = f"{BASE}/bulk-status/job1"
START = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A clock that only the client's sleeps move."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def manifest_body(output: list[dict[str, Any]], *, token: bool = False) -> dict[str, Any]:
    return {
        "transactionTime": "2026-12-04T11:59:59.500Z",
        "request": f"{BASE}/Patient/$export",
        "requiresAccessToken": token,
        "output": output,
        "error": [],
    }


def make(
    handler: Handler,
    *,
    policy: PollPolicy | None = None,
    token: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[BulkExportClient, FakeTime]:
    time = FakeTime()
    auth = StaticBearer(SecretStr("sekrit-token")) if token else None
    fhir = FhirClient(BASE, transport=httpx.MockTransport(handler), auth=auth)
    policy = policy or PollPolicy(
        errors=RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=8.0, rng=lambda: 1.0)
    )
    return BulkExportClient(
        fhir, policy=policy, sleep=time.sleep, clock=time.clock, on_progress=on_progress
    ), time


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in resources)


async def collect(_: ExportFile, resources: AsyncIterator[dict[str, Any]]) -> list[str]:
    return [r["id"] async for r in resources]


# ------------------------------------------------------------------------ kick-off


def test_kick_off_request_carries_the_bulk_parameters() -> None:
    url = ExportRequest(
        level="group",
        group_id="g1",
        types=("Patient", "Observation"),
        since=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        type_filters=("Observation?category=laboratory",),
    ).url(BASE)
    parsed = httpx.URL(url)
    assert parsed.path == "/r4/Group/g1/$export"
    assert parsed.params.get("_outputFormat") == "application/fhir+ndjson"
    assert parsed.params.get("_type") == "Patient,Observation"
    assert parsed.params.get("_since") == "2026-01-02T03:04:05.678Z"
    assert parsed.params.get_list("_typeFilter") == ["Observation?category=laboratory"]
    assert httpx.URL(ExportRequest(level="system").url(BASE)).path == "/r4/$export"
    with pytest.raises(ValueError, match="group_id"):
        ExportRequest(level="patient", group_id="g1").url(BASE)


def test_instants_are_utc_with_milliseconds() -> None:
    east = datetime(2026, 1, 2, 5, 0, 0, 999999, tzinfo=UTC).astimezone()
    assert fhir_instant(east) == "2026-01-02T05:00:00.999Z"
    with pytest.raises(ValueError, match="time zone"):
        fhir_instant(datetime(2026, 1, 2))


async def test_kick_off_saves_the_status_url_before_polling() -> None:
    seen: list[httpx.Request] = []
    events: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("$export"):
            return httpx.Response(202, headers={"Content-Location": "bulk-status/job1"})
        events.append("poll")
        return httpx.Response(200, json=manifest_body([]))

    client, _ = make(handler)
    status_url, manifest = await client.export(ExportRequest(), on_status_url=lambda u: events.append(u))
    assert status_url == STATUS  # relative Content-Location resolved against the base
    assert events == [STATUS, "poll"]
    assert seen[0].headers["prefer"] == "respond-async"
    assert seen[0].headers["accept"] == "application/fhir+json"
    assert manifest.transaction_time == datetime(2026, 12, 4, 11, 59, 59, 500000, tzinfo=UTC)


async def test_kick_off_refused_names_the_step() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported"}]}
    client, _ = make(lambda r: httpx.Response(400, json=outcome))
    with pytest.raises(BulkExportHttpError, match="kick-off -> HTTP 400: error/not-supported") as info:
        await client.kick_off(ExportRequest())
    assert info.value.step == "kick-off"


async def test_kick_off_without_content_location_is_a_protocol_error() -> None:
    client, _ = make(lambda r: httpx.Response(202))
    with pytest.raises(FhirProtocolError, match="Content-Location"):
        await client.kick_off(ExportRequest())


# ------------------------------------------------------------------------ polling


async def test_polling_honours_retry_after_progress_and_429() -> None:
    answers = iter(
        [
            httpx.Response(202, headers={"X-Progress": "collecting", "Retry-After": "7"}),
            # Retry-After as an HTTP date: 30 s after the fake clock's time then.
            httpx.Response(202, headers={"Retry-After": "Fri, 04 Dec 2026 12:00:37 GMT"}),
            httpx.Response(429, headers={"Retry-After": "5"}),
            httpx.Response(202),  # no Retry-After: the policy's interval
            httpx.Response(503),  # no Retry-After: backoff
            httpx.Response(200, json=manifest_body([])),
        ]
    )
    progress: list[str] = []
    policy = PollPolicy(interval=2.0, growth=2.0, errors=RetryPolicy(base_delay=1.0, rng=lambda: 1.0))
    client, time = make(lambda r: next(answers), policy=policy, on_progress=progress.append)
    await client.wait(STATUS)
    # 7 (Retry-After), 30 (date), 5 (429's Retry-After), 8 (interval 2 grown twice), 1 (first backoff)
    assert time.sleeps == [7.0, 30.0, 5.0, 8.0, 1.0]
    assert progress == ["collecting"]


async def test_a_long_202_ends_at_the_deadline_and_can_be_resumed() -> None:
    polls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        polls += 1
        return httpx.Response(202, headers={"Retry-After": "60"})

    client, time = make(handler, policy=PollPolicy(deadline=150.0))
    with pytest.raises(BulkExportTimeout, match="saved status URL"):
        await client.wait(STATUS)
    assert time.sleeps == [60.0, 60.0, 30.0]  # the last wait ends at the deadline, then one more poll
    assert polls == 4


async def test_polling_backs_off_exponentially_and_gives_up_naming_the_step() -> None:
    client, time = make(lambda r: httpx.Response(500))
    with pytest.raises(BulkExportHttpError, match="status -> HTTP 500") as info:
        await client.wait(STATUS)
    assert info.value.step == "status"
    assert time.sleeps == [1.0, 2.0, 4.0]  # capped full jitter with rng=1: base * 2**(n-1)


async def test_retry_after_is_capped_by_the_policy() -> None:
    answers = iter(
        [httpx.Response(202, headers={"Retry-After": "86400"}), httpx.Response(200, json=manifest_body([]))]
    )
    client, time = make(lambda r: next(answers), policy=PollPolicy(max_interval=90.0))
    await client.wait(STATUS)
    assert time.sleeps == [90.0]


async def test_an_invalid_manifest_names_the_fields_not_the_values() -> None:
    client, _ = make(lambda r: httpx.Response(200, json={"request": "x", "output": [{"url": "u"}]}))
    with pytest.raises(FhirProtocolError, match="transactionTime") as info:
        await client.wait(STATUS)
    assert "output.0.type" in str(info.value)


def test_manifest_parsing_keeps_the_outputs_and_errors() -> None:
    manifest = ExportManifest.model_validate(
        {
            **manifest_body(
                [{"type": "Patient", "url": f"{BASE}/f/Patient.ndjson", "count": 3, "extension": {}}]
            ),
            "error": [{"type": "OperationOutcome", "url": f"{BASE}/f/err.ndjson"}],
        }
    )
    assert manifest.output == (ExportFile(type="Patient", url=f"{BASE}/f/Patient.ndjson", count=3),)
    assert manifest.error[0].count is None
    assert manifest.requires_access_token is False


async def test_cancel_deletes_and_reports_an_unknown_job() -> None:
    methods: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        return httpx.Response(202 if len(methods) == 1 else 404)

    client, _ = make(handler)
    assert await client.cancel(STATUS) is True
    assert await client.cancel(STATUS) is False
    assert methods == ["DELETE", "DELETE"]


# ------------------------------------------------------------------------ downloads


def files(*names: str, count: int | None = None) -> ExportManifest:
    return ExportManifest.model_validate(
        manifest_body(
            [{"type": n.split("-")[0], "url": f"{BASE}/files/{n}.ndjson", "count": count} for n in names]
        )
    )


async def test_a_failed_and_a_cut_download_are_retried_whole() -> None:
    body = ndjson(*({"resourceType": "Patient", "id": f"p{i}"} for i in range(3)))
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return httpx.Response(503, headers={"Retry-After": "2"})
        if attempts == 2:  # a body cut after the first line (no transport error: only the count tells)
            return httpx.Response(200, content=body.splitlines(keepends=True)[0])
        return httpx.Response(200, content=body)

    client, time = make(handler)
    result = await client.read_files(files("Patient", count=3), collect)
    assert result == [["p0", "p1", "p2"]]  # the cut attempt's p0 is not counted twice
    assert attempts == 3
    assert time.sleeps == [2.0, 2.0]  # Retry-After, then backoff of the second failure


async def test_a_transport_failure_mid_download_is_retried() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        return httpx.Response(200, content=ndjson({"resourceType": "Patient", "id": "p1"}))

    client, _ = make(handler)
    assert await client.read_files(files("Patient"), collect) == [["p1"]]


async def test_downloads_give_up_after_the_budget() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    client, _ = make(handler)
    with pytest.raises(FhirTransportError, match="download of Patient file 1 of 1"):
        await client.read_files(files("Patient"), collect)


async def test_a_line_that_is_not_json_names_file_and_line_never_its_content() -> None:
    secret = "Doe-Jane-1970"
    body = ndjson({"resourceType": "Patient", "id": "p1"}) + b"\n" + f'{{"name": "{secret}"'.encode() + b"\n"
    client, _ = make(lambda r: httpx.Response(200, content=body))
    manifest = files("Observation", "Patient-a", "Patient-b")
    with pytest.raises(FhirProtocolError, match=r"Patient file 1 of 2, line 3: not a FHIR resource") as info:
        await client.read_files(manifest, collect, types=["Patient"])
    assert secret not in str(info.value)
    assert BASE not in str(info.value)


async def test_a_4xx_download_is_final_and_named() -> None:
    client, _ = make(lambda r: httpx.Response(403))
    with pytest.raises(BulkExportHttpError, match="download of Patient file 1 of 1 -> HTTP 403"):
        await client.read_files(files("Patient"), collect)


async def test_downloads_are_bounded_and_streamed_in_manifest_order() -> None:
    running = 0
    most = 0

    async def slow_consume(file: ExportFile, resources: AsyncIterator[dict[str, Any]]) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        ids = [r["id"] async for r in resources]
        running -= 1
        return f"{file.url.rsplit('/', 1)[1]}:{len(ids)}"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=ndjson({"resourceType": "Patient", "id": request.url.path}))

    time = FakeTime()
    fhir = FhirClient(BASE, transport=httpx.MockTransport(handler))
    client = BulkExportClient(fhir, download_concurrency=2, sleep=time.sleep, clock=time.clock)
    names = [f"Patient-{i}" for i in range(6)]
    result = await client.read_files(files(*names), slow_consume)
    assert result == [f"{n}.ndjson:1" for n in names]
    assert most == 2


async def test_the_token_goes_only_where_required_and_only_to_the_fhir_origin() -> None:
    headers: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers.get("authorization"))
        return httpx.Response(200, content=ndjson({"resourceType": "Patient", "id": "p1"}))

    client, _ = make(handler, token=True)
    unsigned = files("Patient")
    await client.read_files(unsigned, collect)
    signed = unsigned.model_copy(update={"requires_access_token": True})
    await client.read_files(signed, collect)
    assert headers == [None, "Bearer sekrit-token"]
    elsewhere = signed.model_copy(
        update={"output": (ExportFile(type="Patient", url="https://files.example.net/Patient.ndjson"),)}
    )
    with pytest.raises(FhirProtocolError, match="another origin"):
        await client.read_files(elsewhere, collect)
    assert len(headers) == 2  # nothing was sent there
