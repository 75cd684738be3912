"""Greedy decoding with a static KV cache and one compiled decode step (CUDA graphs on a GPU).

    decoder = StaticGreedyDecoder(model, compile=True)      # model: Gemma3ForConditionalGeneration
    decoder.warm_up(cache_tokens=32_768)                     # compiles before any request is timed
    new_ids = decoder.generate(inputs, max_new_tokens=300, eos_ids={1, 106}, pad_id=0)

Why: eager `generate` spends most of a decode step launching kernels from Python (the H200
run of 2026-11-28: 66.5 ms per token where the weights' memory traffic needs 1.94 ms). Here:

- Prefill is the model's own forward with its dynamic cache, exactly as `generate` runs it: the
  vision tower over every image of the batch in one pass, one decoder pass over the prompt with
  the bidirectional image masks, logits for the last position only.
- Its keys and values are then copied into a static cache that every decode step reuses:
  full-attention layers hold `bucket` positions, sliding-window layers a ring of `window` slots
  (position p lives in slot p % window). All decode state is tensors, so a step has the same
  shapes and no Python counter at every token. (transformers' own `StaticSlidingWindowLayer`
  keeps a Python int that torch.compile guards on: its compiled `generate` recompiles at every
  token for Gemma 3, seen with transformers 5.25.)
- One decode step (decoder layers, lm_head, argmax, cache writes) is one function, compiled
  with `torch.compile(mode="reduce-overhead")`: on CUDA a CUDA graph replayed for each token of
  each request with the same (batch, bucket).

Shapes are bucketed so compiles stay bounded: the batch is padded to a power of two (padding
rows attend to their own stale cache; rows never mix) and the cache to a power of two from
2,048 to 32,768 tokens; the prompt length plays no part (prefill is eager). That is at most
5 cache buckets x 5 batch buckets (1..16) graphs, each compiled once per process.

Only plain greedy decoding (no sampling, no logits processors) runs here; the backend sends
anything else to `generate`. Tokens equal `generate`'s token for token up to floating-point
ties: the static steps attend over the same keys, masked instead of absent.

Imports nothing beyond torch and transformers (the GPU benchmark runs it on a machine without
the rest of ChartAgent's dependencies).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "COMPILE_MODES",
    "MAX_CACHE_TOKENS",
    "MIN_CACHE_TOKENS",
    "CompileMode",
    "StaticGreedyDecoder",
    "batch_bucket",
    "cache_bucket",
    "compile_enabled",
    "plain_greedy",
]

log = logging.getLogger(__name__)

CompileMode = Literal["auto", "on", "off"]
COMPILE_MODES: Final = ("auto", "on", "off")
MIN_CACHE_TOKENS: Final = 2048
MAX_CACHE_TOKENS: Final = 32_768  # an 85-slice CT prompt (~22,500 tokens) plus 1,024 new tokens fits
MAX_BATCH_BUCKET: Final = 16
_STOP_CHECK_EVERY: Final = 8  # steps between end-of-sequence checks (each one waits for the GPU)
_LAYER_TYPES: Final = frozenset({"full_attention", "sliding_attention"})
_ATTENTION: Final = frozenset({"sdpa", "eager"})
# (batch buckets) x (cache buckets) graphs of the one step function, plus slack
_RECOMPILE_LIMIT: Final = 64


def compile_enabled(mode: str, device_type: str) -> bool:
    """auto: compiled decoding on CUDA only (on a CPU compiling costs more than it saves)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
    return mode == "on" or (mode == "auto" and device_type == "cuda")


def cache_bucket(tokens: int, *, ceiling: int = MAX_CACHE_TOKENS) -> int | None:
    """The static cache length for `tokens` positions: a power of two >= 2,048; None above `ceiling`."""
    bucket = MIN_CACHE_TOKENS
    while bucket < tokens:
        bucket *= 2
    return bucket if bucket <= ceiling else None


def batch_bucket(batch: int) -> int:
    """The decode batch: `batch` rounded up to a power of two."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    return 1 << (batch - 1).bit_length()


_NEUTRAL: Final = {
    "repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "guidance_scale": (None, 1.0),
    "min_new_tokens": (None, 0),
    "min_length": (None, 0),
    "watermarking_config": (None,),
    "num_beams": (None, 1),
    "num_return_sequences": (None, 1),
}


def plain_greedy(generation_config: Any) -> bool:
    """True when `generate` with this config would take the argmax of the raw logits each step."""
    if getattr(generation_config, "do_sample", False):
        return False
    return all(getattr(generation_config, name, None) in neutral for name, neutral in _NEUTRAL.items())


# --------------------------------------------------------------------------------------------
# static cache


@functools.cache
def _cache_classes() -> tuple[type, type]:
    """The cache layer and cache classes, built once (torch.compile guards on their identity)."""
    import torch
    from transformers import cache_utils

    # Any: transformers' classes are untyped, and these only override what decoding calls.
    layer_base: Any = cache_utils.CacheLayerMixin
    cache_base: Any = cache_utils.Cache

    class _Layer(layer_base):  # type: ignore[misc]
        """One layer's keys/values in `length` slots, written at the position (full attention)
        or at position % length (a sliding layer's ring)."""

        is_compileable = True
        is_croppable = False

        def __init__(
            self, shape: tuple[int, int, int, int], *, sliding: bool, position: Any, dtype: Any
        ) -> None:
            super().__init__()
            self.length = shape[2]
            self.is_sliding = sliding
            self.position = position
            self.device = position.device
            self.keys = torch.zeros(shape, dtype=dtype, device=self.device)
            self.values = torch.zeros(shape, dtype=dtype, device=self.device)
            self.is_initialized = True
            torch._dynamo.mark_static_address(self.keys)
            torch._dynamo.mark_static_address(self.values)

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            return None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            slot = torch.remainder(self.position, self.length) if self.is_sliding else self.position
            self.keys.index_copy_(2, slot, key_states)
            self.values.index_copy_(2, slot, value_states)
            return self.keys, self.values

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.length, 0

        def get_seq_length(self) -> int:
            return 0  # never asked: decode steps pass their positions

        def get_max_length(self) -> int:
            return int(self.length)

    class _DecodeCache(cache_base):  # type: ignore[misc]
        def update(
            self, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any
        ) -> Any:
            return self.layers[layer_idx].update(key_states, value_states)

    return _Layer, _DecodeCache


def _make_cache(
    layer_specs: list[tuple[int, bool]], *, batch: int, kv_heads: int, head_dim: int, dtype: Any, device: Any
) -> tuple[Any, Any]:
    """A transformers `Cache` whose layers all write at one shared position tensor: (cache, position)."""
    import torch

    layer_class, cache_class = _cache_classes()
    position = torch.zeros(1, dtype=torch.long, device=device)
    torch._dynamo.mark_static_address(position)
    layers = [
        layer_class((batch, kv_heads, length, head_dim), sliding=sliding, position=position, dtype=dtype)
        for length, sliding in layer_specs
    ]
    return cache_class(layers=layers), position


@dataclass(eq=False)
class _DecodeState:
    """Everything a decode step reads or writes for one (batch, bucket); allocated once, reused."""

    batch: int
    bucket: int
    cache: Any
    position: Any  # (1,) long: the sequence index the next token is written at
    valid: Any  # (batch, bucket) bool: which sequence indices hold a real token (padding never does)
    window: int  # ring length of the sliding layers
    ring_offsets: Any  # (window,) long: 0 .. window-1


# --------------------------------------------------------------------------------------------
# the decoder


class StaticGreedyDecoder:
    """Greedy decoding for one Gemma 3-style model; not thread-safe (the backend holds the model's lock)."""

    def __init__(
        self,
        model: Any,
        *,
        compile: bool,
        max_cache_tokens: int = MAX_CACHE_TOKENS,
        compile_backend: str = "inductor",
    ) -> None:
        reason = self.unsupported(model)
        if reason is not None:
            raise ValueError(f"static decoding does not support this model: {reason}")
        self._model = model
        self._inner = model.model
        self._head = model.lm_head
        self._text_config = model.config.get_text_config()
        self._eager_masks = self._text_config._attn_implementation == "eager"
        self._cache_kw = (
            "cache" if "cache" in inspect.signature(self._inner.forward).parameters else "past_key_values"
        )
        self._max_cache_tokens = max_cache_tokens
        self._states: dict[tuple[int, int], _DecodeState] = {}
        self._compiled_shapes: set[tuple[int, int]] = set()
        self.compile = compile
        self._step: Callable[..., Any] = self._decode_step
        if compile:
            import torch

            mode = "reduce-overhead" if model.device.type == "cuda" else None
            self._step = torch.compile(self._decode_step, backend=compile_backend, mode=mode, dynamic=False)

    @staticmethod
    def unsupported(model: Any) -> str | None:
        """Why this model cannot decode here (None when it can)."""
        inner = getattr(model, "model", None)
        if getattr(inner, "language_model", None) is None or getattr(model, "lm_head", None) is None:
            return (
                f"{type(model).__name__} has no model.language_model / lm_head (a Gemma 3 layout is needed)"
            )
        config = model.config.get_text_config()
        layer_types = list(getattr(config, "layer_types", None) or [])
        if len(layer_types) != config.num_hidden_layers or not set(layer_types) <= _LAYER_TYPES:
            return f"layer types {sorted(set(layer_types))} (full and sliding attention only)"
        attention = getattr(config, "_attn_implementation", None)
        if attention not in _ATTENTION:
            return f"attention implementation {attention!r} (sdpa or eager only)"
        if getattr(model, "hf_device_map", None) and len(set(model.hf_device_map.values())) > 1:
            return "the model is split over several devices"
        return None

    @property
    def compiled_shapes(self) -> list[tuple[int, int]]:
        """(batch bucket, cache bucket) pairs decoded so far with the compiled step."""
        return sorted(self._compiled_shapes)

    def fits(self, prompt_tokens: int, max_new_tokens: int) -> bool:
        return cache_bucket(prompt_tokens + max_new_tokens, ceiling=self._max_cache_tokens) is not None

    def release(self) -> None:
        """Drop the static caches (their memory returns on the next allocation)."""
        self._states.clear()

    # ---- public entry points ---------------------------------------------------------------

    def generate(
        self,
        inputs: Mapping[str, Any],
        *,
        max_new_tokens: int,
        eos_ids: Collection[int],
        pad_id: int,
        on_first_token: Callable[[], None] | None = None,
        min_cache_tokens: int = 0,
    ) -> Any:
        """New token ids (batch x n) as `generate(...)[:, prompt:]` gives them for a greedy config:
        rows that ended early are padded with `pad_id` after their end token, and n stops at the
        step where the last row ended (or at `max_new_tokens`). Call under `torch.inference_mode()`."""
        import torch

        input_ids = inputs["input_ids"]
        batch, prompt = int(input_ids.shape[0]), int(input_ids.shape[1])
        bucket = cache_bucket(max(prompt + max_new_tokens, min_cache_tokens), ceiling=self._max_cache_tokens)
        if bucket is None:
            raise ValueError(
                f"{prompt} prompt + {max_new_tokens} new tokens exceed the static cache "
                f"({self._max_cache_tokens} tokens); decode with generate"
            )
        first, dynamic_cache, last_position, attention_mask = self._prefill(inputs)
        out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=input_ids.device)
        out[:, 0] = first
        if on_first_token is not None:
            first.tolist()  # wait for the token: the clock reads when it exists
            on_first_token()
        eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=input_ids.device)
        finished = torch.isin(first, eos)
        if max_new_tokens > 1 and not (eos.numel() and bool(finished.all())):
            state = self._state(batch_bucket(batch), bucket)
            self._load(state, dynamic_cache, attention_mask, prompt)
            del dynamic_cache
            steps = self._decode(state, out, finished, eos, last_position, batch)
        else:
            steps = 1
        return _pad_after_end(out[:, :steps], eos, pad_id)

    def warm_up(self, *, batch: int = 1, cache_tokens: int = MIN_CACHE_TOKENS, steps: int = 4) -> float:
        """Compile (and record the CUDA graph of) the step for this batch and cache bucket; seconds taken."""
        import torch

        started = time.monotonic()
        text = self._text_config
        bos = int(getattr(text, "bos_token_id", None) or 2)
        ids = torch.full((batch, 8), bos, dtype=torch.long, device=self._model.device)
        with torch.inference_mode():
            self.generate(
                {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                max_new_tokens=steps,
                eos_ids=(),
                pad_id=0,
                min_cache_tokens=cache_tokens,
            )
        elapsed = time.monotonic() - started
        log.info(
            "static decoding warmed up for batch %d, cache %d tokens (%s) in %.1f s",
            batch_bucket(batch),
            cache_bucket(cache_tokens, ceiling=self._max_cache_tokens) or cache_tokens,
            "compiled" if self.compile else "eager",
            elapsed,
        )
        return elapsed

    # ---- prefill -----------------------------------------------------------------------------

    def _prefill(self, inputs: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
        """The model's forward over the prompt with a dynamic cache, as `generate` runs it:
        (first tokens, that cache, each row's last position id, the 2-D attention mask)."""
        import torch

        kwargs = dict(inputs)
        attention_mask = kwargs.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(kwargs["input_ids"])
        # generate's position ids: pads at 0, each row counting its own tokens from 0
        position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        kwargs["position_ids"] = position_ids
        # generate drops a mask without padding (then attention may take its causal fast path)
        kwargs["attention_mask"] = None if bool((attention_mask == 1).all()) else attention_mask
        outputs = self._model(**kwargs, use_cache=True, logits_to_keep=1, return_dict=True)
        dynamic_cache = getattr(outputs, "cache", None) or getattr(outputs, "past_key_values", None)
        if dynamic_cache is None:
            raise RuntimeError("the model's prefill returned no cache")
        first = outputs.logits[:, -1].to(dtype=torch.float32).argmax(dim=-1)
        return first, dynamic_cache, position_ids[:, -1], attention_mask.bool()

    # ---- static state ------------------------------------------------------------------------

    def _state(self, batch: int, bucket: int) -> _DecodeState:
        state = self._states.get((batch, bucket))
        if state is None:
            state = self._states[(batch, bucket)] = self._new_state(batch, bucket)
        return state

    def _new_state(self, batch: int, bucket: int) -> _DecodeState:
        import torch

        text = self._text_config
        window = min(int(getattr(text, "sliding_window", None) or bucket), bucket)
        specs = [(window, True) if t == "sliding_attention" else (bucket, False) for t in text.layer_types]
        device, dtype = self._model.device, self._model.dtype
        cache, position = _make_cache(
            specs,
            batch=batch,
            kv_heads=int(text.num_key_value_heads),
            head_dim=int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads),
            dtype=dtype,
            device=device,
        )
        valid = torch.zeros((batch, bucket), dtype=torch.bool, device=device)
        ring_offsets = torch.arange(window, dtype=torch.long, device=device)
        torch._dynamo.mark_static_address(valid)
        torch._dynamo.mark_static_address(ring_offsets)
        return _DecodeState(batch, bucket, cache, position, valid, window, ring_offsets)

    def _load(self, state: _DecodeState, dynamic_cache: Any, attention_mask: Any, prompt: int) -> None:
        """Copy the prefill's keys/values in (sequence index i -> slot i, or i % window on a ring)."""
        import torch

        rows = int(attention_mask.shape[0])
        device = state.valid.device
        for source, target in zip(dynamic_cache.layers, state.cache.layers, strict=True):
            held = int(source.keys.shape[-2])  # a sliding layer keeps only its last window - 1
            index = torch.arange(prompt - held, prompt, device=device)
            if target.is_sliding:
                index = torch.remainder(index, target.length)
            target.keys[:rows].index_copy_(2, index, source.keys)
            target.values[:rows].index_copy_(2, index, source.values)
        state.valid.zero_()
        state.valid[:rows, :prompt] = attention_mask
        state.valid[rows:, :prompt] = True  # padding rows: finite attention over stale keys, never read
        state.position.fill_(prompt)

    # ---- decode --------------------------------------------------------------------------------

    def _decode(
        self, state: _DecodeState, out: Any, finished: Any, eos: Any, last_position: Any, rows: int
    ) -> int:
        import torch

        max_new = int(out.shape[1])
        tokens = torch.zeros((state.batch, 1), dtype=torch.long, device=out.device)
        positions = torch.zeros((state.batch, 1), dtype=torch.long, device=out.device)
        step = 1
        compiled = self.compile
        with _recompile_limit(_RECOMPILE_LIMIT) if compiled else _nothing():
            while step < max_new:
                tokens[:rows, 0] = out[:, step - 1]
                positions[:rows, 0] = last_position + step
                if compiled:  # the previous step's outputs were copied out: graph memory may be reused
                    torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
                chosen = self._step(state, tokens, positions)
                out[:, step] = chosen[:rows]
                step += 1
                if eos.numel():
                    finished |= torch.isin(out[:, step - 1], eos)
                    if step % _STOP_CHECK_EVERY == 0 and bool(finished.all()):
                        break
        if compiled:
            self._compiled_shapes.add((state.batch, state.bucket))
        if eos.numel():
            ended = torch.isin(out[:, :step], eos)
            if bool(ended.any(dim=1).all()):  # generate stops at the step the last row ended
                step = int(ended.int().argmax(dim=1).max()) + 1
        return step

    def _decode_step(self, state: _DecodeState, tokens: Any, positions: Any) -> Any:
        """One token for every row: the compiled unit (no Python state changes inside)."""
        import torch

        position = state.position
        state.valid.index_fill_(1, position, True)
        # the sequence index held in each ring slot: the latest one <= position with that remainder
        slot_index = position - torch.remainder(position - state.ring_offsets, state.window)
        ring_valid = state.valid.index_select(1, slot_index.clamp(min=0)) & (slot_index >= 0)
        masks = {
            "full_attention": self._mask(state.valid),
            "sliding_attention": self._mask(ring_valid),
        }
        outputs = self._inner(
            input_ids=tokens,
            attention_mask=masks,
            position_ids=positions,
            use_cache=True,
            return_dict=True,
            **{self._cache_kw: state.cache},
        )
        logits = self._head(outputs.last_hidden_state)
        position.add_(1)
        return logits[:, -1].to(dtype=torch.float32).argmax(dim=-1)

    def _mask(self, valid: Any) -> Any:
        """(batch, keys) -> the 4-D mask attention takes: boolean for sdpa, additive for eager."""
        import torch

        mask = valid[:, None, None, :]
        if not self._eager_masks:
            return mask
        dtype = self._model.dtype
        keep = torch.zeros((), dtype=dtype, device=mask.device)
        return torch.where(mask, keep, torch.finfo(dtype).min)


def _pad_after_end(tokens: Any, eos: Any, pad_id: int) -> Any:
    """`generate` writes the pad token after a row's first end token."""
    import torch

    if not eos.numel() or tokens.shape[1] < 2:
        return tokens
    ended = torch.isin(tokens, eos).int().cumsum(dim=1)
    after = torch.cat([torch.zeros_like(ended[:, :1]), ended[:, :-1]], dim=1) > 0
    return tokens.masked_fill(after, pad_id)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _recompile_limit(limit: int) -> Any:
    """Room for one graph per (batch, cache) bucket of the step function, for this loop only."""
    import torch._dynamo

    config: Any = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    return config.patch(**{name: max(limit, int(getattr(config, name)))})
