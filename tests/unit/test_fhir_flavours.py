import pytest

from fhir_adapters.errors import FhirProtocolError
from fhir_adapters.flavours import (
    AZURE,
    CERNER,
    EPIC,
    GENERIC,
    HAPI,
    SEKMET,
    flavour_from_capabilities,
    get_flavour,
)

BASE = "https://ehr.example/fhir"


def test_explicit_selection_by_name() -> None:
    assert get_flavour("Epic") is EPIC
    with pytest.raises(ValueError, match="known"):
        get_flavour("nope")


@pytest.mark.parametrize(
    ("software", "flavour"),
    [
        ("HAPI FHIR Server", HAPI),
        ("SEKMET FHIR R4 Tester", SEKMET),
        ("Epic", EPIC),
        ("Cerner Millennium", CERNER),
        ("Microsoft FHIR Server", AZURE),
        ("Something else", GENERIC),
    ],
)
def test_detection_from_capability_statement(software: str, flavour: object) -> None:
    assert (
        flavour_from_capabilities({"resourceType": "CapabilityStatement", "software": {"name": software}})
        is flavour
    )
    assert flavour_from_capabilities({}) is GENERIC


def test_epic_observation_search_is_split_by_category() -> None:
    searches = EPIC.expand_search("Observation", [("patient", "p")])
    assert [s[-1] for s in searches] == [
        ("category", c) for c in ("laboratory", "vital-signs", "social-history")
    ]
    assert EPIC.expand_search("Observation", [("patient", "p"), ("category", "laboratory")]) == [
        [("patient", "p"), ("category", "laboratory")]
    ]
    assert EPIC.expand_search("Condition", [("patient", "p")]) == [[("patient", "p")]]
    assert GENERIC.expand_search("Observation", [("patient", "p")]) == [[("patient", "p")]]


def test_count_clamped_to_server_maximum() -> None:
    assert EPIC.clamp_count(1000) == 100
    assert GENERIC.clamp_count(1000) == 1000
    assert SEKMET.clamp_count(None) is None
    assert not EPIC.supports_everything
    assert not CERNER.supports_everything
    assert HAPI.supports_everything


def test_same_origin_and_relative_links_are_followed() -> None:
    assert GENERIC.resolve_link(f"{BASE}/Observation?_page=2", BASE) == f"{BASE}/Observation?_page=2"
    assert GENERIC.resolve_link("https://EHR.example:443/fhir/x", BASE) == "https://EHR.example:443/fhir/x"
    assert GENERIC.resolve_link("/fhir/Observation?p=2", BASE) == f"{BASE}/Observation?p=2"
    assert GENERIC.resolve_link("Observation?p=2", BASE) == f"{BASE}/Observation?p=2"


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/fhir/Observation?page=2",
        "http://ehr.example/fhir/Observation?page=2",  # downgrade to plain http
        "https://ehr.example:8443/fhir/Observation",
        "//evil.example/fhir/Observation",
    ],
)
def test_cross_origin_links_are_refused(link: str) -> None:
    with pytest.raises(FhirProtocolError, match="another origin"):
        GENERIC.resolve_link(link, BASE)


def test_sekmet_rewrites_loopback_aliases_only() -> None:
    base = "http://127.0.0.1:41234/fhir"
    assert SEKMET.resolve_link("http://localhost:8090/fhir/Observation?_offset=10", base) == (
        "http://127.0.0.1:41234/fhir/Observation?_offset=10"
    )
    with pytest.raises(FhirProtocolError):
        SEKMET.resolve_link("http://evil.example/fhir/Observation", base)
    with pytest.raises(FhirProtocolError):  # other path on loopback: not this server's link
        SEKMET.resolve_link("http://localhost:8090/other/Observation", base)
    with pytest.raises(FhirProtocolError):  # generic servers never rewrite
        GENERIC.resolve_link("http://localhost:8090/fhir/Observation", base)
