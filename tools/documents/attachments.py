"""The PDF attachments of a DocumentReference: inline ``data``, or a ``url`` read as a Binary.

Pure rules (``pdf_attachments``, ``binary_id_of``, ``check_pdf``) and one thin I/O shell
(``fetch_pdfs``). What is followed, and why:

* only ``content[].attachment`` whose ``contentType`` is ``application/pdf`` (parameters such
  as ``; charset`` tolerated); other formats of the same document are not read;
* ``url``: only ``Binary/<id>``, relative or absolute on the FhirClient's own base URL (same
  scheme, host, port and path prefix). Any other URL (another host or port, another path,
  ``file:``, ``data:``, a query, credentials in the URL) is refused: a document's URL is data
  from the record, and following it elsewhere would let a record make ChartAgent fetch, with
  its credentials, from anywhere.

On the wire: ``GET {base}/Binary/<id>`` with ``Accept: application/fhir+json`` (the FhirClient's
``read``); the server answers a JSON Binary whose ``data`` is the base64 PDF (sekmet does).

Checks: the size limit (default 20 MiB) before anything is fetched or decoded where the size is
known (``attachment.size``, the length of the base64 text), then ``attachment.size`` and
``attachment.hash`` (SHA-1, base64) against the bytes. Every error is a ``DocumentFetchError``
naming the DocumentReference and the problem, never the content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.documentreference import DocumentReference

from fhir_adapters import FhirClient, FhirError, FhirHttpError, FhirNotFound
from fhir_adapters.error_tree import BadInputError
from fhir_adapters.urls import DEFAULT_PORTS, describe_origin, same_origin

__all__ = [
    "DEFAULT_MAX_PDF_BYTES",
    "AttachmentIntegrityError",
    "AttachmentRefused",
    "AttachmentTooLarge",
    "AttachmentUnavailable",
    "DocumentFetchError",
    "FetchedPdf",
    "binary_id_of",
    "check_pdf",
    "document_label",
    "fetch_pdfs",
    "is_pdf_content_type",
    "pdf_attachments",
]

DEFAULT_MAX_PDF_BYTES: Final = 20 * 1024 * 1024
_FHIR_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Binary.contentType values that may carry a PDF (a server may not know the type it stores).
_BINARY_TYPES: Final = frozenset({"application/pdf", "application/octet-stream"})


class DocumentFetchError(BadInputError):
    """A PDF of a DocumentReference could not be obtained; names the document, never the content."""

    def __init__(self, document: str, problem: str) -> None:
        self.document = document
        self.problem = problem
        super().__init__(f"{document}: {problem}")


class AttachmentRefused(DocumentFetchError):
    """The attachment's URL is not one ChartAgent follows (another host, port, path, scheme)."""


class AttachmentTooLarge(DocumentFetchError):
    """Over the size limit."""


class AttachmentIntegrityError(DocumentFetchError):
    """The bytes do not match ``attachment.size`` or ``attachment.hash``."""


class AttachmentUnavailable(DocumentFetchError):
    """No bytes: no data and no url, the Binary is missing, or the server failed."""


@dataclass(frozen=True, slots=True)
class FetchedPdf:
    """One PDF of a document: its bytes, their SHA-256 (hex) and where it came from."""

    document: str  # "DocumentReference/<id>"
    index: int  # position in DocumentReference.content
    data: bytes
    sha256: str
    source: str  # "inline" or "Binary/<id>"


def document_label(doc: DocumentReference) -> str:
    return f"DocumentReference/{doc.id or '?'}"


def is_pdf_content_type(content_type: str | None) -> bool:
    """``application/pdf``, with or without parameters, in any case."""
    return content_type is not None and content_type.split(";")[0].strip().lower() == "application/pdf"


def pdf_attachments(doc: DocumentReference) -> list[tuple[int, Attachment]]:
    """(index in ``content``, attachment) for every PDF attachment of ``doc``."""
    return [
        (i, c.attachment)
        for i, c in enumerate(doc.content or ())
        if c.attachment is not None and is_pdf_content_type(c.attachment.contentType)
    ]


def binary_id_of(url: str, base_url: str, document: str) -> str:
    """The Binary id that ``url`` names, if ChartAgent may follow it; else ``AttachmentRefused``.

    Allowed: ``Binary/<id>`` (relative to the FHIR base) and ``<base_url>/Binary/<id>`` where
    scheme, host, port (default ports made explicit) and the base path all match.
    """
    refused = f"attachment URL refused: only Binary/<id> on the FHIR server {base_url} is read"
    parts = urlsplit(url.strip())
    if parts.query or parts.fragment:
        raise AttachmentRefused(document, f"{refused} (the URL carries a query or fragment)")
    if not parts.scheme and not parts.netloc:
        path = parts.path
    else:
        base = urlsplit(base_url)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise AttachmentRefused(document, f"{refused} (the URL's port is not a number)") from None
        if parts.username is not None or parts.password is not None:
            raise AttachmentRefused(document, f"{refused} (the URL carries user credentials)")
        if parts.scheme.lower() not in DEFAULT_PORTS or not same_origin(url.strip(), base_url):
            where, ours = describe_origin(url.strip()), describe_origin(base_url)
            detail = f"the URL is on another origin: {where}, not {ours}"
            raise AttachmentRefused(document, f"{refused} ({detail})")
        prefix = base.path.rstrip("/") + "/"
        if not parts.path.startswith(prefix):
            raise AttachmentRefused(document, f"{refused} (the URL is outside the FHIR base path)")
        path = parts.path[len(prefix) :]
    segments = path.split("/")
    if len(segments) != 2 or segments[0] != "Binary":
        raise AttachmentRefused(document, f"{refused} (the URL does not name a Binary)")
    binary_id = segments[1]
    if not _FHIR_ID.match(binary_id) or binary_id in (".", ".."):
        raise AttachmentRefused(document, f"{refused} (the Binary id is not a FHIR id)")
    return binary_id


def _check_declared_size(attachment: Attachment, document: str, max_bytes: int) -> None:
    if attachment.size is not None and attachment.size > max_bytes:
        raise AttachmentTooLarge(
            document, f"the PDF declares {attachment.size} bytes, over the limit of {max_bytes} bytes"
        )


def check_pdf(data: bytes, attachment: Attachment, document: str, max_bytes: int) -> None:
    """The bytes against the size limit, ``attachment.size`` and ``attachment.hash`` (SHA-1)."""
    if len(data) > max_bytes:
        raise AttachmentTooLarge(document, f"the PDF is {len(data)} bytes, over the limit of {max_bytes}")
    if attachment.size is not None and attachment.size != len(data):
        raise AttachmentIntegrityError(
            document, f"the PDF is {len(data)} bytes but the attachment declares {attachment.size}"
        )
    declared = attachment.hash
    if declared is not None:
        # R4B parsing decodes base64Binary to bytes; a raw dict (or an older parser) gives the text.
        digest = declared if isinstance(declared, bytes) else _b64decode(str(declared), document, "hash")
        if len(digest) != hashlib.sha1().digest_size:
            raise AttachmentIntegrityError(document, "attachment.hash is not a SHA-1 digest (20 bytes)")
        if hashlib.sha1(data).digest() != digest:
            raise AttachmentIntegrityError(document, "the PDF does not match attachment.hash (SHA-1)")


def _b64decode(text: str, document: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentIntegrityError(document, f"{what} is not valid base64") from None


def _decoded_size(b64: str) -> int:
    """Bytes that ``b64`` decodes to (exact for well-formed base64), without decoding it."""
    length = len(b64) - sum(1 for ch in b64 if ch in " \t\r\n")
    return length * 3 // 4 - (2 if b64.rstrip().endswith("==") else 1 if b64.rstrip().endswith("=") else 0)


async def _read_binary(fhir: FhirClient, binary_id: str, document: str, max_bytes: int) -> bytes:
    try:
        binary: dict[str, Any] = await fhir.read("Binary", binary_id)
    except FhirNotFound:
        raise AttachmentUnavailable(document, f"Binary/{binary_id} was not found") from None
    except FhirHttpError as exc:
        raise AttachmentUnavailable(
            document, f"reading Binary/{binary_id} failed (HTTP {exc.status})"
        ) from None
    except FhirError as exc:
        raise AttachmentUnavailable(document, f"reading Binary/{binary_id} failed ({exc})") from None
    if binary.get("resourceType") != "Binary":
        raise AttachmentUnavailable(document, f"Binary/{binary_id} answered another resource type")
    content_type = binary.get("contentType")
    if isinstance(content_type, str) and content_type.split(";")[0].strip().lower() not in _BINARY_TYPES:
        raise AttachmentUnavailable(
            document, f"Binary/{binary_id} holds {content_type.split(';')[0].strip()!r}, not a PDF"
        )
    data = binary.get("data")
    if not isinstance(data, str) or not data.strip():
        raise AttachmentUnavailable(document, f"Binary/{binary_id} has no data")
    size = _decoded_size(data)
    if size > max_bytes:
        raise AttachmentTooLarge(document, f"Binary/{binary_id} is {size} bytes, over the limit {max_bytes}")
    return _b64decode(data, document, f"Binary/{binary_id} data")


# Marks an attachment whose inline `data` was left on the server when the record was gathered
# (`without_inline_data`); its value is the SHA-256 of the base64 text, so the attachment's content
# (and with it the document's input key) still changes when the data does.
DATA_LEFT_ON_SERVER: Final = "urn:chartagent:data-left-on-server"


def without_inline_data(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A DocumentReference (as JSON) without its attachments' inline PDFs, which are most of a
    record's bytes: parsed, checkpointed and planned over on every run, they are read only when
    the document is. `fetch_pdfs` reads them again from the server."""
    out = dict(raw)
    content = []
    for item in raw.get("content") or []:
        attachment = item.get("attachment") if isinstance(item, Mapping) else None
        if not isinstance(attachment, Mapping) or not isinstance(attachment.get("data"), str):
            content.append(item)
            continue
        digest = hashlib.sha256(str(attachment["data"]).encode("ascii", "replace")).hexdigest()
        kept = {k: v for k, v in attachment.items() if k != "data"}
        kept["extension"] = [
            *(kept.get("extension") or []),
            {"url": DATA_LEFT_ON_SERVER, "valueString": digest},
        ]
        content.append({**item, "attachment": kept})
    out["content"] = content
    return out


def _left_on_server(attachment: Attachment) -> bool:
    return any(e.url == DATA_LEFT_ON_SERVER for e in attachment.extension or ())


async def _reread(doc: DocumentReference, fhir: FhirClient, document: str) -> DocumentReference:
    """The document as the server holds it, with its inline data (it must still be this patient's)."""
    try:
        raw = await fhir.read("DocumentReference", str(doc.id))
    except FhirHttpError as exc:
        raise AttachmentUnavailable(document, f"reading it again failed (HTTP {exc.status})") from None
    except FhirError as exc:
        raise AttachmentUnavailable(document, f"reading it again failed ({exc})") from None
    again = DocumentReference.model_validate(raw)
    subject = getattr(doc.subject, "reference", None)
    if getattr(again.subject, "reference", None) != subject:
        raise AttachmentUnavailable(document, "the server now holds it for another subject")
    return again


async def fetch_pdfs(
    doc: DocumentReference, fhir: FhirClient, *, max_bytes: int = DEFAULT_MAX_PDF_BYTES
) -> list[FetchedPdf]:
    """Every PDF attachment of ``doc`` as bytes, checked; raises ``DocumentFetchError``.

    An attachment with both ``data`` and ``url`` is read from ``data`` (nothing is fetched); the
    same bytes attached twice are returned once.
    """
    document = document_label(doc)
    if any(_left_on_server(a) for _, a in pdf_attachments(doc)):
        doc = await _reread(doc, fhir, document)
    out: list[FetchedPdf] = []
    for index, attachment in pdf_attachments(doc):
        _check_declared_size(attachment, document, max_bytes)
        if attachment.data is not None:
            raw: Any = attachment.data
            data = raw if isinstance(raw, bytes) else _b64decode(str(raw), document, "attachment.data")
            source = "inline"
        elif attachment.url:
            binary_id = binary_id_of(str(attachment.url), fhir.base_url, document)
            data = await _read_binary(fhir, binary_id, document, max_bytes)
            source = f"Binary/{binary_id}"
        else:
            raise AttachmentUnavailable(document, f"content[{index}] has neither data nor url")
        check_pdf(data, attachment, document, max_bytes)
        digest = hashlib.sha256(data).hexdigest()
        if all(p.sha256 != digest for p in out):
            out.append(FetchedPdf(document, index, data, digest, source))
    return out
