"""Model settings -> checked config -> backend; the model identity that write-back records."""

from __future__ import annotations

import pytest

from agent.settings import Settings
from tools.medgemma.config import DEFAULT_MODEL, ModelConfig
from tools.medgemma.errors import ModelConfigurationError
from tools.medgemma.factory import create_backend, open_backend
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.identity import UNPINNED, model_identity
from tools.medgemma.metrics import MeteredBackend
from tools.medgemma.openai_backend import OpenAIChatBackend
from tools.medgemma.types import ModelInfo
from tools.writeback import build_model_device


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODEL", "MODEL_BACKEND", "MODEL_URL", "MODEL_API_KEY", "MODEL_DEVICE", "MODEL_DTYPE",
                 "MODEL_REVISION", "ENVIRONMENT"):  # fmt: skip
        monkeypatch.delenv(f"CHARTAGENT_{name}", raising=False)


def test_default_is_no_model_and_says_findings_are_skipped() -> None:
    settings = Settings()
    assert (settings.model_backend, settings.model) == ("none", DEFAULT_MODEL)
    assert create_backend(settings) is None
    assert "model findings are skipped" in ModelConfig.from_settings(settings).describe()


async def test_openai_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "openai")
    monkeypatch.setenv("CHARTAGENT_MODEL_URL", "http://127.0.0.1:8000/v1/")
    monkeypatch.setenv("CHARTAGENT_MODEL_API_KEY", "sk-secret")
    monkeypatch.setenv("CHARTAGENT_MODEL_DTYPE", "bfloat16")
    settings = Settings()
    assert "sk-secret" not in repr(settings)
    config = ModelConfig.from_settings(settings)
    assert config.url == "http://127.0.0.1:8000/v1"
    assert "sk-secret" not in config.describe()
    assert "sk-secret" not in repr(config)
    async with open_backend(settings) as metered:
        assert isinstance(metered, MeteredBackend)  # its calls counted (tools.medgemma.metrics)
        backend = metered.backend
        assert isinstance(backend, OpenAIChatBackend)
        assert backend.url == "http://127.0.0.1:8000/v1/chat/completions"
        assert (
            metered.info == backend.info == ModelInfo(name=DEFAULT_MODEL, dtype="bfloat16", backend="openai")
        )


OPENAI = {"MODEL_BACKEND": "openai"}
LOCAL_TRANSFORMERS = {"MODEL_BACKEND": "transformers"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (OPENAI, "needs CHARTAGENT_MODEL_URL"),
        (OPENAI | {"MODEL_URL": "127.0.0.1:8000"}, "absolute http"),
        (OPENAI | {"MODEL_URL": "https://u:p@h/v1"}, "must not carry credentials"),
        (OPENAI | {"MODEL_URL": "http://h/v1", "MODEL_DEVICE": "cuda"}, "transformers backend only"),
        (OPENAI | {"MODEL_URL": "http://vllm.internal/v1", "ENVIRONMENT": "production"}, "https"),
        (LOCAL_TRANSFORMERS | {"MODEL_URL": "http://h/v1"}, "set CHARTAGENT_MODEL_BACKEND=openai"),
        (LOCAL_TRANSFORMERS | {"MODEL": " "}, "CHARTAGENT_MODEL is empty"),
    ],
)
def test_incomplete_or_contradictory_settings_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"CHARTAGENT_{name}", value)
    with pytest.raises(ModelConfigurationError, match=message):
        create_backend(Settings())


def test_plain_http_to_loopback_is_allowed_outside_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTAGENT_ENVIRONMENT", "production")
    monkeypatch.setenv("CHARTAGENT_FHIR_URL", "https://ehr.example/fhir")
    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "openai")
    monkeypatch.setenv("CHARTAGENT_MODEL_URL", "http://[::1]:8000/v1")
    assert ModelConfig.from_settings(Settings()).url == "http://[::1]:8000/v1"


def test_a_bad_backend_name_is_refused_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTAGENT_MODEL_BACKEND", "fake")  # the fake is never chosen by settings
    with pytest.raises(ValueError, match="model_backend"):
        Settings()


def test_transformers_config_describes_without_loading() -> None:
    config = ModelConfig(backend="transformers", name="/models/medgemma", device="cuda:1", dtype="bfloat16")
    assert config.describe() == "model /models/medgemma (bfloat16) in-process (transformers) on cuda:1"


def test_model_identity_names_the_model_and_keys_on_what_decides_the_text() -> None:
    info = ModelInfo(name="google/medgemma-1.5-4b-it", revision="abc123", dtype="bfloat16", device="cuda:0",
                     backend="transformers")  # fmt: skip
    ident = model_identity(info, "lab-trend-summary/1")
    assert (ident.name, ident.version, ident.prompt_version) == ("google/medgemma-1.5-4b-it", "abc123",
                                                                 "lab-trend-summary/1")  # fmt: skip
    # Where it ran does not change the identifiers; dtype and prompt do.
    moved = model_identity(
        info.model_copy(update={"device": "cuda:3", "backend": "openai"}), "lab-trend-summary/1"
    )
    assert moved.key() == ident.key()
    assert (
        model_identity(info.model_copy(update={"dtype": "float32"}), "lab-trend-summary/1").key()
        != ident.key()
    )
    assert model_identity(info, "lab-trend-summary/2").key() != ident.key()
    device = build_model_device(ident).resource
    assert device.deviceName[0].name == "google/medgemma-1.5-4b-it"
    assert [v.value for v in device.version] == ["abc123", "lab-trend-summary/1"]


def test_unpinned_models_and_empty_prompt_versions() -> None:
    fake = ScriptedBackend(["x"])
    assert model_identity(fake.info, "p/1").version == UNPINNED
    with pytest.raises(ValueError, match="prompt_version"):
        model_identity(fake.info, "")
