"""Start, health-check and stop a background server process on loopback.

Servers run in their own process group so that `stack up` can return while they keep
running, and `stack down` (or a test fixture) can end them with everything they spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from fhir_adapters.error_tree import ChartAgentError


class StackError(ChartAgentError):
    """A server of the embedded stack could not be started, reached or stopped."""


def spawn(
    argv: Sequence[str], *, cwd: Path, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


class SpawnedServer:
    """A server of the stack in a process group of its own: started, waited for, stopped whole."""

    pid: int | None = None

    def launch(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        log_path: Path,
        health_url: str,
        what: str,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
    ) -> None:
        proc = spawn(argv, cwd=cwd, log_path=log_path, env=env)
        self.pid = proc.pid
        wait_healthy(
            health_url,
            timeout_s=timeout_s,
            is_alive=lambda: proc.poll() is None,
            log_path=log_path,
            what=what,
        )

    def alive(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def stop(self) -> None:
        if self.pid is not None:
            stop_process_group(self.pid)
            self.pid = None


def wait_healthy(
    url: str,
    *,
    timeout_s: float,
    is_alive: Callable[[], bool],
    log_path: Path,
    what: str,
) -> None:
    """Poll `url` until it answers 200; fail early if the process died."""
    import httpx  # here: only a start polls; `stack status` of a stack that is not running needs none

    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not is_alive():
            raise StackError(f"{what} exited during start-up; see {log_path}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last_error = type(exc).__name__
        time.sleep(0.2)
    raise StackError(f"{what} did not become healthy within {timeout_s:.0f} s ({last_error}); see {log_path}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def stop_process_group(pid: int, *, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL what is left."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    raise StackError(f"process {pid} did not exit")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
