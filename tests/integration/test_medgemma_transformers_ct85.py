"""End to end: one 85-slice CT study through the in-process backend and the tiny MedGemma at 896 px.

About 40 s on a 2-core CPU (processor 5 s, 85 SigLIP passes 12 s, a 23,000-token prefill), hence
marked integration; it still runs by default.
"""

from __future__ import annotations

import numpy as np
import pytest

from tools.medgemma.loader import shared_model
from tools.medgemma.tiny_model import tiny_medgemma_path
from tools.medgemma.transformers_backend import TransformersBackend
from tools.medgemma.types import GenerationSettings, ImagePart, Message, ModelRequest, TextPart

pytestmark = pytest.mark.integration

SLICES = 85


async def test_an_85_slice_ct_prompt_costs_256_tokens_per_slice_and_generates() -> None:
    loaded = shared_model(str(tiny_medgemma_path()), device="cpu", dtype="float32")
    rng = np.random.default_rng(85)
    parts: list[TextPart | ImagePart] = [TextPart(text="You are reading an axial CT. Slices follow.")]
    for n in range(1, SLICES + 1):
        slice_rgb = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
        parts += [ImagePart(image=slice_rgb), TextPart(text=f"SLICE {n}")]
    parts.append(TextPart(text="Which findings are present?"))
    request = ModelRequest(
        messages=(Message(role="user", content=tuple(parts)),),
        settings=GenerationSettings(max_new_tokens=2),
    )
    text_only = ModelRequest(
        messages=(Message(role="user", content=tuple(p for p in parts if isinstance(p, TextPart))),),
        settings=request.settings,
    )
    async with TransformersBackend(loaded) as backend:
        result = await backend.generate(request)
        without_images = await backend.generate(text_only)
    # each slice: "\n\n" <start_of_image> 256 x <image_soft_token> <end_of_image> "\n\n"
    # (the tiny tokenizer spells "\n\n" as two tokens; Gemma 3 has one, id 108)
    per_slice = 256 + 2 + 4
    assert result.prompt_tokens - without_images.prompt_tokens == SLICES * per_slice
    assert result.completion_tokens == 2
    assert result.text.strip()
