"""The EHR stand-in (`agent.testbed.ehr`) as a loopback process of the embedded stack."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from agent.testbed.stack.process import SpawnedServer

if TYPE_CHECKING:
    from agent.testbed.ehr.config import EhrConfig

CONFIG_FILE = "ehr.json"


def ehr_config(
    *,
    port: int,
    state_dir: Path,
    upstream_fhir_url: str,
    app_url: str,
    access_token_lifetime_s: int = 3600,
) -> EhrConfig:
    """A stand-in in front of `upstream_fhir_url` that launches the app at `app_url`, with the
    default clients (`config.default_clients`) and fresh secrets."""
    # Here, as `config` below: `stack status` imports this module and reads no configuration.
    from agent.testbed.ehr.config import EhrConfig, default_clients

    return EhrConfig(
        port=port,
        upstream_fhir_url=upstream_fhir_url.rstrip("/"),
        app_url=app_url.rstrip("/"),
        state_dir=state_dir,
        access_token_lifetime_s=access_token_lifetime_s,
        clients=default_clients(
            app_url, SecretStr(secrets.token_urlsafe(32)), SecretStr(secrets.token_urlsafe(32))
        ),
    )


class EhrServer(SpawnedServer):
    """A running (or startable) stand-in; its config file lives in its state dir (0600)."""

    def __init__(self, state_dir: Path, pid: int | None = None) -> None:
        self.state_dir = state_dir
        self.pid = pid

    @property
    def config_path(self) -> Path:
        return self.state_dir / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.state_dir / "ehr.log"

    def config(self) -> EhrConfig:
        from agent.testbed.ehr.config import EhrConfig

        return EhrConfig.load(self.config_path)

    def start(self, config: EhrConfig, *, timeout_s: float = 30.0) -> None:
        config.save(self.config_path)
        argv = [sys.executable, "-m", "agent.testbed.ehr", "--config", str(self.config_path.resolve())]
        self.launch(
            argv,
            cwd=self.state_dir,
            log_path=self.log_path,
            health_url=f"{config.base_url}/healthz",
            what="EHR stand-in",
            timeout_s=timeout_s,
        )
