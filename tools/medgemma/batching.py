"""Micro-batching: concurrent requests that may share one `generate` call are grouped.

Pure core, `BatchQueue`: items arrive with a key (requests with different generation
settings have different keys and are never mixed) and a time. A group is ready when it holds
`max_batch` items, or when its oldest item has waited `max_wait_s`; among ready groups the one
with the oldest item goes first; a batch is at most `max_batch` items, oldest first.

Async shell, `MicroBatcher`: one worker task per batcher runs one batch at a time. Items that
arrive while a batch runs wait for it, so under load batches fill up to `max_batch` without
waiting any longer; a lone request waits at most `max_wait_s` for company. When a batch of
several items fails, each item is retried alone, so that one bad request does not fail the
requests it happened to be batched with.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tools.medgemma.errors import ModelError

__all__ = ["BatchQueue", "BatcherClosedError", "MicroBatcher", "Queued"]

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosedError(ModelError):
    """The backend was closed while the request waited; nothing was generated for it."""


@dataclass(frozen=True, eq=False)
class Queued(Generic[T]):
    item: T
    key: Hashable
    arrived: float


@dataclass
class BatchQueue(Generic[T]):
    """Pending items grouped by key (FIFO within a group). Pure: time is passed in."""

    max_batch: int
    max_wait_s: float
    _groups: dict[Hashable, list[Queued[T]]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {self.max_wait_s}")

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups.values())

    def add(self, item: T, key: Hashable, now: float) -> Queued[T]:
        queued = Queued(item, key, now)
        self._groups.setdefault(key, []).append(queued)
        return queued

    def pop_ready(self, now: float) -> list[Queued[T]]:
        """The next batch if one is ready at `now`, else an empty list."""
        ready = [
            group
            for group in self._groups.values()
            if len(group) >= self.max_batch or now >= group[0].arrived + self.max_wait_s  # as next_deadline
        ]
        if not ready:
            return []
        group = min(ready, key=lambda g: g[0].arrived)
        batch, rest = group[: self.max_batch], group[self.max_batch :]
        key = batch[0].key
        if rest:
            self._groups[key] = rest
        else:
            del self._groups[key]
        return batch

    def next_deadline(self) -> float | None:
        """When the oldest waiting group becomes ready by time (None when empty)."""
        if not self._groups:
            return None
        return min(group[0].arrived for group in self._groups.values()) + self.max_wait_s

    def drain(self) -> list[Queued[T]]:
        """Remove and return everything pending."""
        items = [q for group in self._groups.values() for q in group]
        self._groups.clear()
        return items


RunBatch = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


@dataclass(frozen=True, eq=False)
class _Ticket(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class MicroBatcher(Generic[T, R]):
    """Groups concurrent `submit` calls into calls of `run_batch` (one at a time).

    `run_batch(items)` must return one result per item, in order. `key(item)` says which items
    may share a batch. The batcher belongs to the event loop of its first `submit`.
    """

    def __init__(
        self,
        run_batch: RunBatch[T, R],
        *,
        key: Callable[[T], Hashable],
        max_batch: int = 8,
        max_wait_s: float = 0.010,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run_batch = run_batch
        self._key = key
        self._clock = clock
        self._queue: BatchQueue[_Ticket[T, R]] = BatchQueue(max_batch, max_wait_s)
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def max_batch(self) -> int:
        return self._queue.max_batch

    async def submit(self, item: T) -> R:
        if self._closed:
            raise BatcherClosedError("the model backend is closed")
        loop, wake = self._ensure_worker()
        ticket: _Ticket[T, R] = _Ticket(item, loop.create_future())
        self._queue.add(ticket, self._key(item), self._clock())
        wake.set()
        return await ticket.future

    def _ensure_worker(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed() and len(self._queue):
                raise RuntimeError("this MicroBatcher is serving another event loop")
            self._loop, self._wake, self._worker = loop, asyncio.Event(), None
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name="medgemma-microbatcher")
        assert self._wake is not None
        return loop, self._wake

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            batch = [q.item for q in self._queue.pop_ready(self._clock()) if not q.item.future.done()]
            if batch:
                await self._run(batch)
                continue
            self._wake.clear()
            deadline = self._queue.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _run(self, batch: list[_Ticket[T, R]]) -> None:
        try:
            results = await self._run_batch([t.item for t in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:  # closed mid-batch: its callers must not wait forever
            for ticket in batch:
                _fail(ticket.future, BatcherClosedError("the model backend was closed during generation"))
            raise
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0].future, exc)
                return
            for ticket in batch:  # alone, so that one bad request fails only itself
                await self._run([ticket])
            return
        for ticket, result in zip(batch, results, strict=True):
            if not ticket.future.done():  # else the caller gave up (cancelled) meanwhile
                ticket.future.set_result(result)

    async def aclose(self) -> None:
        """Stop the worker; requests still waiting get `BatcherClosedError`."""
        self._closed = True
        for queued in self._queue.drain():
            _fail(queued.item.future, BatcherClosedError("the model backend was closed"))
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker


def _fail(future: asyncio.Future[R], exc: BaseException) -> None:
    if not future.done():  # else the caller gave up (cancelled) meanwhile
        future.set_exception(exc)
