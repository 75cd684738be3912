"""Prometheus counters of what ChartAgent asks of the PACS (DICOMweb): each HTTP attempt of
`DicomWebClient` (retries included) by operation and outcome (the status code, or the transport
error's class when no answer came), and its seconds by operation (a retrieval streamed: until its
answer's head, the body is read by the caller).

The operation is told by method and media type, never by the path: `search` (QIDO-RS and
metadata, DICOM JSON), `retrieve` (WADO-RS, multipart or DICOM), `store` (STOW-RS POST); a path
carries Study, Series and SOP Instance UIDs, which identify a patient's images. Served with the
process's other metrics (agent.metrics: `CHARTAGENT_METRICS_PORT`).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

__all__ = ["DICOMWEB_REQUESTS", "DICOMWEB_SECONDS", "operation_of"]

DICOMWEB_REQUESTS: Final = Counter(
    "chartagent_dicomweb_requests",
    "HTTP attempts at the PACS's DICOMweb (retries included), by operation and outcome",
    ["operation", "outcome"],
)
DICOMWEB_SECONDS: Final = Histogram(
    "chartagent_dicomweb_request_seconds",
    "Seconds of each DICOMweb attempt until its answer's head, by operation",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def operation_of(method: str, accept: str) -> str:
    """`search`, `retrieve` or `store` (see the module docstring)."""
    if method == "POST":
        return "store"
    return "search" if "json" in accept else "retrieve"
