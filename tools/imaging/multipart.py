"""multipart/related bodies (RFC 2046, RFC 2387) as DICOMweb uses them: parse and build (pure).

The parser is incremental: `feed` it chunks as they arrive and it returns each part as soon as
its closing delimiter is seen. It keeps only the unfinished part (plus one delimiter's length)
in its buffer, so a series streamed as one multipart body is never held whole, let alone twice.
Lines must end in CRLF, as RFC 2046 requires; the preamble and epilogue are ignored.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, auto

from fhir_adapters.error_tree import BadInputError

__all__ = [
    "MultipartBody",
    "MultipartError",
    "MultipartParser",
    "Part",
    "boundary_of",
    "build_multipart",
    "iter_parts",
    "parse_media_type",
    "parse_multipart",
]

CRLF = b"\r\n"
_MAX_HEADER_BYTES = 64 * 1024
# RFC 2046 5.1.1: 1 to 70 characters from this set (space allowed, not last).
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


class MultipartError(BadInputError):
    """A malformed multipart body or Content-Type (the DICOMweb client reports it as a protocol error)."""


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its headers (names lower-cased) and its bytes."""

    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @property
    def media_type(self) -> str | None:
        """The Content-Type without parameters, lower-cased."""
        ct = self.content_type
        return parse_media_type(ct)[0] if ct else None


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """`multipart/related; type="application/dicom"; boundary=x` -> ("multipart/related", {...}).

    Parameter names are lower-cased; quoted values may hold `;` and backslash escapes.
    """
    items = _split_params(value)
    media = items[0].strip().lower()
    params: dict[str, str] = {}
    for item in items[1:]:
        name, sep, raw = item.partition("=")
        if not sep:
            continue  # a bare token; no DICOMweb parameter looks like that
        raw = raw.strip()
        params[name.strip().lower()] = _unquote(raw) if raw.startswith('"') else raw
    return media, params


def _split_params(value: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            out.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quoted:
        raise MultipartError(f"unterminated quoted string in media type {value!r}")
    out.append("".join(current))
    return out


def _unquote(raw: str) -> str:
    if len(raw) < 2 or not raw.endswith('"'):
        raise MultipartError(f"bad quoted parameter value {raw!r}")
    out: list[str] = []
    escaped = False
    for ch in raw[1:-1]:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def boundary_of(content_type: str | None) -> str:
    """The boundary of a multipart Content-Type; MultipartError when it is not multipart or lacks one."""
    if not content_type:
        raise MultipartError("no Content-Type; expected multipart/related")
    media, params = parse_media_type(content_type)
    if not media.startswith("multipart/"):
        raise MultipartError(f"expected a multipart Content-Type, got {media!r}")
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError(f"{media} Content-Type has no boundary parameter")
    _check_boundary(boundary)
    return boundary


def _check_boundary(boundary: str) -> None:
    if not 1 <= len(boundary) <= 70 or boundary.endswith(" ") or not set(boundary) <= _BCHARS:
        raise MultipartError(f"invalid multipart boundary {boundary!r}")


class _State(Enum):
    PREAMBLE = auto()
    AFTER_DELIMITER = auto()  # the rest of the delimiter line: "--" (close) or padding + CRLF
    HEADERS = auto()
    BODY = auto()
    EPILOGUE = auto()


class MultipartParser:
    """Incremental parser: `feed(chunk)` returns the parts completed by it; `close()` checks the end."""

    def __init__(self, boundary: str, *, max_part_bytes: int | None = None) -> None:
        _check_boundary(boundary)
        # A part longer than this is refused as it streams in, before it is held whole.
        self._max_part_bytes = max_part_bytes
        self._delimiter = CRLF + b"--" + boundary.encode("ascii")
        # A delimiter right at the start of the body has no CRLF before it: pretend it had.
        self._buf = bytearray(CRLF)
        self._state = _State.PREAMBLE
        self._headers: dict[str, str] = {}
        self._scanned = 0  # bytes of the buffer already searched for the delimiter
        self.parts_seen = 0

    @property
    def done(self) -> bool:
        return self._state is _State.EPILOGUE

    def feed(self, chunk: bytes) -> list[Part]:
        if self._state is _State.EPILOGUE:
            return []
        self._buf += chunk
        out: list[Part] = []
        while self._step(out):
            pass
        return out

    def close(self) -> None:
        """The body has ended; MultipartError unless the closing delimiter was seen."""
        if self._state is not _State.EPILOGUE:
            where = "before the first boundary" if self._state is _State.PREAMBLE else "inside a part"
            raise MultipartError(
                f"multipart body ended {where} without the closing boundary "
                f"({self.parts_seen} complete part(s); truncated?)"
            )

    def _step(self, out: list[Part]) -> bool:
        """Advance one state if the buffer allows; False when more input is needed."""
        buf = self._buf
        state = self._state
        if state is _State.PREAMBLE or state is _State.BODY:
            start = max(0, self._scanned - len(self._delimiter) + 1)
            idx = buf.find(self._delimiter, start)
            limit = self._max_part_bytes
            # Without a delimiter yet, the buffer's end may hold the start of one.
            if (state is _State.BODY and limit is not None) and (
                idx > limit if idx >= 0 else len(buf) > limit + len(self._delimiter)
            ):
                raise MultipartError(f"a multipart part is over the limit of {limit} bytes")
            if idx < 0:
                self._scanned = len(buf)
                return False
            if state is _State.BODY:
                view = memoryview(buf)
                try:
                    out.append(Part(self._headers, view[:idx].tobytes()))  # one copy, not two
                finally:
                    view.release()
                self.parts_seen += 1
            del buf[: idx + len(self._delimiter)]
            self._scanned = 0
            self._state = _State.AFTER_DELIMITER
            return True
        if state is _State.AFTER_DELIMITER:
            if len(buf) < 2:
                return False
            if buf[:2] == b"--":
                self._state = _State.EPILOGUE
                buf.clear()
                return False
            eol = buf.find(CRLF)
            if eol < 0:
                if len(buf) > 1024:
                    raise MultipartError("multipart delimiter line is not followed by CRLF")
                return False
            if buf[:eol].strip(b" \t"):
                # Also what a boundary that is only a prefix of the real one looks like.
                raise MultipartError("unexpected bytes after a multipart delimiter")
            del buf[: eol + 2]
            self._state = _State.HEADERS
            return True
        if state is _State.HEADERS:
            if buf[:2] == CRLF:  # a part without headers
                del buf[:2]
                self._headers = {}
                self._state = _State.BODY
                return True
            end = buf.find(CRLF + CRLF)
            if end < 0:
                if len(buf) > _MAX_HEADER_BYTES:
                    raise MultipartError(f"multipart part headers exceed {_MAX_HEADER_BYTES} bytes")
                return False
            self._headers = _parse_headers(bytes(buf[:end]))
            del buf[: end + 4]
            self._state = _State.BODY
            return True
        return False


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError:
        raise MultipartError("multipart part headers are not ASCII") from None
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MultipartError(f"malformed multipart part header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def parse_multipart(body: bytes, boundary: str, *, max_part_bytes: int | None = None) -> list[Part]:
    """All parts of a complete body."""
    parser = MultipartParser(boundary, max_part_bytes=max_part_bytes)
    parts = parser.feed(body)
    parser.close()
    return parts


async def iter_parts(
    chunks: AsyncIterable[bytes], boundary: str, *, max_part_bytes: int | None = None
) -> AsyncIterator[Part]:
    """Parts of a body that arrives in chunks, each yielded as soon as it is complete; a part over
    `max_part_bytes` is refused (MultipartError) once that much of it has arrived."""
    parser = MultipartParser(boundary, max_part_bytes=max_part_bytes)
    async for chunk in chunks:
        for part in parser.feed(chunk):
            yield part
        if parser.done:
            break
    parser.close()


@dataclass(frozen=True, slots=True)
class MultipartBody:
    """A multipart/related request body as a sequence of chunks (the parts' bytes are not copied)."""

    content_type: str
    chunks: tuple[bytes, ...]

    @property
    def length(self) -> int:
        return sum(len(c) for c in self.chunks)


def build_multipart(parts: Iterable[bytes], *, part_type: str, boundary: str | None = None) -> MultipartBody:
    """`multipart/related; type="<part_type>"` with each of `parts` as one part of that type.

    The boundary is random (a part that happens to contain it would break the body; at 32
    random hex digits that does not happen by chance).
    """
    boundary = boundary or f"chartagent-{secrets.token_hex(16)}"
    _check_boundary(boundary)
    delimiter = b"--" + boundary.encode("ascii")
    head = delimiter + CRLF + f"Content-Type: {part_type}".encode("ascii") + CRLF + CRLF
    chunks: list[bytes] = []
    for body in parts:
        chunks += [head, body, CRLF]
    if not chunks:
        raise ValueError("a multipart body needs at least one part")
    chunks.append(delimiter + b"--" + CRLF)
    return MultipartBody(
        content_type=f'multipart/related; type="{part_type}"; boundary={boundary}',
        chunks=tuple(chunks),
    )
