"""DocumentReference PDF attachments: which URLs are followed, size and hash checks, Binary reads."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.documentreference import DocumentReference

from fhir_adapters import FhirClient, RetryPolicy
from tools.documents.attachments import (
    DATA_LEFT_ON_SERVER,
    AttachmentIntegrityError,
    AttachmentRefused,
    AttachmentTooLarge,
    AttachmentUnavailable,
    DocumentFetchError,
    binary_id_of,
    check_pdf,
    fetch_pdfs,
    is_pdf_content_type,
    pdf_attachments,
    without_inline_data,
)

BASE = "https://ehr.example.org:8443/fhir/r4"
DOC = "DocumentReference/d1"
PDF = b"%PDF-1.7\n% a small stand-in for a PDF\n%%EOF\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha1_b64(data: bytes) -> str:
    return b64(hashlib.sha1(data).digest())


def document(*attachments: dict[str, Any], doc_id: str = "d1") -> DocumentReference:
    return DocumentReference.model_validate(
        {
            "resourceType": "DocumentReference",
            "id": doc_id,
            "status": "current",
            "content": [{"attachment": a} for a in attachments],
        }
    )


@pytest.mark.parametrize(
    "url",
    [
        "Binary/123",
        f"{BASE}/Binary/abc-1.2",
        "https://EHR.example.org:8443/fhir/r4/Binary/x",  # host names are case-insensitive
    ],
)
def test_urls_on_the_fhir_server_are_followed(url: str) -> None:
    assert binary_id_of(url, BASE, DOC) in {"123", "abc-1.2", "x"}


def test_default_ports_are_the_same_origin() -> None:
    assert (
        binary_id_of("https://ehr.example.org:443/fhir/Binary/7", "https://ehr.example.org/fhir", DOC) == "7"
    )
    assert binary_id_of("http://h/fhir/Binary/7", "http://h:80/fhir", DOC) == "7"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com:8443/fhir/r4/Binary/123",  # another host
        "https://ehr.example.org:9443/fhir/r4/Binary/123",  # another port
        "https://ehr.example.org/fhir/r4/Binary/123",  # the default port is another port here
        "http://ehr.example.org:8443/fhir/r4/Binary/123",  # another scheme
        "https://ehr.example.org:8443/fhir/Binary/123",  # another path prefix
        "https://ehr.example.org:8443/fhir/r4x/Binary/123",  # a prefix that is not a path segment
        "https://ehr.example.org:8443/fhir/r4/../admin/Binary/123",
        "https://user:pw@ehr.example.org:8443/fhir/r4/Binary/123",  # credentials in the URL
        "https://ehr.example.org:8443@evil.example.com/fhir/r4/Binary/123",
        "//evil.example.com/fhir/r4/Binary/123",  # scheme-relative
        "file:///etc/passwd",
        "data:application/pdf;base64,JVBERi0=",
        "ftp://ehr.example.org:8443/fhir/r4/Binary/1",
        "Binary/123?_format=json",
        "Binary/123#page=2",
        "Patient/123",  # not a Binary
        "Binary/123/_history/1",
        "Binary/../Patient",
        "Binary/..",
        "../Binary/123",
        "Binary/",
        "Binary/a%2Fb",
    ],
)
def test_every_other_url_is_refused_naming_the_document(url: str) -> None:
    with pytest.raises(AttachmentRefused) as info:
        binary_id_of(url, BASE, DOC)
    assert str(info.value).startswith(f"{DOC}: attachment URL refused")
    assert info.value.document == DOC


def test_pdf_content_types_with_parameters() -> None:
    assert is_pdf_content_type("application/pdf")
    assert is_pdf_content_type("Application/PDF; name=report.pdf")
    assert not is_pdf_content_type("application/pdfx")
    assert not is_pdf_content_type("text/plain")
    assert not is_pdf_content_type(None)
    doc = document(
        {"contentType": "text/plain", "data": b64(b"x")},
        {"contentType": "application/pdf; charset=binary", "data": b64(PDF)},
    )
    assert [i for i, _ in pdf_attachments(doc)] == [1]


def attachment(**fields: Any) -> Attachment:
    return Attachment.model_validate({"contentType": "application/pdf", **fields})


def test_hash_and_size_are_checked() -> None:
    check_pdf(PDF, attachment(size=len(PDF), hash=sha1_b64(PDF)), DOC, 1000)
    with pytest.raises(AttachmentIntegrityError, match="SHA-1"):
        check_pdf(PDF, attachment(hash=sha1_b64(PDF + b"x")), DOC, 1000)
    with pytest.raises(AttachmentIntegrityError, match="declares 3"):
        check_pdf(PDF, attachment(size=3), DOC, 1000)
    with pytest.raises(AttachmentIntegrityError, match="not a SHA-1"):
        check_pdf(PDF, attachment(hash=b64(hashlib.sha256(PDF).digest())), DOC, 1000)
    with pytest.raises(AttachmentTooLarge, match="over the limit of 10"):
        check_pdf(PDF, attachment(), DOC, 10)


def binary_server(binaries: dict[str, dict[str, Any] | int]) -> tuple[FhirClient, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        rid = request.url.path.rsplit("/", 1)[-1]
        found = binaries.get(rid, 404)
        if isinstance(found, int):
            return httpx.Response(found, json={"resourceType": "OperationOutcome", "issue": []})
        return httpx.Response(200, json=found, headers={"Content-Type": "application/fhir+json"})

    client = FhirClient(BASE, transport=httpx.MockTransport(handle), retry=RetryPolicy(max_attempts=1))
    return client, seen


def fetch(doc: DocumentReference, client: FhirClient, **kw: Any) -> list[Any]:
    async def go() -> list[Any]:
        async with client:
            return await fetch_pdfs(doc, client, **kw)

    return asyncio.run(go())


def test_inline_and_binary_attachments_are_read_and_checked() -> None:
    other = PDF + b"% second\n"
    client, seen = binary_server(
        {"b1": {"resourceType": "Binary", "contentType": "application/pdf", "data": b64(other)}}
    )
    doc = document(
        {"contentType": "application/pdf", "data": b64(PDF), "hash": sha1_b64(PDF), "size": len(PDF)},
        {"contentType": "application/pdf", "url": "Binary/b1", "hash": sha1_b64(other)},
        {"contentType": "application/pdf", "url": f"{BASE}/Binary/b1"},  # the same bytes again: read once
    )
    got = fetch(doc, client)
    assert [(p.index, p.source, p.data) for p in got] == [(0, "inline", PDF), (1, "Binary/b1", other)]
    assert got[0].sha256 == hashlib.sha256(PDF).hexdigest()
    assert seen == ["/fhir/r4/Binary/b1", "/fhir/r4/Binary/b1"]


def test_a_refused_url_is_never_requested() -> None:
    client, seen = binary_server({})
    doc = document({"contentType": "application/pdf", "url": "https://evil.example.com/Binary/1"})
    with pytest.raises(AttachmentRefused, match="DocumentReference/d1"):
        fetch(doc, client)
    assert seen == []


def test_declared_size_over_the_limit_is_refused_before_fetching() -> None:
    client, seen = binary_server({})
    doc = document({"contentType": "application/pdf", "url": "Binary/big", "size": 50_000_000})
    with pytest.raises(AttachmentTooLarge, match="declares 50000000 bytes"):
        fetch(doc, client)
    assert seen == []


def test_binary_over_the_limit_is_refused_before_decoding() -> None:
    big = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "data": "A" * 4000 + "!",
    }  # not even base64
    client, _ = binary_server({"big": big})
    with pytest.raises(AttachmentTooLarge, match="3000 bytes"):
        fetch(document({"contentType": "application/pdf", "url": "Binary/big"}), client, max_bytes=1000)


@pytest.mark.parametrize(
    ("binary", "message"),
    [
        (404, "Binary/b was not found"),
        (500, "reading Binary/b failed (HTTP 500)"),
        (
            {"resourceType": "Binary", "contentType": "text/html", "data": b64(b"<html>")},
            "'text/html', not a PDF",
        ),
        ({"resourceType": "Binary", "contentType": "application/pdf"}, "has no data"),
        ({"resourceType": "Patient", "id": "b"}, "another resource type"),
        ({"resourceType": "Binary", "contentType": "application/pdf", "data": "@@@"}, "not valid base64"),
    ],
)
def test_binary_failures_name_the_document_and_never_the_content(
    binary: dict[str, Any] | int, message: str
) -> None:
    client, _ = binary_server({"b": binary})
    with pytest.raises(DocumentFetchError) as info:
        fetch(document({"contentType": "application/pdf", "url": "Binary/b"}), client)
    assert str(info.value).startswith("DocumentReference/d1: ")
    assert message in str(info.value)
    assert "<html>" not in str(info.value)


def test_an_attachment_without_data_or_url() -> None:
    client, _ = binary_server({})
    with pytest.raises(AttachmentUnavailable, match=r"content\[0\] has neither data nor url"):
        fetch(document({"contentType": "application/pdf", "title": "report"}), client)


def test_a_hash_mismatch_on_a_binary() -> None:
    client, _ = binary_server(
        {"b": {"resourceType": "Binary", "contentType": "application/octet-stream", "data": b64(PDF)}}
    )
    doc = document({"contentType": "application/pdf", "url": "Binary/b", "hash": sha1_b64(b"other")})
    with pytest.raises(AttachmentIntegrityError, match=r"does not match attachment\.hash"):
        fetch(doc, client)


def _raw_doc(subject: str = "Patient/p1") -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "subject": {"reference": subject},
        "content": [{"attachment": {"contentType": "application/pdf", "data": b64(PDF), "title": "r"}}],
    }


def test_a_gathered_document_leaves_its_pdf_on_the_server_with_a_digest_of_it() -> None:
    stripped = without_inline_data(_raw_doc())
    (item,) = stripped["content"]
    assert "data" not in item["attachment"]
    assert item["attachment"]["title"] == "r"
    (mark,) = item["attachment"]["extension"]
    assert mark == {"url": DATA_LEFT_ON_SERVER, "valueString": hashlib.sha256(b64(PDF).encode()).hexdigest()}
    other = _raw_doc()
    other["content"][0]["attachment"]["data"] = b64(PDF + b"more")
    assert without_inline_data(other) != stripped  # another PDF, another content (and input key)
    assert without_inline_data({"resourceType": "DocumentReference", "id": "x"})["content"] == []


def test_fetch_reads_a_document_left_on_the_server_again() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=_raw_doc())

    async def fetch(doc: DocumentReference) -> Any:
        async with FhirClient(BASE, transport=httpx.MockTransport(handler)) as fhir:
            return await fetch_pdfs(doc, fhir)

    stripped = DocumentReference.model_validate(without_inline_data(_raw_doc()))
    (pdf,) = asyncio.run(fetch(stripped))
    assert pdf.data == PDF
    assert seen == ["/fhir/r4/DocumentReference/d1"]
    # The server now says the document is another patient's: nothing is read from it.
    moved = DocumentReference.model_validate(without_inline_data(_raw_doc()))
    moved.subject.reference = "Patient/p2"  # type: ignore[union-attr]
    with pytest.raises(AttachmentUnavailable, match="another subject"):
        asyncio.run(fetch(moved))
