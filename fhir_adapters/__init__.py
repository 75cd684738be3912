"""Async FHIR R4 client, SMART Backend Services auth, server flavours, R4B parsing at the edge."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_adapters.auth import AuthProvider, SmartBackendServices, StaticBearer
    from fhir_adapters.client import FhirClient, JsonDict
    from fhir_adapters.errors import (
        FhirAuthError,
        FhirConflict,
        FhirError,
        FhirHttpError,
        FhirInvalid,
        FhirNotFound,
        FhirOutcomeUnknown,
        FhirProtocolError,
        FhirRateLimited,
        FhirServerError,
        FhirTransportError,
        OutcomeIssue,
        ResourceParseError,
    )
    from fhir_adapters.flavours import FLAVOURS, Flavour, flavour_from_capabilities, get_flavour
    from fhir_adapters.parsing import ParsedResources, RejectedResource, parse_many, parse_resource
    from fhir_adapters.retry import RetryPolicy, retry_after_seconds
    from fhir_adapters.search import DatePrefix, SearchQuery, build_params, date_param, token, token_any

# Where each public name lives. Imported on first use (PEP 562), so that a light module of the
# package (error_tree, errors, flavours) does not load the client, SMART auth (cryptography) and
# R4B parsing (fhir.resources) with it: a quarter of a second, paid by every CLI start.
_SOURCES: dict[str, str] = {
    "AuthProvider": "fhir_adapters.auth",
    "SmartBackendServices": "fhir_adapters.auth",
    "StaticBearer": "fhir_adapters.auth",
    "FhirClient": "fhir_adapters.client",
    "JsonDict": "fhir_adapters.client",
    "FhirAuthError": "fhir_adapters.errors",
    "FhirConflict": "fhir_adapters.errors",
    "FhirError": "fhir_adapters.errors",
    "FhirHttpError": "fhir_adapters.errors",
    "FhirInvalid": "fhir_adapters.errors",
    "FhirNotFound": "fhir_adapters.errors",
    "FhirOutcomeUnknown": "fhir_adapters.errors",
    "FhirProtocolError": "fhir_adapters.errors",
    "FhirRateLimited": "fhir_adapters.errors",
    "FhirServerError": "fhir_adapters.errors",
    "FhirTransportError": "fhir_adapters.errors",
    "OutcomeIssue": "fhir_adapters.errors",
    "ResourceParseError": "fhir_adapters.errors",
    "FLAVOURS": "fhir_adapters.flavours",
    "Flavour": "fhir_adapters.flavours",
    "flavour_from_capabilities": "fhir_adapters.flavours",
    "get_flavour": "fhir_adapters.flavours",
    "ParsedResources": "fhir_adapters.parsing",
    "RejectedResource": "fhir_adapters.parsing",
    "parse_many": "fhir_adapters.parsing",
    "parse_resource": "fhir_adapters.parsing",
    "RetryPolicy": "fhir_adapters.retry",
    "retry_after_seconds": "fhir_adapters.retry",
    "DatePrefix": "fhir_adapters.search",
    "SearchQuery": "fhir_adapters.search",
    "build_params": "fhir_adapters.search",
    "date_param": "fhir_adapters.search",
    "token": "fhir_adapters.search",
    "token_any": "fhir_adapters.search",
}

__all__ = [
    "FLAVOURS",
    "AuthProvider",
    "DatePrefix",
    "FhirAuthError",
    "FhirClient",
    "FhirConflict",
    "FhirError",
    "FhirHttpError",
    "FhirInvalid",
    "FhirNotFound",
    "FhirOutcomeUnknown",
    "FhirProtocolError",
    "FhirRateLimited",
    "FhirServerError",
    "FhirTransportError",
    "Flavour",
    "JsonDict",
    "OutcomeIssue",
    "ParsedResources",
    "RejectedResource",
    "ResourceParseError",
    "RetryPolicy",
    "SearchQuery",
    "SmartBackendServices",
    "StaticBearer",
    "build_params",
    "date_param",
    "flavour_from_capabilities",
    "get_flavour",
    "parse_many",
    "parse_resource",
    "retry_after_seconds",
    "token",
    "token_any",
]


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
