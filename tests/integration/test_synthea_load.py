"""The 12 SMART Health IT Synthea bundles: idempotent conversion (pure) and loading (integration)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.testbed.datasets.synthea import bundle_files, load_synthea, to_idempotent
from fhir_adapters import FhirClient


@pytest.fixture(scope="module")
def synthea_dir(shared_data_dir: Path) -> Path:
    return shared_data_dir / "synthea-r4"


@pytest.fixture(scope="module")
def bundles(synthea_dir: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_bytes()) for p in bundle_files(synthea_dir)}


def distinct_counts(bundles: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Resources per type across all files; a shared Organization/Practitioner counts once."""
    keys = {
        (e["resource"]["resourceType"], e["resource"]["id"]) for b in bundles.values() for e in b["entry"]
    }
    return dict(sorted(Counter(t for t, _ in keys).items()))


# ---------------------------------------------------------------- pure


def test_twelve_bundles_of_posts_with_urn_uuids(bundles: dict[str, dict[str, Any]]) -> None:
    assert len(bundles) == 12
    for b in bundles.values():
        assert b["type"] == "transaction"
        assert {e["request"]["method"] for e in b["entry"]} == {"POST"}


def test_to_idempotent_puts_at_ids_and_rewrites_every_urn_reference(
    bundles: dict[str, dict[str, Any]],
) -> None:
    original = next(iter(bundles.values()))
    before = json.dumps(original)
    converted = to_idempotent(original)
    assert json.dumps(original) == before  # pure: the input is untouched
    assert len(converted["entry"]) == len(original["entry"])
    for entry in converted["entry"]:
        res = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}
    text = json.dumps(converted)
    assert "urn:uuid:" not in text
    patient = next(e["resource"] for e in converted["entry"] if e["resource"]["resourceType"] == "Patient")
    obs = next(e["resource"] for e in converted["entry"] if e["resource"]["resourceType"] == "Observation")
    assert obs["subject"]["reference"] == f"Patient/{patient['id']}"
    assert obs["encounter"]["reference"].startswith("Encounter/")


def test_to_idempotent_keeps_contained_and_foreign_references() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:c1",
                "resource": {
                    "resourceType": "Claim",
                    "id": "c1",
                    "referral": {"reference": "#referral"},
                    "patient": {"reference": "urn:uuid:elsewhere"},
                },
                "request": {"method": "POST", "url": "Claim"},
            }
        ],
    }
    res = to_idempotent(bundle)["entry"][0]["resource"]
    assert res["referral"] == {"reference": "#referral"}
    assert res["patient"] == {"reference": "urn:uuid:elsewhere"}  # left for the server to refuse


# ---------------------------------------------------------------- against the server


@pytest.fixture(scope="module")
def synthea_server(fhir_server_factory: Callable[..., str]) -> str:
    # ~4,700 resources: a server of their own keeps the shared one small and its counts exact here.
    return fhir_server_factory()


def server_count(base_url: str, rtype: str) -> int:
    total = httpx.get(f"{base_url}/{rtype}", params={"_summary": "count"}, timeout=60).json()["total"]
    assert isinstance(total, int)
    return total


@pytest.mark.integration
async def test_all_bundles_load_and_reload_changes_nothing(
    synthea_server: str, synthea_dir: Path, bundles: dict[str, dict[str, Any]]
) -> None:
    expected = distinct_counts(bundles)
    async with FhirClient(synthea_server, timeout=120) as client:
        first = await load_synthea(client, synthea_dir)
        # Strict R4B validation on the server accepts every resource of these files.
        assert first.rejected == []
        assert first.bundles == 12
        assert first.created == sum(expected.values())
        counts = {t: server_count(synthea_server, t) for t in expected}
        assert counts == expected
        assert counts["Patient"] == 12
        assert counts["Observation"] == 2802

        second = await load_synthea(client, synthea_dir)
        assert (second.created, second.bundles, second.rejected) == (0, 12, [])
        assert {t: server_count(synthea_server, t) for t in expected} == expected

        # References were rewritten to Type/id, so a patient's compartment search finds its labs.
        name, bundle = next(iter(bundles.items()))
        patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        observations = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
        found = await client.search("Observation", [("patient", patient["id"])], count=1000)
        assert len(found) == len(observations), name


@pytest.mark.integration
async def test_invalid_resources_and_refused_bundles_are_reported_not_fatal(
    fhir_server_factory: Callable[..., str], synthea_dir: Path, tmp_path: Path
) -> None:
    files = bundle_files(synthea_dir)[:2]
    good = json.loads(files[0].read_bytes())
    bad_obs = next(e["resource"] for e in good["entry"] if e["resource"]["resourceType"] == "Observation")
    bad_obs["effectiveDateTime"] = "yesterday"  # fails R4B validation
    (tmp_path / "a_invalid_resource.json").write_text(json.dumps(good))
    refused = json.loads(files[1].read_bytes())
    # A reference to a urn:uuid that is not in the bundle: the server refuses the transaction.
    claim = next(e["resource"] for e in refused["entry"] if e["resource"]["resourceType"] == "Claim")
    claim["patient"] = {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}
    (tmp_path / "b_refused.json").write_text(json.dumps(refused))
    shutil.copy(synthea_dir / "README.md", tmp_path / "README.md")  # not a bundle: ignored

    base_url = fhir_server_factory()
    async with FhirClient(base_url, timeout=120) as client:
        report = await load_synthea(client, tmp_path)
    assert report.bundles == 1
    assert [(r.source, r.resource) for r in report.rejected] == [
        ("a_invalid_resource.json", f"Observation/{bad_obs['id']}"),
        ("b_refused.json", "Bundle"),
    ]
    assert "effectiveDateTime" in report.rejected[0].reason
    assert (
        server_count(base_url, "Observation")
        == sum(e["resource"]["resourceType"] == "Observation" for e in good["entry"]) - 1
    )
    assert server_count(base_url, "Patient") == 1
