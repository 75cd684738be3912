"""The multipart/related parser and builder: chunking at every byte, boundaries, malformed bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tools.imaging.multipart import (
    MultipartError,
    MultipartParser,
    Part,
    boundary_of,
    build_multipart,
    iter_parts,
    parse_media_type,
    parse_multipart,
)

BOUNDARY = "b0und:ary=1"
# Preamble, a part whose body holds CRLF and a near-miss of the delimiter, a part without
# headers, an empty part, transport padding after a delimiter, and an epilogue.
BODY = (
    b"This is the preamble.\r\n"
    b"--b0und:ary=1\r\n"
    b"Content-Type: application/dicom\r\n"
    b"Content-Length: 26\r\n"
    b"\r\n"
    b"first\r\n--b0und:ary no\r\n--x\r\n"
    b"--b0und:ary=1  \t\r\n"
    b"\r\n"
    b"second part, no headers"
    b"\r\n--b0und:ary=1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"\r\n"
    b"\r\n--b0und:ary=1--\r\n"
    b"epilogue, ignored \r\n--b0und:ary=1\r\n"
)
EXPECTED = [
    Part({"content-type": "application/dicom", "content-length": "26"}, b"first\r\n--b0und:ary no\r\n--x"),
    Part({}, b"second part, no headers"),
    Part({"content-type": "application/octet-stream"}, b""),
]


def feed_all(chunks: list[bytes], boundary: str = BOUNDARY) -> list[Part]:
    parser = MultipartParser(boundary)
    parts: list[Part] = []
    for chunk in chunks:
        parts += parser.feed(chunk)
    parser.close()
    return parts


def test_whole_body_parses_into_parts_with_headers() -> None:
    assert parse_multipart(BODY, BOUNDARY) == EXPECTED


@pytest.mark.parametrize("at", range(len(BODY) + 1))
def test_two_chunks_split_at_every_byte_position(at: int) -> None:
    assert feed_all([BODY[:at], BODY[at:]]) == EXPECTED


def test_one_byte_chunks() -> None:
    assert feed_all([BODY[i : i + 1] for i in range(len(BODY))]) == EXPECTED


def test_three_chunks_split_around_every_delimiter() -> None:
    marks = [i for i in range(len(BODY)) if BODY.startswith(b"--b0und", i)]
    for m in marks:
        for a in range(max(0, m - 3), m + 12):
            for b in range(a, min(len(BODY), a + 20)):
                assert feed_all([BODY[:a], BODY[a:b], BODY[b:]]) == EXPECTED, (a, b)


def test_delimiter_at_the_very_start_needs_no_preamble() -> None:
    body = b"--xyz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz--"
    assert parse_multipart(body, "xyz") == [Part({"content-type": "text/plain"}, b"hello")]


def test_parts_are_returned_as_soon_as_complete() -> None:
    parser = MultipartParser("xyz")
    assert parser.feed(b"--xyz\r\n\r\none\r\n--xy") == []
    assert parser.feed(b"z\r\n\r\ntwo") == [Part({}, b"one")]
    assert parser.feed(b"\r\n--xyz--") == [Part({}, b"two")]
    assert parser.done
    parser.close()


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ('multipart/related; type="application/dicom"; boundary=abc-123', "abc-123"),
        ('multipart/related; type="application/dicom"; boundary="abc-123"', "abc-123"),
        ('multipart/related;boundary="a:b=c d?";type="application/dicom"', "a:b=c d?"),
        # Orthanc's frames answer: a quoted `type` holding `;` and `=` before the boundary.
        (
            'multipart/related; type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"; '
            "boundary=68c3a294-0fc9",
            "68c3a294-0fc9",
        ),
        ('Multipart/Related; BOUNDARY="with space"', "with space"),
    ],
)
def test_boundary_quoted_or_not(content_type: str, boundary: str) -> None:
    assert boundary_of(content_type) == boundary


def test_quoted_boundary_body_round_trip() -> None:
    ct = 'multipart/related; type="application/dicom"; boundary="a:b=c d?"'
    body = b"--a:b=c d?\r\n\r\nx\r\n--a:b=c d?--\r\n"
    assert parse_multipart(body, boundary_of(ct)) == [Part({}, b"x")]


def test_media_type_parameters() -> None:
    media, params = parse_media_type('Multipart/Related; Type="application/dicom"; transfer-syntax=*')
    assert media == "multipart/related"
    assert params == {"type": "application/dicom", "transfer-syntax": "*"}


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        (None, "no Content-Type"),
        ("application/dicom+json", "expected a multipart"),
        ('multipart/related; type="application/dicom"', "no boundary"),
        ('multipart/related; boundary="unterminated', "unterminated quoted string"),
        ("multipart/related; boundary=" + "x" * 71, "invalid multipart boundary"),
    ],
)
def test_bad_content_type_is_a_clear_error(content_type: str | None, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        boundary_of(content_type)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no delimiter at all", "before the first boundary"),
        (b"--xyz\r\n\r\ncut off in the body", "inside a part"),
        (b"--xyz\r\n\r\none\r\n--xyz\r\n\r\ntwo", r"1 complete part\(s\)"),
        (b"--xyz\r\nContent-Type: text/plain", "inside a part"),
        (b"--xyz\r\nno colon here\r\n\r\nbody\r\n--xyz--", "malformed multipart part header"),
        (b"--xyzNOT\r\n\r\nbody\r\n--xyz--", "unexpected bytes after a multipart delimiter"),
    ],
)
def test_malformed_bodies_are_clear_errors(body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse_multipart(body, "xyz")


def test_oversized_headers_are_refused() -> None:
    parser = MultipartParser("xyz")
    with pytest.raises(MultipartError, match="headers exceed"):
        parser.feed(b"--xyz\r\nX-Big: " + b"a" * 70_000)


def test_buffer_holds_only_the_unfinished_part() -> None:
    parser = MultipartParser("xyz")
    parser.feed(b"--xyz\r\n\r\n" + b"a" * 100_000 + b"\r\n--xyz\r\n\r\nb")
    assert len(parser._buf) < 100  # the finished 100 kB part is not kept


def test_build_then_parse_round_trip() -> None:
    payloads = [b"\x00" * 10, b"DICM" * 50, b"--chartagent-not-a-boundary\r\n"]
    body = build_multipart(payloads, part_type="application/dicom")
    assert body.content_type.startswith('multipart/related; type="application/dicom"; boundary=chartagent-')
    joined = b"".join(body.chunks)
    assert body.length == len(joined)
    parts = parse_multipart(joined, boundary_of(body.content_type))
    assert [p.body for p in parts] == payloads
    assert {p.media_type for p in parts} == {"application/dicom"}


def test_build_does_not_copy_the_payloads() -> None:
    payload = b"x" * 1000
    body = build_multipart([payload], part_type="application/dicom", boundary="fixed")
    assert any(chunk is payload for chunk in body.chunks)
    assert b"".join(body.chunks) == (
        b"--fixed\r\nContent-Type: application/dicom\r\n\r\n" + payload + b"\r\n--fixed--\r\n"
    )


def test_build_needs_a_part() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        build_multipart([], part_type="application/dicom")


async def test_iter_parts_over_async_chunks() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(BODY), 7):
            yield BODY[i : i + 7]

    assert [p async for p in iter_parts(chunks(), BOUNDARY)] == EXPECTED


async def test_iter_parts_on_a_truncated_stream_raises() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield BODY[:60]

    with pytest.raises(MultipartError, match="truncated"):
        _ = [p async for p in iter_parts(chunks(), BOUNDARY)]
