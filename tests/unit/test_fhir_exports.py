import fhir_adapters


def test_public_surface_is_deliberate() -> None:
    assert sorted(fhir_adapters.__all__) == sorted(
        [
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
    )
    for name in fhir_adapters.__all__:
        assert hasattr(fhir_adapters, name), name


def test_every_error_is_a_fhir_error() -> None:
    for name in fhir_adapters.__all__:
        obj = getattr(fhir_adapters, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, fhir_adapters.FhirError), name
