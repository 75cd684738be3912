"""Python's cyclic garbage collector set for a long-running process: a job worker while a
`JobWorker` is open, the service while its app runs.

A patient's first run allocates hundreds of thousands of short-lived objects (parsed FHIR models,
PDF words, JSON), nearly all freed by reference counting; with the default thresholds (a young
collection every 700 net allocations) the collector still ran about 38 times a patient and
walked the long-lived heap (the imported FHIR model classes, pydantic schemas, the graph) at
each older collection: 0.054 CPU-s a patient, a fifth of the job's own CPU (measured with
``gc.callbacks`` on the throughput benchmark's cohort, 45 patients 8 at a time). Frozen after
start-up (``gc.freeze``: the heap that lives as long as the process is never walked again) and
collected every 50,000 allocations, it took 0.010.

The settings are the process's, so the first user to open sets them and the last to close puts
the previous ones back (tests open several workers and apps in one process).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Final

__all__ = ["LONG_RUNNING_THRESHOLDS", "long_running_collection", "service_collection"]

# Young collections every 50,000 net allocations; middle and full collections as rarely (relative
# to those) as CPython's defaults of (700, 10, 10) make them.
LONG_RUNNING_THRESHOLDS: Final = (50_000, 20, 100)

_open = 0
_previous: tuple[int, int, int] | None = None


@contextmanager
def long_running_collection() -> Iterator[None]:
    """Freeze what is alive now and collect less often, until the outermost exit."""
    global _open, _previous
    if _open == 0:
        _previous = gc.get_threshold()
        gc.collect()  # what start-up left as garbage goes now, not into the frozen generation
        gc.freeze()
        gc.set_threshold(*LONG_RUNNING_THRESHOLDS)
    _open += 1
    try:
        yield
    finally:
        _open -= 1
        if _open == 0 and _previous is not None:
            gc.set_threshold(*_previous)
            gc.unfreeze()
            _previous = None


@asynccontextmanager
async def service_collection(_app: object) -> AsyncIterator[None]:
    """``long_running_collection`` as a part of the service app's lifespan (``add_lifespan``)."""
    with long_running_collection():
        yield
