"""One place that turns deployment settings into clients: FHIR and DICOMweb (auth, limits, timeouts)."""

from __future__ import annotations

from pydantic import SecretStr

from agent.settings import Settings, SettingsError, load_settings
from fhir_adapters import AuthProvider, FhirClient, SmartBackendServices, StaticBearer
from tools.imaging.dicomweb import BasicAuth, DicomWebClient


def auth_from_settings(settings: Settings) -> AuthProvider | None:
    """SMART Backend Services when a client is configured, else a static token, else none."""
    if settings.smart_client_id:
        if settings.smart_private_key is None or settings.smart_key_id is None:
            raise SettingsError(
                (
                    "CHARTAGENT_SMART_CLIENT_ID needs CHARTAGENT_SMART_PRIVATE_KEY (a PEM file) "
                    "and CHARTAGENT_SMART_KEY_ID",
                )
            )
        try:
            pem = SecretStr(settings.smart_private_key.read_text())
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SettingsError((f"CHARTAGENT_SMART_PRIVATE_KEY: cannot be read ({reason})",)) from None
        return SmartBackendServices(
            settings.smart_client_id,
            pem,
            alg=settings.smart_alg,
            kid=settings.smart_key_id,
            token_url=settings.smart_token_url,
            scopes=settings.smart_scopes,
        )
    if settings.fhir_token is not None:
        return StaticBearer(settings.fhir_token)
    return None


def open_fhir_client(base_url: str, settings: Settings | None = None) -> FhirClient:
    settings = settings or load_settings()
    return FhirClient(
        base_url,
        auth=auth_from_settings(settings),
        flavour=settings.fhir_flavour,
        max_concurrency=settings.fhir_max_concurrency,
        timeout=settings.fhir_timeout_s,
    )


def open_dicomweb_client(base_url: str, settings: Settings | None = None) -> DicomWebClient:
    settings = settings or load_settings()
    auth = None
    if settings.dicomweb_username and settings.dicomweb_password is not None:
        auth = BasicAuth(settings.dicomweb_username, settings.dicomweb_password)
    return DicomWebClient(base_url, auth=auth)
