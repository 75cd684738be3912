"""Retry policy (pure): which failures are retried for which request, and how long to wait.

What is retried, and why:
- GET/HEAD/PUT/DELETE are idempotent: retried on 429, 500, 502, 503, 504 and on every
  transport failure (connect error, timeouts, a dropped connection). A 500 on a read is most
  often a passing fault of the server (a lock, a restart): with 500s on about 4 % of requests,
  not retrying them failed half of the patients.
- POST (create, transaction, batch) is not idempotent. It is retried only where the server
  cannot have processed it: 429 and 503 (the server or its gateway refused the request before
  handling it) and failures before the request was sent (connect error/timeout, pool timeout).
  It is *not* retried on 500/502/504 or a read timeout: the server may have committed it and
  a retry could write twice. The caller learns that the outcome is unknown
  (`FhirOutcomeUnknown`) and reads the server back (`fhir_adapters.confirmed`).
- POST with `If-None-Exist` (conditional create), and a transaction whose every entry is one,
  is idempotent by construction: a rerun matches what the first attempt wrote, so it is
  retried like GET.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum

__all__ = [
    "MAYBE_PROCESSED_STATUSES",
    "RETRYABLE_STATUSES",
    "Failure",
    "RetryPolicy",
    "is_retryable",
    "retry_after_seconds",
]

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses that mean "not processed", so even a non-idempotent request may be resent.
_UNPROCESSED_STATUSES = frozenset({429, 503})
# Statuses after which a request that changes data may or may not have been applied.
MAYBE_PROCESSED_STATUSES = frozenset({500, 502, 504})


class Failure(Enum):
    """Transport failures, by whether the request can have reached the server."""

    NOT_SENT = "not-sent"  # connect error, connect timeout, pool timeout
    MAYBE_PROCESSED = "maybe-processed"  # read/write timeout, connection dropped mid-request


def is_retryable(*, idempotent: bool, status: int | None = None, failure: Failure | None = None) -> bool:
    """Whether a request may be resent after an error status or a transport failure."""
    if failure is not None:
        return idempotent or failure is Failure.NOT_SENT
    if status is None or status not in RETRYABLE_STATUSES:
        return False
    return idempotent or status in _UNPROCESSED_STATUSES


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (AWS architecture blog), capped.

    `attempt` counts from 1 (the first try); `max_attempts` includes it, so 1 disables retries.
    """

    max_attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 20.0
    # A server's Retry-After is honoured up to this; longer waits fail fast instead of
    # parking an agent turn for minutes.
    max_retry_after: float = 60.0
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must be >= 0")

    def can_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**(attempt-1)))."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempt - 1))
        return self.rng() * ceiling

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed `attempt`; the server's Retry-After wins when given."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after)
        return self.backoff(attempt)


def retry_after_seconds(header: str | None, now: datetime | None = None) -> float | None:
    """Parse Retry-After (RFC 9110 10.2.3): delta-seconds or an HTTP-date. None when absent/invalid."""
    if header is None:
        return None
    value = header.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())
