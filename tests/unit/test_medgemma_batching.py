"""Micro-batching without a model: the pure queue with given times, the async batcher with a fake runner."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tools.medgemma.batching import BatcherClosedError, BatchQueue, MicroBatcher

# --------------------------------------------------------------------------------------------
# BatchQueue (pure)


def test_a_full_group_is_ready_at_once_and_split_at_max_batch() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch=3, max_wait_s=1.0)
    for i in range(5):
        queue.add(i, "greedy", now=0.0)
    assert [q.item for q in queue.pop_ready(now=0.0)] == [0, 1, 2]
    assert queue.pop_ready(now=0.5) == []  # two left, not full, not old enough
    assert queue.next_deadline() == 1.0
    assert [q.item for q in queue.pop_ready(now=1.0)] == [3, 4]
    assert len(queue) == 0
    assert queue.next_deadline() is None


def test_a_lone_item_waits_max_wait_then_goes_alone() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch=8, max_wait_s=0.01)
    queue.add("a", "k", now=10.0)
    assert queue.pop_ready(now=10.005) == []
    assert [q.item for q in queue.pop_ready(now=10.01)] == ["a"]


def test_different_keys_are_never_mixed_and_the_oldest_ready_group_goes_first() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=1.0)
    queue.add("sampled-1", "t=0.7", now=0.0)
    queue.add("greedy-1", "t=0", now=0.1)
    queue.add("sampled-2", "t=0.7", now=0.2)
    queue.add("greedy-2", "t=0", now=0.3)
    assert [q.item for q in queue.pop_ready(now=2.0)] == ["sampled-1", "sampled-2"]
    assert [q.item for q in queue.pop_ready(now=2.0)] == ["greedy-1", "greedy-2"]


def test_a_full_group_overtakes_an_older_group_that_still_waits() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch=2, max_wait_s=1.0)
    queue.add("old", "a", now=0.0)
    queue.add("b1", "b", now=0.1)
    queue.add("b2", "b", now=0.2)
    assert [q.item for q in queue.pop_ready(now=0.3)] == ["b1", "b2"]
    assert [q.item for q in queue.drain()] == ["old"]


@pytest.mark.parametrize(("max_batch", "max_wait_s"), [(0, 0.01), (1, -1.0)])
def test_bad_limits_are_refused(max_batch: int, max_wait_s: float) -> None:
    with pytest.raises(ValueError, match="max_"):
        BatchQueue(max_batch=max_batch, max_wait_s=max_wait_s)


# --------------------------------------------------------------------------------------------
# MicroBatcher (async shell)


class Runner:
    """Records each batch; answers item * 10; fails batches holding `poison`."""

    def __init__(self, *, delay: float = 0.0, poison: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.poison = poison

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.poison in items:
            raise RuntimeError("bad request")
        return [i * 10 for i in items]


async def test_concurrent_submits_share_batches_and_each_caller_gets_its_own_answer() -> None:
    runner = Runner()
    batcher: MicroBatcher[int, int] = MicroBatcher(runner, key=lambda i: "same", max_batch=4, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(6)))
    assert results == [i * 10 for i in range(6)]
    assert runner.batches == [[0, 1, 2, 3], [4, 5]]
    await batcher.aclose()


async def test_items_arriving_during_a_batch_fill_the_next_one() -> None:
    runner = Runner(delay=0.05)
    batcher: MicroBatcher[int, int] = MicroBatcher(runner, key=lambda i: 0, max_batch=8, max_wait_s=0.0)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.01)  # batch [0] is running
    rest = await asyncio.gather(*(batcher.submit(i) for i in range(1, 4)))
    assert await first == 0
    assert rest == [10, 20, 30]
    assert runner.batches == [[0], [1, 2, 3]]
    await batcher.aclose()


async def test_keys_keep_groups_apart() -> None:
    runner = Runner()
    batcher: MicroBatcher[int, int] = MicroBatcher(runner, key=lambda i: i % 2, max_batch=8, max_wait_s=0.02)
    await asyncio.gather(*(batcher.submit(i) for i in range(6)))
    assert sorted(runner.batches) == [[0, 2, 4], [1, 3, 5]]
    await batcher.aclose()


async def test_a_failing_batch_is_retried_item_by_item_so_only_the_bad_one_fails() -> None:
    runner = Runner(poison=2)
    batcher: MicroBatcher[int, int] = MicroBatcher(runner, key=lambda i: 0, max_batch=8, max_wait_s=0.02)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[:2] == [0, 10]
    assert isinstance(results[2], RuntimeError)
    assert results[3] == 30
    assert runner.batches == [[0, 1, 2, 3], [0], [1], [2], [3]]
    await batcher.aclose()


async def test_a_cancelled_caller_is_dropped_and_others_are_served() -> None:
    runner = Runner()
    batcher: MicroBatcher[int, int] = MicroBatcher(runner, key=lambda i: 0, max_batch=8, max_wait_s=0.05)
    doomed = asyncio.ensure_future(batcher.submit(1))
    kept = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == 20
    assert runner.batches == [[2]]
    await batcher.aclose()


async def test_close_fails_waiting_and_running_requests_and_refuses_new_ones() -> None:
    runner = Runner(delay=10.0)
    batcher: MicroBatcher[int, int] = MicroBatcher(runner, key=lambda i: i, max_batch=1, max_wait_s=0.0)
    running = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    await batcher.aclose()
    for future in (running, waiting):
        with pytest.raises(BatcherClosedError):
            await future
    with pytest.raises(BatcherClosedError, match="closed"):
        await batcher.submit(3)


def test_a_batcher_can_serve_a_second_event_loop_after_the_first_ended() -> None:
    runner = Runner()
    batcher: MicroBatcher[int, int] = MicroBatcher(runner, key=lambda i: 0, max_batch=2, max_wait_s=0.0)
    assert asyncio.run(batcher.submit(1)) == 10
    assert asyncio.run(batcher.submit(2)) == 20
