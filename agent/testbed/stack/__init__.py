"""The embedded stack: the FHIR server (sekmet), the PACS (Orthanc with DICOMweb), the EHR stand-in
in front of FHIR (agent.testbed.ehr) and the ChartAgent service it launches."""

from agent.testbed.stack.app_server import AppServer, AppServerSpec
from agent.testbed.stack.ehr_server import EhrServer
from agent.testbed.stack.fhir_server import FhirServer, FhirServerSpec, SmartClientSpec
from agent.testbed.stack.orthanc import OrthancServer, OrthancSpec
from agent.testbed.stack.process import StackError
from agent.testbed.stack.stack import StackStatus, current_dicomweb_url, current_fhir_url, down, status, up

__all__ = [
    "AppServer",
    "AppServerSpec",
    "EhrServer",
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
