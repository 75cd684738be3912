"""What a PDF's streams decode to, found before mupdf decodes any of them: the limits that keep
memory and time bounded whatever a file claims (decompression bombs, images of billions of pixels).

Two views of the streams, the cheap one first:

- The file's bytes: every ``stream`` keyword is found and its dictionary read back from the
  object header. A stream whose dictionary names no filter but Flate (nearly all of them) is
  inflated from there in bounded steps, only counted, following nested zlib layers; no call into
  mupdf per object (a hospital report has 170 streams).
- mupdf's own view of one object (its /Filter, /DecodeParms, /Width and /Height resolved, its raw
  data decrypted) for a stream whose dictionary names another filter (LZW, run length, ASCII85,
  ASCIIHex), a filter given by reference, or an image; and for every stream of a file whose bytes
  cannot be read that way (encrypted, not mapped).

A declared chain of filters is decoded in the order mupdf applies them, counting what the last one
gives: LZW reaches about 3,400 times its input, run length 64, and ASCII85 wrapped around Flate
hides Flate's zlib header from the byte scan. The image codecs (DCT, JPX, CCITT, JBIG2) end the
chain: their output is bounded by the image's declared size instead (a few KB of CCITT G4 can
declare 30,000 x 30,000 pixels, half a second of decoding; larger ones scale with it).
"""

from __future__ import annotations

import base64
import binascii
import math
import mmap
import re
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Final

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_STREAM_BYTES",
    "MIB",
    "chain_decodes_past",
    "stream_problem",
    "unescape_names",
]

MIB: Final = 1 << 20
# A stream (page content, image, font, object stream) may decode to this much: a 600-dpi A4 RGB
# scan is 4961 x 7016 x 3 bytes = 100 MiB. mupdf would otherwise inflate a 1 MB stream of a 1 GiB
# (or more) in full, or parse it for seconds.
MAX_STREAM_BYTES: Final = 128 * MIB
# An image may declare this many pixels (256 Mpx): a 1200-dpi US Legal page is 10200 x 16800 =
# 171 Mpx. Decoding time grows with the declared size, whatever the data's size.
MAX_IMAGE_PIXELS: Final = 1 << 28

_Buffer = bytes | mmap.mmap | memoryview
_Doc = Any  # pymupdf ships no type hints for Document

# The keyword, and the whitespace after it: mupdf takes "stream" followed by CR alone, a space, or
# a comment or NUL before it, not only ">> stream" and a line feed. (Data opening with whitespace is
# no zlib stream: a zlib header's first byte never is.)
_STREAM_KEYWORD: Final = re.compile(rb"\bstream[\x00\t\n\f\r ]{0,8}")
_OBJECT_HEADER_END: Final = re.compile(rb"(\d+)\s+\d+\s+obj$")
_HEADER_LOOKBACK: Final = 4096  # a stream's dictionary is short: filters, sizes, a few references
_NAME_ESCAPE: Final = re.compile(rb"#([0-9A-Fa-f]{2})")
# A dictionary that needs mupdf's view: a filter other than Flate, a filter by reference, an image.
_NEEDS_MUPDF: Final = re.compile(
    rb"/(?:LZW|RunLength|RL|ASCII85|A85|ASCIIHex|AHx)(?:Decode)?\b"
    rb"|/Filter\s*(?:\[[^\]]*)?\d+\s+\d+\s+R"
    rb"|/Subtype\s*/Image\b"
)
_NAME: Final = re.compile(r"/([^\s/\[\]<>()]+)")
_EARLY_CHANGE_OFF: Final = re.compile(r"/EarlyChange\s+0\b")
_WHITESPACE: Final = b" \t\n\r\f\0"


def stream_problem(
    doc: _Doc,
    data: bytes | mmap.mmap | None,
    *,
    max_stream_bytes: int = MAX_STREAM_BYTES,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> str | None:
    """The first stream over a limit, said as "object 4 is a stream that inflates to more than
    128 MiB (a decompression bomb?)", or None. ``data``: the file's bytes where they are plain
    (not encrypted); without them every stream is read through mupdf (slower: ~20 us an object)."""
    limits = _Limits(max_stream_bytes, max_image_pixels)
    if data is None:
        return _problem_in_objects(doc, range(1, doc.xref_length()), limits)
    view = memoryview(data)
    by_mupdf: list[int] = []
    for match in _STREAM_KEYWORD.finditer(data):
        start = match.end()
        header = _header_before(data, match.start())
        if header is None:  # no object header near: let mupdf say what the stream is
            return _problem_in_objects(doc, range(1, doc.xref_length()), limits)
        number, dict_start = header
        head = bytes(view[dict_start : match.end()])
        head = unescape_names(head)  # /LZW#44ecode is /LZWDecode to a reader
        if _NEEDS_MUPDF.search(head):
            by_mupdf.append(number)
        elif _zlib_header(view[start : start + 2]) and _inflates_past(view, start, max_stream_bytes):
            return f"object {number} {limits.inflates}"
    return _problem_in_objects(doc, by_mupdf, limits)


class _Limits:
    def __init__(self, stream_bytes: int, image_pixels: int) -> None:
        self.stream_bytes = stream_bytes
        self.image_pixels = image_pixels
        mib = stream_bytes // MIB
        self.inflates = f"is a stream that inflates to more than {mib} MiB (a decompression bomb?)"


def _header_before(data: bytes | mmap.mmap, offset: int) -> tuple[int, int] | None:
    """(object number, where its dictionary starts) of the object header last before `offset`.
    Found by its keyword (a search in C; a regular expression over the whole look-back cost 60 us a
    stream), then read back from the few bytes before it."""
    low = max(0, offset - _HEADER_LOOKBACK)
    at = data.rfind(b"obj", low, offset)
    while at >= 0:
        after = bytes(data[at + 3 : at + 4])
        header = _OBJECT_HEADER_END.search(data[max(low, at - 32) : at + 3])
        if header is not None and not after.isalnum():
            return int(header.group(1)), at + 3
        at = data.rfind(b"obj", low, at)
    return None


# ---------------------------------------------------------------------------- mupdf's view


def _problem_in_objects(doc: _Doc, xrefs: Iterable[int], limits: _Limits) -> str | None:
    for xref in xrefs:
        problem = _object_problem(doc, xref, limits)
        if problem is not None:
            return problem
    return None


def _object_problem(doc: _Doc, xref: int, limits: _Limits) -> str | None:
    if not 0 < xref < doc.xref_length() or not doc.xref_is_stream(xref):
        return None
    if _value(doc, xref, "Subtype") == "/Image":
        width, height = _int_value(doc, xref, "Width"), _int_value(doc, xref, "Height")
        if width * height > limits.image_pixels:
            return (
                f"object {xref} is an image of {width} x {height} pixels, over the "
                f"{limits.image_pixels // 1_000_000} million an image may have (a decompression bomb?)"
            )
    filters = _NAME.findall(_value(doc, xref, "Filter"))
    if not _stages(filters, ""):
        return None
    raw = doc.xref_stream_raw(xref) or b""
    if chain_decodes_past(memoryview(raw), filters, _value(doc, xref, "DecodeParms"), limits.stream_bytes):
        return f"object {xref} {limits.inflates}"
    return None


def unescape_names(text: bytes) -> bytes:
    """PDF text with its names' ``#xx`` escapes decoded (``/LZW#44ecode`` is ``/LZWDecode``)."""
    return _NAME_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), text) if b"#" in text else text


def chain_decodes_past(data: memoryview, filters: list[str], parms: str, limit: int) -> bool:
    """Whether the chain of `filters` (names without the slash, full or abbreviated as an inline
    image has them) decodes `data` to more than `limit` bytes, counted in bounded steps; `parms`:
    the decode parameters as PDF text. Data that cannot grow that much is not decoded at all."""
    stages = _stages(filters, parms)
    if not stages or len(data) * math.prod(stage.max_ratio for stage in stages) <= limit:
        return False
    return _decodes_past(data, stages, limit)


def _value(doc: _Doc, xref: int, key: str) -> str:
    """The key's value as PDF text, a reference followed ("" when absent)."""
    kind, value = doc.xref_get_key(xref, key)
    if kind == "xref":
        target = int(value.split()[0])
        if 0 < target < doc.xref_length():
            return str(doc.xref_object(target, compressed=True)).strip()
        return ""
    return "" if kind == "null" else str(value)


def _int_value(doc: _Doc, xref: int, key: str) -> int:
    text = _value(doc, xref, key)
    try:
        number = float(text)
    except ValueError:  # not a number: mupdf cannot draw the image either
        return 0
    return max(0, int(number)) if math.isfinite(number) else 0


# ---------------------------------------------------------------------------- decoding, counted


class _Stage:
    """One filter's decoder, fed its input piece by piece."""

    max_ratio: float  # the most output one byte of input can give

    def decode(self, data: _Buffer) -> Iterator[bytes]:
        raise NotImplementedError

    def finish(self) -> Iterator[bytes]:
        """What is left once the input has ended (most decoders hold nothing back)."""
        return iter(())


class _Buffered(_Stage):
    """A decoder that keeps the input it cannot use yet (a run or group cut between pieces) and
    stops at the data's end marker."""

    def __init__(self) -> None:
        self.pending = b""
        self.ended = False


def _stages(filters: list[str], parms: str) -> list[_Stage]:
    """The decoders of the chain's leading filters that can grow data; an image codec (or a filter
    mupdf does not know) ends it."""
    stages: list[_Stage] = []
    for name in filters:
        match name:
            case "FlateDecode" | "Fl":
                stages.append(_Flate())
            case "LZWDecode" | "LZW":
                stages.append(_Lzw(early_change=0 if _EARLY_CHANGE_OFF.search(parms) else 1))
            case "RunLengthDecode" | "RL":
                stages.append(_RunLength())
            case "ASCII85Decode" | "A85":
                stages.append(_Ascii85())
            case "ASCIIHexDecode" | "AHx":
                stages.append(_AsciiHex())
            case _:
                break
    return stages


def _decodes_past(view: memoryview, stages: list[_Stage], limit: int) -> bool:
    """Whether the chain decodes `view` to more than `limit` bytes; input fed in growing slices."""
    total = 0
    pos, step = 0, 4096
    while pos < len(view):
        for piece in _through(stages, 0, view[pos : pos + step]):
            total += len(piece)
            if total > limit:
                return True
        pos += step
        step = min(step * 4, MIB)
    for index in range(len(stages)):
        for out in stages[index].finish():
            for piece in _through(stages, index + 1, out):
                total += len(piece)
                if total > limit:
                    return True
    return False


def _through(stages: list[_Stage], index: int, data: _Buffer) -> Iterator[_Buffer]:
    if index == len(stages):
        yield data
        return
    for out in stages[index].decode(data):
        yield from _through(stages, index + 1, out)


class _Flate(_Stage):
    max_ratio = math.inf  # 1032 a layer, and a layer may hold another

    def __init__(self) -> None:
        self.decoder = zlib.decompressobj()
        self.stopped = False

    def decode(self, data: _Buffer) -> Iterator[bytes]:
        pending: _Buffer = data
        while not self.stopped and not self.decoder.eof:
            try:
                out = self.decoder.decompress(pending, MIB)
            except zlib.error:
                self.stopped = True  # mupdf stops at the same error
                return
            pending = self.decoder.unconsumed_tail
            if out:
                yield out
            elif not pending:
                return


class _Lzw(_Stage):
    """PDF's LZWDecode: codes of 9 to 12 bits, most significant bit first; 256 clears the table,
    257 ends the data; with early change (the default) a code widens one entry early."""

    max_ratio = 3414.0  # a 9-bit code can stand for a string of 3,839 bytes
    _CLEAR, _END, _FULL = 256, 257, 4096

    def __init__(self, early_change: int) -> None:
        self.early = early_change
        self.bits = 0
        self.held = 0
        self.ended = False
        self._clear()

    def _clear(self) -> None:
        self.table: list[bytes] = [bytes([i]) for i in range(256)] + [b"", b""]
        self.width = 9
        self.previous: bytes | None = None

    def decode(self, data: _Buffer) -> Iterator[bytes]:
        out: list[bytes] = []
        size = 0
        held, bits = self.held, self.bits
        for byte in bytes(data):
            if self.ended:
                break
            held = (held << 8) | byte
            bits += 8
            while bits >= self.width and not self.ended:
                bits -= self.width
                code = held >> bits
                held &= (1 << bits) - 1
                entry = self._entry(code)
                if entry:
                    out.append(entry)
                    size += len(entry)
            if size >= MIB:
                yield b"".join(out)
                out, size = [], 0
        self.held, self.bits = held, bits
        if out:
            yield b"".join(out)

    def _entry(self, code: int) -> bytes:
        """The string `code` stands for (b"" for the control codes), the table grown by one."""
        table = self.table
        if code == self._CLEAR:
            self._clear()
            return b""
        if code == self._END:
            self.ended = True
            return b""
        previous = self.previous
        if code < len(table):
            entry = table[code]
        elif code == len(table) and previous is not None:
            entry = previous + previous[:1]  # the code being defined by this very step
        else:
            self.ended = True  # mupdf stops at an out-of-range code
            return b""
        if previous is not None and len(table) < self._FULL:
            table.append(previous + entry[:1])
            if len(table) + self.early >= 1 << self.width and self.width < 12:
                self.width += 1
        self.previous = entry
        return entry


class _RunLength(_Buffered):
    max_ratio = 64.0  # two bytes repeat one 128 times

    def decode(self, data: _Buffer) -> Iterator[bytes]:
        if self.ended:
            return
        buf = self.pending + bytes(data)
        out: list[bytes] = []
        size, at = 0, 0
        while at < len(buf):
            length = buf[at]
            if length == 128:
                self.ended = True
                break
            if length < 128:  # the next length + 1 bytes as they are
                if at + length + 2 > len(buf):
                    break
                piece = buf[at + 1 : at + length + 2]
                at += length + 2
            else:  # the next byte, 257 - length times
                if at + 2 > len(buf):
                    break
                piece = buf[at + 1 : at + 2] * (257 - length)
                at += 2
            out.append(piece)
            size += len(piece)
            if size >= MIB:
                yield b"".join(out)
                out, size = [], 0
        self.pending = b"" if self.ended else buf[at:]
        if out:
            yield b"".join(out)


class _TextGroups(_Buffered):
    """An ASCII filter: whitespace ignored, the data ended by a marker, decoded in whole groups."""

    end_marker: bytes
    group: int

    def decode(self, data: _Buffer) -> Iterator[bytes]:
        if self.ended:
            return
        text = bytes(data).translate(None, _WHITESPACE)
        end = text.find(self.end_marker)
        if end >= 0:
            text, self.ended = text[:end], True
        text = self.pending + self._groups(text)
        whole = len(text) // self.group * self.group
        self.pending = text[whole:]
        if whole:
            out = self._decode(text[:whole])
            if out is None:  # mupdf stops at the bad character
                self.ended, self.pending = True, b""
            else:
                yield out

    def finish(self) -> Iterator[bytes]:
        last = self._last(self.pending)
        out = self._decode(last) if last else None
        if out is not None:
            yield out

    def _groups(self, text: bytes) -> bytes:
        return text

    def _decode(self, text: bytes) -> bytes | None:
        """The groups decoded; None for text that is not of this encoding."""
        raise NotImplementedError

    def _last(self, pending: bytes) -> bytes:
        return pending


class _Ascii85(_TextGroups):
    max_ratio = 4.0  # "z" is four zero bytes
    end_marker = b"~"
    group = 5

    def _groups(self, text: bytes) -> bytes:
        return text.replace(b"z", b"!!!!!")  # "z" stands for a whole group of five

    def _decode(self, text: bytes) -> bytes | None:
        try:
            return base64.a85decode(text)
        except ValueError:
            return None

    def _last(self, pending: bytes) -> bytes:
        return pending if len(pending) >= 2 else b""  # one character alone says nothing


class _AsciiHex(_TextGroups):
    max_ratio = 0.5
    end_marker = b">"
    group = 2

    def _decode(self, text: bytes) -> bytes | None:
        try:
            return binascii.unhexlify(text)
        except binascii.Error:
            return None

    def _last(self, pending: bytes) -> bytes:
        return pending + b"0" if pending else b""  # an odd last digit is followed by 0


# ---------------------------------------------------------------------------- the byte scan's Flate


def _zlib_header(head: _Buffer) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950: deflate, a valid check)."""
    if len(head) < 2:
        return False
    cmf, flg = head[0], head[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0


def _inflates_past(view: memoryview, start: int, limit: int) -> bool:
    """Whether the zlib stream at `start` inflates past `limit` (through nested zlib layers too).

    Input is fed in growing slices (4 KiB first: most streams are small, and what follows a stream's
    end is copied aside by zlib), output taken 1 MiB at a time and only counted.
    """
    layers = _Inflation(limit, depth=3)
    pos, step = start, 4096
    while pos < len(view) and not layers.done:
        if layers.feed(view[pos : pos + step]):
            return True
        pos += step
        step = min(step * 4, MIB)
    return False


class _Inflation:
    """What a zlib stream inflates to, counted; a layer whose output opens with a zlib header is
    inflated in turn (a FlateDecode chain), up to `depth` layers, each against the limit."""

    def __init__(self, limit: int, depth: int) -> None:
        self.limit = limit
        self.depth = depth
        self.flate = _Flate()
        self.total = 0
        self.inner: _Inflation | None = None

    @property
    def done(self) -> bool:
        return self.flate.stopped or bool(self.flate.decoder.eof)

    def feed(self, data: _Buffer) -> bool:
        """Inflate `data`; True as soon as this layer or one inside it passes the limit. A layer
        stops at bad data, as mupdf does (an inner one then was not a chain after all)."""
        for out in self.flate.decode(data):
            if self.total == 0 and self.depth > 1 and _zlib_header(out[:2]):
                self.inner = _Inflation(self.limit, self.depth - 1)
            self.total += len(out)
            if self.total > self.limit:
                return True
            if self.inner is not None and not self.inner.done and self.inner.feed(out):
                return True
        return False
