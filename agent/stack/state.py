"""The embedded stack's state file: what runs where, so `status` and `down` find it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from agent.stack.fhir_server import FhirServerSpec

STATE_FILE = "stack.json"


class ServiceState(BaseModel):
    pid: int
    spec: FhirServerSpec


class StackState(BaseModel):
    fhir: ServiceState | None = None

    @classmethod
    def load(cls, state_dir: Path) -> StackState:
        path = state_dir / STATE_FILE
        if not path.exists():
            return cls()
        return cls.model_validate_json(path.read_text())

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(state_dir / STATE_FILE)
