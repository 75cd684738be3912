"""The roots of every error ChartAgent raises on purpose; the clients' and tools' families hang below.

It lives here, in the lowest layer, because the FHIR, DICOMweb and model clients all build on
`fhir_adapters.service_client`; it imports nothing of ours. Two questions a caller asks of a
failure decide the branches: did a remote service fail (retry later, tell the operator), or is
the input bad (tell whoever supplied it)? Every message names the thing concerned and the
problem, never patient data or secrets, so a `ChartAgentError` may be logged and reported as is.

    ChartAgentError
    +-- ServiceError                 a remote service failed: FHIR server, DICOMweb PACS, model server
    |   +-- ServiceHttpError         it answered with an error status (`status`)
    |   +-- ServiceTransportError    no answer: refused, reset, timed out
    |   +-- ServiceProtocolError     an answer that breaks the protocol (non-JSON body, bad multipart)
    |   +-- ServiceOutcomeUnknown    a write failed after the service may have applied it
    +-- BadInputError                the input (a file, a resource, a query, a value) is unusable
    |   +-- ConfigurationError       the input is the deployment's configuration (settings, model)
    +-- (internal families)          `ModelError`, `FhirError`, `StackError`, ... (see below)

Placement of the families (existing names kept; a family whose members differ in kind roots at
`ChartAgentError` and each member also takes its branch, by multiple inheritance):

- `fhir_adapters.errors.FhirError` -> ChartAgentError. `FhirHttpError` (and Auth/NotFound/
  Conflict/Invalid/RateLimited/Server) also ServiceHttpError; `FhirTransportError` also
  ServiceTransportError; `FhirProtocolError` also ServiceProtocolError; `FhirOutcomeUnknown`
  also ServiceOutcomeUnknown; `ResourceParseError` (a resource that is not valid R4B) also
  BadInputError.
- `fhir_adapters.confirmed`: `WriteNotStored` also ServiceError (the write failed, known not
  stored); `WriteOutcomeUnknown` also ServiceOutcomeUnknown.
- `tools.imaging.dicomweb.DicomWebError` -> ServiceError (every member is a PACS failure);
  its Http/Transport/Protocol members also take the matching Service* branch.
- `tools.medgemma.errors.ModelError` -> ChartAgentError. `ModelServerError`,
  `ModelTransportError`, `ModelProtocolError` also ServiceHttpError/Transport/Protocol;
  `ModelConfigurationError` and `loader.ModelNotAvailableError` (weights missing) also
  ConfigurationError. `ModelOutputError` (an answer that cannot be read strictly),
  `BatcherClosedError` and the fake's `ScriptExhaustedError` stay plain ModelErrors.
- `tools.imaging.errors.ImagingError` -> BadInputError (a DICOM object, series, slide, box or
  prepared-images file cannot be used), with `DicomLimitError`, `wsi.SlideError` and the test
  bed's `DicomizeError` (the dicomizer missing or failing on the named input) below it.
  `sources.DicomSourceError` (an input that cannot be read at all) -> BadInputError, apart from
  ImagingError as before (the CLIs catch both). `multipart.MultipartError` -> BadInputError:
  the pure parser judges the body it is given; the DICOMweb client turns it into
  DicomWebProtocolError.
- `tools.labs`: `UnitConversionError`, `MixedSubjectsError`, `pdf.errors.LabPdfError` (and the
  ingest's `_Damaged`) -> BadInputError. `tools.documents.attachments.DocumentFetchError` ->
  BadInputError: the document's attachment cannot be used (refused URL, too large, wrong
  hash, no bytes).
- `tools.patient_lookup.AmbiguousPatientError` -> BadInputError (the query names several).
- `tools.medgemma.openai_wire.ImageDataUrlError` (a client's image data URL) -> BadInputError.
- `agent.settings.SettingsError` -> ConfigurationError.
- `agent.chat.planner.PlannerOutputError` (the planner's answer is not one valid action) ->
  ChartAgentError, like `ModelOutputError`: the model answered, unusably.
- `agent.testbed.stack.process.StackError` -> ChartAgentError: the local test bed could not
  start or stop a server; neither a remote service nor an input.
- `tools.imaging_review.service._Failed` -> ChartAgentError: internal control flow, never
  leaves its module.

Nothing here derives from ValueError, LookupError or RuntimeError: `except ValueError` is for a
standard-library or third-party parse, never for our code (tests/unit/test_error_tree.py).
"""

from __future__ import annotations

import traceback
from pathlib import Path

__all__ = [
    "BadInputError",
    "ChartAgentError",
    "ConfigurationError",
    "ServiceError",
    "ServiceHttpError",
    "ServiceOutcomeUnknown",
    "ServiceProtocolError",
    "ServiceTransportError",
    "defect_text",
    "raised_at",
]


class ChartAgentError(Exception):
    """Base of every error ChartAgent raises on purpose; its message is safe to log and report."""


class ServiceError(ChartAgentError):
    """A remote service (FHIR server, DICOMweb PACS, model server) failed a request."""


class ServiceHttpError(ServiceError):
    """The service answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class ServiceTransportError(ServiceError):
    """No HTTP answer: connection refused or reset, timeouts."""


class ServiceProtocolError(ServiceError):
    """The service's answer breaks the protocol or our safety rules."""


class ServiceOutcomeUnknown(ServiceError):
    """A request that changes data failed after the service may have applied it: read it back
    (or resend an idempotent request) before saying that nothing was written."""


class BadInputError(ChartAgentError):
    """The input (a file, a resource, a query, a value) cannot be used; the message names the
    input and the problem, never its content."""


class ConfigurationError(BadInputError):
    """The deployment's configuration (settings, model files) is incomplete or contradictory;
    the message says what to set."""


def raised_at(exc: BaseException) -> str:
    """`file.py:line` of the innermost frame of ours (outside site-packages) that raised `exc`."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/site-packages/" not in f.filename] or frames
    if not ours:
        return "unknown place"
    return f"{Path(ours[-1].filename).name}:{ours[-1].lineno}"


def defect_text(exc: BaseException) -> str:
    """How an exception outside the tree (a defect) is told: its type and place, never its message,
    which may quote patient data."""
    return f"internal error ({type(exc).__name__} at {raised_at(exc)})"
