"""A throwaway PostgreSQL cluster on loopback for checkpointer tests (Debian's postgresql binaries).

`initdb` refuses to run as root: as root the cluster is made and run by the `postgres` user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed (Debian package postgresql; `make system-packages`)"
        )
    return str(found[-1])


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster in a fresh folder under the system temp dir (pytest's are private to root,
    and the cluster's owner must reach its folder); yield its URL; stop it and remove the folder."""
    root = Path(tempfile.mkdtemp(prefix="chartagent-pg-"))
    data = root / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_owner([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_owner([_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_owner([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            check=False,
        )
        # The server's last processes may still be writing as it goes: retry until the folder is gone.
        deadline = time.monotonic() + 10
        while root.exists() and time.monotonic() < deadline:
            shutil.rmtree(root, ignore_errors=True)
            time.sleep(0.1)
