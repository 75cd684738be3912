"""The embedded stack: the FHIR server (sekmet) and the PACS (Orthanc with DICOMweb)."""

from agent.stack.fhir_server import FhirServer, FhirServerSpec, SmartClientSpec
from agent.stack.orthanc import OrthancServer, OrthancSpec
from agent.stack.process import StackError
from agent.stack.stack import StackStatus, current_dicomweb_url, current_fhir_url, down, status, up

__all__ = [
    "FhirServer",
    "FhirServerSpec",
    "OrthancServer",
    "OrthancSpec",
    "SmartClientSpec",
    "StackError",
    "StackStatus",
    "current_dicomweb_url",
    "current_fhir_url",
    "down",
    "status",
    "up",
]
