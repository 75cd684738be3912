"""`chartagent stack up|down|status`: the embedded servers as one unit.

The same code starts the servers of the test fixtures (on free ports of their own), so tests
pass while a demo stack is running.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import BaseModel

from agent.stack.fhir_server import FhirServer, FhirServerSpec
from agent.stack.ports import preferred_or_free
from agent.stack.process import StackError
from agent.stack.state import ServiceState, StackState

DEFAULT_FHIR_PORT = 8090


class ServiceStatus(BaseModel):
    url: str | None
    pid: int | None
    running: bool
    healthy: bool


class StackStatus(BaseModel):
    fhir: ServiceStatus

    def urls(self) -> dict[str, str]:
        """The `status --json` payload: base URLs of the services that answer."""
        return {"fhir": self.fhir.url} if self.fhir.url and self.fhir.healthy else {}


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/metadata", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


def status(state_dir: Path) -> StackStatus:
    state = StackState.load(state_dir)
    if state.fhir is None:
        return StackStatus(fhir=ServiceStatus(url=None, pid=None, running=False, healthy=False))
    server = FhirServer(state.fhir.spec, state.fhir.pid)
    running = server.alive()
    return StackStatus(
        fhir=ServiceStatus(
            url=server.base_url,
            pid=state.fhir.pid,
            running=running,
            healthy=running and _healthy(server.base_url),
        )
    )


def up(state_dir: Path, *, fhir_port: int | None = None) -> StackStatus:
    """Start what is not running yet; a healthy stack is left as it is."""
    current = status(state_dir)
    if current.fhir.healthy:
        return current
    state = StackState.load(state_dir)
    if state.fhir is not None:
        # A stale or unhealthy server on our storage must be gone before a new one opens it.
        FhirServer(state.fhir.spec, state.fhir.pid).stop()
    spec = FhirServerSpec(
        port=fhir_port or preferred_or_free(DEFAULT_FHIR_PORT),
        state_dir=state_dir / "fhir",
    )
    server = FhirServer(spec)
    try:
        server.start()
    except StackError:
        server.stop()
        raise
    assert server.pid is not None
    StackState(fhir=ServiceState(pid=server.pid, spec=spec)).save(state_dir)
    return status(state_dir)


def down(state_dir: Path) -> None:
    state = StackState.load(state_dir)
    if state.fhir is not None:
        FhirServer(state.fhir.spec, state.fhir.pid).stop()
    StackState().save(state_dir)


def current_fhir_url(state_dir: Path) -> str | None:
    """The running embedded stack's FHIR base URL, or None when it is not up."""
    st = status(state_dir)
    return st.fhir.url if st.fhir.healthy else None
