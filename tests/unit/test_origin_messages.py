"""Every "another origin" refusal names both origins with their ports (`describe_origin`), and a
loopback `next` link that differs only in port says which setting fixes it."""

from __future__ import annotations

import pytest

from fhir_adapters.errors import FhirProtocolError
from fhir_adapters.flavours import GENERIC, HAPI, SEKMET, Flavour
from fhir_adapters.urls import describe_origin
from tools.documents.attachments import AttachmentRefused, binary_id_of
from tools.imaging_review.endpoints import EndpointInfo, dicomweb_refusal

BASE = "https://ehr.example.org:8443/fhir/r4"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("http://127.0.0.1/fhir", "http://127.0.0.1:80"),
        ("https://EHR.example/fhir/Observation?x=1", "https://ehr.example:443"),
        ("http://localhost:8090/fhir", "http://localhost:8090"),
        ("http://[::1]:8090/fhir", "http://[::1]:8090"),
        ("https://user:secret@ehr.example:8443/fhir", "https://ehr.example:8443"),  # no user info
        ("//evil.example/fhir", "(scheme-relative) //evil.example"),
        ("Binary/1", "(a relative URL)"),
        ("http://ehr.example:http/fhir", "http://ehr.example:http (port not a number)"),
    ],
)
def test_describe_origin_always_writes_the_port(url: str, text: str) -> None:
    assert describe_origin(url) == text


def test_a_refused_link_names_both_ports() -> None:
    with pytest.raises(FhirProtocolError) as caught:
        GENERIC.resolve_link("http://127.0.0.1/fhir/Observation?page=2", "http://127.0.0.1:8090/fhir")
    message = str(caught.value)
    assert "another origin (http://127.0.0.1:80) than the FHIR base (http://127.0.0.1:8090)" in message


@pytest.mark.parametrize("flavour", [GENERIC, HAPI], ids=lambda f: f.name)
def test_a_loopback_port_mismatch_names_the_setting_that_fixes_it(flavour: Flavour) -> None:
    with pytest.raises(FhirProtocolError) as caught:
        flavour.resolve_link(
            "http://localhost:8090/fhir/Observation?_offset=10", "http://127.0.0.1:41234/fhir"
        )
    message = str(caught.value)
    assert "http://localhost:8090" in message
    assert "http://127.0.0.1:41234" in message
    assert "CHARTAGENT_FHIR_FLAVOUR=sekmet" in message
    assert "SEKMET_BASE_URL" in message
    # ... and that setting does fix it.
    assert SEKMET.resolve_link(
        "http://localhost:8090/fhir/Observation?_offset=10", "http://127.0.0.1:41234/fhir"
    )


def test_a_remote_origin_gets_no_loopback_hint() -> None:
    with pytest.raises(FhirProtocolError) as caught:
        GENERIC.resolve_link("https://evil.example/fhir/Observation", "https://ehr.example/fhir")
    assert "CHARTAGENT_FHIR_FLAVOUR" not in str(caught.value)
    assert "https://evil.example:443" in str(caught.value)


def test_an_attachment_on_another_port_names_both_origins() -> None:
    with pytest.raises(AttachmentRefused) as caught:
        binary_id_of("https://ehr.example.org:9443/fhir/r4/Binary/1", BASE, "d")
    assert "another origin: https://ehr.example.org:9443, not https://ehr.example.org:8443" in str(
        caught.value
    )


def test_an_attachment_url_with_credentials_says_so_without_them() -> None:
    with pytest.raises(AttachmentRefused) as caught:
        binary_id_of("https://u:pw-x9@ehr.example.org:8443/fhir/r4/Binary/1", BASE, "d")
    assert "credentials" in str(caught.value)
    assert "pw-x9" not in str(caught.value)


def test_an_endpoint_on_another_port_is_another_origin() -> None:
    pacs = "http://pacs.local:8042/dicom-web"
    other = EndpointInfo(
        reference="Endpoint/e", address="http://pacs.local:9042/dicom-web", connection_type="dicom-wado-rs",
        status="active",
    )  # fmt: skip
    reason = dicomweb_refusal("ImagingStudy/s1", ["Endpoint/e"], {"Endpoint/e": other}, pacs)
    assert reason is not None
    assert (
        "another origin (http://pacs.local:9042), not the configured one (http://pacs.local:8042)" in reason
    )
    assert "/dicom-web" not in reason
