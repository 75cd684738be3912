"""The container images' recipes (deploy/docker): static checks of the Dockerfiles, and the
entrypoint that turns secret files into settings, run with /bin/sh."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DOCKERFILES = [DEPLOY / "docker" / "Dockerfile", DEPLOY / "docker" / "Dockerfile.cuda"]
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"


def registry_host(image: str) -> str | None:
    """Docker's rule: the first path part is a registry host when it has a dot or a port, or is localhost."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_the_service_as_a_non_root_user(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'CMD ["chartagent", "serve", "--host", "0.0.0.0", "--port", "8100"]' in text
    assert 'ENTRYPOINT ["tini", "--", "chartagent-entrypoint"]' in text
    assert "libopenslide0" in text
    assert "orthanc" not in text.lower().replace("no orthanc", "")
    extras = re.search(r"pip install '\.\[([a-z,]+)\]'", text)
    assert extras is not None
    assert ("gpu" in extras.group(1).split(",")) == dockerfile.name.endswith(".cuda")
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text()
    assert ignore.splitlines()[2:4] == ["*", "!pyproject.toml"]  # everything out unless named


def test_no_registry_host_is_named_anywhere() -> None:
    images = [
        arg.split("=", 1)[1]
        for dockerfile in DOCKERFILES
        for arg in re.findall(r"^ARG \w+_IMAGE=\S+$", dockerfile.read_text(), re.MULTILINE)
    ]
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    # compose names the registry by a variable that must be set: ${IMAGE_REGISTRY:?...}/chartagent
    images += [
        re.sub(r"^\$\{IMAGE_REGISTRY[^}]*\}", "IMAGE_REGISTRY", service["image"])
        for service in compose["services"].values()
    ]
    chart = DEPLOY / "helm" / "chartagent"
    for values_file in chart.glob("values*.yaml"):
        values = yaml.safe_load(values_file.read_text())
        for part in (values.get("image"), (values.get("vllm") or {}).get("image")):
            if part and "repository" in part:
                images.append(part["repository"])
    assert len(images) >= 10
    assert [image for image in images if registry_host(image)] == []
    assert registry_host("registry.example.org/chartagent") == "registry.example.org"  # the rule bites


def run_entrypoint(secrets: Path, command: str, **env: str) -> str:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", command],
        env={"PATH": "/usr/bin:/bin", "CHARTAGENT_SECRETS_DIR": str(secrets), **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout


def test_entrypoint_turns_secret_files_into_settings(tmp_path: Path) -> None:
    (tmp_path / "CHARTAGENT_MODEL_API_KEY").write_text("model-key-value\n")
    (tmp_path / "PGPASSWORD").write_text("from-file")
    (tmp_path / "smart_private_key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "not-a-NAME").write_text("x")
    out = run_entrypoint(
        tmp_path,
        'printf "%s|%s|%s" "$CHARTAGENT_MODEL_API_KEY" "$PGPASSWORD" "$(env | grep -c -e PRIVATE -e not-a)"',
        PGPASSWORD="set-by-the-operator",
    )
    # The trailing newline is dropped; a variable already set wins; other files stay files.
    assert out == "model-key-value|set-by-the-operator|0"


def test_entrypoint_without_secrets_runs_the_command(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path / "absent", "echo ran") == "ran\n"
