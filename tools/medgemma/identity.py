"""The model identity that write-back records (pure): who wrote an output, for Device and Provenance."""

from __future__ import annotations

from typing import Final

from tools.medgemma.types import ModelInfo
from tools.writeback.ai_labels import ModelIdentity

__all__ = ["UNPINNED", "model_identity"]

# Version of a model whose weights' commit is unknown (a hub id without a pinned revision, a
# server that does not say). Such outputs stay idempotent only while the weights do not change.
UNPINNED: Final = "unpinned"


def model_identity(info: ModelInfo, prompt_version: str) -> ModelIdentity:
    """`ModelIdentity` of `info` running the prompt `prompt_version`.

    The weights' revision is the model's version (a model has no other), so it is recorded once,
    as the version. Name, version, dtype and prompt version decide the identifiers of what it
    writes; device and backend only say where it ran.
    """
    if not prompt_version:
        raise ValueError("prompt_version must name the prompt (e.g. 'lab-summary/1')")
    return ModelIdentity(
        name=info.name,
        version=info.revision or UNPINNED,
        dtype=info.dtype,
        device=info.device,
        backend=info.backend,
        prompt_version=prompt_version,
    )
