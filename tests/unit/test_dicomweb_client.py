"""DicomWebClient against `httpx.MockTransport`: QIDO parsing, WADO media types and multipart,
STOW bodies, auth headers, retries and the status -> error mapping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from fhir_adapters.auth import StaticBearer
from fhir_adapters.retry import RetryPolicy
from tools.imaging.dicomweb import (
    BasicAuth,
    DicomWebAuthError,
    DicomWebClient,
    DicomWebConflict,
    DicomWebInvalid,
    DicomWebNotAcceptable,
    DicomWebNotFound,
    DicomWebProtocolError,
    DicomWebServerError,
    DicomWebTransportError,
    InstanceMatch,
    SeriesMatch,
    StoreResult,
    StudyMatch,
    error_for_status,
    qido_params,
)
from tools.imaging.multipart import boundary_of, build_multipart, parse_multipart

BASE = "https://pacs.example/dicom-web"
ST, SE, SOP = "1.2.3", "1.2.3.4", "1.2.3.4.5"
Handler = Callable[[httpx.Request], Any]


def part10(tag: bytes = b"x") -> bytes:
    return b"\0" * 128 + b"DICM" + tag


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(handler: Handler, **kw: Any) -> DicomWebClient:
    kw.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=1.0, rng=lambda: 0.5))
    kw.setdefault("sleep", Sleeps())
    return DicomWebClient(BASE, transport=httpx.MockTransport(handler), **kw)


def multipart_response(parts: list[bytes], part_type: str = "application/dicom", **kw: Any) -> httpx.Response:
    body = build_multipart(parts, part_type=part_type, boundary="srv-boundary")
    return httpx.Response(
        200, headers={"content-type": body.content_type}, content=b"".join(body.chunks), **kw
    )


def uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


# ---------------------------------------------------------------------------- QIDO


async def test_search_studies_parses_dicom_json_and_sends_query() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json=[
                {
                    "0020000D": uid(ST),
                    "00080020": {"vr": "DA", "Value": ["20240102"]},
                    "00080061": {"vr": "CS", "Value": ["CT", "SR"]},
                    "00201206": {"vr": "IS", "Value": [2]},
                    "00201208": {"vr": "IS", "Value": ["301"]},  # some servers send IS as text
                    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
                }
            ],
        )

    async with client(handle) as c:
        studies = await c.search_studies({"PatientID": "p1", "ModalitiesInStudy": ["CT", "MR"]}, limit=5)
    assert studies == [
        StudyMatch(
            study_instance_uid=ST,
            study_date="20240102",
            modalities_in_study=("CT", "SR"),
            number_of_study_related_series=2,
            number_of_study_related_instances=301,
        )
    ]
    req = seen[0]
    assert req.url.path == "/dicom-web/studies"
    assert parse_qsl(req.url.query.decode()) == [
        ("PatientID", "p1"),
        ("ModalitiesInStudy", "CT,MR"),
        ("limit", "5"),
    ]
    assert req.headers["accept"] == "application/dicom+json"


async def test_search_series_and_instances_paths_include_fields_and_scope_uids() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/series"):
            # No StudyInstanceUID in the answer: taken from the path.
            return httpx.Response(200, json=[{"0020000E": uid(SE), "00080060": {"vr": "CS", "Value": ["CT"]},
                                              "00200011": {"vr": "IS", "Value": [3]}}])  # fmt: skip
        return httpx.Response(
            200,
            json=[
                {
                    "00080018": uid(SOP),
                    "00280008": {"vr": "IS", "Value": ["10"]},
                    "00280010": {"vr": "US", "Value": [64]},
                }
            ],
        )

    async with client(handle) as c:
        series = await c.search_series(ST)
        instances = await c.search_instances(ST, SE, {"InstanceNumber": 1})
    assert series == [
        SeriesMatch(study_instance_uid=ST, series_instance_uid=SE, modality="CT", series_number=3)
    ]
    assert instances == [
        InstanceMatch(
            study_instance_uid=ST, series_instance_uid=SE, sop_instance_uid=SOP, number_of_frames=10, rows=64
        )
    ]
    assert seen[0].url.path == f"/dicom-web/studies/{ST}/series"
    assert ("includefield", "Modality") in parse_qsl(seen[0].url.query.decode())
    assert seen[1].url.path == f"/dicom-web/studies/{ST}/series/{SE}/instances"
    query = parse_qsl(seen[1].url.query.decode())
    assert query[0] == ("InstanceNumber", "1")
    assert ("includefield", "NumberOfFrames") in query


async def test_qido_no_content_is_an_empty_list() -> None:
    async with client(lambda r: httpx.Response(204)) as c:
        assert await c.search_studies() == []


async def test_qido_result_without_required_uid_is_a_protocol_error() -> None:
    async with client(lambda r: httpx.Response(200, json=[{"00080060": {"vr": "CS", "Value": ["CT"]}}])) as c:
        with pytest.raises(DicomWebProtocolError, match="without SeriesInstanceUID"):
            await c.search_series(ST)


async def test_qido_non_json_is_a_protocol_error() -> None:
    async with client(lambda r: httpx.Response(200, text="<html>")) as c:
        with pytest.raises(DicomWebProtocolError, match="GET studies answered 200 with a non-JSON body"):
            await c.search_studies()


def test_qido_params_are_pure_and_checked() -> None:
    assert qido_params(None, include_fields=["A", "A", "B"], offset=0) == [
        ("includefield", "A"),
        ("includefield", "B"),
        ("offset", "0"),
    ]
    with pytest.raises(ValueError, match="limit"):
        qido_params(None, limit=0)


@pytest.mark.parametrize("bad", ["1.2.x", "../etc", "1..2", "", "1" * 65])
async def test_uids_are_checked_before_they_go_into_a_path(bad: str) -> None:
    async with client(lambda r: httpx.Response(500)) as c:
        with pytest.raises(ValueError, match="is not a DICOM UID"):
            await c.retrieve_instance(ST, bad, SOP)


# ---------------------------------------------------------------------------- WADO


async def test_retrieve_instance_asks_for_the_stored_transfer_syntax() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return multipart_response([part10(b"one")])

    async with client(handle) as c:
        assert await c.retrieve_instance(ST, SE, SOP) == part10(b"one")
    assert seen[0].url.path == f"/dicom-web/studies/{ST}/series/{SE}/instances/{SOP}"
    assert seen[0].headers["accept"] == 'multipart/related; type="application/dicom"; transfer-syntax=*'


async def test_retrieve_instance_refuses_what_is_not_part10() -> None:
    async with client(lambda r: multipart_response([b"not dicom"])) as c:
        with pytest.raises(
            DicomWebProtocolError, match=f"instances/{SOP}: a part is not a DICOM Part 10 file"
        ):
            await c.retrieve_instance(ST, SE, SOP)


async def test_retrieve_instance_refuses_a_non_multipart_answer() -> None:
    async with client(
        lambda r: httpx.Response(200, content=part10(), headers={"content-type": "application/dicom"})
    ) as c:
        with pytest.raises(DicomWebProtocolError, match="expected a multipart Content-Type"):
            await c.retrieve_instance(ST, SE, SOP)


def frames_handler(seen: list[httpx.Request]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        numbers = request.url.path.rsplit("/", 1)[1].split(",")
        return multipart_response([f"f{n}".encode() for n in numbers], part_type="application/octet-stream")

    return handle


async def test_retrieve_frames_media_type_path_and_order() -> None:
    seen: list[httpx.Request] = []
    async with client(frames_handler(seen)) as c:
        assert await c.retrieve_frames(ST, SE, SOP, [3, 1]) == [b"f3", b"f1"]
        assert await c.retrieve_frames(ST, SE, SOP, [2], transfer_syntax="*") == [b"f2"]
    assert seen[0].url.path.endswith(f"/instances/{SOP}/frames/3,1")
    assert seen[0].headers["accept"] == (
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
    )
    assert seen[1].headers["accept"].endswith("transfer-syntax=*")


async def test_retrieve_frames_counts_the_parts() -> None:
    async with client(lambda r: multipart_response([b"only one"], part_type="application/octet-stream")) as c:
        with pytest.raises(DicomWebProtocolError, match="answered 1 frames, expected 2"):
            await c.retrieve_frames(ST, SE, SOP, [1, 2])


async def test_compressed_frames_are_asked_in_their_own_media_type() -> None:
    """Whole-slide tiles as stored: JPEG baseline frames come as image/jpeg, no transcoding."""
    seen: list[httpx.Request] = []
    async with client(frames_handler(seen)) as c:
        assert await c.retrieve_frames(ST, SE, SOP, [5], transfer_syntax="1.2.840.10008.1.2.4.50") == [b"f5"]
    assert (
        seen[0].headers["accept"]
        == 'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50'
    )


async def test_frames_over_the_limit_or_past_those_asked_for_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tools.imaging.dicom_limits import dicom_limits

    dicom_limits.cache_clear()
    monkeypatch.setenv("CHARTAGENT_DICOM_MAX_FRAME_BYTES", "1000")
    try:
        big = lambda r: multipart_response([b"x" * 1001], part_type="application/octet-stream")  # noqa: E731
        async with client(big) as c:
            with pytest.raises(DicomWebProtocolError, match=f"instances/{SOP}/frames/1: .*1000"):
                await c.retrieve_frames(ST, SE, SOP, [1])
    finally:
        monkeypatch.undo()
        dicom_limits.cache_clear()
    extra = lambda r: multipart_response([b"a", b"b", b"c"], part_type="application/octet-stream")  # noqa: E731
    async with client(extra) as c:
        with pytest.raises(DicomWebProtocolError, match="answered more than 2 frames"):
            await c.retrieve_frames(ST, SE, SOP, [1, 2])


@pytest.mark.parametrize("frames", [[], [0], [1, -2], [True]])
async def test_retrieve_frames_checks_frame_numbers(frames: list[int]) -> None:
    async with client(lambda r: httpx.Response(500)) as c:
        with pytest.raises(ValueError, match="frame numbers"):
            await c.retrieve_frames(ST, SE, SOP, frames)


async def test_retrieve_series_per_instance_is_bounded_and_ordered() -> None:
    in_flight = 0
    peak = 0
    sops = [f"{SE}.{i}" for i in range(1, 13)]

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        if request.url.path.endswith("/instances"):
            return httpx.Response(200, json=[{"00080018": uid(s)} for s in sops])
        in_flight += 1
        peak = max(peak, in_flight)
        sop = request.url.path.rsplit("/", 1)[1]
        await asyncio.sleep(0.01 * (13 - int(sop.rsplit(".", 1)[1])))  # later ones finish first
        in_flight -= 1
        return multipart_response([part10(sop.encode())])

    async with client(handle, max_concurrency=8) as c:
        got = [d async for d in c.retrieve_series(ST, SE, strategy="per-instance", concurrency=3)]
    assert got == [part10(s.encode()) for s in sops]
    assert peak == 3


class Chunked(httpx.AsyncByteStream):
    """A response body arriving in 5-byte chunks, so that parts span chunk borders."""

    def __init__(self, chunks: tuple[bytes, ...]) -> None:
        self.data = b"".join(chunks)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), 5):
            yield self.data[i : i + 5]


async def test_retrieve_series_as_one_streamed_multipart() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = build_multipart([part10(b"a"), part10(b"b")], part_type="application/dicom", boundary="s")
        return httpx.Response(200, headers={"content-type": body.content_type}, stream=Chunked(body.chunks))

    async with client(handle) as c:
        got = [d async for d in c.retrieve_series(ST, SE)]  # multipart is the default
    assert got == [part10(b"a"), part10(b"b")]
    assert seen[0].url.path == f"/dicom-web/studies/{ST}/series/{SE}"


async def test_retrieve_series_stream_cut_short_is_a_protocol_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body = b"".join(build_multipart([part10(b"a")], part_type="application/dicom", boundary="s").chunks)
        return httpx.Response(
            200, headers={"content-type": "multipart/related; boundary=s"}, content=body[:-12]
        )

    async with client(handle) as c:
        with pytest.raises(DicomWebProtocolError, match=f"series/{SE}: multipart body ended"):
            _ = [d async for d in c.retrieve_series(ST, SE, strategy="multipart")]


async def test_retrieve_metadata_paths() -> None:
    paths: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json=[{"00080018": uid(SOP)}])

    async with client(handle) as c:
        assert await c.retrieve_metadata(ST) == [{"00080018": uid(SOP)}]
        await c.retrieve_metadata(ST, SE)
        await c.retrieve_metadata(ST, SE, SOP)
    assert paths == [
        f"/dicom-web/studies/{ST}/metadata",
        f"/dicom-web/studies/{ST}/series/{SE}/metadata",
        f"/dicom-web/studies/{ST}/series/{SE}/instances/{SOP}/metadata",
    ]


# ---------------------------------------------------------------------------- STOW


def stow_answer(stored: list[str], failed: list[tuple[str, int]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"00081198": {"vr": "SQ"}}
    if stored:
        doc["00081199"] = {
            "vr": "SQ",
            "Value": [{"00081155": uid(s), "00081150": uid("1.2.840.10008.5.1.4.1.1.2")} for s in stored],
        }
    if failed:
        doc["00081198"]["Value"] = [
            {"00081155": uid(s), "00081197": {"vr": "US", "Value": [r]}} for s, r in failed
        ]
    return doc


async def test_store_sends_a_multipart_related_dicom_body() -> None:
    seen: list[tuple[httpx.Request, bytes]] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request, await request.aread()))
        return httpx.Response(200, json=stow_answer(["9.1", "9.2"], []))

    instances = [part10(b"one"), part10(b"two")]
    async with client(handle) as c:
        result = await c.store(instances)
    assert result.ok
    assert [s.sop_instance_uid for s in result.stored] == ["9.1", "9.2"]
    request, body = seen[0]
    assert request.method == "POST"
    assert request.url.path == "/dicom-web/studies"
    ct = request.headers["content-type"]
    assert ct.startswith('multipart/related; type="application/dicom"; boundary=')
    assert request.headers["content-length"] == str(len(body))
    assert request.headers["accept"] == "application/dicom+json"
    parts = parse_multipart(body, boundary_of(ct))
    assert [p.body for p in parts] == instances
    assert {p.media_type for p in parts} == {"application/dicom"}


async def test_store_splits_large_input_into_batches() -> None:
    bodies: list[int] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        n = len(parse_multipart(body, boundary_of(request.headers["content-type"])))
        bodies.append(n)
        return httpx.Response(200, json=stow_answer([f"9.{len(bodies)}.{i}" for i in range(n)], []))

    async with client(handle) as c:
        result = await c.store((part10(b"x" * 100) for _ in range(5)), batch_bytes=500)  # 232 bytes each
    assert bodies == [2, 2, 1]
    assert len(result.stored) == 5


async def test_store_reports_per_instance_failures() -> None:
    async with client(lambda r: httpx.Response(202, json=stow_answer(["9.1"], [("9.2", 0xC000)]))) as c:
        result = await c.store([part10(), part10()])
    assert not result.ok
    assert result.failed[0].sop_instance_uid == "9.2"
    assert result.failed[0].failure_reason == 0xC000


async def test_store_all_failed_409_with_body_is_a_result_without_body_an_error() -> None:
    async with client(lambda r: httpx.Response(409, json=stow_answer([], [("9.1", 0xA700)]))) as c:
        result = await c.store([part10()])
    assert result == StoreResult.from_dicom_json(stow_answer([], [("9.1", 0xA700)]))
    async with client(lambda r: httpx.Response(409)) as c:
        with pytest.raises(DicomWebConflict, match="POST studies -> HTTP 409"):
            await c.store([part10()])


async def test_store_refuses_non_part10_input_naming_it() -> None:
    async with client(lambda r: httpx.Response(500)) as c:
        with pytest.raises(ValueError, match=r"instance #1 \(3 bytes\) is not a DICOM Part 10 file"):
            await c.store([part10(), b"abc"])


async def test_store_is_retried_with_the_same_body_after_503() -> None:
    bodies: list[bytes] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(await request.aread())
        if len(bodies) == 1:
            return httpx.Response(503, headers={"retry-after": "2"})
        return httpx.Response(200, json=stow_answer(["9.1"], []))

    sleeps = Sleeps()
    async with client(handle, sleep=sleeps) as c:
        assert (await c.store([part10()])).ok
    assert bodies[0] == bodies[1]
    assert sleeps.waits == [2.0]


# ---------------------------------------------------------------------------- auth, retries, errors


async def test_basic_and_bearer_auth_headers() -> None:
    seen: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json=[])

    async with client(handle, auth=BasicAuth("orthanc", SecretStr("s3cret"))) as c:
        await c.search_studies()
    async with client(handle, auth=StaticBearer(SecretStr("tok"))) as c:
        await c.search_studies()
    async with client(handle) as c:
        await c.search_studies()
    assert seen == ["Basic b3J0aGFuYzpzM2NyZXQ=", "Bearer tok", None]
    assert "s3cret" not in repr(BasicAuth("orthanc", SecretStr("s3cret")))


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, DicomWebInvalid),
        (401, DicomWebAuthError),
        (403, DicomWebAuthError),
        (404, DicomWebNotFound),
        (406, DicomWebNotAcceptable),
        (409, DicomWebConflict),
        (415, DicomWebNotAcceptable),
        (500, DicomWebServerError),
        (503, DicomWebServerError),
    ],
)
def test_error_for_status_classes(status: int, cls: type[Exception]) -> None:
    assert type(error_for_status(status, "GET", "studies")) is cls


async def test_errors_name_method_path_status_and_server_message() -> None:
    body = {
        "HttpStatus": 404,
        "Message": "Accessing an inexistent item",
        "Details": f"Instance {SOP} unknown",
    }
    async with client(lambda r: httpx.Response(404, json=body)) as c:
        with pytest.raises(DicomWebNotFound) as info:
            await c.retrieve_instance(ST, SE, SOP)
    assert str(info.value) == (
        f"GET studies/{ST}/series/{SE}/instances/{SOP} -> HTTP 404: "
        f"Accessing an inexistent item; Instance {SOP} unknown"
    )


async def test_qido_errors_carry_parameter_names_not_values() -> None:
    body = {"Message": "Bad request", "Details": "Cannot parse Doe^Jane"}
    async with client(lambda r: httpx.Response(400, json=body)) as c:
        with pytest.raises(DicomWebInvalid) as info:
            await c.search_studies({"PatientName": "Doe^Jane", "PatientBirthDate": "19700101"})
    message = str(info.value)
    assert message == "GET studies?PatientName&PatientBirthDate -> HTTP 400: Bad request"
    assert "Doe" not in message
    assert "1970" not in message


async def test_get_is_retried_on_503_then_fails_with_the_status() -> None:
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    sleeps = Sleeps()
    async with client(handle, sleep=sleeps) as c:
        with pytest.raises(DicomWebServerError, match="HTTP 503"):
            await c.search_studies()
    assert calls == 3
    assert sleeps.waits == [0.5, 1.0]


async def test_connection_errors_are_transport_errors_after_retries() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client(handle) as c:
        with pytest.raises(
            DicomWebTransportError, match=f"GET studies/{ST}/series/{SE}/metadata failed: ConnectError"
        ):
            await c.retrieve_metadata(ST, SE)


async def test_redirects_are_not_followed() -> None:
    async with client(lambda r: httpx.Response(302, headers={"location": "https://elsewhere/"})) as c:
        with pytest.raises(DicomWebProtocolError, match="redirect"):
            await c.search_studies()


def test_constructor_checks_base_url() -> None:
    with pytest.raises(ValueError, match="absolute"):
        DicomWebClient("pacs/dicom-web")
    with pytest.raises(ValueError, match="query"):
        DicomWebClient("http://pacs/dicom-web?x=1")


def test_stow_result_json_round_trip() -> None:
    doc = json.loads(json.dumps(stow_answer(["9.1"], [("9.2", 272)])))
    result = StoreResult.from_dicom_json(doc)
    assert [s.sop_instance_uid for s in result.stored] == ["9.1"]
    assert result.failed[0].failure_reason == 272
