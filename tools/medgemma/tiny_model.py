"""A tiny random-weight MedGemma 1.5 folder for tests: the real code path, meaningless text.

`build_tiny_medgemma(path)` writes a complete local model folder that the production loader
opens with `AutoModelForImageTextToText.from_pretrained(path)` and
`AutoProcessor.from_pretrained(path)`:

- `Gemma3ForConditionalGeneration` with random (seeded) weights: text decoder hidden 64, 2 layers
  (one sliding, one global), 2 heads, 1 KV head, Gemma 3's 262,208-row embedding; SigLIP vision
  tower hidden 32, 2 layers, patch 14. At the default image size 896 each image is
  64 x 64 patches pooled to 16 x 16 = 256 soft tokens, as in MedGemma.
- `Gemma3Processor` with the PIL Gemma 3 image processor (resize to the image size, rescale,
  normalise with mean = std = 0.5) and a Gemma tokenizer built offline: byte-fallback BPE
  whose special tokens sit at Gemma 3's real ids (see the constants below), single
  characters and bytes so that any text encodes, and pseudo-words (" abcd") filling the other
  ids up to 262,144 so that whatever the random model emits decodes to visible text.
- Gemma 3's chat template (user / model turns, a system message folded into the first user
  turn, `<start_of_image>` per image that the processor expands to
  `\\n\\n<start_of_image>` + 256 x `<image_soft_token>` + `<end_of_image>\\n\\n`).

Weights are stored as bfloat16 (about 35 MB; the loader upcasts to float32 on CPU), the
tokenizer as a 6 MB `tokenizer.json`. Building takes a few seconds and never touches the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Final

__all__ = [
    "BOI_TOKEN_ID",
    "BOS_TOKEN_ID",
    "END_OF_TURN_ID",
    "EOI_TOKEN_ID",
    "EOS_TOKEN_ID",
    "GEMMA3_CHAT_TEMPLATE",
    "IMAGE_TOKEN_ID",
    "PAD_TOKEN_ID",
    "START_OF_TURN_ID",
    "TINY_MODEL_NAME",
    "build_tiny_medgemma",
    "tiny_medgemma_path",
]

TINY_MODEL_NAME: Final = "chartagent/tiny-random-medgemma"

# Gemma 3 tokenizer ids (DESIGN.md). <unusedN> is id 6 + N: MedGemma's thinking markers
# <unused94> / <unused95> are 100 / 101.
PAD_TOKEN_ID: Final = 0
EOS_TOKEN_ID: Final = 1
BOS_TOKEN_ID: Final = 2
UNK_TOKEN_ID: Final = 3
MASK_TOKEN_ID: Final = 4
MULTIMODAL_TOKEN_ID: Final = 5
FIRST_UNUSED_ID: Final = 6
UNUSED_COUNT: Final = 99
START_OF_TURN_ID: Final = 105
END_OF_TURN_ID: Final = 106
NEWLINE_ID: Final = 107
FIRST_BYTE_ID: Final = 238
BOI_TOKEN_ID: Final = 255_999
EOI_TOKEN_ID: Final = 256_000
IMAGE_TOKEN_ID: Final = 262_144
TOKENIZER_SIZE: Final = IMAGE_TOKEN_ID + 1  # as Gemma 3's tokenizer: ids 0 .. 262,144
MODEL_VOCAB_SIZE: Final = 262_208  # Gemma 3's embedding rows (padded past the tokenizer)

PATCH_SIZE: Final = 14
DEFAULT_SEED: Final = 0

# Gemma 3's chat template (google/gemma-3-4b-it, as MedGemma 1.5 ships it).
GEMMA3_CHAT_TEMPLATE: Final = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)

_SPECIAL_TOKENS: Final = {
    "<pad>": PAD_TOKEN_ID,
    "<eos>": EOS_TOKEN_ID,
    "<bos>": BOS_TOKEN_ID,
    "<unk>": UNK_TOKEN_ID,
    "<mask>": MASK_TOKEN_ID,
    "[multimodal]": MULTIMODAL_TOKEN_ID,
    "<start_of_turn>": START_OF_TURN_ID,
    "<end_of_turn>": END_OF_TURN_ID,
    "<start_of_image>": BOI_TOKEN_ID,
    "<end_of_image>": EOI_TOKEN_ID,
    "<image_soft_token>": IMAGE_TOKEN_ID,
}


def build_tiny_medgemma(
    path: Path, *, image_size: int = 896, image_seq_length: int = 256, seed: int = DEFAULT_SEED
) -> Path:
    """Write the tiny model folder at `path` (created if missing) and return `path`.

    `image_size` must be a multiple of the patch size (14) and `image_seq_length` a square
    whose side divides the patches per side (896 -> 64 patches -> 16 x 16 = 256 tokens).
    The same arguments always give the same files (weights seeded by `seed`).
    """
    _check_geometry(image_size, image_seq_length)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _write_model(path, image_size=image_size, image_seq_length=image_seq_length, seed=seed)
    _write_processor(path, image_size=image_size, image_seq_length=image_seq_length)
    return path


_cache_lock = threading.Lock()


def tiny_medgemma_path(
    *, image_size: int = 896, image_seq_length: int = 256, cache_root: Path | None = None
) -> Path:
    """A tiny model folder built once and reused (by this process and later ones).

    The folder lives under `cache_root` (default: the system temp dir) in a directory named by
    a fingerprint of this module and the transformers / tokenizers versions, so a change to
    either builds a fresh one. It is built aside and renamed into place: a folder that exists
    is complete. Treat it as read-only.
    """
    _check_geometry(image_size, image_seq_length)
    root = cache_root or Path(tempfile.gettempdir()) / "chartagent-tiny-medgemma"
    final = root / f"{_fingerprint()}-{image_size}-{image_seq_length}"
    with _cache_lock:
        if (final / "config.json").is_file():
            return final
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        try:
            build_tiny_medgemma(staging, image_size=image_size, image_seq_length=image_seq_length)
            try:
                os.replace(staging, final)
            except OSError:  # another process got there first: its folder is as good as ours
                if not (final / "config.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _fingerprint() -> str:
    import tokenizers
    import transformers

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(f"{transformers.__version__} {tokenizers.__version__}".encode())
    return digest.hexdigest()[:16]


def _check_geometry(image_size: int, image_seq_length: int) -> None:
    if image_size <= 0 or image_size % PATCH_SIZE:
        raise ValueError(f"image_size must be a positive multiple of {PATCH_SIZE}, got {image_size}")
    side = round(image_seq_length**0.5)
    patches = image_size // PATCH_SIZE
    if image_seq_length <= 0 or side * side != image_seq_length or patches % side:
        raise ValueError(
            f"image_seq_length must be a square whose side divides the {patches} patches per side of a "
            f"{image_size}px image (e.g. {(patches // 4) ** 2} for a 4x4 pooling), got {image_seq_length}"
        )


# --------------------------------------------------------------------------------------------
# model


def _layer_types(num_layers: int, pattern: int) -> list[str]:
    return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(num_layers)]


def tiny_config(*, image_size: int = 896, image_seq_length: int = 256) -> Any:
    """The tiny `Gemma3Config`: Gemma 3's token layout and ids, toy widths."""
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    text = Gemma3TextConfig(
        vocab_size=MODEL_VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        sliding_window=512,
        max_position_embeddings=131_072,
        layer_types=_layer_types(2, 2),
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6,
        pad_token_id=PAD_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID,
        bos_token_id=BOS_TOKEN_ID,
        tie_word_embeddings=True,
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
    )
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_channels=3,
        patch_size=PATCH_SIZE,
        image_size=image_size,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        vision_use_head=False,  # Gemma 3 drops SigLIP's pooling head
    )
    return Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=image_seq_length,
        boi_token_index=BOI_TOKEN_ID,
        eoi_token_index=EOI_TOKEN_ID,
        image_token_index=IMAGE_TOKEN_ID,
        initializer_range=0.02,
        tie_word_embeddings=True,
    )


def _write_model(path: Path, *, image_size: int, image_seq_length: int, seed: int) -> None:
    import torch
    from transformers import Gemma3ForConditionalGeneration, GenerationConfig

    config = tiny_config(image_size=image_size, image_seq_length=image_seq_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = Gemma3ForConditionalGeneration(config)
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=BOS_TOKEN_ID,
        eos_token_id=[EOS_TOKEN_ID, END_OF_TURN_ID],
        pad_token_id=PAD_TOKEN_ID,
        do_sample=False,
    )
    model.save_pretrained(path)


# --------------------------------------------------------------------------------------------
# processor


def _pseudo_word(index: int) -> str:
    letters = ""
    for _ in range(4):  # 26**4 = 456,976 distinct words, more than the ids to fill
        letters = chr(ord("a") + index % 26) + letters
        index //= 26
    return "▁" + letters


def tokenizer_vocab() -> dict[str, int]:
    """Token -> id over 0 .. 262,144: real special ids, bytes, characters, pseudo-word fillers."""
    vocab: dict[str, int] = dict(_SPECIAL_TOKENS)
    vocab.update({f"<unused{n}>": FIRST_UNUSED_ID + n for n in range(UNUSED_COUNT)})
    vocab["\n"] = NEWLINE_ID
    vocab.update({f"<0x{b:02X}>": FIRST_BYTE_ID + b for b in range(256)})
    next_id = FIRST_BYTE_ID + 256
    for char in ["▁", *map(chr, range(0x21, 0x7F))]:  # "▁" is the space after Gemma's normalizer
        vocab[char] = next_id
        next_id += 1
    used = set(vocab.values())
    filler = (i for i in range(TOKENIZER_SIZE) if i not in used)
    vocab.update({_pseudo_word(n): i for n, i in enumerate(filler)})
    return vocab


def _build_tokenizer() -> Any:
    from tokenizers import AddedToken
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    tokenizer = GemmaTokenizer(
        vocab=tokenizer_vocab(),
        merges=[],
        add_bos_token=True,
        add_eos_token=False,
        extra_special_tokens={
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
        },
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in _SPECIAL_TOKENS], special_tokens=True
    )
    # Not special, as in Gemma 3: MedGemma's thinking markers survive skip_special_tokens.
    tokenizer.add_tokens([AddedToken(f"<unused{n}>", normalized=False) for n in range(UNUSED_COUNT)])
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    return tokenizer


def _write_processor(path: Path, *, image_size: int, image_seq_length: int) -> None:
    from transformers import Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=_build_tokenizer(),
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=image_seq_length,
    )
    processor.save_pretrained(path)
    (path / "README.md").write_text(
        "# Tiny random-weight MedGemma (test model)\n\n"
        "Written by `tools.medgemma.tiny_model.build_tiny_medgemma`: Gemma 3 architecture and token\n"
        "layout with toy widths and random weights. Its text is meaningless. Not for any use but tests.\n"
        + "\n```json\n"
        + json.dumps({"image_size": image_size, "image_seq_length": image_seq_length}, indent=2)
        + "\n```\n"
    )
