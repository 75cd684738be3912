"""Deployment settings: one pydantic-settings class read from the environment (CHARTAGENT_*).

Per-run values (CLI flags, the graph's context) win over these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHARTAGENT_", extra="ignore")

    environment: Literal["local", "staging", "production"] = "local"
    # Where the embedded stack keeps its state (FHIR database, configs, logs, pid files).
    state_dir: Path = Path(".chartagent")
    # FHIR base URL; empty means "the embedded stack's, from its state file".
    fhir_url: str | None = None
    fhir_token: SecretStr | None = None
    # Server quirks (fhir_adapters.flavours): generic, hapi, sekmet, epic, cerner, medplum, google, azure.
    fhir_flavour: str = "generic"
    # SMART Backend Services (client_credentials + private_key_jwt).
    smart_client_id: str | None = None
    smart_private_key: Path | None = None
    smart_key_id: str | None = None
    smart_alg: Literal["RS384", "ES384"] = "RS384"
    smart_token_url: str | None = None
    smart_scopes: str = (
        "system/*.rs system/Observation.c system/DiagnosticReport.c system/Device.c system/Provenance.c"
    )
    # DICOMweb base URL of the PACS; empty means "the embedded stack's Orthanc".
    dicomweb_url: str | None = None
    dicomweb_username: str | None = None
    dicomweb_password: SecretStr | None = None
    fhir_max_concurrency: int = Field(default=8, ge=1, le=64)
    # Lab-report PDFs print wall-clock times without a zone: the lab's IANA zone reads them.
    lab_timezone: str = "UTC"
    fhir_timeout_s: float = Field(default=30.0, gt=0)
    # MedGemma (checked at start-up by tools.medgemma.config.ModelConfig; see its docstring).
    # none: no model, deterministic results only, model findings are reported as skipped.
    model_backend: Literal["none", "transformers", "openai"] = "none"
    # Hub id or local folder (transformers), or the served model name (openai).
    model: str = "google/medgemma-1.5-4b-it"
    # The server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1 (vLLM, TGI).
    model_url: str | None = None
    model_api_key: SecretStr | None = None
    model_device: str | None = None
    model_dtype: Literal["bfloat16", "float16", "float32"] | None = None
    model_revision: str | None = None
    model_timeout_s: float = Field(default=120.0, gt=0)
    model_max_concurrency: int = Field(default=8, ge=1, le=256)

    @field_validator("lab_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"CHARTAGENT_LAB_TIMEZONE {value!r} is not an IANA time zone") from exc
        return value

    @property
    def lab_zone(self) -> ZoneInfo:
        return ZoneInfo(self.lab_timezone)

    @model_validator(mode="after")
    def _no_plain_http_outside_local(self) -> Settings:
        # Patient data never travels unencrypted to a real EHR.
        if self.environment != "local" and self.fhir_url and self.fhir_url.startswith("http://"):
            raise ValueError("CHARTAGENT_FHIR_URL must be https:// outside the local environment")
        return self


def load_settings() -> Settings:
    return Settings()
