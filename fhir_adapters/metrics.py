"""Prometheus counters of what ChartAgent asks of FHIR servers: the load an EHR team watches (and
the 429s its rate limits answer). Each HTTP attempt of `FhirClient` (retries included) counts by
method, the resource type it addresses and its outcome (the status code, or the transport error's
class when no answer came); its seconds by method and type.

The type is the request path's first segment when it is a FHIR type or an operation
(`Observation`, `Patient`, `$export`, `metadata`), `(base)` for the base itself (transactions and
batches) and `other` for anything else: never an id, a search value or a host, so no label holds
patient data and the label set stays small. Served with the process's other metrics
(agent.metrics: `CHARTAGENT_METRICS_PORT`).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from prometheus_client import Counter, Histogram

__all__ = ["FHIR_REQUESTS", "FHIR_SECONDS", "resource_label"]

FHIR_REQUESTS: Final = Counter(
    "chartagent_fhir_requests",
    "HTTP attempts at FHIR servers (retries included), by method, resource type and outcome",
    ["method", "resource_type", "outcome"],
)
FHIR_SECONDS: Final = Histogram(
    "chartagent_fhir_request_seconds",
    "Seconds of each HTTP attempt at a FHIR server, by method and resource type",
    ["method", "resource_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
_SEGMENT: Final = re.compile(r"^(?:[A-Z][A-Za-z]{1,63}|\$[a-z][a-z-]{0,63}|metadata)$")


def resource_label(url: str, base_url: str) -> str:
    """What a request to `url` addresses, as a label (see the module docstring)."""
    path = urlsplit(url).path
    base_path = urlsplit(base_url).path.rstrip("/")
    if base_path and path.startswith(base_path):
        path = path[len(base_path) :]
    first = path.strip("/").split("/", 1)[0]
    if not first:
        return "(base)"
    return first if _SEGMENT.match(first) else "other"
