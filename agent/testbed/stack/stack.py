"""`chartagent stack up|down|status`: the embedded servers (FHIR, Orthanc) as one unit.

The same code starts the servers of the test fixtures (on free ports of their own), so tests
pass while a demo stack is running.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from agent.testbed.stack.fhir_server import FhirServer, FhirServerSpec
from agent.testbed.stack.orthanc import OrthancServer, OrthancSpec
from agent.testbed.stack.ports import preferred_or_free
from agent.testbed.stack.process import StackError
from agent.testbed.stack.state import OrthancState, ServiceState, StackState

DEFAULT_FHIR_PORT = 8090
DEFAULT_ORTHANC_PORT = 8042


class ServiceStatus(BaseModel):
    url: str | None
    pid: int | None
    running: bool
    healthy: bool


_DOWN = ServiceStatus(url=None, pid=None, running=False, healthy=False)


class StackStatus(BaseModel):
    fhir: ServiceStatus
    dicomweb: ServiceStatus = _DOWN

    @property
    def healthy(self) -> bool:
        return self.fhir.healthy and self.dicomweb.healthy

    def urls(self) -> dict[str, str]:
        """The `status --json` payload: base URLs of the services that answer."""
        services = {"fhir": self.fhir, "dicomweb": self.dicomweb}
        return {name: s.url for name, s in services.items() if s.url and s.healthy}


def _healthy(url: str) -> bool:
    import httpx  # here: `stack status` of a stack that is not running needs no HTTP client

    try:
        return httpx.get(f"{url}/metadata", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


def _fhir_status(state: StackState) -> ServiceStatus:
    if state.fhir is None:
        return _DOWN
    server = FhirServer(state.fhir.spec, state.fhir.pid)
    running = server.alive()
    return ServiceStatus(
        url=server.base_url,
        pid=state.fhir.pid,
        running=running,
        healthy=running and _healthy(server.base_url),
    )


def _orthanc_status(state: StackState) -> ServiceStatus:
    if state.orthanc is None:
        return _DOWN
    server = OrthancServer(state.orthanc.spec, state.orthanc.pid)
    running = server.alive()
    return ServiceStatus(
        url=server.dicomweb_url, pid=state.orthanc.pid, running=running, healthy=running and server.healthy()
    )


def status(state_dir: Path) -> StackStatus:
    state = StackState.load(state_dir)
    return StackStatus(fhir=_fhir_status(state), dicomweb=_orthanc_status(state))


def up(state_dir: Path, *, fhir_port: int | None = None, orthanc_port: int | None = None) -> StackStatus:
    """Start what is not running or not healthy; healthy servers are left as they are."""
    current = status(state_dir)
    state = StackState.load(state_dir)
    if not current.fhir.healthy:
        state = state.model_copy(update={"fhir": _start_fhir(state, state_dir, fhir_port)})
        state.save(state_dir)
    if not current.dicomweb.healthy:
        state = state.model_copy(update={"orthanc": _start_orthanc(state, state_dir, orthanc_port)})
        state.save(state_dir)
    return status(state_dir)


def _start_fhir(state: StackState, state_dir: Path, port: int | None) -> ServiceState:
    if state.fhir is not None:
        # A stale or unhealthy server on our storage must be gone before a new one opens it.
        FhirServer(state.fhir.spec, state.fhir.pid).stop()
    spec = FhirServerSpec(port=port or preferred_or_free(DEFAULT_FHIR_PORT), state_dir=state_dir / "fhir")
    server = FhirServer(spec)
    try:
        server.start()
    except StackError:
        server.stop()
        raise
    assert server.pid is not None
    return ServiceState(pid=server.pid, spec=spec)


def _start_orthanc(state: StackState, state_dir: Path, port: int | None) -> OrthancState:
    if state.orthanc is not None:
        OrthancServer(state.orthanc.spec, state.orthanc.pid).stop()  # waits for it to exit
    # A system Orthanc (Debian's service) may hold 8042: then ours takes a free port.
    spec = OrthancSpec(port=port or preferred_or_free(DEFAULT_ORTHANC_PORT), state_dir=state_dir / "orthanc")
    server = OrthancServer(spec)
    try:
        server.start()
    except StackError:
        server.stop()
        raise
    assert server.pid is not None
    return OrthancState(pid=server.pid, spec=spec)


def down(state_dir: Path) -> None:
    state = StackState.load(state_dir)
    if state.fhir is not None:
        FhirServer(state.fhir.spec, state.fhir.pid).stop()
    if state.orthanc is not None:
        OrthancServer(state.orthanc.spec, state.orthanc.pid).stop()
    StackState().save(state_dir)


def current_fhir_url(state_dir: Path) -> str | None:
    """The running embedded stack's FHIR base URL, or None when it is not up."""
    st = status(state_dir)
    return st.fhir.url if st.fhir.healthy else None


def current_dicomweb_url(state_dir: Path) -> str | None:
    """The running embedded stack's DICOMweb base URL, or None when Orthanc is not up."""
    st = status(state_dir)
    return st.dicomweb.url if st.dicomweb.healthy else None
