"""Loading MedGemma in-process: folders, the offline hub cache, placement, revision, missing weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest

from tools.medgemma.errors import ModelConfigurationError
from tools.medgemma.loader import (
    MEDGEMMA_MODEL_ID,
    ModelNotAvailableError,
    RuntimePlacement,
    folder_revision,
    load_model,
    resolve_placement,
    shared_model,
)
from tools.medgemma.tiny_model import tiny_medgemma_path

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny() -> Path:
    return tiny_medgemma_path()


def test_the_tiny_folder_loads_in_float32_on_cpu_in_eval_mode(tiny: Path) -> None:
    loaded = load_model(str(tiny), device="cpu")
    assert loaded.info.backend == "transformers"
    assert loaded.info.name == tiny.name
    assert (loaded.info.dtype, loaded.info.device, loaded.info.revision) == ("float32", "cpu", None)
    assert not loaded.model.training
    assert str(loaded.model.dtype) == "torch.float32"  # stored as bfloat16, upcast for the CPU
    assert loaded.model.config._attn_implementation == "sdpa"
    assert loaded.processor.tokenizer.image_token_id == 262_144


def test_shared_model_loads_once_per_folder_device_and_dtype(tiny: Path) -> None:
    first = shared_model(str(tiny), device="cpu", dtype="fp32")
    assert shared_model(str(tiny) + "/", device="cpu", dtype="float32") is first
    assert shared_model(str(tiny), device="cpu", dtype="bfloat16") is not first


def test_a_hub_id_resolves_from_the_local_cache_offline_with_its_commit(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "hub" / "models--google--medgemma-1.5-4b-it"
    snapshot = repo / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    for file in tiny.iterdir():
        (snapshot / file.name).symlink_to(file)  # as the hub cache links its blobs
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    loaded = load_model(MEDGEMMA_MODEL_ID)
    assert (loaded.info.name, loaded.info.revision) == (MEDGEMMA_MODEL_ID, SHA)
    # The snapshot folder itself names its model and commit too.
    assert load_model(str(snapshot)).info.name == MEDGEMMA_MODEL_ID


def _missing_weights_message(exc: pytest.ExceptionInfo[ModelNotAvailableError]) -> str:
    message = str(exc.value)
    for hint in (
        "Health AI Developer Foundations",
        f"huggingface-cli download {MEDGEMMA_MODEL_ID}",
        "CHARTAGENT_MODEL",
        "CHARTAGENT_MODEL_BACKEND=openai",
        "CHARTAGENT_MODEL_URL",
    ):
        assert hint in message
    return message


def test_an_uncached_hub_id_offline_says_how_to_get_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailableError) as exc:
        load_model(MEDGEMMA_MODEL_ID)
    assert "local hub cache (offline)" in _missing_weights_message(exc)


def test_hf_hub_offline_wins_over_offline_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="offline"):
        load_model(MEDGEMMA_MODEL_ID, offline=False)


def test_a_missing_folder_or_one_without_weights_is_not_available(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="no folder") as exc:
        load_model(str(tmp_path / "nowhere"))
    _missing_weights_message(exc)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny / "config.json", partial / "config.json")
    with pytest.raises(ModelNotAvailableError, match="no weights"):
        load_model(str(partial))
    shutil.copy(tiny / "model.safetensors", partial / "model.safetensors")
    with pytest.raises(ModelNotAvailableError, match="incomplete"):  # no processor files
        load_model(str(partial))


@pytest.mark.parametrize(
    ("device", "dtype", "cuda", "expected"),
    [
        (None, None, False, RuntimePlacement("cpu", "float32")),
        (None, None, True, RuntimePlacement("cuda", "bfloat16")),
        ("cuda:1", "fp16", True, RuntimePlacement("cuda:1", "float16")),
        ("cpu", "bf16", True, RuntimePlacement("cpu", "bfloat16")),
    ],
)
def test_placement_defaults_to_bf16_on_cuda_and_fp32_on_cpu(
    device: str | None, dtype: str | None, cuda: bool, expected: RuntimePlacement
) -> None:
    assert resolve_placement(device, dtype, cuda_available=cuda) == expected


def test_placement_refuses_unknown_dtypes_and_absent_cuda() -> None:
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        resolve_placement("cpu", "int4", cuda_available=False)
    with pytest.raises(ModelConfigurationError, match="no CUDA device"):
        resolve_placement("cuda", None, cuda_available=False)


def test_revision_from_a_local_dir_download_or_a_git_clone(tmp_path: Path) -> None:
    downloaded = tmp_path / "downloaded"
    metadata = downloaded / ".cache" / "huggingface" / "download"
    metadata.mkdir(parents=True)
    (metadata / "config.json.metadata").write_text(f'{SHA}\n"etag"\n1732780000.0\n')
    assert folder_revision(downloaded) == SHA

    clone = tmp_path / "clone"
    (clone / ".git" / "refs" / "heads").mkdir(parents=True)
    (clone / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (clone / ".git" / "packed-refs").write_text(f"# pack-refs\n{SHA} refs/heads/main\n")
    assert folder_revision(clone) == SHA
    (clone / ".git" / "refs" / "heads" / "main").write_text("f" * 40 + "\n")
    assert folder_revision(clone) == "f" * 40

    assert folder_revision(tmp_path) is None
