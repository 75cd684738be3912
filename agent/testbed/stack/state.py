"""The embedded stack's state file: what runs where, so `status` and `down` find it.

The file may hold the Orthanc password (when auth is on), so it is written 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from agent.testbed.stack.app_server import AppServerSpec
from agent.testbed.stack.fhir_server import FhirServerSpec
from agent.testbed.stack.orthanc import OrthancSpec

STATE_FILE = "stack.json"


class ServiceState(BaseModel):
    pid: int
    spec: FhirServerSpec


class OrthancState(BaseModel):
    pid: int
    spec: OrthancSpec


class EhrProcessState(BaseModel):
    pid: int
    # Its config (with the client secrets) is `ehr.json` in this folder, 0600.
    state_dir: Path
    base_url: str


class AppState(BaseModel):
    pid: int
    spec: AppServerSpec


class StackState(BaseModel):
    fhir: ServiceState | None = None
    # Absent in state files written before Orthanc joined the stack.
    orthanc: OrthancState | None = None
    # Absent before the EHR stand-in and the service joined the stack (issue 11).
    ehr: EhrProcessState | None = None
    app: AppState | None = None

    @classmethod
    def load(cls, state_dir: Path) -> StackState:
        path = state_dir / STATE_FILE
        if not path.exists():
            return cls()
        return cls.model_validate_json(path.read_text())

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / (STATE_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.model_dump_json(indent=2))
        tmp.replace(state_dir / STATE_FILE)
