"""The embedded FHIR server: sekmet-fhir (FastAPI + SQLite, FHIR R4) as a loopback process.

sekmet builds Location headers and paging links from its configured base URL, so the
config always carries the real host and port.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.testbed.stack.process import SpawnedServer

Validation = Literal["strict", "warn", "off"]
AuthType = Literal["none", "basic", "bearer", "smart"]


class SmartClientSpec(BaseModel):
    """A SMART Backend Services client registered at the embedded server's token endpoint."""

    client_id: str
    jwks: dict[str, Any]
    scopes: str = "system/*.*"


class FhirServerSpec(BaseModel):
    host: str = "127.0.0.1"
    port: int
    state_dir: Path
    validation: Validation = "strict"
    auth_types: list[AuthType] = Field(default_factory=lambda: list[AuthType](["none"]))
    static_tokens: list[str] = Field(default_factory=list)
    smart_clients: list[SmartClientSpec] = Field(default_factory=list)
    token_lifetime_s: int = 3600

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/fhir"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "settings.json"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "server.log"


def sekmet_config(spec: FhirServerSpec) -> dict[str, Any]:
    return {
        "base_url": spec.base_url,
        "host": spec.host,
        "port": spec.port,
        "data_dir": str(spec.state_dir.resolve() / "data"),
        "own_private_key_path": str(spec.state_dir.resolve() / "keys" / "sekmet_private.pem"),
        # The traffic log would keep every request body (patient data) in the database.
        "log_inbound": False,
        # No simulated lab/RIS answering orders behind our back.
        "simulator": {"enabled": False},
        "validation": {"inbound": spec.validation},
        "server_auth": {
            "types": list(spec.auth_types),
            "tokens": list(spec.static_tokens),
            "smart_clients": [
                {"client_id": c.client_id, "jwks": c.jwks, "scopes": c.scopes} for c in spec.smart_clients
            ],
            "token_lifetime": spec.token_lifetime_s,
            "enforce_scopes": True,
        },
    }


class FhirServer(SpawnedServer):
    """A running (or startable) embedded FHIR server."""

    def __init__(self, spec: FhirServerSpec, pid: int | None = None) -> None:
        self.spec = spec
        self.pid = pid

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    def start(self, *, timeout_s: float = 60.0) -> None:
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        # sekmet reads YAML; JSON is YAML.
        self.spec.config_path.write_text(json.dumps(sekmet_config(self.spec), indent=2))
        argv = [
            sys.executable, "-m", "uvicorn", "sekmet.main:app_factory", "--factory",
            "--host", self.spec.host, "--port", str(self.spec.port),
            # Access logs would write search URLs (names, birth dates) to disk.
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        self.launch(
            argv,
            cwd=self.spec.state_dir,
            log_path=self.spec.log_path,
            env={"SEKMET_CONFIG": str(self.spec.config_path.resolve())},
            health_url=f"{self.base_url}/metadata",
            what="FHIR server (sekmet)",
            timeout_s=timeout_s,
        )
