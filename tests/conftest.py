"""Session fixtures: real servers on loopback, started by the same code as `chartagent stack up`.

Each test session runs its own servers on free ports, so tests pass while a demo stack runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.testbed.stack import FhirServer, FhirServerSpec, OrthancServer, OrthancSpec
from agent.testbed.stack.ports import free_port

# leak_guard (tests/leak_guard.py): every test's captured output is checked for tokens, keys and
# the seeded patients' names and birth dates. pytester: its positive control runs a leaking test.
pytest_plugins = ["pytester", "leak_guard"]

FhirServerFactory = Callable[..., str]
OrthancFactory = Callable[..., OrthancServer]


@pytest.fixture(scope="session", autouse=True)
def session_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ChartAgent's state (checkpoints, change marks, the job ledger) for this session and every
    process its tests start: a fresh folder, never the checkout's `.chartagent`, which holds the
    demo stack's (a `summarize --all` killed mid-run kept its checkpoints there). Tests that need
    their own set the variable themselves."""
    folder = tmp_path_factory.mktemp("chartagent-state")
    patch = pytest.MonkeyPatch()
    patch.setenv("CHARTAGENT_STATE_DIR", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def fhir_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServerFactory]:
    """Start a fresh embedded FHIR server; returns its base URL.

    Keyword arguments are `FhirServerSpec` fields: validation="strict"|"warn"|"off",
    auth_types=["smart"], static_tokens=[...], smart_clients=[{"client_id", "jwks", "scopes"}],
    token_lifetime_s.
    """
    servers: list[FhirServer] = []

    def start(**spec: Any) -> str:
        state_dir = tmp_path_factory.mktemp("fhir")
        server = FhirServer(FhirServerSpec(port=free_port(), state_dir=state_dir, **spec))
        servers.append(server)
        server.start()
        return server.base_url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def fhir_base_url(fhir_server_factory: FhirServerFactory) -> str:
    """A shared embedded FHIR server (strict validation, no auth). Use unique ids per test."""
    return fhir_server_factory()


@pytest.fixture(scope="session")
def orthanc_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancFactory]:
    """Start a fresh embedded Orthanc (DICOMweb at `.dicomweb_url`) on a free port.

    Keyword arguments are `OrthancSpec` fields, e.g. username="u", password=SecretStr("p"),
    dicom_port=free_port(). All are stopped at the end of the session.
    """
    servers: list[OrthancServer] = []

    def start(**spec: Any) -> OrthancServer:
        spec.setdefault("port", free_port())
        spec.setdefault("state_dir", tmp_path_factory.mktemp("orthanc"))
        server = OrthancServer(OrthancSpec(**spec))
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def dicomweb_base_url(orthanc_factory: OrthancFactory) -> str:
    """A shared embedded Orthanc's DICOMweb root (no auth). Store instances with fresh UIDs."""
    return orthanc_factory().dicomweb_url


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout (external benchmark data, read-only)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.fail(f"shared benchmark data not found at {path}")
    return path
