"""`chartagent stack up|down|status`: the embedded servers (FHIR, Orthanc, the EHR stand-in in
front of FHIR, and the ChartAgent service it launches) as one unit.

The same code starts the servers of the test fixtures (on free ports of their own), so tests
pass while a demo stack is running.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

from agent.testbed.stack.app_server import AppServer, AppServerSpec, app_environment
from agent.testbed.stack.ehr_server import EhrServer, ehr_config
from agent.testbed.stack.fhir_server import FhirServer, FhirServerSpec
from agent.testbed.stack.orthanc import OrthancServer, OrthancSpec
from agent.testbed.stack.ports import preferred_or_free
from agent.testbed.stack.process import StackError, pid_alive
from agent.testbed.stack.state import AppState, EhrProcessState, OrthancState, ServiceState, StackState

DEFAULT_FHIR_PORT = 8090
DEFAULT_ORTHANC_PORT = 8042
DEFAULT_EHR_PORT = 8095
DEFAULT_APP_PORT = 8100


class ServiceStatus(BaseModel):
    url: str | None
    pid: int | None
    running: bool
    healthy: bool


_DOWN = ServiceStatus(url=None, pid=None, running=False, healthy=False)


class StackStatus(BaseModel):
    fhir: ServiceStatus
    dicomweb: ServiceStatus = _DOWN
    # The EHR stand-in (its base URL; SMART `iss` is {ehr}/fhir) and the ChartAgent service.
    ehr: ServiceStatus = _DOWN
    app: ServiceStatus = _DOWN

    @property
    def healthy(self) -> bool:
        return self.fhir.healthy and self.dicomweb.healthy and self.ehr.healthy and self.app.healthy

    def urls(self) -> dict[str, str]:
        """The `status --json` payload: base URLs of the services that answer."""
        services = {"fhir": self.fhir, "dicomweb": self.dicomweb, "app": self.app, "ehr": self.ehr}
        return {name: s.url for name, s in services.items() if s.url and s.healthy}


def _healthy(url: str, probe: str = "/metadata") -> bool:
    import httpx  # here: `stack status` of a stack that is not running needs no HTTP client

    try:
        return httpx.get(f"{url}{probe}", timeout=3.0).status_code == 200
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


def _process_status(pid: int | None, url: str | None) -> ServiceStatus:
    if pid is None or url is None:
        return _DOWN
    running = pid_alive(pid)
    return ServiceStatus(url=url, pid=pid, running=running, healthy=running and _healthy(url, "/healthz"))


def status(state_dir: Path) -> StackStatus:
    state = StackState.load(state_dir)
    return StackStatus(
        fhir=_fhir_status(state),
        dicomweb=_orthanc_status(state),
        ehr=_process_status(state.ehr.pid, state.ehr.base_url) if state.ehr else _DOWN,
        app=_process_status(state.app.pid, state.app.spec.base_url) if state.app else _DOWN,
    )


def up(
    state_dir: Path,
    *,
    fhir_port: int | None = None,
    orthanc_port: int | None = None,
    ehr_port: int | None = None,
    app_port: int | None = None,
) -> StackStatus:
    """Start what is not running or not healthy; healthy servers are left as they are.

    A restarted FHIR server or PACS restarts the stand-in and the service too (they hold its URL).
    """
    current = status(state_dir)
    state = StackState.load(state_dir)
    if not current.fhir.healthy:
        state = state.model_copy(update={"fhir": _start_fhir(state, state_dir, fhir_port)})
        state.save(state_dir)
    if not current.dicomweb.healthy:
        state = state.model_copy(update={"orthanc": _start_orthanc(state, state_dir, orthanc_port)})
        state.save(state_dir)
    backends_kept = current.fhir.healthy and current.dicomweb.healthy
    if not (backends_kept and current.ehr.healthy and current.app.healthy):
        # The stand-in's config names the app's URL and the app's settings the stand-in's secret:
        # the two start together. Unless given, on their ports of before when free (launcher links
        # and bookmarks keep working).
        old_ehr = urlsplit(state.ehr.base_url).port if state.ehr is not None else None
        old_app = state.app.spec.port if state.app is not None else None
        state = _stop_front(state)
        state.save(state_dir)
        state = _start_front(
            state,
            state_dir,
            ehr_port=ehr_port or preferred_or_free(old_ehr or DEFAULT_EHR_PORT),
            app_port=app_port or preferred_or_free(old_app or DEFAULT_APP_PORT),
        )
        state.save(state_dir)
    return status(state_dir)


def _stop_front(state: StackState) -> StackState:
    if state.app is not None:
        AppServer(state.app.spec, state.app.pid).stop()
    if state.ehr is not None:
        EhrServer(state.ehr.state_dir, state.ehr.pid).stop()
    return state.model_copy(update={"app": None, "ehr": None})


def _start_front(state: StackState, state_dir: Path, *, ehr_port: int, app_port: int) -> StackState:
    if state.fhir is None or state.orthanc is None:
        raise StackError("the EHR stand-in and the service need FHIR and Orthanc running")
    fhir_url, dicomweb_url = state.fhir.spec.base_url, OrthancServer(state.orthanc.spec).dicomweb_url
    app_spec = AppServerSpec(port=app_port, state_dir=state_dir / "app")
    config = ehr_config(
        port=ehr_port,
        state_dir=(state_dir / "ehr").resolve(),
        upstream_fhir_url=fhir_url,
        app_url=app_spec.base_url,
    )
    ehr = EhrServer(config.state_dir)
    try:
        ehr.start(config)
    except StackError:
        ehr.stop()
        raise
    assert ehr.pid is not None
    state = state.model_copy(
        update={"ehr": EhrProcessState(pid=ehr.pid, state_dir=config.state_dir, base_url=config.base_url)}
    )
    app = AppServer(app_spec)
    env = app_environment(config, state_dir=state_dir, fhir_url=fhir_url, dicomweb_url=dicomweb_url)
    try:
        app.start(env)
    except StackError:
        app.stop()
        ehr.stop()
        raise
    assert app.pid is not None
    return state.model_copy(update={"app": AppState(pid=app.pid, spec=app_spec)})


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
    state = _stop_front(StackState.load(state_dir))
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
