"""One error hierarchy for everything that talks FHIR; HTTP status -> exception happens in `error_for_status`.

Messages carry the method, the resource type/id path and the server's OperationOutcome, never
query values (they hold patient data such as names and birth dates) and never tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_adapters.error_tree import (
    BadInputError,
    ChartAgentError,
    ServiceHttpError,
    ServiceOutcomeUnknown,
    ServiceProtocolError,
    ServiceTransportError,
)
from fhir_adapters.redaction import redact_credentials

__all__ = [
    "FhirAuthError",
    "FhirConflict",
    "FhirError",
    "FhirHttpError",
    "FhirInvalid",
    "FhirNotFound",
    "FhirOutcomeUnknown",
    "FhirProtocolError",
    "FhirRateLimited",
    "FhirServerError",
    "FhirTransportError",
    "OutcomeIssue",
    "ResourceParseError",
    "error_for_status",
    "outcome_issues",
    "redact_target",
]


class FhirError(ChartAgentError):
    """Base of every error raised by `fhir_adapters`; each member also takes its branch of the
    tree (`fhir_adapters.error_tree`)."""


@dataclass(frozen=True)
class OutcomeIssue:
    """One `OperationOutcome.issue` (or an OAuth error from a token endpoint)."""

    severity: str
    code: str
    diagnostics: str | None = None
    expression: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f" at {', '.join(self.expression)}" if self.expression else ""
        text = self.diagnostics or self.code
        return f"{self.severity}/{self.code}{where}: {text}"


class FhirHttpError(FhirError, ServiceHttpError):
    """The server answered with an error status."""

    def __init__(
        self,
        status: int,
        method: str,
        target: str,
        issues: tuple[OutcomeIssue, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        # Path relative to the base plus the *names* of query parameters, see `redact_target`.
        self.target = target
        self.issues = issues
        self.retry_after = retry_after
        detail = "; ".join(str(i) for i in issues) or "no OperationOutcome"
        super().__init__(status, f"{method} {target} -> HTTP {status}: {detail}")


class FhirAuthError(FhirHttpError):
    """401/403 from the FHIR server, or a refused token request."""


class FhirNotFound(FhirHttpError):
    """404/410."""


class FhirConflict(FhirHttpError):
    """409/412: version conflict or a conditional operation matching several resources."""


class FhirInvalid(FhirHttpError):
    """400/422: the request or resource was rejected (validation, unsupported parameter)."""


class FhirRateLimited(FhirHttpError):
    """429 after the retry budget was spent."""


class FhirServerError(FhirHttpError):
    """5xx (and 501 Not Implemented)."""


class FhirTransportError(FhirError, ServiceTransportError):
    """No HTTP answer: connection refused/reset, timeouts."""

    def __init__(self, method: str, target: str, kind: str) -> None:
        self.method = method
        self.target = target
        self.kind = kind
        super().__init__(f"{method} {target} failed: {kind}")


class FhirOutcomeUnknown(FhirError, ServiceOutcomeUnknown):
    """A request that changes data failed in a way that leaves its outcome unknown: a read timeout,
    a connection cut mid-answer, 500/502/504 or an unreadable success body, after the server may
    have applied it. Never report "nothing written" on this: read the server back
    (`fhir_adapters.confirmed`), or resend where the request is idempotent."""

    def __init__(self, method: str, target: str, cause: str) -> None:
        self.method = method
        self.target = target
        self.cause = cause
        super().__init__(f"{method} {target}: outcome unknown ({cause}); the server may have applied it")


class FhirProtocolError(FhirError, ServiceProtocolError):
    """The server's answer breaks the protocol or our safety rules (non-JSON body, a `next`
    link on another origin)."""


class ResourceParseError(FhirError, BadInputError):
    """A resource did not validate against the R4B models."""

    def __init__(self, resource_type: str, id: str | None, reason: str) -> None:
        self.resource_type = resource_type
        self.id = id
        self.reason = reason
        super().__init__(f"{resource_type}/{id or '?'} is not valid R4B: {reason}")


_BY_STATUS: Mapping[int, type[FhirHttpError]] = {
    400: FhirInvalid,
    401: FhirAuthError,
    403: FhirAuthError,
    404: FhirNotFound,
    409: FhirConflict,
    410: FhirNotFound,
    412: FhirConflict,
    422: FhirInvalid,
    429: FhirRateLimited,
}


def error_for_status(
    status: int,
    method: str,
    target: str,
    body: bytes | None = None,
    *,
    retry_after: float | None = None,
) -> FhirHttpError:
    """The one place that maps an HTTP error status to our exception class."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = FhirServerError if status >= 500 else FhirHttpError
    return cls(status, method, target, outcome_issues(body), retry_after)


def outcome_issues(body: bytes | None) -> tuple[OutcomeIssue, ...]:
    """Issues of an OperationOutcome body; OAuth `{error, error_description}` bodies too.

    Server text is passed through `redact_credentials`: some servers echo request headers.
    """
    if not body:
        return ()
    try:
        doc: Any = json.loads(body)
    except ValueError:
        return ()
    if not isinstance(doc, dict):
        return ()
    if doc.get("resourceType") == "OperationOutcome":
        issues = []
        for raw in doc.get("issue") or []:
            if not isinstance(raw, dict):
                continue
            text = raw.get("diagnostics") or (raw.get("details") or {}).get("text")
            expression = raw.get("expression") or raw.get("location") or []
            issues.append(
                OutcomeIssue(
                    severity=str(raw.get("severity", "error")),
                    code=str(raw.get("code", "unknown")),
                    diagnostics=redact_credentials(str(text)) if text else None,
                    expression=tuple(str(e) for e in expression),
                )
            )
        return tuple(issues)
    if "error" in doc:  # RFC 6749 section 5.2
        desc = doc.get("error_description")
        code = redact_credentials(str(doc["error"]))
        return (OutcomeIssue("error", code, redact_credentials(str(desc)) if desc else None),)
    return ()


def redact_target(url: str, base_url: str) -> str:
    """`Observation?patient&code` for `{base}/Observation?patient=1&code=x`: path kept, values dropped."""
    parts = urlsplit(url)
    base_path = urlsplit(base_url).path.rstrip("/")
    path = parts.path
    if base_path and path.startswith(base_path):
        path = path[len(base_path) :]
    path = path.lstrip("/") or "/"
    names = list(dict.fromkeys(name for name, _ in parse_qsl(parts.query, keep_blank_values=True)))
    return f"{path}?{'&'.join(names)}" if names else path
