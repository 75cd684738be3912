"""The ChartAgent service (`chartagent serve`) as a loopback process of the embedded stack,
configured for the stand-in: the app client's id and secret, the stand-in as the SMART issuer and
as the trusted CDS Hooks client; the service's own (system) work goes to FHIR and Orthanc."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agent.testbed.stack.process import SpawnedServer

if TYPE_CHECKING:
    from agent.testbed.ehr.config import EhrConfig


class AppServerSpec(BaseModel):
    host: str = "127.0.0.1"
    port: int
    state_dir: Path

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "app.log"


def app_environment(
    ehr: EhrConfig, *, state_dir: Path, fhir_url: str, dicomweb_url: str | None
) -> dict[str, str]:
    """CHARTAGENT_* settings (agent.settings) of a service launched by the stand-in."""
    # Here: `stack status` imports this module and needs none of the stand-in's configuration.
    from agent.testbed.ehr.config import APP_CLIENT_ID

    client = ehr.client(APP_CLIENT_ID)
    if client is None or client.secret is None:
        raise ValueError("the stand-in's config has no confidential chartagent-app client")
    env = {
        # The stack's: checkpoints and chat threads live beside the servers' state.
        "CHARTAGENT_STATE_DIR": str(state_dir.resolve()),
        "CHARTAGENT_FHIR_URL": fhir_url,
        "CHARTAGENT_APP_CLIENT_ID": client.client_id,
        "CHARTAGENT_APP_CLIENT_SECRET": client.secret.get_secret_value(),
        "CHARTAGENT_APP_ISSUERS": ehr.fhir_url,
        "CHARTAGENT_APP_DEFAULT_ISSUER": ehr.fhir_url,
        "CHARTAGENT_CDS_TRUSTED_ISSUERS": json.dumps({ehr.base_url: f"{ehr.base_url}/auth/jwks"}),
    }
    if dicomweb_url is not None:
        env["CHARTAGENT_DICOMWEB_URL"] = dicomweb_url
    return env


class AppServer(SpawnedServer):
    def __init__(self, spec: AppServerSpec, pid: int | None = None) -> None:
        self.spec = spec
        self.pid = pid

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    def start(self, env: dict[str, str], *, timeout_s: float = 60.0) -> None:
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "agent",
            "serve",
            "--host",
            self.spec.host,
            "--port",
            str(self.spec.port),
        ]
        self.launch(
            argv,
            cwd=Path.cwd(),
            log_path=self.spec.log_path,
            env=env,
            health_url=f"{self.base_url}/healthz",
            what="ChartAgent service",
            timeout_s=timeout_s,
        )
