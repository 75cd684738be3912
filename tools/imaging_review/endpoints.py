"""Where an ImagingStudy's pixels are, and whether the configured DICOMweb server may fetch them.

Pixels are only ever fetched from the DICOMweb base URL the caller configured, with the client
the caller gave: a URL written in a record is never requested. An ImagingStudy is fetched when
one of the Endpoints that serve it is a `dicom-wado-rs` Endpoint whose address is that base URL
(same scheme, host, port and path, trailing slash aside); one that lives on another host or
another DICOMweb root is refused, naming the ImagingStudy. A study that names no Endpoint at all
is looked up on the configured server (many EHRs leave Endpoints out).

Endpoints are resolved from the study's contained resources (`#id`), then the record's Endpoint
resources, then read from the FHIR server (`GET {fhir}/Endpoint/{id}`, only a reference on that
server). Reasons name ids and hosts, never an address's path, query or credentials.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from fhir.resources.R4B.endpoint import Endpoint
from pydantic import BaseModel, ConfigDict, ValidationError

from fhir_adapters import FhirClient, FhirError
from fhir_adapters.urls import describe_origin, same_origin
from tools.record import PatientRecord

__all__ = [
    "WADO_RS",
    "EndpointInfo",
    "dicomweb_refusal",
    "endpoint_info",
    "resolve_endpoints",
    "same_dicomweb_root",
]

WADO_RS: Final = "dicom-wado-rs"


class EndpointInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    reference: str
    address: str | None
    connection_type: str | None
    status: str | None


def endpoint_info(reference: str, resource: Any) -> EndpointInfo:
    """The parts of an R4B Endpoint the policy looks at."""
    connection = getattr(resource, "connectionType", None)
    address = getattr(resource, "address", None)
    return EndpointInfo(
        reference=reference,
        address=str(address) if address is not None else None,
        connection_type=getattr(connection, "code", None),
        status=getattr(resource, "status", None),
    )


def same_dicomweb_root(address: str, base_url: str) -> bool:
    """True when `address` is the DICOMweb root `base_url` (scheme, host, port, path)."""
    a, b = urlsplit(address), urlsplit(base_url)
    if not a.scheme or not a.netloc:
        return False
    return same_origin(address, base_url) and a.path.rstrip("/") == b.path.rstrip("/")


def dicomweb_refusal(
    study_reference: str,
    endpoint_refs: Iterable[str],
    resolved: Mapping[str, EndpointInfo | str],
    base_url: str,
) -> str | None:
    """Why `study_reference` must not be fetched from `base_url`, or None when it may be.

    `resolved` maps each Endpoint reference to its `EndpointInfo`, or to why it could not be read.
    """
    refs = list(dict.fromkeys(endpoint_refs))
    if not refs:
        return None
    wado: list[EndpointInfo] = []
    unreadable: list[str] = []
    for ref in refs:
        info = resolved.get(ref, "not resolved")
        if isinstance(info, str):
            unreadable.append(f"{ref} ({info})")
        elif info.connection_type == WADO_RS and info.address and info.status != "off":
            wado.append(info)
    if any(same_dicomweb_root(str(e.address), base_url) for e in wado):
        return None
    # Origins only (scheme, host, port), never an address's path.
    configured = describe_origin(base_url)
    elsewhere = [e for e in wado if not same_origin(str(e.address), base_url)]
    if elsewhere:
        origins = ", ".join(sorted({describe_origin(str(e.address)) for e in elsewhere}))
        return (
            f"refused: {study_reference} is served by a DICOMweb server on another origin ({origins}), "
            f"not the configured one ({configured}); its images are not fetched"
        )
    if wado:
        return (
            f"refused: {study_reference} is served by another DICOMweb root on {configured} than "
            "the configured base URL; its images are not fetched"
        )
    if unreadable:
        return f"refused: the Endpoint of {study_reference} could not be checked: {'; '.join(unreadable)}"
    return f"refused: {study_reference} names no active {WADO_RS} Endpoint; its images are not fetched"


def _from_record(record: PatientRecord) -> dict[str, EndpointInfo]:
    return {
        f"Endpoint/{e.id}": endpoint_info(f"Endpoint/{e.id}", e) for e in record.of_type("Endpoint") if e.id
    }


def _server_id(reference: str, fhir: FhirClient) -> str | None:
    """The id of an `Endpoint/<id>` reference on `fhir` (relative, or absolute on its base), else None."""
    prefix = f"{fhir.base_url}/"
    local = reference[len(prefix) :] if reference.startswith(prefix) else reference
    kind, _, rid = local.partition("/")
    if kind != "Endpoint" or not rid or "/" in rid or "://" in local:
        return None
    return rid


async def resolve_endpoints(
    references: Iterable[str],
    *,
    record: PatientRecord,
    contained: Mapping[str, EndpointInfo],
    fhir: FhirClient | None,
) -> dict[str, EndpointInfo | str]:
    """Each Endpoint reference resolved (contained, record, FHIR read), or the reason it was not."""
    known: dict[str, EndpointInfo | str] = {**_from_record(record), **contained}
    out: dict[str, EndpointInfo | str] = {}
    for ref in dict.fromkeys(references):
        if ref in known:
            out[ref] = known[ref]
            continue
        if fhir is None:
            out[ref] = "not in the record and no FHIR client to read it"
            continue
        rid = _server_id(ref, fhir)
        if rid is None:
            out[ref] = "not an Endpoint on this FHIR server"
            continue
        try:
            resource = Endpoint.model_validate(await fhir.read("Endpoint", rid))
        except FhirError as exc:
            out[ref] = f"read failed: {exc}"
            continue
        except ValidationError:
            out[ref] = "not a valid R4 Endpoint"
            continue
        out[ref] = known[ref] = endpoint_info(ref, resource)
    return out
