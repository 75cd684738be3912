"""The settings each deployment hands ChartAgent are accepted by ChartAgent itself: the Helm
chart's ConfigMap and literal env per profile, and the compose file's resolved environment,
loaded through `load_settings` and the model configuration check (which refuse, for example,
plain http to a FHIR or model server outside the local environment)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import compose
import helm_python as helm
import pytest
import yaml

from agent.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from tools.medgemma.config import ModelConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHART = DEPLOY / "helm" / "chartagent"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"

# What the Secrets would hold: shapes the settings accept, no real material.
SECRET_VALUES = {
    "CHARTAGENT_SERVICE_KEYS": json.dumps({"scheduler": {"key": "k" * 40, "scopes": "system/*.rs"}}),
    "CHARTAGENT_MODEL_API_KEY": "placeholder-model-key",
    "CHARTAGENT_CHECKPOINT_URL": "postgresql://chartagent@postgres.example.org:5432/chartagent",
    "CHARTAGENT_APP_SESSION_KEY": "A" * 43 + "=",  # the shape of 32 bytes in base64
}


def load_under(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    ModelConfig.from_settings(settings)  # raises ModelConfigurationError on a refused model URL
    return settings


def chart_env(profile: str) -> dict[str, str]:
    """The API container's environment as the chart renders it: ConfigMap, literals, Secrets."""
    values = None if profile == "values.yaml" else helm.values_from_yaml((CHART / profile).read_text())
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="chartagent", namespace="chartagent")
    texts = [text for name, text in rendered.items() if name.endswith(".yaml")]
    docs = [doc for text in texts for doc in yaml.safe_load_all(text) if doc]
    env: dict[str, str] = {}
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            env.update(doc["data"])
    api = next(d for d in docs if d.get("kind") == "Deployment" and d["metadata"]["name"].endswith("-api"))
    for item in api["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = SECRET_VALUES[item["name"]]
    return env


@pytest.mark.parametrize("profile", ["values.yaml", "values-gpu.yaml", "values-production.yaml"])
def test_chart_settings_load(monkeypatch: pytest.MonkeyPatch, profile: str) -> None:
    settings = load_under(monkeypatch, chart_env(profile))
    assert settings.fhir_url is not None
    assert settings.fhir_url.startswith("https://")
    assert settings.temporal_address
    if profile == "values-production.yaml":
        assert settings.environment == "production"
        assert settings.smart_private_key is not None
        assert settings.checkpoint_url == SECRET_VALUES["CHARTAGENT_CHECKPOINT_URL"]
        assert settings.service_keys["scheduler"].scopes == "system/*.rs"
        assert settings.app_session_key is not None  # sessions shared by the replicas
    if profile == "values-gpu.yaml":
        assert settings.model_backend == "openai"


def compose_environment() -> dict[str, Any]:
    result = subprocess.run(
        [str(COMPOSE_BINARY), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "IMAGE_REGISTRY": "IMAGE_REGISTRY"},
        timeout=60,
        check=True,
    )
    environment: dict[str, Any] = json.loads(result.stdout)["services"]["chartagent-api"]["environment"]
    return environment


def test_compose_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {name: value or "" for name, value in compose_environment().items()}
    # The secret files the entrypoint turns into variables.
    env |= {name: SECRET_VALUES[name] for name in ("CHARTAGENT_SERVICE_KEYS", "CHARTAGENT_MODEL_API_KEY")}
    settings = load_under(monkeypatch, env)
    assert settings.environment == "local"  # plain http on the stack's private network
    assert settings.model_url == "http://vllm:8000/v1"
    assert settings.checkpoint_url == "postgresql://chartagent@postgres:5432/chartagent"


def test_compose_settings_outside_local_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check above can fail: the same stack as staging is refused (http to FHIR off the host).
    env = {name: value or "" for name, value in compose_environment().items()}
    env["CHARTAGENT_ENVIRONMENT"] = "staging"
    with pytest.raises(SettingsError, match="CHARTAGENT_FHIR_URL: must be https://"):
        load_under(monkeypatch, env)
