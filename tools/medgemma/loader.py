"""Load MedGemma (or the tiny test model) in-process: `AutoModelForImageTextToText` + `AutoProcessor`.

`load_model(source)` takes a local folder or a Hugging Face hub id. A hub id is resolved in
the local hub cache only, unless `offline=False` (and `HF_HUB_OFFLINE` is not set), in which
case missing files are downloaded. Defaults follow Google's notebooks: bfloat16 on CUDA,
float32 on CPU, SDPA attention, `model.eval()`.

`shared_model(source)` is the process-wide cache: one model per (folder, device, dtype),
loaded once however many backends or tasks ask for it.

Missing or gated weights raise `ModelNotAvailableError`, whose message says how to get them.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fhir_adapters.error_tree import ConfigurationError
from tools.medgemma.errors import ModelConfigurationError, ModelError
from tools.medgemma.types import ModelInfo

__all__ = [
    "MEDGEMMA_MODEL_ID",
    "LoadedModel",
    "ModelNotAvailableError",
    "RuntimePlacement",
    "clear_shared_models",
    "folder_revision",
    "load_model",
    "resolve_placement",
    "shared_model",
]

MEDGEMMA_MODEL_ID: Final = "google/medgemma-1.5-4b-it"

_DTYPES: Final = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
_COMMIT: Final = re.compile(r"[0-9a-f]{40}")
_WEIGHT_PATTERNS: Final = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin")
_TRUE: Final = {"1", "true", "yes", "on"}


class ModelNotAvailableError(ModelError, ConfigurationError):
    """The model's files are not on this machine (or not readable) and may not be fetched."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"model {source!r} is not available: {reason}. To get it: accept the Health AI Developer "
            f"Foundations terms for {MEDGEMMA_MODEL_ID} on https://huggingface.co/{MEDGEMMA_MODEL_ID}, "
            f"log in (`huggingface-cli login`) and run `huggingface-cli download {MEDGEMMA_MODEL_ID}`; "
            "or point CHARTAGENT_MODEL at a local folder holding the model (config.json, *.safetensors, "
            "tokenizer and processor files); or use a served model with CHARTAGENT_MODEL_BACKEND=openai "
            "and CHARTAGENT_MODEL_URL=http://HOST:PORT/v1"
        )


@dataclass(frozen=True)
class RuntimePlacement:
    """Where and in which precision the weights live."""

    device: str  # "cpu", "cuda", "cuda:1", ...
    dtype: str  # "bfloat16", "float16" or "float32"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model with its processor, and who it is. `lock` serialises generation on it."""

    model: Any  # transformers PreTrainedModel (Gemma3ForConditionalGeneration for MedGemma)
    processor: Any  # transformers ProcessorMixin (Gemma3Processor)
    info: ModelInfo
    folder: Path
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # compiled? -> StaticGreedyDecoder: the compiled graphs and static caches every backend shares
    decoders: dict[bool, Any] = field(default_factory=dict, repr=False)


def resolve_placement(device: str | None, dtype: str | None, *, cuda_available: bool) -> RuntimePlacement:
    """Defaults: CUDA when present, bfloat16 there and float32 on CPU (half precision is slow on CPU)."""
    chosen_device = device or ("cuda" if cuda_available else "cpu")
    if chosen_device.startswith("cuda") and not cuda_available:
        raise ModelConfigurationError(
            f"device {chosen_device!r} was asked for but torch sees no CUDA device; "
            "leave the device unset to use the CPU"
        )
    if dtype is None:
        return RuntimePlacement(chosen_device, "float32" if chosen_device == "cpu" else "bfloat16")
    canonical = _DTYPES.get(dtype.lower())
    if canonical is None:
        raise ValueError(f"unknown dtype {dtype!r}; use one of bfloat16, float16, float32")
    return RuntimePlacement(chosen_device, canonical)


def folder_revision(folder: Path) -> str | None:
    """The commit the folder's files come from, when it records one.

    Hub cache snapshots are named by commit (`.../snapshots/<sha>`); `huggingface-cli download
    --local-dir` leaves `.cache/huggingface/download/*.metadata` whose first line is the commit;
    a git clone has `.git/HEAD`.
    """
    if folder.parent.name == "snapshots" and _COMMIT.fullmatch(folder.name):
        return folder.name
    metadata = folder / ".cache" / "huggingface" / "download"
    for candidate in [metadata / "config.json.metadata", *sorted(metadata.glob("*.metadata"))]:
        if candidate.is_file():
            first = candidate.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].strip()
            if _COMMIT.fullmatch(first):
                return first
    return _git_revision(folder / ".git")


def _git_revision(git: Path) -> str | None:
    head = git / "HEAD"
    if not head.is_file():
        return None
    content = head.read_text(encoding="utf-8").strip()
    if _COMMIT.fullmatch(content):
        return content
    if not content.startswith("ref: "):
        return None
    ref = content.removeprefix("ref: ")
    loose = git / ref
    if loose.is_file():
        value = loose.read_text(encoding="utf-8").strip()
        return value if _COMMIT.fullmatch(value) else None
    packed = git / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and _COMMIT.fullmatch(sha):
                return sha
    return None


def _offline(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _looks_like_path(source: str) -> bool:
    # A hub id is "owner/name"; anything else with a separator or a leading "/", "." or "~" is a path.
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def resolve_folder(source: str, *, offline: bool = True) -> tuple[Path, str]:
    """The local folder holding `source` and the model's name (hub id, or the folder's name).

    A hub id is looked up in the hub cache (downloaded first when online); a folder must exist
    and hold config.json and weights.
    """
    candidate = Path(source).expanduser()
    if candidate.is_dir():
        folder = candidate.resolve()
        name = _hub_id_of_snapshot(folder) or folder.name
    elif _looks_like_path(source) or candidate.exists():
        raise ModelNotAvailableError(source, f"no folder at {candidate}")
    else:
        folder = _hub_snapshot(source, local_only=_offline(offline))
        name = source
    if not (folder / "config.json").is_file():
        raise ModelNotAvailableError(source, f"{folder} has no config.json")
    if not any(next(folder.glob(pattern), None) for pattern in _WEIGHT_PATTERNS):
        raise ModelNotAvailableError(source, f"{folder} has no weights (*.safetensors)")
    return folder, name


def _hub_id_of_snapshot(folder: Path) -> str | None:
    # <cache>/models--google--medgemma-1.5-4b-it/snapshots/<sha>
    repo = folder.parent.parent.name
    if folder.parent.name == "snapshots" and repo.startswith("models--"):
        return repo.removeprefix("models--").replace("--", "/")
    return None


def _hub_snapshot(repo_id: str, *, local_only: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, local_files_only=local_only)
    except LocalEntryNotFoundError:
        where = "the local hub cache (offline)" if local_only else "the hub cache, and the hub is unreachable"
        raise ModelNotAvailableError(repo_id, f"not in {where}") from None
    except GatedRepoError:
        raise ModelNotAvailableError(repo_id, "the repository is gated; this login has no access") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailableError(repo_id, f"the hub refused or failed ({type(exc).__name__})") from None
    return Path(str(folder))


def load_model(
    model_id_or_path: str,
    *,
    device: str | None = None,
    dtype: str | None = None,
    offline: bool = True,
) -> LoadedModel:
    """Load the model and processor (uncached: prefer `shared_model`). See the module docstring."""
    import torch

    folder, name = resolve_folder(model_id_or_path, offline=offline)
    placement = resolve_placement(device, dtype, cuda_available=torch.cuda.is_available())
    return _load_folder(folder, name, placement)


def _load_folder(folder: Path, name: str, placement: RuntimePlacement) -> LoadedModel:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, placement.dtype),
        "attn_implementation": "sdpa",
        "local_files_only": True,
    }
    if placement.device != "cpu":
        kwargs["device_map"] = placement.device
    try:
        model: Any = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
        processor: Any = AutoProcessor.from_pretrained(folder, local_files_only=True)  # type: ignore[no-untyped-call]
    except OSError as exc:  # a partial folder: transformers names the missing file
        raise ModelNotAvailableError(name, f"{folder} is incomplete ({exc})") from None
    model.eval()
    info = ModelInfo(
        name=name,
        revision=folder_revision(folder),
        dtype=placement.dtype,
        device=str(next(model.parameters()).device),
        backend="transformers",
    )
    return LoadedModel(model=model, processor=processor, info=info, folder=folder)


_shared: dict[tuple[Path, str, str], LoadedModel] = {}
_shared_lock = threading.Lock()


def shared_model(
    model_id_or_path: str,
    *,
    device: str | None = None,
    dtype: str | None = None,
    offline: bool = True,
) -> LoadedModel:
    """The process-wide model for (folder, device, dtype): loaded on first use, then reused."""
    import torch

    folder, name = resolve_folder(model_id_or_path, offline=offline)
    placement = resolve_placement(device, dtype, cuda_available=torch.cuda.is_available())
    key = (folder, placement.device, placement.dtype)
    with _shared_lock:  # held while loading: a second caller waits instead of loading twice
        loaded = _shared.get(key)
        if loaded is None:
            loaded = _shared[key] = _load_folder(folder, name, placement)
        return loaded


def clear_shared_models() -> None:
    """Forget every shared model (its memory is freed once no backend holds it)."""
    with _shared_lock:
        _shared.clear()
