"""`ModelBackend` running MedGemma in this process with Hugging Face transformers.

    backend = TransformersBackend.from_pretrained()            # google/medgemma-1.5-4b-it, cached
    backend = TransformersBackend(load_model("/models/medgemma"), max_batch=8, max_wait_ms=10)
    result = await backend.generate(request)

A request becomes MedGemma's chat format (`{"role": "user", "content": [{"type": "image",
"image": PIL}, {"type": "text", "text": ...}]}`); images go to the processor as they are (it
resizes them to 896 x 896, 256 tokens each). Concurrent requests with the same generation
settings share one `generate` call (micro-batching, left padding; see `batching`), which runs
in a worker thread so the event loop stays free. Generation is greedy when temperature is 0.
The text is decoded without special tokens and otherwise returned as generated (thinking
text included: tasks strip it).

Decoding (`compile`, env CHARTAGENT_MODEL_COMPILE): `auto` (default) decodes greedy requests
with a static KV cache and a compiled step (CUDA graphs, see `static_decoding`) on CUDA and with
transformers' eager `generate` on a CPU; `on` compiles on any device; `off` always uses
`generate`. Sampling, and prompts longer than the static cache, always use `generate`. If the
compiled path fails where `generate` then succeeds, the backend logs why once and uses
`generate` from then on. `warm_up()` compiles ahead of the first request.

Special tokens inside text parts are broken up (a zero-width space after their first
character), so a note that contains `<start_of_turn>` or an image token cannot open a turn or
claim an image slot; this works with every transformers 5.x.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import re
import time
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self

from PIL import Image

from tools.medgemma.batching import MicroBatcher
from tools.medgemma.loader import MEDGEMMA_MODEL_ID, LoadedModel, shared_model
from tools.medgemma.static_decoding import (
    MAX_CACHE_TOKENS,
    MIN_CACHE_TOKENS,
    CompileMode,
    StaticGreedyDecoder,
    compile_enabled,
    plain_greedy,
)
from tools.medgemma.types import ImagePart, Message, ModelInfo, ModelRequest, ModelResult, TextPart

__all__ = [
    "Completion",
    "TransformersBackend",
    "control_tokens_of",
    "decode_completion",
    "to_chat_conversation",
]

log = logging.getLogger(__name__)

Conversation = list[dict[str, Any]]
_ZERO_WIDTH_SPACE: Final = "\u200b"
_nonce = itertools.count()
# What a failed static/compiled decode raises: torch.compile, inductor and CUDA-graph failures are
# RuntimeErrors; an API change in transformers shows as one of the others.
_DECODE_FAILURES: Final = (RuntimeError, TypeError, AttributeError, KeyError, IndexError, AssertionError)


def to_chat_conversation(request: ModelRequest, *, control_tokens: Collection[str] = ()) -> Conversation:
    """The request in MedGemma's chat format, images as PIL (not resized).

    Roles: an optional system message first (text only: Gemma's template folds it into the
    first user turn), then user and assistant alternating, starting and ending with user.
    Each of `control_tokens` (the tokenizer's special tokens) that appears in a text part is
    broken with a zero-width space after its first character, so that it is tokenized as
    plain text: record text cannot open a turn or claim an image slot.
    """
    messages = list(request.messages)
    if not messages:
        raise ValueError("a model request needs at least one message")
    clean = _Cleaner(control_tokens)
    conversation: Conversation = []
    if messages[0].role == "system":
        conversation.append(_system_turn(messages.pop(0), clean))
    for index, message in enumerate(messages):
        expected = "user" if index % 2 == 0 else "assistant"
        if message.role != expected:
            raise ValueError(
                f"message {index + len(conversation)} is {message.role!r} where {expected!r} was expected: "
                "after an optional system message, user and assistant must alternate, starting with user"
            )
        conversation.append({"role": message.role, "content": [_part(p, clean) for p in message.content]})
    if not messages or messages[-1].role != "user":
        raise ValueError("the last message must be the user's (the model answers it)")
    return conversation


class _Cleaner:
    def __init__(self, control_tokens: Collection[str]) -> None:
        tokens = sorted({t for t in control_tokens if len(t) > 1}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, tokens))) if tokens else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: m[0][0] + _ZERO_WIDTH_SPACE + m[0][1:], text)


def _system_turn(message: Message, clean: _Cleaner) -> dict[str, Any]:
    if message.images:
        raise ValueError("a system message holds text only; put images in a user message")
    text = "\n\n".join(clean(p.text) for p in message.content if isinstance(p, TextPart))
    return {"role": "system", "content": [{"type": "text", "text": text}]}


def _part(part: TextPart | ImagePart, clean: _Cleaner) -> dict[str, Any]:
    if isinstance(part, ImagePart):
        return {"type": "image", "image": Image.fromarray(part.image, mode="RGB")}
    return {"type": "text", "text": clean(part.text)}


def control_tokens_of(tokenizer: Any) -> frozenset[str]:
    """The tokenizer's special tokens (turn markers, image placeholders, bos/eos/pad ...)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    tokens = {str(t.content) for t in added.values() if getattr(t, "special", False)}
    tokens.update(str(t) for t in getattr(tokenizer, "all_special_tokens", []))
    for name in ("image_token", "boi_token", "eoi_token"):
        if isinstance(value := getattr(tokenizer, name, None), str):
            tokens.add(value)
    return frozenset(tokens)


@dataclass(frozen=True)
class Completion:
    """One row of a `generate` output, decoded."""

    text: str
    completion_tokens: int
    finish_reason: Literal["stop", "length"]


def decode_completion(
    token_ids: Sequence[int], *, eos_ids: frozenset[int], max_new_tokens: int, tokenizer: Any
) -> Completion:
    """Text up to the first end token (which is counted); `length` when the budget ran out first."""
    ids = list(token_ids)
    stop = next((i for i, token in enumerate(ids) if token in eos_ids), None)
    if stop is not None:
        text = tokenizer.decode(ids[:stop], skip_special_tokens=True)
        return Completion(str(text), stop + 1, "stop")
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return Completion(str(text), len(ids), "length" if len(ids) >= max_new_tokens else "stop")


@dataclass(frozen=True, eq=False)
class _Job:
    request: ModelRequest
    conversation: Conversation


@dataclass(frozen=True)
class _Output:
    completion: Completion
    prompt_tokens: int
    batch_size: int
    started: float  # monotonic: when generate began
    first_token: float | None  # monotonic: when the batch's first token was chosen
    finished: float


def _batch_key(job: _Job) -> Hashable:
    settings = job.request.settings
    if settings.temperature == 0:  # greedy: the seed plays no part
        return settings.model_copy(update={"seed": None})
    if settings.seed is not None:  # seeded sampling is reproducible only alone
        return (settings, next(_nonce))
    return settings


class TransformersBackend:
    """In-process MedGemma; safe to call concurrently from one event loop.

    Backends over the same `LoadedModel` serialise their `generate` calls on its lock and share
    its static decoder (compiled graphs and caches).
    `aclose` stops this backend's batcher; the model stays loaded (see `loader.shared_model`).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        compile: CompileMode = "auto",
    ) -> None:
        self._loaded = loaded
        self._compiled = _static_decoder(loaded, compile) is not None
        self._info = loaded.info.model_copy(update={"backend": "transformers"})
        tokenizer = loaded.processor.tokenizer
        tokenizer.padding_side = "left"  # decoder-only batching: prompts end where generation starts
        self._tokenizer = tokenizer
        self._control_tokens = control_tokens_of(tokenizer)
        eos = loaded.model.generation_config.eos_token_id
        self._eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
        self._batcher: MicroBatcher[_Job, _Output] = MicroBatcher(
            self._run_batch, key=_batch_key, max_batch=max_batch, max_wait_s=max_wait_ms / 1000
        )

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str = MEDGEMMA_MODEL_ID,
        *,
        device: str | None = None,
        dtype: str | None = None,
        offline: bool = True,
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        compile: CompileMode = "auto",
    ) -> Self:
        """A backend over the process-wide shared model (loaded on first use)."""
        loaded = shared_model(model_id_or_path, device=device, dtype=dtype, offline=offline)
        return cls(loaded, max_batch=max_batch, max_wait_ms=max_wait_ms, compile=compile)

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def decoding(self) -> str:
        """How greedy requests decode now: `static-compiled` or `generate`."""
        return "generate" if self._decoder is None else "static-compiled"

    @property
    def _decoder(self) -> StaticGreedyDecoder | None:
        decoder = self._loaded.decoders.get(True) if self._compiled else None
        return decoder if isinstance(decoder, StaticGreedyDecoder) else None

    def warm_up(self, cache_tokens: Sequence[int] = (MIN_CACHE_TOKENS, MAX_CACHE_TOKENS)) -> float:
        """Blocking: compile the decode step for one request per cache bucket; seconds taken (0 when
        nothing is compiled). Call at start-up, before requests are timed."""
        decoder = self._decoder
        if decoder is None:
            return 0.0
        started = time.monotonic()
        with self._loaded.lock:
            for tokens in cache_tokens:
                decoder.warm_up(batch=1, cache_tokens=tokens)
        return time.monotonic() - started

    async def generate(self, request: ModelRequest) -> ModelResult:
        job = _Job(request, to_chat_conversation(request, control_tokens=self._control_tokens))
        submitted = time.monotonic()
        out = await self._batcher.submit(job)
        done = time.monotonic()
        return ModelResult(
            text=out.completion.text,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion.completion_tokens,
            latency_s=done - submitted,
            time_to_first_token_s=None if out.first_token is None else out.first_token - submitted,
            batch_size=out.batch_size,
            finish_reason=out.completion.finish_reason,
        )

    async def aclose(self) -> None:
        await self._batcher.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run_batch(self, jobs: Sequence[_Job]) -> list[_Output]:
        return await asyncio.to_thread(self._generate_batch, list(jobs))

    def _generate_batch(self, jobs: list[_Job]) -> list[_Output]:
        """Blocking: one generation over the jobs (same settings), in a worker thread."""
        import torch

        model, processor = self._loaded.model, self._loaded.processor
        settings = jobs[0].request.settings
        config = self._generation_config(settings.model_dump())
        first_token = _FirstTokenClock()
        with self._loaded.lock, torch.inference_mode():
            inputs = processor.apply_chat_template(
                [job.conversation for job in jobs],
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                add_generation_prompt=True,
                # With torchvision installed the image processor resizes and normalises on the
                # model's device (85 CT slices: seconds of CPU otherwise); PIL ignores it.
                processor_kwargs={"padding": True, "device": model.device},
            ).to(model.device, dtype=model.dtype)
            prompt_length = int(inputs["input_ids"].shape[1])
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            started = time.monotonic()
            decoder = self._decoder
            if (
                decoder is not None
                and plain_greedy(config)
                and decoder.fits(prompt_length, settings.max_new_tokens)
            ):
                new_tokens = self._decode_static(decoder, inputs, config, first_token)
            else:
                new_tokens = self._decode_generate(inputs, config, first_token)
            finished = time.monotonic()
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        outputs = []
        for row, count in zip(new_tokens.tolist(), prompt_tokens, strict=True):
            completion = decode_completion(
                row, eos_ids=self._eos_ids, max_new_tokens=settings.max_new_tokens, tokenizer=self._tokenizer
            )
            outputs.append(_Output(completion, int(count), len(jobs), started, first_token.at, finished))
        return outputs

    def _decode_generate(self, inputs: Any, config: Any, first_token: _FirstTokenClock) -> Any:
        from transformers import StoppingCriteriaList

        sequences = self._loaded.model.generate(
            **inputs, generation_config=config, stopping_criteria=StoppingCriteriaList([first_token])
        )
        return sequences[:, int(inputs["input_ids"].shape[1]) :]

    def _decode_static(
        self, decoder: StaticGreedyDecoder, inputs: Any, config: Any, first_token: _FirstTokenClock
    ) -> Any:
        """The static decoder; if it fails and `generate` then succeeds, `generate` from now on
        (out of memory only drops the static caches: the next request allocates what it needs)."""
        import torch

        try:
            return decoder.generate(
                inputs,
                max_new_tokens=config.max_new_tokens,
                eos_ids=self._eos_ids,
                pad_id=_pad_id(config, self._eos_ids),
                on_first_token=first_token.mark,
            )
        except torch.OutOfMemoryError:
            decoder.release()
            failure = None
        except _DECODE_FAILURES as exc:
            failure = f"{type(exc).__name__}: {str(exc)[:300]}"
        first_token.at = None
        new_tokens = self._decode_generate(inputs, config, first_token)  # raises if the request itself is bad
        if failure is not None and self._loaded.decoders.pop(True, None) is not None:  # every backend
            log.warning(
                "compiled decoding failed (%s); model %s decodes with transformers' generate from now on",
                failure,
                self._info.name,
            )
        return new_tokens

    def _generation_config(self, settings: dict[str, Any]) -> Any:
        config = copy.deepcopy(self._loaded.model.generation_config)
        config.max_new_tokens = settings["max_new_tokens"]
        config.min_new_tokens = None
        # generate decodes eagerly with a dynamic cache: Gemma 3 checkpoints' generation config
        # asks for a "hybrid" static cache, which on CUDA makes generate compile its forward, and
        # that recompiles at every token for the sliding layers (static_decoding does it instead).
        config.cache_implementation = None
        config.disable_compile = True
        if settings["temperature"] > 0:
            config.do_sample = True
            config.temperature = settings["temperature"]
            config.top_p = settings["top_p"]
        else:
            config.do_sample = False
            config.temperature = config.top_p = config.top_k = None
        return config


class _FirstTokenClock:
    """A stopping criterion that never stops: it notes when the first new token was chosen."""

    def __init__(self) -> None:
        self.at: float | None = None

    def mark(self) -> None:
        if self.at is None:
            self.at = time.monotonic()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.mark()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _pad_id(config: Any, eos_ids: frozenset[int]) -> int:
    """What generate writes after a row's end token: the pad token, else the first end token."""
    if config.pad_token_id is not None:
        return int(config.pad_token_id)
    eos = config.eos_token_id
    return int(eos if isinstance(eos, int) else (eos[0] if eos else min(eos_ids, default=0)))


def _static_decoder(loaded: LoadedModel, mode: CompileMode) -> StaticGreedyDecoder | None:
    """The model's shared compiled decoder when `mode` asks for one, else None (`generate` decodes).

    Eager static decoding is no faster than `generate`, so only the compiled one is shared here;
    tests build an eager one directly."""
    if not compile_enabled(mode, loaded.model.device.type):
        return None
    with loaded.lock:
        decoder = loaded.decoders.get(True)
        if decoder is None:
            reason = StaticGreedyDecoder.unsupported(loaded.model)
            if reason is not None:
                log.warning("compiled decoding is off for %s: %s", loaded.info.name, reason)
                return None
            decoder = loaded.decoders[True] = StaticGreedyDecoder(loaded.model, compile=True)
        return decoder if isinstance(decoder, StaticGreedyDecoder) else None
