"""Deterministic PDF encryption: the standard security handler, RC4 128-bit, revision 3.

pymupdf encrypts with a fresh random file identifier (and, for AES, random IVs) on every save
and offers no way to seed them, so the same input never gives the same bytes. The synthetic
cohort must reseed byte-identically, so its encrypted document is encrypted here instead: RC4
has no IV and the file identifier is the caller's, so the output is a function of the input.

RC4 is weak; this is test data, a file that a reader must refuse without the password.
Algorithms 1-5 of ISO 32000-1, 7.6.3. The input is a classic-xref PDF as ``canvas.finish``
writes it (no object streams); every string and stream is encrypted with its object's key.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, Final

from agent.testbed.cohort.labpdf.canvas import open_pdf

__all__ = ["PRINT_ONLY", "encrypt_rc4"]

_PAD: Final = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")
_KEY_BYTES: Final = 16
# Permission bits (table 22): print only; bits 7-8 and 13-32 are 1 as the standard requires.
PRINT_ONLY: Final = -3900


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray(len(data))
    i = j = 0
    for n, byte in enumerate(data):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out[n] = byte ^ s[(s[i] + s[j]) & 0xFF]
    return bytes(out)


def _rc4_rounds(key: bytes, data: bytes) -> bytes:
    """Revision 3: RC4 with ``key``, then 19 more times with each key byte XOR the round."""
    out = _rc4(key, data)
    for round_ in range(1, 20):
        out = _rc4(bytes(b ^ round_ for b in key), out)
    return out


def _padded(password: str) -> bytes:
    return (password.encode("latin-1") + _PAD)[:32]


def _stretched(data: bytes) -> bytes:
    digest = _md5(data)
    for _ in range(50):
        digest = _md5(digest[:_KEY_BYTES])
    return digest[:_KEY_BYTES]


def _owner_entry(owner_password: str, user_password: str) -> bytes:
    """Algorithm 3: the /O entry."""
    return _rc4_rounds(_stretched(_padded(owner_password)), _padded(user_password))


def _file_key(user_password: str, owner_entry: bytes, permissions: int, file_id: bytes) -> bytes:
    """Algorithm 2: the document key."""
    return _stretched(_padded(user_password) + owner_entry + struct.pack("<i", permissions) + file_id)


def _user_entry(key: bytes, file_id: bytes) -> bytes:
    """Algorithm 5: the /U entry (its last 16 bytes are arbitrary)."""
    return _rc4_rounds(key, _md5(_PAD + file_id)) + bytes(16)


def _object_key(key: bytes, number: int) -> bytes:
    """Algorithm 1: the key of object ``number`` (generation 0)."""
    return _md5(key + number.to_bytes(3, "little") + b"\x00\x00")[: len(key) + 5]


def _literal(source: str, start: int) -> tuple[bytes, int]:
    """The bytes of the literal string opening at ``source[start] == "("`` and the index after it."""
    out = bytearray()
    depth, i = 1, start + 1
    escapes = {"n": 10, "r": 13, "t": 9, "b": 8, "f": 12, "(": 40, ")": 41, "\\": 92}
    while True:
        c = source[i]
        if c == "\\":
            nxt = source[i + 1]
            if nxt in escapes:
                out.append(escapes[nxt])
                i += 2
            elif nxt.isdigit():
                digits = source[i + 1 : i + 4]
                count = len(digits) - len(digits.lstrip("01234567"))
                out.append(int(source[i + 1 : i + 1 + count], 8) & 0xFF)
                i += 1 + count
            else:  # a backslash before a line break continues the line; before anything else it is dropped
                i += 2 if nxt == "\n" else 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return bytes(out), i + 1
        out.append(ord(c))
        i += 1


def _encrypt_strings(source: str, key: bytes) -> str:
    """``source`` (one object's PDF syntax) with every string encrypted and written as hex."""
    out: list[str] = []
    i = 0
    while i < len(source):
        c = source[i]
        if c == "(":
            raw, i = _literal(source, i)
        elif c == "<" and not source.startswith("<<", i):
            end = source.index(">", i)
            digits = "".join(source[i + 1 : end].split())
            raw = bytes.fromhex(digits + "0" * (len(digits) % 2))
            i = end + 1
        elif c == "<":
            out.append("<<")
            i += 2
            continue
        else:
            out.append(c)
            i += 1
            continue
        out.append(f"<{_rc4(key, raw).hex().upper()}>")
    return "".join(out)


def encrypt_rc4(
    pdf: bytes, *, file_id: bytes, user_password: str, owner_password: str, permissions: int = PRINT_ONLY
) -> bytes:
    """``pdf`` encrypted so that opening it needs ``user_password``; the same inputs give the same bytes."""
    if len(file_id) != 16:
        raise ValueError(f"file_id is 16 bytes; got {len(file_id)}")
    # pymupdf's xref methods are untyped: the document is Any here, its answers typed where read.
    doc: Any = open_pdf(pdf)
    try:
        owner = _owner_entry(owner_password, user_password)
        key = _file_key(user_password, owner, permissions, file_id)
        size: int = doc.xref_length()
        out = bytearray(b"%PDF-1.7\n%\xc2\xb5\xc2\xb6\n\n")
        offsets: list[int] = []
        for number in range(1, size):
            offsets.append(len(out))
            object_key = _object_key(key, number)
            source: str = doc.xref_object(number, compressed=True)
            text = _encrypt_strings(source, object_key)
            out += f"{number} 0 obj\n{text}\n".encode("latin-1")
            if doc.xref_is_stream(number):
                # RC4 is a stream cipher: /Length does not change.
                raw: bytes = doc.xref_stream_raw(number)
                out += b"stream\n" + _rc4(object_key, raw) + b"\nendstream\n"
            out += b"endobj\n\n"
        offsets.append(len(out))
        out += (
            f"{size} 0 obj\n<</Filter/Standard/V 2/R 3/Length 128/P {permissions}"
            f"/O<{owner.hex().upper()}>/U<{_user_entry(key, file_id).hex().upper()}>>>\nendobj\n\n"
        ).encode("ascii")
        root: str = doc.xref_get_key(-1, "Root")[1]
        info_type, info = doc.xref_get_key(-1, "Info")
        info_entry = f"/Info {info}" if info_type == "xref" else ""
        xref = len(out)
        out += f"xref\n0 {size + 1}\n0000000000 65535 f \n".encode("ascii")
        out += b"".join(f"{offset:010d} 00000 n \n".encode("ascii") for offset in offsets)
        ident = file_id.hex().upper()
        trailer = f"<</Size {size + 1}/Root {root}{info_entry}/ID[<{ident}><{ident}>]/Encrypt {size} 0 R>>"
        out += f"trailer\n{trailer}\nstartxref\n{xref}\n%%EOF\n".encode("ascii")
        return bytes(out)
    finally:
        doc.close()
