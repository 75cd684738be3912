"""A real Prometheus server on loopback for the alerting rules' live test: Debian's binary, which
`make test` takes out of the package into .tools/bin (installing the package would start a
system Prometheus). It scrapes the given targets and evaluates the chart's alerting rules every
second, with its data in a temporary folder."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from monitoring_checks import PROMETHEUS_BIN, RULES

from agent.testbed.stack.ports import free_port

BINARY = PROMETHEUS_BIN / "prometheus"


class Prometheus:
    """The server's HTTP API (`/api/v1`)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.base}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("query", query=expr)["result"])

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.get("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.get("rules")["groups"] for rule in group["rules"]]

    def wait_for(self, expr: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The query's result once it is not empty (a scrape or an evaluation later)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if found := self.query(expr):
                return found
            time.sleep(0.5)
        raise AssertionError(f"{expr} stayed empty for {timeout_s:.0f} s")


@contextmanager
def prometheus_server(targets: list[str]) -> Iterator[Prometheus]:
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} is missing: `make .tools/bin/prometheus` takes it out of its package")
    root = Path(tempfile.mkdtemp(prefix="chartagent-prometheus-"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "chartagent", "static_configs": [{"targets": targets}]}],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (root / "log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(BINARY),
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus did not start: {(root / 'log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield Prometheus(base)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
