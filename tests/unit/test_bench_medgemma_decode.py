"""The GPU benchmark's decode comparison: its options and how it reports token agreement."""

from __future__ import annotations

from types import ModuleType

import pytest
from bench_module import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("bench_medgemma_gpu.py", "bench_medgemma_gpu_decode")


def test_decode_modes_default_by_device_and_unknown_ones_are_refused(bench: ModuleType) -> None:
    assert bench.parse_args([]).decode is None  # eager,compiled on CUDA; eager,static on a CPU
    assert bench.parse_args(["--decode", "eager, compiled"]).decode == ["eager", "compiled"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--decode", "eager,graphs"])


def test_token_agreement_names_the_first_difference(bench: ModuleType) -> None:
    assert bench._first_mismatch([[1, 2, 3]], [[1, 2, 3]]) is None
    assert bench._first_mismatch([[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 9, 6]]) == [1, 1]
    assert bench._first_mismatch([[1, 2]], [[1, 2, 3]]) == [0, 2]


def test_bench_lines_say_how_far_from_the_floor_against_the_aim(bench: ModuleType) -> None:
    line = bench.bench_line("ct-decode-per-token-compiled", 0.0045, 0.0015)
    assert line.startswith("bench medgemma-ct-decode-per-token-compiled: 0.333x (4.50 ms vs 1.50 ms floor")
    assert "3.00x the floor, aim <= 3x" in line
