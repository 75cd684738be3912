"""The MedGemma GPU benchmark builds the real 4B architecture and a tiny one that runs on CPU."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from bench_module import load_bench

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("bench_medgemma_gpu.py", "bench_medgemma_gpu")


def test_medgemma_4b_config_matches_gemma3_4b(bench: ModuleType) -> None:
    summary = bench.config_summary(bench.build_config("medgemma-4b"))
    assert summary["text_hidden"] == 2560
    assert summary["text_layers"] == 34
    assert (summary["heads"], summary["kv_heads"], summary["head_dim"]) == (8, 4, 256)
    assert summary["intermediate"] == 10240
    assert summary["vocab"] == 262208
    assert summary["sliding_window"] == 1024
    assert (summary["sliding_layers"], summary["full_layers"]) == (29, 5)  # 5 local : 1 global
    assert summary["rope_theta_global"] == 1_000_000.0
    assert summary["rope_theta_local"] == 10_000.0
    assert summary["query_pre_attn_scalar"] == 256
    assert (summary["vision_hidden"], summary["vision_layers"], summary["vision_heads"]) == (1152, 27, 16)
    assert summary["vision_intermediate"] == 4304
    assert (summary["patch"], summary["image"], summary["patches_per_image"]) == (14, 896, 4096)
    assert summary["mm_tokens_per_image"] == 256
    assert (summary["image_token_id"], summary["boi_token_id"], summary["eoi_token_id"]) == (
        262144,
        255999,
        256000,
    )


def test_medgemma_4b_has_about_4_3b_params_on_meta(bench: ModuleType) -> None:
    from transformers import Gemma3ForConditionalGeneration

    config = bench.build_config("medgemma-4b")
    with torch.device("meta"):
        model = Gemma3ForConditionalGeneration(config)
    n = bench.count_parameters(model)
    assert 4.3e9 * 0.95 <= n <= 4.3e9 * 1.05, n
    assert 0.38e9 <= bench.count_parameters(bench.vision_tower(model)) <= 0.45e9  # SigLIP-So400m
    # the projector pools 64x64 patches down to 256 tokens per image
    projector = model.model.multi_modal_projector
    assert projector.tokens_per_side**2 == 256


def test_analytic_floor_matches_design(bench: ModuleType) -> None:
    """DESIGN.md: a CT study is ~650 TFLOP (460 vision + 200 decoder); decode reads ~8 GB of weights."""
    config = bench.build_config("medgemma-4b")
    prompt = bench.ct_prompt_ids(85, 256)
    assert 21_000 <= len(prompt) <= 23_500
    vision = 85 * bench.vision_flops_per_image(config) / 1e12
    decoder = bench.decoder_prefill_flops(config, len(prompt)) / 1e12
    assert 420 <= vision <= 500
    assert 130 <= decoder <= 220
    assert 560 <= vision + decoder <= 700
    assert 7.5e9 <= bench.decode_weight_bytes(config, 2) <= 8.5e9


def test_tiny_generates_on_cpu(bench: ModuleType) -> None:
    config = bench.build_config("tiny")
    model, attn = bench.build_model(config, "cpu", torch.float32)
    assert attn in ("sdpa", "eager")
    prompt = bench.cxr_prompt_ids(config.mm_tokens_per_image)
    assert prompt.count(bench.IMAGE_TOKEN_ID) == 256
    inputs = bench.make_inputs(prompt, 1, 2, config.vision_config.image_size, "cpu", torch.float32)
    assert tuple(inputs["pixel_values"].shape) == (2, 3, 896, 896)
    with torch.inference_mode():
        out = bench.generate(model, inputs, 4)
    assert tuple(out.shape) == (2, len(prompt) + 4)


def test_tiny_benchmark_end_to_end(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny.json"
    argv = ["--config", "tiny", "--device", "cpu", "--quick", "--ct-slices", "2", "--new-tokens", "4"]
    argv += ["--cxr-new-tokens", "3", "--batches", "1,2", "--json", str(out)]
    assert bench.main(argv) == 0
    text = capsys.readouterr().out
    assert "bench medgemma-ct-prefill: " in text
    assert "bench medgemma-ct-decode-per-token: " in text
    result = json.loads(out.read_text())
    assert result["ct"]["generated_tokens"] == 4
    assert result["cxr"]["generated_tokens"] == 3
    assert [r["batch"] for r in result["batches"]] == [1, 2]


def test_oom_at_a_large_batch_is_reported_and_skipped(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = bench.run_request

    def run_request(model, timer, inputs, new_tokens, reps, time_vision=True):  # type: ignore[no-untyped-def]
        if inputs["input_ids"].shape[0] >= 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real(model, timer, inputs, new_tokens, reps, time_vision)

    monkeypatch.setattr(bench, "run_request", run_request)
    argv = ["--config", "tiny", "--device", "cpu", "--quick", "--skip", "ct,cxr"]
    assert bench.main([*argv, "--cxr-new-tokens", "2", "--batches", "1,2,4"]) == 0
    text = capsys.readouterr().out
    assert "batch 2: OOM, going on" in text
    assert "bench medgemma-cxr-b1-decode-throughput" in text
