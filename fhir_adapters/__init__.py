"""Async FHIR R4 client, SMART Backend Services auth, server flavours, R4B parsing at the edge."""

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
