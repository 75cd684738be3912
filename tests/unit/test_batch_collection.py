"""The batch worker's collector settings: set by the first open worker, put back by the last."""

from __future__ import annotations

import gc

from agent.jobs.batch_collection import BATCH_THRESHOLDS, batch_collection


def test_nested_workers_restore_the_previous_settings() -> None:
    before = gc.get_threshold()
    assert before != BATCH_THRESHOLDS
    with batch_collection():
        assert gc.get_threshold() == BATCH_THRESHOLDS
        assert gc.get_freeze_count() > 0
        with batch_collection():
            assert gc.get_threshold() == BATCH_THRESHOLDS
        assert gc.get_threshold() == BATCH_THRESHOLDS  # the outer worker is still open
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_an_error_inside_still_restores() -> None:
    before = gc.get_threshold()
    try:
        with batch_collection():
            raise ValueError("a worker that failed to open")
    except ValueError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
