"""Static-cache decoding over the tiny MedGemma: the same tokens as `generate`, bounded compiles.

The tiny model's random weights are scaled up here (a private copy) so that its tokens depend on
the context: with the stored weights it repeats one token, which would hide a wrong mask, ring
slot or position. Compiled decoding is checked with torch.compile's `eager` backend (dynamo's
graph capture and guards, no C++ or CUDA code generation): the real inductor + CUDA-graph run is
`bench/gpu_check.sh` on a GPU.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tools.medgemma.loader import LoadedModel, load_model
from tools.medgemma.static_decoding import (
    MAX_CACHE_TOKENS,
    StaticGreedyDecoder,
    batch_bucket,
    cache_bucket,
    compile_enabled,
    plain_greedy,
)
from tools.medgemma.tiny_model import END_OF_TURN_ID, EOS_TOKEN_ID, PAD_TOKEN_ID, tiny_medgemma_path
from tools.medgemma.transformers_backend import TransformersBackend
from tools.medgemma.types import GenerationSettings, Message, ModelRequest, TextPart

torch = pytest.importorskip("torch")

NEW_TOKENS = 24
EOS = {EOS_TOKEN_ID, END_OF_TURN_ID}


@pytest.fixture(scope="module")
def sharp() -> LoadedModel:
    loaded = load_model(str(tiny_medgemma_path()), device="cpu", dtype="float32")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in loaded.model.model.language_model.named_parameters():
            if weight.ndim == 2 and "embed" not in name:
                weight.normal_(0.0, 0.25, generator=generator)
    loaded.processor.tokenizer.padding_side = "left"
    return loaded


def _turn(text: str, images: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    parts: list[dict[str, Any]] = [
        {"type": "image", "image": Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))}
        for _ in range(images)
    ]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def _inputs(loaded: LoadedModel, rows: list[tuple[str, int]]) -> Any:
    return loaded.processor.apply_chat_template(
        [_turn(text, images, seed) for seed, (text, images) in enumerate(rows)],
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        add_generation_prompt=True,
        processor_kwargs={"padding": True},
    )


def _generate(loaded: LoadedModel, inputs: Any, eos: set[int]) -> Any:
    config = copy.deepcopy(loaded.model.generation_config)
    config.max_new_tokens = NEW_TOKENS
    config.do_sample = False
    config.eos_token_id = sorted(eos)
    config.pad_token_id = PAD_TOKEN_ID
    with torch.inference_mode():
        sequences = loaded.model.generate(**inputs, generation_config=config)
    return sequences[:, inputs["input_ids"].shape[1] :]


def _static(decoder: StaticGreedyDecoder, inputs: Any, eos: set[int]) -> Any:
    with torch.inference_mode():
        return decoder.generate(inputs, max_new_tokens=NEW_TOKENS, eos_ids=eos, pad_id=PAD_TOKEN_ID)


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def test_buckets_bound_the_shapes_and_auto_compiles_on_cuda_only() -> None:
    assert [cache_bucket(n) for n in (1, 2048, 2049, 22_774, MAX_CACHE_TOKENS)] == [
        2048,
        2048,
        4096,
        32_768,
        32_768,
    ]
    assert cache_bucket(MAX_CACHE_TOKENS + 1) is None
    assert [batch_bucket(b) for b in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    assert (compile_enabled("auto", "cuda"), compile_enabled("auto", "cpu")) == (True, False)
    assert (compile_enabled("on", "cpu"), compile_enabled("off", "cuda")) == (True, False)
    with pytest.raises(ValueError, match="auto, on, off"):
        compile_enabled("always", "cuda")


def test_only_plain_greedy_configs_qualify(sharp: LoadedModel) -> None:
    config = copy.deepcopy(sharp.model.generation_config)
    config.do_sample = False
    assert plain_greedy(config)
    config.repetition_penalty = 1.3
    assert not plain_greedy(config)
    config.repetition_penalty = 1.0
    config.do_sample = True
    assert not plain_greedy(config)


def test_static_eager_decoding_gives_generates_tokens_for_a_padded_mixed_batch(sharp: LoadedModel) -> None:
    # Row 0: one image (bidirectional image mask in prefill); row 1: text past the 512-token
    # sliding window, so the ring wraps; row 2: short text, left-padded the most. Batch 3 decodes
    # padded to 4.
    rows = [("What is shown?", 1), ("the ward round notes " * 30, 0), ("hi", 0)]
    inputs = _inputs(sharp, rows)
    assert inputs["input_ids"].shape[1] > 512
    decoder = StaticGreedyDecoder(sharp.model, compile=False)

    expected = _generate(sharp, inputs, EOS)
    got = _static(decoder, inputs, EOS)
    assert got.tolist() == expected.tolist()
    assert all(len(set(row)) > 3 for row in got.tolist())  # context-dependent tokens, not one repeated

    # An end token the rows actually produce: row 0 ends early, generate pads it and stops when
    # every row has ended (or at the budget); the static decoder must cut and pad the same way.
    stop = int(expected[0, 5])
    expected_stop = _generate(sharp, inputs, {stop})
    got_stop = _static(decoder, inputs, {stop})
    assert got_stop.tolist() == expected_stop.tolist()
    assert PAD_TOKEN_ID in got_stop[0].tolist()


def test_compiled_step_matches_and_is_reused_across_tokens_and_calls(sharp: LoadedModel) -> None:
    decoder = StaticGreedyDecoder(sharp.model, compile=True, compile_backend="eager")
    first = _inputs(sharp, [("Summarise the admission.", 0)])
    second = _inputs(sharp, [("Any new labs since last week? " * 3, 0)])

    before = _graphs()
    assert _static(decoder, first, EOS).tolist() == _generate(sharp, first, EOS).tolist()
    assert _graphs() - before == 1  # one graph for all 23 steps: nothing recompiles per token
    assert _static(decoder, second, EOS).tolist() == _generate(sharp, second, EOS).tolist()
    assert _graphs() - before == 1  # another prompt length, same (batch, bucket): reused
    assert decoder.compiled_shapes == [(1, 2048)]


async def test_backend_falls_back_to_generate_when_the_compiled_step_fails(
    sharp: LoadedModel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    request = ModelRequest(
        messages=(Message(role="user", content=(TextPart(text="List the active problems."),)),),
        settings=GenerationSettings(max_new_tokens=8),
    )
    async with TransformersBackend(sharp, compile="off") as eager:
        assert eager.decoding == "generate"
        expected = await eager.generate(request)

    compiled = StaticGreedyDecoder(sharp.model, compile=True, compile_backend="eager")
    sharp.decoders[True] = compiled
    try:
        async with TransformersBackend(sharp, compile="on") as backend:
            assert backend.decoding == "static-compiled"
            assert (await backend.generate(request)).text == expected.text

            def out_of_memory(*args: Any) -> Any:
                raise torch.OutOfMemoryError("CUDA out of memory")

            monkeypatch.setattr(compiled, "_step", out_of_memory)
            assert (await backend.generate(request)).text == expected.text
            assert backend.decoding == "static-compiled"  # memory runs out; the decoder stays
            assert compiled._states == {}  # its caches are dropped

            def broken(*args: Any) -> Any:
                raise RuntimeError("inductor failed to lower a kernel")

            monkeypatch.setattr(compiled, "_step", broken)
            with caplog.at_level(logging.WARNING, logger="tools.medgemma.transformers_backend"):
                result = await backend.generate(request)
            assert result.text == expected.text
            assert backend.decoding == "generate"
            assert sharp.decoders == {}
            [record] = [r for r in caplog.records if "compiled decoding failed" in r.getMessage()]
            assert "RuntimeError: inductor failed to lower a kernel" in record.getMessage()
    finally:
        sharp.decoders.clear()


async def test_auto_decodes_with_generate_on_a_cpu(sharp: LoadedModel) -> None:
    async with TransformersBackend(sharp) as backend:
        assert backend.decoding == "generate"
        assert backend.warm_up() == 0.0


def test_the_compile_setting_reaches_the_transformers_config_and_is_refused_for_a_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.settings import Settings
    from tools.medgemma.config import ModelConfig
    from tools.medgemma.errors import ModelConfigurationError

    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "transformers")
    assert ModelConfig.from_settings(Settings()).compile == "auto"
    monkeypatch.setenv("CHARTAGENT_MODEL_COMPILE", "off")
    assert ModelConfig.from_settings(Settings()).compile == "off"
    monkeypatch.setenv("CHARTAGENT_MODEL_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="model_compile"):
        Settings()
    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "openai")
    monkeypatch.setenv("CHARTAGENT_MODEL_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("CHARTAGENT_MODEL_COMPILE", "on")
    with pytest.raises(ModelConfigurationError, match="transformers backend only"):
        ModelConfig.from_settings(Settings())
