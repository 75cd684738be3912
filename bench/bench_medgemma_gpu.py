#!/usr/bin/env python3
"""GPU benchmark of MedGemma 1.5 4B's architecture with random weights.

Builds `transformers.Gemma3ForConditionalGeneration` from a config object (never from the hub;
nothing is downloaded) and times the requests ChartAgent sends it:

1. one CT study: 85 slices (each `<start_of_image>` + 256 image tokens + `<end_of_image>` followed
   by "SLICE n"), instruction and question text, 300 forced new tokens (greedy,
   min_new_tokens = max_new_tokens so EOS cannot stop it): vision-encoder time, time to first token
   (vision + decoder prefill), decode ms/token, total;
2. one chest X-ray: 1 image + prompt, 100 new tokens;
3. batches of CXR-sized requests (1, 2, 4, 8, 16): aggregate prefill and decode tokens/s, peak memory;
4. each against the physical floor in DESIGN.md (compute-bound prefill at an achievable bf16
   rate; memory-bound decode at the GPU's achievable HBM bandwidth), printed as
   `bench medgemma-<what>: <ratio>x (<ours> vs <floor>)` with ratio = floor / ours, i.e. the
   fraction of the physical floor reached (1.0x = at the floor).

Decoding (`--decode`): `eager` is transformers' `generate` with its dynamic cache (the baseline);
`static` and `compiled` are ChartAgent's `tools.medgemma.static_decoding` (static KV cache, one
decode step; `compiled` = torch.compile mode reduce-overhead, i.e. CUDA graphs), what the
in-process backend runs for greedy requests. The CT study and the single CXR are measured with
each mode on the same inputs; compiling happens in a warm-up outside the timed runs, and the
tokens are compared with eager's. Default: eager,compiled on CUDA, eager,static on a CPU.

Random weights give meaningless text but the same shapes, kernels and memory traffic as the
real checkpoint, so the timings are those of `google/medgemma-1.5-4b-it` on this software stack.

    python3 bench/bench_medgemma_gpu.py                      # medgemma-4b on CUDA if present
    python3 bench/bench_medgemma_gpu.py --config tiny --device cpu --quick
    bench/gpu_check.sh                                       # the GPU session's one run (under 8 min)

Time to first token and decode ms/token come from per-token timestamps inside
`generate(max_new_tokens=N)` (a stopping criterion that never stops); the vision encoder is
timed separately via `get_image_features`; "decoder prefill" = TTFT - vision.
Keeps to APIs present in transformers 5.0-5.24 (config fields are set defensively).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools.medgemma.static_decoding

# Gemma 3 tokenizer ids (DESIGN.md); a few text ids are approximate, which is harmless here.
BOS_ID = 2
EOS_ID = 1
PAD_ID = 0
START_OF_TURN_ID = 105
END_OF_TURN_ID = 106
NEWLINE_ID = 107
DOUBLE_NEWLINE_ID = 108
USER_ID = 2364
MODEL_ID = 4368
BOI_ID = 255_999
EOI_ID = 256_000
IMAGE_TOKEN_ID = 262_144

DECODE_MODES = ("eager", "static", "compiled")
AIM_X_FLOOR = 3.0  # issue 12: decode and the CT study within 3x their floors on the GPU

# Lengths of the text parts of a request (tokens), close to Google's CT / CXR prompts.
CT_INSTRUCTION_TOKENS = 80
CT_QUESTION_TOKENS = 30
SLICE_LABEL_TOKENS = 3  # "SLICE 17"
CXR_PROMPT_TOKENS = 60

# Floors from DESIGN.md: prefill is compute-bound at an achievable ~800 TFLOP/s bf16 on
# H100/H200 (989 dense peak); decode is memory-bound at the achievable HBM bandwidth.
DESIGN_CT_TFLOP = 650.0
DESIGN_CT_FLOOR_S = 0.8
ACHIEVABLE_BF16_TFLOPS = 800.0
# name fragment -> (nominal HBM TB/s, measured/achievable TB/s, achievable bf16 TFLOP/s)
GPU_SPECS: list[tuple[str, float, float, float]] = [
    ("GH200", 4.0, 3.6, ACHIEVABLE_BF16_TFLOPS),  # before "H200": matched by substring, first wins
    ("H200", 4.8, 4.3, ACHIEVABLE_BF16_TFLOPS),
    ("H100 NVL", 3.9, 3.5, ACHIEVABLE_BF16_TFLOPS * 0.85),
    ("H100 PCIe", 2.0, 1.8, ACHIEVABLE_BF16_TFLOPS * 0.76),
    ("H100", 3.35, 3.0, ACHIEVABLE_BF16_TFLOPS),
    ("H800", 3.35, 3.0, ACHIEVABLE_BF16_TFLOPS),
]
REFERENCE_GPU = ("H100 (reference; not the device measured)", 3.35, 3.0, ACHIEVABLE_BF16_TFLOPS)

ARCHITECTURES: dict[str, dict[str, Any]] = {
    # MedGemma 1.5 4B == Gemma 3 4B: the text decoder and SigLIP-So400m at 896.
    "medgemma-4b": {
        "text": {
            "vocab_size": 262_208,
            "hidden_size": 2560,
            "intermediate_size": 10_240,
            "num_hidden_layers": 34,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "query_pre_attn_scalar": 256,
            "sliding_window": 1024,
            "sliding_window_pattern": 6,  # 5 local : 1 global
            "rope_theta_global": 1_000_000.0,
            "rope_theta_local": 10_000.0,
            "rope_scaling_global": {"rope_type": "linear", "factor": 8.0},
            "max_position_embeddings": 131_072,
        },
        "vision": {
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "patch_size": 14,
            "image_size": 896,
        },
        "mm_tokens_per_image": 256,
    },
    # CI-sized: same code path, image size and token layout; runs on CPU in seconds.
    "tiny": {
        "text": {
            "vocab_size": 262_208,  # keeps the real special-token ids
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "query_pre_attn_scalar": 32,
            "sliding_window": 512,
            "sliding_window_pattern": 2,  # layer 0 local, layer 1 global
            "rope_theta_global": 1_000_000.0,
            "rope_theta_local": 10_000.0,
            "rope_scaling_global": None,
            "max_position_embeddings": 131_072,
        },
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "patch_size": 14,
            "image_size": 896,
        },
        "mm_tokens_per_image": 256,
    },
}


# --------------------------------------------------------------------------------------------
# config and model


def _layer_types(num_layers: int, pattern: int) -> list[str]:
    return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(num_layers)]


def _text_config(spec: dict[str, Any]) -> Any:
    """Gemma3TextConfig; rope fields differ between transformers releases, so try both styles."""
    from transformers import Gemma3TextConfig

    common = {
        k: spec[k]
        for k in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "query_pre_attn_scalar",
            "sliding_window",
            "max_position_embeddings",
        )
    }
    common.update(
        hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        bos_token_id=BOS_ID,
        tie_word_embeddings=True,
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
        layer_types=_layer_types(spec["num_hidden_layers"], spec["sliding_window_pattern"]),
    )
    global_rope: dict[str, Any] = {"rope_type": "default", "rope_theta": spec["rope_theta_global"]}
    if spec["rope_scaling_global"]:
        global_rope.update(spec["rope_scaling_global"])
    attempts: list[dict[str, Any]] = [
        # transformers >= 5.0: per-layer-type rope_parameters
        {
            "rope_parameters": {
                "full_attention": global_rope,
                "sliding_attention": {"rope_type": "default", "rope_theta": spec["rope_theta_local"]},
            }
        },
        # transformers 4.x: rope_theta / rope_local_base_freq / rope_scaling
        {
            "rope_theta": spec["rope_theta_global"],
            "rope_local_base_freq": spec["rope_theta_local"],
            "rope_scaling": spec["rope_scaling_global"],
            "sliding_window_pattern": spec["sliding_window_pattern"],
        },
    ]
    errors: list[str] = []
    for extra in attempts:
        try:
            cfg = Gemma3TextConfig(**common, **extra)
        except (TypeError, ValueError, KeyError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if list(getattr(cfg, "layer_types", common["layer_types"])) != common["layer_types"]:
            errors.append("layer_types not kept")
            continue
        return cfg
    raise RuntimeError("could not build Gemma3TextConfig: " + " | ".join(errors))


def _vision_config(spec: dict[str, Any]) -> Any:
    from transformers import SiglipVisionConfig

    kwargs = dict(spec, num_channels=3, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    try:
        return SiglipVisionConfig(**kwargs, vision_use_head=False)  # Gemma 3 drops SigLIP's pooling head
    except (TypeError, ValueError):
        return SiglipVisionConfig(**kwargs)


def build_config(name: str) -> Any:
    """The `Gemma3Config` for `name` ("medgemma-4b" or "tiny"), built locally."""
    from transformers import Gemma3Config

    arch = ARCHITECTURES[name]
    return Gemma3Config(
        text_config=_text_config(arch["text"]),
        vision_config=_vision_config(arch["vision"]),
        mm_tokens_per_image=arch["mm_tokens_per_image"],
        boi_token_index=BOI_ID,
        eoi_token_index=EOI_ID,
        image_token_index=IMAGE_TOKEN_ID,
        initializer_range=0.02,
        tie_word_embeddings=True,
    )


def config_summary(config: Any) -> dict[str, Any]:
    tc, vc = config.text_config, config.vision_config
    layer_types = list(getattr(tc, "layer_types", None) or [])
    rope = getattr(tc, "rope_parameters", None)
    if isinstance(rope, dict) and "full_attention" in rope:
        theta_global = rope["full_attention"].get("rope_theta")
        theta_local = rope.get("sliding_attention", {}).get("rope_theta")
    else:
        theta_global = getattr(tc, "rope_theta", None)
        theta_local = getattr(tc, "rope_local_base_freq", None)
    patches_per_side = vc.image_size // vc.patch_size
    return {
        "text_hidden": tc.hidden_size,
        "text_layers": tc.num_hidden_layers,
        "heads": tc.num_attention_heads,
        "kv_heads": tc.num_key_value_heads,
        "head_dim": tc.head_dim,
        "intermediate": tc.intermediate_size,
        "vocab": tc.vocab_size,
        "sliding_window": tc.sliding_window,
        "sliding_layers": layer_types.count("sliding_attention"),
        "full_layers": layer_types.count("full_attention"),
        "rope_theta_global": theta_global,
        "rope_theta_local": theta_local,
        "query_pre_attn_scalar": tc.query_pre_attn_scalar,
        "vision_hidden": vc.hidden_size,
        "vision_layers": vc.num_hidden_layers,
        "vision_heads": vc.num_attention_heads,
        "vision_intermediate": vc.intermediate_size,
        "patch": vc.patch_size,
        "image": vc.image_size,
        "patches_per_image": patches_per_side**2,
        "mm_tokens_per_image": config.mm_tokens_per_image,
        "image_token_id": config.image_token_index,
        "boi_token_id": config.boi_token_index,
        "eoi_token_id": config.eoi_token_index,
    }


def count_parameters(model: Any) -> int:
    """Unique parameters (the tied lm_head / embedding counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def vision_tower(model: Any) -> Any:
    """The SigLIP tower (under `model.model` since transformers 4.52, on the model before)."""
    inner = getattr(model, "model", None)
    tower = getattr(inner, "vision_tower", None)
    return tower if tower is not None else model.vision_tower


def build_model(config: Any, device: str, dtype: Any, attn: str = "sdpa") -> tuple[Any, str]:
    """Random-weight model built directly on `device` in `dtype`; falls back to eager attention."""
    import torch
    from transformers import Gemma3ForConditionalGeneration

    last: Exception | None = None
    for impl in (attn, "eager") if attn != "eager" else ("eager",):
        for dtype_kw in ("dtype", "torch_dtype"):
            try:
                with torch.device(device):
                    model = Gemma3ForConditionalGeneration._from_config(  # type: ignore[no-untyped-call]
                        config, attn_implementation=impl, **{dtype_kw: dtype}
                    )
            except TypeError as exc:  # an older/newer name for the dtype argument
                last = exc
                continue
            except (ValueError, ImportError) as exc:  # attention implementation not supported
                last = exc
                break
            # Built in place already; an older release that ignored the dtype argument gets cast
            # (a full `.to(dtype)` would also cast the fp32 rope buffers, so only when needed).
            if next(model.parameters()).dtype != dtype:
                model = model.to(dtype=dtype)
            model = model.to(device=device)  # no-op for what was built in place; catches stray buffers
            model.eval()
            return model, impl
    raise RuntimeError(f"could not build the model: {last}")


# --------------------------------------------------------------------------------------------
# inputs


def _text(n: int, rng: Any) -> list[int]:
    # ordinary vocabulary ids, away from the special and image-token ranges
    return [int(x) for x in rng.integers(1000, 200_000, size=n)]


def _image_block(tokens_per_image: int) -> list[int]:
    # what Gemma3Processor expands one image into
    return [DOUBLE_NEWLINE_ID, BOI_ID, *([IMAGE_TOKEN_ID] * tokens_per_image), EOI_ID, DOUBLE_NEWLINE_ID]


def ct_prompt_ids(n_slices: int, tokens_per_image: int, seed: int = 0) -> list[int]:
    """Google's CT recipe: instruction, then per slice the image and "SLICE n", question last."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = [BOS_ID, START_OF_TURN_ID, USER_ID, NEWLINE_ID, *_text(CT_INSTRUCTION_TOKENS, rng)]
    for _ in range(n_slices):
        ids += _image_block(tokens_per_image) + _text(SLICE_LABEL_TOKENS, rng)
    ids += _text(CT_QUESTION_TOKENS, rng)
    ids += [END_OF_TURN_ID, NEWLINE_ID, START_OF_TURN_ID, MODEL_ID, NEWLINE_ID]
    return ids


def cxr_prompt_ids(tokens_per_image: int, seed: int = 1) -> list[int]:
    """One chest X-ray, then the prompt (localization / report)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = [BOS_ID, START_OF_TURN_ID, USER_ID, NEWLINE_ID, *_image_block(tokens_per_image)]
    ids += _text(CXR_PROMPT_TOKENS, rng)
    ids += [END_OF_TURN_ID, NEWLINE_ID, START_OF_TURN_ID, MODEL_ID, NEWLINE_ID]
    return ids


def make_inputs(
    prompt: list[int], images_per_request: int, batch: int, image_size: int, device: str, dtype: Any
) -> dict[str, Any]:
    """Model inputs as Gemma3Processor would produce them (token_type_ids 1 on image tokens)."""
    import torch

    input_ids = torch.tensor([prompt] * batch, dtype=torch.long, device=device)
    gen = torch.Generator(device="cpu").manual_seed(1234)
    pixel_values = torch.randn(batch * images_per_request, 3, image_size, image_size, generator=gen)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "token_type_ids": (input_ids == IMAGE_TOKEN_ID).long(),
        "pixel_values": pixel_values.to(device=device, dtype=dtype),
    }


# --------------------------------------------------------------------------------------------
# analytic cost model


def _text_layer_params(tc: Any) -> int:
    h = tc.hidden_size
    q = tc.num_attention_heads * tc.head_dim
    kv = tc.num_key_value_heads * tc.head_dim
    return int(h * (q + 2 * kv + q) + 3 * h * tc.intermediate_size)


def vision_flops_per_image(config: Any) -> float:
    """SigLIP over all patches of one image incl. attention, plus the projector."""
    vc, tc = config.vision_config, config.text_config
    n = (vc.image_size // vc.patch_size) ** 2
    d, ff = vc.hidden_size, vc.intermediate_size
    patch_embed = 2 * n * (vc.num_channels * vc.patch_size**2) * d
    linear = 2 * n * (4 * d * d + 2 * d * ff)
    attention = 4 * n * n * d  # QK^T and PV
    projector = 2 * config.mm_tokens_per_image * d * tc.hidden_size
    return float(patch_embed + vc.num_hidden_layers * (linear + attention) + projector)


def _attended_pairs(seq: int, window: int | None) -> int:
    if window is None or window >= seq:
        return seq * (seq + 1) // 2
    return window * (window + 1) // 2 + (seq - window) * window


def decoder_prefill_flops(config: Any, seq: int, batch: int = 1) -> float:
    """Decoder prefill: 2 x tokens x layer params + causal/sliding attention + lm_head on the last token."""
    tc = config.text_config
    layer_types = list(getattr(tc, "layer_types", None) or ["full_attention"] * tc.num_hidden_layers)
    qdim = tc.num_attention_heads * tc.head_dim
    linear = 2 * seq * tc.num_hidden_layers * _text_layer_params(tc)
    attention = sum(
        4 * qdim * _attended_pairs(seq, tc.sliding_window if t == "sliding_attention" else None)
        for t in layer_types
    )
    lm_head = 2 * tc.hidden_size * tc.vocab_size
    return float(batch * (linear + attention + lm_head))


def decode_bytes_per_step(config: Any, context: int, batch: int, bytes_per_elem: int) -> float:
    """HBM bytes one decode step must read: decoder weights + lm_head once, each sequence's KV cache."""
    tc = config.text_config
    layer_types = list(getattr(tc, "layer_types", None) or ["full_attention"] * tc.num_hidden_layers)
    weights = tc.num_hidden_layers * _text_layer_params(tc) + tc.vocab_size * tc.hidden_size
    kv_per_token = 2 * tc.num_key_value_heads * tc.head_dim
    kv = sum(
        kv_per_token * (min(context, tc.sliding_window) if t == "sliding_attention" else context)
        for t in layer_types
    )
    return float(bytes_per_elem * (weights + batch * kv))


def decode_weight_bytes(config: Any, bytes_per_elem: int) -> float:
    return decode_bytes_per_step(config, 0, 1, bytes_per_elem)


# --------------------------------------------------------------------------------------------
# timing


class Timer:
    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def __call__(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        return time.perf_counter() - t0, out

    def reset_peak(self) -> None:
        if self.cuda:
            self.sync()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        if self.cuda:
            return self.torch.cuda.max_memory_allocated() / 2**30
        return None


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom_types = tuple(
        t
        for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
        if t
    )
    return isinstance(exc, oom_types) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def generate(model: Any, inputs: dict[str, Any], new_tokens: int, stopping_criteria: Any = None) -> Any:
    """Greedy, exactly `new_tokens` tokens (EOS suppressed until then)."""
    kwargs: dict[str, Any] = {}
    if stopping_criteria is not None:
        kwargs["stopping_criteria"] = stopping_criteria
    return model.generate(
        **inputs,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=PAD_ID,
        eos_token_id=[EOS_ID, END_OF_TURN_ID],
        **kwargs,
    )


def step_clock(timer: Timer) -> Any:
    """A never-stopping stopping criterion that timestamps every generated token.

    `generate` calls it once per step right after the step's token is chosen, so the first
    stamp is the time to first token (vision + prefill + first sample) and the rest are decode
    steps. `generate` already waits for the GPU every step (its stop check reads a device
    tensor), so the synchronize here costs nothing extra.
    """
    import torch
    from transformers import StoppingCriteria

    class StepClock(StoppingCriteria):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            timer.sync()
            self.stamps.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StepClock()


def image_features(model: Any, pixel_values: Any) -> Any:
    """SigLIP + projector; `get_image_features` on the model or its inner `model`, else the parts."""
    for owner in (model, getattr(model, "model", None)):
        fn = getattr(owner, "get_image_features", None)
        if fn is not None:
            return fn(pixel_values)
    inner = getattr(model, "model", model)
    hidden = vision_tower(model)(pixel_values=pixel_values).last_hidden_state
    return inner.multi_modal_projector(hidden)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run_request(
    model: Any,
    timer: Timer,
    inputs: dict[str, Any],
    new_tokens: int,
    reps: int,
    time_vision: bool = True,
) -> dict[str, Any]:
    """Warm up, time the vision encoder alone, then `reps` generate(new_tokens) runs whose
    per-token timestamps give time to first token and decode time per step (medians over reps)."""
    import torch
    from transformers import StoppingCriteriaList

    prompt_len = int(inputs["input_ids"].shape[1])
    batch = int(inputs["input_ids"].shape[0])
    timer.reset_peak()
    vision: list[float] = []
    ttft: list[float] = []
    decode_step: list[float] = []
    totals: list[float] = []
    generated = 0
    tokens: list[list[int]] = []
    with torch.inference_mode():
        generate(model, inputs, min(2, new_tokens))  # warm-up (kernels, allocator, mask paths)
        if time_vision:
            for _ in range(reps):
                vision.append(timer(lambda: image_features(model, inputs["pixel_values"]))[0])
        for _ in range(reps):
            clock = step_clock(timer)
            timer.sync()
            t0 = time.perf_counter()
            out = generate(model, inputs, new_tokens, StoppingCriteriaList([clock]))
            timer.sync()
            totals.append(time.perf_counter() - t0)
            generated = int(out.shape[1]) - prompt_len
            tokens = out[:, prompt_len:].tolist()
            stamps = clock.stamps
            ttft.append(stamps[0] - t0)
            if len(stamps) > 1:
                decode_step.append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
    t_first = _median(ttft)
    step_s = _median(decode_step)
    result: dict[str, Any] = {
        "batch": batch,
        "prompt_tokens": prompt_len,
        "new_tokens": new_tokens,
        "generated_tokens": generated,
        "vision_s": _median(vision) if vision else None,
        "ttft_s": t_first,
        "total_s": _median(totals),
        "decode_ms_per_token": 1e3 * step_s,
        "prefill_tokens_per_s": batch * prompt_len / t_first,
        "decode_tokens_per_s": batch / step_s if step_s > 0 else float("nan"),
        "peak_mem_gib": timer.peak_gib(),
        "reps": reps,
        "ttft_all_s": ttft,
        "decode_ms_per_token_all": [1e3 * x for x in decode_step],
        "tokens": tokens,
    }
    if result["vision_s"] is not None:
        result["decoder_prefill_s"] = max(t_first - result["vision_s"], 0.0)
    return result


def run_static(
    decoder: Any, timer: Timer, inputs: dict[str, Any], new_tokens: int, reps: int, eager_tokens: Any
) -> dict[str, Any]:
    """The static decoder on the same inputs: a warm-up (compile, CUDA-graph recording) for this
    (batch, cache) bucket, then `reps` timed runs of exactly `new_tokens` tokens (no end token).
    TTFT is when the first token exists; decode ms/token = (total - TTFT) / (new_tokens - 1)."""
    import torch

    prompt_len = int(inputs["input_ids"].shape[1])
    batch = int(inputs["input_ids"].shape[0])
    warm_s = timer(lambda: decoder.warm_up(batch=batch, cache_tokens=prompt_len + new_tokens))[0]
    timer.reset_peak()
    ttft: list[float] = []
    totals: list[float] = []
    tokens: list[list[int]] = []
    stamp: list[float] = []
    with torch.inference_mode():
        for _ in range(reps):
            stamp.clear()
            timer.sync()
            t0 = time.perf_counter()
            out = decoder.generate(
                inputs,
                max_new_tokens=new_tokens,
                eos_ids=(),
                pad_id=PAD_ID,
                on_first_token=lambda: stamp.append(time.perf_counter()),
            )
            timer.sync()
            totals.append(time.perf_counter() - t0)
            ttft.append(stamp[0] - t0)
            tokens = out.tolist()
    t_first, total = _median(ttft), _median(totals)
    step_s = (total - t_first) / (new_tokens - 1) if new_tokens > 1 else float("nan")
    mismatch = _first_mismatch(tokens, eager_tokens)
    return {
        "batch": batch,
        "prompt_tokens": prompt_len,
        "new_tokens": new_tokens,
        "generated_tokens": len(tokens[0]) if tokens else 0,
        "warm_up_s": warm_s,
        "ttft_s": t_first,
        "total_s": total,
        "decode_ms_per_token": 1e3 * step_s,
        "decode_tokens_per_s": batch / step_s if step_s > 0 else float("nan"),
        "peak_mem_gib": timer.peak_gib(),
        "reps": reps,
        "ttft_all_s": ttft,
        "total_all_s": totals,
        "tokens_match_eager": mismatch is None,
        "first_mismatch": mismatch,
        "compiled_shapes": decoder.compiled_shapes,
    }


def _first_mismatch(ours: list[list[int]], eager: Any) -> list[int] | None:
    """[row, index] of the first token that differs from eager's (None when all agree)."""
    for row, (a, b) in enumerate(zip(ours, eager or [], strict=False)):
        for index, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return [row, index]
        if len(a) != len(b):
            return [row, min(len(a), len(b))]
    return None


def make_decoder(model: Any, mode: str) -> Any:
    from tools.medgemma.static_decoding import StaticGreedyDecoder

    return StaticGreedyDecoder(model, compile=mode == "compiled")


def profile_decode_steps(model: Any, inputs: dict[str, Any], steps: int, device: str) -> list[dict[str, Any]]:
    """Op and kernel times (GPU time on CUDA) of a prefill and `steps` eager static decode steps
    (no CUDA graph hides the kernels): which attention kernel the masked static cache gets, and
    what a step spends beside reading the weights. Ops and the kernels they launch both appear."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    decoder = make_decoder(model, "static")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch.inference_mode():
        decoder.generate(inputs, max_new_tokens=2, eos_ids=(), pad_id=PAD_ID)  # allocate the cache
        # prefill (one step) is in the trace too: its kernels are the long ones, decode's are x steps
        with profile(activities=activities) as prof:
            decoder.generate(inputs, max_new_tokens=steps + 1, eos_ids=(), pad_id=PAD_ID)
    decoder.release()
    key = "device_time_total" if device.startswith("cuda") else "cpu_time_total"
    rows = []
    for event in prof.key_averages():
        total = getattr(event, key, None)
        if total is None and key == "device_time_total":
            total = getattr(event, "cuda_time_total", 0)
        rows.append({"name": event.key[:90], "calls": int(event.count), "total_ms": float(total or 0) / 1e3})
    rows.sort(key=lambda row: row["total_ms"], reverse=True)
    return rows[:15]


def measure_static_modes(
    name: str,
    r: dict[str, Any],
    decoders: dict[str, Any],
    timer: Timer,
    inputs: dict[str, Any],
    new_tokens: int,
    reps: int,
    floors: tuple[float, float],
    lines: list[str],
) -> None:
    """Each static mode on the inputs eager just ran; adds r[mode] and bench lines."""
    floor_step, floor_total = floors
    for mode, decoder in decoders.items():
        try:
            s = run_static(decoder, timer, inputs, new_tokens, reps, r.get("tokens"))
        except Exception as exc:
            if not _is_oom(exc) and mode != "compiled":
                raise
            s = {"error": type(exc).__name__, "detail": str(exc)[:500]}
            print(f"  {mode}: FAILED {type(exc).__name__}: {str(exc)[:300]}")
            r[mode] = s
            continue
        r[mode] = s
        step = s["decode_ms_per_token"] / 1e3
        agree = "match eager" if s["tokens_match_eager"] else f"differ from eager at {s['first_mismatch']}"
        print(
            f"  {mode}: warm-up {fmt_seconds(s['warm_up_s'])} (outside timing); "
            f"TTFT {fmt_seconds(s['ttft_s'])}; "
            f"decode {s['decode_ms_per_token']:.2f} ms/token ({step / floor_step:.2f}x the floor, "
            f"{r['decode_ms_per_token'] / s['decode_ms_per_token']:.1f}x faster than eager); "
            f"total {fmt_seconds(s['total_s'])} ({s['total_s'] / floor_total:.2f}x the floor); "
            f"tokens {agree}"
        )
        lines.append(bench_line(f"{name}-decode-per-token-{mode}", step, floor_step))
        lines.append(
            f"bench medgemma-{name}-decode-{mode}-vs-eager: "
            f"{r['decode_ms_per_token'] / s['decode_ms_per_token']:.3g}x "
            f"({s['decode_ms_per_token']:.2f} ms vs {r['decode_ms_per_token']:.2f} ms per token, same run)"
        )
        lines.append(bench_line(f"{name}-total-{mode}", s["total_s"], floor_total))


# --------------------------------------------------------------------------------------------
# reporting


def gpu_spec(device: str, hbm_override: float | None, tflops_override: float | None) -> dict[str, Any]:
    name = "cpu"
    spec = REFERENCE_GPU
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name()
        for entry in GPU_SPECS:
            if entry[0].lower() in name.lower():
                spec = entry
                break
        else:
            spec = (f"{name} (unknown; H100 figures assumed)", *REFERENCE_GPU[1:])
    return {
        "device_name": name,
        "floor_basis": spec[0],
        "hbm_nominal_tbs": spec[1],
        "hbm_tbs": hbm_override or spec[2],
        "bf16_tflops": tflops_override or spec[3],
    }


def fmt_seconds(s: float | None) -> str:
    if s is None or math.isnan(s):
        return "-"
    if s >= 1.0:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.2f} us"


def bench_line(what: str, ours_s: float, floor_s: float) -> str:
    """`bench medgemma-<what>: <floor/ours>x (<ours> vs <floor> floor)`."""
    ratio = floor_s / ours_s if ours_s > 0 else float("nan")
    times = ours_s / floor_s if floor_s > 0 else float("nan")
    return (
        f"bench medgemma-{what}: {ratio:.3g}x ({fmt_seconds(ours_s)} vs {fmt_seconds(floor_s)} floor; "
        f"{times:.2f}x the floor, aim <= {AIM_X_FLOOR:g}x)"
    )


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": str(torch.version.cuda),
    }


# --------------------------------------------------------------------------------------------
# main


def _parse_batches(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=sorted(ARCHITECTURES), default="medgemma-4b")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--batches", type=_parse_batches, default=None, help="CXR batch sizes (default 1,2,4,8,16)"
    )
    p.add_argument("--ct-slices", type=int, default=None, help="CT images per study (default 85; tiny: 4)")
    p.add_argument("--new-tokens", type=int, default=None, help="forced new tokens for CT (default 300)")
    p.add_argument(
        "--cxr-new-tokens", type=int, default=None, help="new tokens per CXR request (default 100)"
    )
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3, --quick 1)")
    p.add_argument("--quick", action="store_true", help="one timed repetition per measurement")
    p.add_argument("--skip", default="", help="comma list of parts to skip: ct,cxr,batch")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    p.add_argument("--hbm-tbs", type=float, default=None, help="override achievable HBM bandwidth (TB/s)")
    p.add_argument("--tflops", type=float, default=None, help="override achievable bf16 TFLOP/s")
    p.add_argument(
        "--decode",
        default=None,
        help="comma list of eager,static,compiled (default eager,compiled on CUDA; eager,static on CPU)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="CT: profile 16 eager static decode steps (kernel times) after the timed runs",
    )
    p.add_argument("--json", default=None, help="write all results to this path")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    tiny = args.config == "tiny"
    if args.batches is None:
        args.batches = [1, 2, 4] if tiny else [1, 2, 4, 8, 16]
    if args.ct_slices is None:
        args.ct_slices = 4 if tiny else 85
    if args.new_tokens is None:
        args.new_tokens = 16 if tiny else 300
    if args.cxr_new_tokens is None:
        args.cxr_new_tokens = 8 if tiny else 100
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.decode is not None:
        args.decode = [m.strip() for m in args.decode.split(",") if m.strip()]
        unknown = sorted(set(args.decode) - set(DECODE_MODES))
        if unknown:
            p.error(f"--decode: unknown mode(s) {', '.join(unknown)}; use {', '.join(DECODE_MODES)}")
    return args


@contextlib.contextmanager
def _section(title: str) -> Iterator[None]:
    print(f"\n== {title}", flush=True)
    yield


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # partial output survives a kill

    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.manual_seed(args.seed)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 2
    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    bytes_per_elem = 2 if cuda else 4
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True

    versions = _versions()
    spec = gpu_spec(device, args.hbm_tbs, args.tflops)
    config = build_config(args.config)
    summary = config_summary(config)
    tpi = int(config.mm_tokens_per_image)
    image_size = int(config.vision_config.image_size)

    print(
        f"MedGemma benchmark (random weights): config={args.config} device={device} ({spec['device_name']})"
    )
    print("  " + " ".join(f"{k}={v}" for k, v in versions.items()))
    print("  arch: " + " ".join(f"{k}={v}" for k, v in summary.items()))

    t_init, (model, attn_used) = Timer(device)(lambda: build_model(config, device, dtype, args.attn))
    n_params = count_parameters(model)
    vision_params = count_parameters(vision_tower(model))
    weights_gib = (torch.cuda.memory_allocated() / 2**30) if cuda else None
    print(
        f"  params={n_params / 1e9:.3f}B (vision {vision_params / 1e6:.1f}M) "
        f"dtype={str(dtype).split('.')[-1]} "
        f"attn={attn_used} init={t_init:.1f}s weights_mem={_fmt(weights_gib, '.2f')} GiB"
    )
    print(
        f"  floor basis: {spec['floor_basis']}: HBM {spec['hbm_tbs']} TB/s achievable "
        f"({spec['hbm_nominal_tbs']} nominal), {spec['bf16_tflops']:.0f} TFLOP/s bf16 achievable"
    )
    if not cuda:
        print("  (CPU run: floors below are GPU floors for this config, shown to exercise the report)")

    timer = Timer(device)
    modes = args.decode or (["eager", "compiled"] if cuda else ["eager", "static"])
    decoders = {mode: make_decoder(model, mode) for mode in modes if mode != "eager"}
    print(f"  decoding: {', '.join(modes)} (eager always runs: it is the baseline)")
    results: dict[str, Any] = {
        "config": args.config,
        "device": device,
        "versions": versions,
        "gpu": spec,
        "arch": summary,
        "params": n_params,
        "vision_params": vision_params,
        "attn_implementation": attn_used,
        "dtype": str(dtype),
        "init_s": t_init,
        "weights_mem_gib": weights_gib,
        "reps": args.reps,
        "decode_modes": ["eager", *decoders],
    }
    lines: list[str] = []
    results["bench_lines"] = lines

    def dump() -> None:
        """Write the JSON after every part, so a run cut off by a time limit keeps what it measured."""
        if args.json:
            results["wall_s"] = time.perf_counter() - t_start
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(results, fh, indent=2, default=str)

    dump()
    bw = spec["hbm_tbs"] * 1e12
    flops_rate = spec["bf16_tflops"] * 1e12

    # ---- (1) CT study ---------------------------------------------------------------------
    if "ct" not in args.skip:
        with _section(f"CT study: {args.ct_slices} slices, {args.new_tokens} forced new tokens"):
            prompt = ct_prompt_ids(args.ct_slices, tpi, seed=args.seed)
            try:
                inputs = make_inputs(prompt, args.ct_slices, 1, image_size, device, dtype)
                r = run_request(model, timer, inputs, args.new_tokens, args.reps)
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                r = {"error": "OOM", "detail": str(exc)[:300]}
                print(f"  OOM: {str(exc)[:200]}")
                inputs = None
                _free(device)
            if "error" not in r:
                v_flops = args.ct_slices * vision_flops_per_image(config)
                d_flops = decoder_prefill_flops(config, len(prompt))
                floor_prefill = (v_flops + d_flops) / flops_rate
                ctx = len(prompt) + args.new_tokens // 2
                floor_decode = decode_bytes_per_step(config, ctx, 1, bytes_per_elem) / bw
                r.update(
                    vision_tflop=v_flops / 1e12,
                    decoder_prefill_tflop=d_flops / 1e12,
                    prefill_tflop=(v_flops + d_flops) / 1e12,
                    achieved_prefill_tflops=(v_flops + d_flops) / r["ttft_s"] / 1e12,
                    achieved_vision_tflops=v_flops / r["vision_s"] / 1e12 if r["vision_s"] else None,
                    achieved_decoder_prefill_tflops=(
                        d_flops / r["decoder_prefill_s"] / 1e12 if r.get("decoder_prefill_s") else None
                    ),
                    floor_prefill_s=floor_prefill,
                    floor_vision_s=v_flops / flops_rate,
                    floor_decoder_prefill_s=d_flops / flops_rate,
                    floor_decode_ms_per_token=1e3 * floor_decode,
                    floor_decode_gb_per_token=decode_bytes_per_step(config, ctx, 1, bytes_per_elem) / 1e9,
                )
                print(
                    f"  prompt {r['prompt_tokens']} tokens; generated {r['generated_tokens']}; "
                    f"peak mem {_fmt(r['peak_mem_gib'], '.2f')} GiB"
                )
                fs = fmt_seconds
                print(
                    f"  vision {fs(r['vision_s'])} ({r['vision_tflop']:.3g} TFLOP, "
                    f"{_fmt(r['achieved_vision_tflops'], '.3g')} TFLOP/s; floor {fs(r['floor_vision_s'])})"
                )
                print(
                    f"  decoder prefill {fs(r.get('decoder_prefill_s', float('nan')))} "
                    f"({r['decoder_prefill_tflop']:.3g} TFLOP, "
                    f"{_fmt(r['achieved_decoder_prefill_tflops'], '.3g')} TFLOP/s; "
                    f"floor {fs(r['floor_decoder_prefill_s'])})"
                )
                print(
                    f"  TTFT {fs(r['ttft_s'])} ({r['prefill_tflop']:.3g} TFLOP -> "
                    f"{r['achieved_prefill_tflops']:.3g} TFLOP/s achieved; floor {fs(floor_prefill)}; "
                    f"DESIGN.md for the real model: ~{DESIGN_CT_TFLOP:.0f} TFLOP, ~{DESIGN_CT_FLOOR_S} s)"
                )
                print(
                    f"  decode {r['decode_ms_per_token']:.2f} ms/token "
                    f"(floor {fs(floor_decode)} = {r['floor_decode_gb_per_token']:.3g} GB/token "
                    f"at {spec['hbm_tbs']} TB/s); total {fs(r['total_s'])}"
                )
                lines.append(bench_line("ct-prefill", r["ttft_s"], floor_prefill))
                if r["vision_s"]:
                    lines.append(bench_line("ct-vision", r["vision_s"], r["floor_vision_s"]))
                lines.append(bench_line("ct-decode-per-token", r["decode_ms_per_token"] / 1e3, floor_decode))
                floor_total = floor_prefill + (args.new_tokens - 1) * floor_decode
                lines.append(bench_line("ct-total", r["total_s"], floor_total))
                r["floor_total_s"] = floor_total
                results["ct"] = r
                dump()
                assert inputs is not None  # kept for the static modes
                measure_static_modes(
                    "ct",
                    r,
                    decoders,
                    timer,
                    inputs,
                    args.new_tokens,
                    args.reps,
                    (floor_decode, floor_total),
                    lines,
                )
                if args.profile:
                    rows = profile_decode_steps(model, inputs, 16, device)
                    r["profile_static_16_steps"] = rows
                    print("  profile, prefill + 16 eager static decode steps (top kernels by time):")
                    for row in rows:
                        print(f"    {row['total_ms']:9.2f} ms {row['calls']:6d}x  {row['name']}")
            inputs = None
            _free(device)
            r.pop("tokens", None)
            results["ct"] = r
            dump()

    # ---- (2) one CXR ------------------------------------------------------------------------
    cxr_prompt = cxr_prompt_ids(tpi, seed=args.seed + 1)
    if "cxr" not in args.skip:
        with _section(f"CXR: 1 image, {args.cxr_new_tokens} new tokens"):
            try:
                inputs = make_inputs(cxr_prompt, 1, 1, image_size, device, dtype)
                r = run_request(model, timer, inputs, args.cxr_new_tokens, args.reps)
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                r = {"error": "OOM", "detail": str(exc)[:300]}
                print(f"  OOM: {str(exc)[:200]}")
                inputs = None
                _free(device)
            if "error" not in r:
                flops = vision_flops_per_image(config) + decoder_prefill_flops(config, len(cxr_prompt))
                ctx = len(cxr_prompt) + args.cxr_new_tokens // 2
                floor_decode = decode_bytes_per_step(config, ctx, 1, bytes_per_elem) / bw
                r.update(
                    prefill_tflop=flops / 1e12,
                    floor_prefill_s=flops / flops_rate,
                    floor_decode_ms_per_token=1e3 * floor_decode,
                )
                fs = fmt_seconds
                print(
                    f"  prompt {r['prompt_tokens']} tokens; vision {fs(r['vision_s'])}; "
                    f"TTFT {fs(r['ttft_s'])} "
                    f"(floor {fs(r['floor_prefill_s'])}); decode {r['decode_ms_per_token']:.2f} ms/token "
                    f"(floor {fs(floor_decode)}); total {fs(r['total_s'])}; "
                    f"peak mem {_fmt(r['peak_mem_gib'], '.2f')} GiB"
                )
                lines.append(bench_line("cxr-ttft", r["ttft_s"], r["floor_prefill_s"]))
                lines.append(bench_line("cxr-decode-per-token", r["decode_ms_per_token"] / 1e3, floor_decode))
                floor_total = r["floor_prefill_s"] + (args.cxr_new_tokens - 1) * floor_decode
                assert inputs is not None  # kept for the static modes
                measure_static_modes(
                    "cxr",
                    r,
                    decoders,
                    timer,
                    inputs,
                    args.cxr_new_tokens,
                    args.reps,
                    (floor_decode, floor_total),
                    lines,
                )
            inputs = None
            _free(device)
            r.pop("tokens", None)
            results["cxr"] = r
            dump()

    # ---- (3) batched CXR ----------------------------------------------------------------------
    if "batch" not in args.skip:
        with _section(f"CXR batches {args.batches}: {args.cxr_new_tokens} new tokens each"):
            rows = []
            for b in args.batches:
                try:
                    inputs = make_inputs(cxr_prompt, 1, b, image_size, device, dtype)
                    r = run_request(model, timer, inputs, args.cxr_new_tokens, args.reps, time_vision=False)
                    r.pop("tokens", None)
                except Exception as exc:
                    if not _is_oom(exc):
                        raise
                    r = {"batch": b, "error": "OOM", "detail": str(exc)[:300]}
                    print(f"  batch {b}: OOM, going on")
                finally:
                    inputs = None
                    _free(device)
                if "error" not in r:
                    flops = b * (
                        vision_flops_per_image(config) + decoder_prefill_flops(config, len(cxr_prompt))
                    )
                    ctx = len(cxr_prompt) + args.cxr_new_tokens // 2
                    step_floor = decode_bytes_per_step(config, ctx, b, bytes_per_elem) / bw
                    r.update(
                        floor_prefill_tokens_per_s=b * len(cxr_prompt) / (flops / flops_rate),
                        floor_decode_tokens_per_s=b / step_floor,
                    )
                    lines.append(
                        f"bench medgemma-cxr-b{b}-decode-throughput: "
                        f"{r['decode_tokens_per_s'] / r['floor_decode_tokens_per_s']:.3g}x "
                        f"({r['decode_tokens_per_s']:.0f} tok/s vs "
                        f"{r['floor_decode_tokens_per_s']:.0f} tok/s floor)"
                    )
                rows.append(r)
                results["batches"] = rows
                dump()
            print(
                f"  {'batch':>5} {'TTFT s':>8} {'prefill tok/s':>14} {'(floor)':>10} "
                f"{'decode tok/s':>13} {'(floor)':>10} {'ms/step':>8} {'peak GiB':>9}"
            )
            for r in rows:
                if "error" in r:
                    print(f"  {r['batch']:>5} {r['error']}")
                    continue
                print(
                    f"  {r['batch']:>5} {r['ttft_s']:>8.3f} {r['prefill_tokens_per_s']:>14.0f} "
                    f"{r['floor_prefill_tokens_per_s']:>10.0f} {r['decode_tokens_per_s']:>13.1f} "
                    f"{r['floor_decode_tokens_per_s']:>10.0f} {r['decode_ms_per_token']:>8.2f} "
                    f"{_fmt(r['peak_mem_gib'], '9.2f'):>9}"
                )
            results["batches"] = rows

    # ---- (4) summary ----------------------------------------------------------------------------
    print(
        "\n== Against the physical floor (ratio = floor / ours: fraction of the floor reached, 1.0x = at it)"
    )
    for line in lines:
        print(line)
    dump()
    print(f"\nwall time {time.perf_counter() - t_start:.1f} s")
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
