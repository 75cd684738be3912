"""HL7 AI Transparency on FHIR labels: the AIAST security label, the model identity, its Device.

IG: http://hl7.org/fhir/uv/aitransparency. Everything ChartAgent writes that carries computed
clinical content is labelled ``meta.security = v3-ObservationValue#AIAST``; the engine that
produced it is a ``Device`` typed ``AIdeviceTypeCS#Artificial-Intelligence``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from typing import Any, Final

from fhir.resources.R4B.device import Device
from pydantic import BaseModel, ConfigDict, Field

from tools.trends import ALGORITHM_REVISION, ENGINE_NAME
from tools.writeback.identifiers import Built, business_identifier

__all__ = [
    "AIAST",
    "AI_DEVICE_TYPE",
    "ModelIdentity",
    "ai_meta",
    "build_model_device",
    "chartagent_version",
    "engine_identity",
    "is_ai_asserted",
    "trend_engine_identity",
]

AIAST: Final[dict[str, str]] = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
AI_DEVICE_TYPE: Final[dict[str, str]] = {
    "system": "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS",
    "code": "Artificial-Intelligence",
    "display": "All kinds of Artificial Intelligence",
}


class ModelIdentity(BaseModel):
    """What produced an output. ``key()`` holds the fields that decide the output.

    ``device`` and ``backend`` say where it ran; they are left out of ``key()`` (and so out of
    every identifier) so that moving a run between machines does not duplicate what it wrote.
    ``dtype`` is in: bf16 and fp32 runs of one model can give different text.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    backend: str | None = None
    prompt_version: str | None = None

    def key(self) -> str:
        fields = {
            "name": self.name,
            "version": self.version,
            "revision": self.revision,
            "dtype": self.dtype,
            "prompt_version": self.prompt_version,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=1)
def chartagent_version() -> str:
    """The installed chartagent package's version: the version of ChartAgent's own engines.

    Read once a process: importlib.metadata scans every installed distribution (a few ms), and
    each patient's identities asked for it several times."""
    try:
        return importlib.metadata.version("chartagent")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def engine_identity(name: str, revision: str, package_version: str | None = None) -> ModelIdentity:
    """One of ChartAgent's own deterministic engines; its version is the package's unless given."""
    return ModelIdentity(
        name=name,
        version=package_version or chartagent_version(),
        revision=revision,
        backend="python",
        device="cpu",
    )


def trend_engine_identity(package_version: str | None = None) -> ModelIdentity:
    """The deterministic trend engine."""
    return engine_identity(ENGINE_NAME, ALGORITHM_REVISION, package_version)


def ai_meta(**extra: Any) -> dict[str, Any]:
    """A ``meta`` with the AIAST security label (plus any other meta elements given)."""
    return {"security": [dict(AIAST)], **extra}


def build_model_device(identity: ModelIdentity) -> Built[Device]:
    """The Device that stands for ``identity``: one per model identity, found again by identifier."""
    ident = business_identifier(engine=identity.key(), task="model-device")
    versions: list[dict[str, Any]] = [{"value": identity.version}]
    for label, value in (("revision", identity.revision), ("prompt", identity.prompt_version)):
        if value:
            versions.append({"type": {"text": label}, "value": value})
    data = {
        "resourceType": "Device",
        "identifier": [ident.as_fhir()],
        "status": "active",
        "deviceName": [{"name": identity.name, "type": "model-name"}],
        "type": {"coding": [dict(AI_DEVICE_TYPE)], "text": "Artificial Intelligence"},
        "version": versions,
        "property": (
            [{"type": {"text": "dtype"}, "valueCode": [{"text": identity.dtype}]}] if identity.dtype else None
        ),
    }
    return Built.of_json(Device.model_validate, data, identifier=ident)


def is_ai_asserted(resource: Any) -> bool:
    """True for a resource labelled AIAST (ours or another AI's).

    AI output is never an input of a new analysis: a trend of trends would change the inputs
    of every rerun and so defeat idempotency, and would launder model output as source data.
    """
    meta = getattr(resource, "meta", None)
    labels = getattr(meta, "security", None) or []
    return any(
        getattr(label, "system", None) == AIAST["system"] and getattr(label, "code", None) == AIAST["code"]
        for label in labels
    )
