"""The embedded stack (FHIR server now; Orthanc joins with imaging)."""

from agent.stack.fhir_server import FhirServer, FhirServerSpec, SmartClientSpec
from agent.stack.process import StackError
from agent.stack.stack import StackStatus, current_fhir_url, down, status, up

__all__ = [
    "FhirServer",
    "FhirServerSpec",
    "SmartClientSpec",
    "StackError",
    "StackStatus",
    "current_fhir_url",
    "down",
    "status",
    "up",
]
