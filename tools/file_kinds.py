"""What a file is, from its first bytes (magic numbers): for messages such as "not a PDF (looks like PNG)".

Only the kinds someone might hand ChartAgent by mistake: images, office documents, archives, text.
Nothing here reads more than the prefix it is given.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PREFIX_BYTES", "looks_like"]

PREFIX_BYTES: Final = 1024  # enough for every signature below (DICOM's sits at 128)

_SIGNATURES: Final = (
    (0, b"%PDF-", "PDF"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"II+\x00", "BigTIFF"),
    (0, b"MM\x00+", "BigTIFF"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (0, b"PK\x03\x04", "a ZIP archive (DOCX, XLSX, ...)"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE document (DOC, XLS, ...)"),
    (0, b"{\\rtf", "RTF"),
    (0, b"\x1f\x8b", "gzip"),
    (128, b"DICM", "DICOM"),
)


def looks_like(prefix: bytes) -> str | None:
    """The kind of file that starts with `prefix` ("PNG", "TIFF", "text", ...), None if unknown or empty."""
    for offset, magic, kind in _SIGNATURES:
        if prefix[offset : offset + len(magic)] == magic:
            return kind
    head = prefix.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if head.startswith(b"<?xml"):
        return "XML"
    if head and _is_text(prefix):
        return "text"
    return None


def _is_text(prefix: bytes) -> bool:
    try:
        text = prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(prefix) - 3:  # not just a character cut at the prefix's end
            return False
        text = prefix[: exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)
