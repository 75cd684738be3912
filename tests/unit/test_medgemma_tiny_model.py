"""The tiny random-weight MedGemma folder: loadable by the production classes, Gemma 3's token layout."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import transformers
from PIL import Image

from tools.medgemma import tiny_model
from tools.medgemma.tiny_model import (
    BOI_TOKEN_ID,
    BOS_TOKEN_ID,
    END_OF_TURN_ID,
    EOI_TOKEN_ID,
    IMAGE_TOKEN_ID,
    START_OF_TURN_ID,
    build_tiny_medgemma,
    tiny_medgemma_path,
)


@pytest.fixture(scope="module")
def folder() -> Path:
    return tiny_medgemma_path()


@pytest.fixture(scope="module")
def processor(folder: Path) -> Any:
    return transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)


def _image(seed: int, shape: tuple[int, int] = (40, 52)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8))


def _process(processor: Any, content: list[dict[str, Any]]) -> Any:
    return processor.apply_chat_template(
        [{"role": "user", "content": content}],
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        add_generation_prompt=True,
    )


def test_a_fresh_build_is_fast_small_deterministic_and_loads_with_the_auto_classes(
    tmp_path: Path, folder: Path
) -> None:
    started = time.monotonic()
    built = build_tiny_medgemma(tmp_path / "tiny")
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"building took {elapsed:.1f} s"
    size_mb = sum(f.stat().st_size for f in built.iterdir()) / 1e6
    assert size_mb < 50, f"the folder is {size_mb:.0f} MB"

    def digest(path: Path) -> str:
        return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()

    assert digest(built) == digest(folder)  # seeded: same weights as the cached build

    model = transformers.AutoModelForImageTextToText.from_pretrained(built)
    processor = transformers.AutoProcessor.from_pretrained(built)
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    assert type(processor).__name__ == "Gemma3Processor"
    assert type(processor.image_processor).__name__ == "Gemma3ImageProcessorPil"
    assert model.config.text_config.hidden_size == 64
    assert model.config.vision_config.image_size == 896
    assert model.config.mm_tokens_per_image == 256
    assert model.get_input_embeddings().weight.shape[0] == 262_208


def test_the_cached_folder_is_reused() -> None:
    assert tiny_medgemma_path() == tiny_medgemma_path()


def test_special_tokens_sit_at_gemma3_ids(processor: Any) -> None:
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids(
        ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    )
    assert ids == [105, 106, 255_999, 256_000, 262_144]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 1, 0)
    assert (tokenizer.boi_token_id, tokenizer.image_token_id, tokenizer.eoi_token_id) == (
        BOI_TOKEN_ID,
        IMAGE_TOKEN_ID,
        EOI_TOKEN_ID,
    )
    # MedGemma's thinking markers, kept by skip_special_tokens as in Gemma 3.
    assert tokenizer.convert_tokens_to_ids(["<unused94>", "<unused95>"]) == [100, 101]
    assert tokenizer.decode([100, 5_000, 101], skip_special_tokens=True).startswith("<unused94>")


@pytest.mark.parametrize("text", ["Creatinine 1.2 mg/dL ↑", "Größe: 180 cm; 腎臓 🙂", "a\tb\n\nc  d"])
def test_any_text_round_trips(processor: Any, text: str) -> None:
    tokenizer = processor.tokenizer
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_chat_template_renders_gemma3_turns(processor: Any) -> None:
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "SYSTEM INSTRUCTION: think silently if needed."}],
        },
        {"role": "user", "content": [{"type": "text", "text": "First?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "And this?"}]},
    ]
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert rendered == (
        "<bos><start_of_turn>user\nSYSTEM INSTRUCTION: think silently if needed.\n\nFirst?<end_of_turn>\n"
        "<start_of_turn>model\nYes.<end_of_turn>\n"
        "<start_of_turn>user\n<start_of_image>And this?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_one_image_costs_exactly_256_image_tokens(processor: Any) -> None:
    inputs = _process(
        processor, [{"type": "image", "image": _image(0)}, {"type": "text", "text": "Describe."}]
    )
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(IMAGE_TOKEN_ID) == 256
    assert ids.count(BOI_TOKEN_ID) == ids.count(EOI_TOKEN_ID) == 1
    assert ids[:2] == [BOS_TOKEN_ID, START_OF_TURN_ID]
    assert ids.count(BOS_TOKEN_ID) == 1
    assert END_OF_TURN_ID in ids
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 896, 896)  # resized by the processor


def test_the_85_slice_ct_layout_costs_85_times_256_tokens_in_prompt_order(processor: Any) -> None:
    content: list[dict[str, Any]] = [{"type": "text", "text": "Read this CT."}]
    for n in range(1, 86):
        content += [{"type": "image", "image": _image(n, (8, 8))}, {"type": "text", "text": f"SLICE {n}"}]
    content.append({"type": "text", "text": "Any finding?"})
    inputs = _process(processor, content)
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(IMAGE_TOKEN_ID) == 85 * 256
    assert ids.count(BOI_TOKEN_ID) == 85
    assert tuple(inputs["pixel_values"].shape) == (85, 3, 896, 896)
    text = processor.tokenizer.decode([i for i in ids if i != IMAGE_TOKEN_ID])
    assert (
        text.index("Read this CT.")
        < text.index("SLICE 1\n\n")
        < text.index("SLICE 85")
        < text.index("Any finding?")
    )
    assert text.count("<start_of_image><end_of_image>\n\nSLICE ") == 85


@pytest.mark.parametrize(("image_size", "image_seq_length"), [(900, 256), (896, 200), (896, 9)])
def test_impossible_geometry_is_refused(tmp_path: Path, image_size: int, image_seq_length: int) -> None:
    with pytest.raises(ValueError, match="image_s"):
        build_tiny_medgemma(tmp_path, image_size=image_size, image_seq_length=image_seq_length)
    assert not any(tmp_path.iterdir())


def test_the_vocabulary_fills_every_id_once() -> None:
    vocab = tiny_model.tokenizer_vocab()
    assert sorted(vocab.values()) == list(range(262_145))
