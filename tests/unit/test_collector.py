"""The long-running collector settings: set by the first open user, put back by the last."""

from __future__ import annotations

import gc

from agent.collector import LONG_RUNNING_THRESHOLDS, long_running_collection


def test_nested_workers_restore_the_previous_settings() -> None:
    before = gc.get_threshold()
    assert before != LONG_RUNNING_THRESHOLDS
    with long_running_collection():
        assert gc.get_threshold() == LONG_RUNNING_THRESHOLDS
        assert gc.get_freeze_count() > 0
        with long_running_collection():
            assert gc.get_threshold() == LONG_RUNNING_THRESHOLDS
        assert gc.get_threshold() == LONG_RUNNING_THRESHOLDS  # the outer worker is still open
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_an_error_inside_still_restores() -> None:
    before = gc.get_threshold()
    try:
        with long_running_collection():
            raise ValueError("a worker that failed to open")
    except ValueError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
