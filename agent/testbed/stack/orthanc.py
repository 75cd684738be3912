"""The embedded PACS: Debian's Orthanc with its DICOMweb, GDCM and WSI plugins, as a loopback process.

Orthanc 1.10 has no bind-address option: it listens on all interfaces. With
`RemoteAccessAllowed: false` it refuses every request that does not come from loopback, so
the server is reachable from this machine only. Before binding we check that the port is
free on every interface, and the health check compares the server's `Name` (a per-spec
random suffix) so that another Orthanc on the same port (a system service on 8042) is
never taken for ours.

Debian's civetweb (Orthanc's HTTP server) gives each worker thread 100 KiB of stack, and the
GDCM plugin's JPEG 2000 decoder needs more: decoding JPEG 2000 frames (WADO-RS frames in
another transfer syntax) overflows it and kills the whole server, the more often the more
frames per request. We preload a tiny shim (compiled with the system C compiler into the
state folder) that raises the worker threads' stacks to `worker_stack_kib`.

Logs: Orthanc logs warnings only without `--verbose`; `HttpVerbose` stays off (it would log
request URLs, i.e. QIDO query values) and `DeidentifyLogs` keeps patient tags out of the
messages Orthanc does write.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, Field, SecretStr, field_serializer, model_validator

from agent.testbed.stack.process import SpawnedServer, StackError, pid_alive, spawn

__all__ = ["ORTHANC_INSTALL_HINT", "OrthancServer", "OrthancSpec", "build_stack_shim", "orthanc_config"]

ORTHANC_BINARY: Final = Path("/usr/sbin/Orthanc")
PLUGINS_DIR: Final = Path("/usr/share/orthanc/plugins")
# DICOMweb (QIDO/WADO/STOW), GDCM (JPEG 2000 and other codecs DCMTK lacks), whole-slide imaging.
PLUGINS: Final = ("libOrthancDicomWeb.so", "libOrthancGdcm.so", "libOrthancWSI.so")
ORTHANC_INSTALL_HINT: Final = (
    "install it with `apt-get install orthanc orthanc-dicomweb orthanc-wsi orthanc-gdcm` "
    "(or run `make setup`)"
)
DICOMWEB_ROOT: Final = "/dicom-web/"


def _instance_name() -> str:
    return f"chartagent-{secrets.token_hex(4)}"


class OrthancSpec(BaseModel):
    """Where and how one Orthanc runs. `dicom_port=None` turns the DICOM (DIMSE) server off."""

    host: str = "127.0.0.1"
    port: int
    dicom_port: int | None = None
    state_dir: Path
    username: str | None = None
    password: SecretStr | None = None
    executable: Path = ORTHANC_BINARY
    plugins_dir: Path = PLUGINS_DIR
    plugins: tuple[str, ...] = PLUGINS
    # Reported by GET /system; tells our server apart from any other Orthanc on the port.
    name: str = Field(default_factory=_instance_name)
    aet: str = "CHARTAGENT"
    # Minimum stack of Orthanc's threads (see the module docstring); None: leave them as built.
    worker_stack_kib: int | None = 8192

    @model_validator(mode="after")
    def _auth_pair(self) -> OrthancSpec:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password for basic auth, or neither")
        if self.host not in ("127.0.0.1", "localhost"):
            raise ValueError("the embedded Orthanc only serves loopback (host 127.0.0.1)")
        return self

    # The state file must carry the password (status and down probe the server with it);
    # it sits beside the generated config, which holds it too, and both are written 0600.
    @field_serializer("password", when_used="json")
    def _dump_password(self, value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.root_url}{DICOMWEB_ROOT.rstrip('/')}"

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password.get_secret_value())

    @property
    def config_path(self) -> Path:
        return self.state_dir / "orthanc.json"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "orthanc.log"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "orthanc.pid"


def orthanc_config(spec: OrthancSpec) -> dict[str, Any]:
    """The JSON configuration Orthanc reads (pure)."""
    state = spec.state_dir.resolve()
    config: dict[str, Any] = {
        "Name": spec.name,
        "StorageDirectory": str(state / "storage"),
        "IndexDirectory": str(state / "index"),
        "Plugins": [str(spec.plugins_dir / p) for p in spec.plugins],
        "HttpPort": spec.port,
        "RemoteAccessAllowed": False,
        "HttpVerbose": False,
        # gzip of pixel data costs far more CPU than loopback bandwidth (and clients that ask
        # for it would make the server CPU-bound).
        "HttpCompressionEnabled": False,
        "DeidentifyLogs": True,
        "LogExportedResources": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        # Jobs are not resumed across restarts: nothing of ours runs as an Orthanc job.
        "SaveJobs": False,
        "DicomServerEnabled": spec.dicom_port is not None,
        "DicomAet": spec.aet,
        "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT, "EnableWado": False},
        "Gdcm": {"Enable": True},
    }
    if spec.dicom_port is not None:
        config["DicomPort"] = spec.dicom_port
    if spec.auth is not None:
        user, password = spec.auth
        config["AuthenticationEnabled"] = True
        config["RegisteredUsers"] = {user: password}
    else:
        config["AuthenticationEnabled"] = False
    return config


class OrthancServer(SpawnedServer):
    """A running (or startable) embedded Orthanc."""

    def __init__(self, spec: OrthancSpec, pid: int | None = None) -> None:
        self.spec = spec
        self.pid = pid

    @property
    def dicomweb_url(self) -> str:
        return self.spec.dicomweb_url

    def start(self, *, timeout_s: float = 60.0, previous_exit_timeout_s: float = 15.0) -> None:
        """Start and wait until healthy; first wait up to `previous_exit_timeout_s` for an
        Orthanc that still runs on the same storage to exit (StackError if it does not)."""
        spec = self.spec
        self._check_installed()
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        _wait_previous_exit(spec.pid_path, timeout_s=previous_exit_timeout_s)
        for port in (spec.port, spec.dicom_port):
            if port is not None and _listening(port):
                raise StackError(f"Orthanc port {port} is already in use")
        _write_private(spec.config_path, json.dumps(orthanc_config(spec), indent=2))
        env: dict[str, str] = {}
        if spec.worker_stack_kib is not None:
            shim = build_stack_shim(spec.state_dir, spec.worker_stack_kib)
            env["LD_PRELOAD"] = " ".join(filter(None, [str(shim), os.environ.get("LD_PRELOAD")]))
        proc = spawn(
            [str(spec.executable), str(spec.config_path.resolve())],
            cwd=spec.state_dir,
            log_path=spec.log_path,
            env=env,
        )
        self.pid = proc.pid
        _write_private(spec.pid_path, str(proc.pid))
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"Orthanc exited during start-up (code {proc.returncode}); see {spec.log_path}"
                )
            ok, last = self._probe()
            if ok:
                return
            time.sleep(0.1)
        raise StackError(
            f"Orthanc did not become healthy within {timeout_s:.0f} s ({last}); see {spec.log_path}"
        )

    def healthy(self) -> bool:
        return self.alive() and self._probe()[0]

    def stop(self) -> None:
        """Stop and wait until the process has exited (its storage is then free for a successor)."""
        super().stop()
        self.spec.pid_path.unlink(missing_ok=True)

    def _check_installed(self) -> None:
        spec = self.spec
        if not spec.executable.is_file():
            raise StackError(f"Orthanc not found at {spec.executable}: {ORTHANC_INSTALL_HINT}")
        missing = [p for p in spec.plugins if not (spec.plugins_dir / p).exists()]
        if missing:
            raise StackError(
                f"Orthanc plugin(s) {', '.join(missing)} missing in {spec.plugins_dir}: "
                + ORTHANC_INSTALL_HINT
            )

    def _probe(self) -> tuple[bool, str]:
        """GET /system (with credentials when auth is on); it must be our instance by name."""
        import httpx  # here: `stack status` of a stack that is not running needs no HTTP client

        try:
            resp = httpx.get(f"{self.spec.root_url}/system", auth=self.spec.auth, timeout=2.0)
        except httpx.HTTPError as exc:
            return False, type(exc).__name__
        if resp.status_code != 200:
            return False, f"HTTP {resp.status_code}"
        try:
            name = resp.json().get("Name")
        except ValueError:
            return False, "GET /system answered non-JSON"
        if name != self.spec.name:
            return False, "another server answers on this port"
        return True, "ok"


_STACK_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
/* chartagent: raise explicit thread stack sizes to MIN_STACK (civetweb asks for 100 KiB). */
int pthread_attr_setstacksize(pthread_attr_t *attr, size_t size) {
    static int (*real)(pthread_attr_t *, size_t);
    if (!real) real = (int (*)(pthread_attr_t *, size_t))dlsym(RTLD_NEXT, "pthread_attr_setstacksize");
    return real(attr, size < (size_t)MIN_STACK ? (size_t)MIN_STACK : size);
}
"""


def build_stack_shim(directory: Path, min_stack_kib: int) -> Path:
    """Compile the stack shim into `directory` (once per size); StackError naming what is missing."""
    out = directory / f"thread-stack-{min_stack_kib}k.so"
    if out.exists():
        return out
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise StackError(
            "no C compiler (cc) to build Orthanc's thread-stack shim (without it, decoding JPEG 2000 "
            "frames crashes Orthanc): apt-get install gcc libc6-dev, or set worker_stack_kib=None"
        )
    source = directory / "thread-stack.c"
    source.write_text(_STACK_SHIM_C)
    argv = [compiler, "-shared", "-fPIC", "-O2", f"-DMIN_STACK={min_stack_kib * 1024}",
            "-o", str(out), str(source), "-ldl"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise StackError(f"building {out} failed: {result.stderr.strip()[:500]}")
    return out


def _write_private(path: Path, text: str) -> None:
    """Write a file only our user can read (the config may hold the Orthanc password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def _wait_previous_exit(pid_path: Path, *, timeout_s: float) -> None:
    """An Orthanc that used this storage must be gone before another opens its SQLite index."""
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout_s
    while _is_orthanc(pid):
        if time.monotonic() > deadline:
            raise StackError(
                f"an Orthanc (pid {pid}) still uses {pid_path.parent}; "
                "stop it first (`chartagent stack down`)"
            )
        time.sleep(0.1)
    pid_path.unlink(missing_ok=True)


def _is_orthanc(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False  # gone meanwhile
    return cmd.endswith(b"Orthanc")  # a recycled pid running something else is not ours


def _listening(port: int) -> bool:
    """Something accepts connections on loopback `port` (a bind test would also trip on
    TIME_WAIT sockets of a previous run, which Orthanc's SO_REUSEADDR bind tolerates)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0
