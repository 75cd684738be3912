"""The embedded stack: the FHIR server (sekmet) and the PACS (Orthanc with DICOMweb)."""

from agent.testbed.stack.fhir_server import FhirServer, FhirServerSpec, SmartClientSpec
from agent.testbed.stack.orthanc import OrthancServer, OrthancSpec
from agent.testbed.stack.process import StackError
from agent.testbed.stack.stack import StackStatus, current_dicomweb_url, current_fhir_url, down, status, up

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
