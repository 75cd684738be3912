from datetime import UTC, datetime

import pytest

from fhir_adapters.retry import Failure, RetryPolicy, is_retryable, retry_after_seconds

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_retry_after_delta_seconds() -> None:
    assert retry_after_seconds("3", NOW) == 3.0
    assert retry_after_seconds(" 0 ", NOW) == 0.0


def test_retry_after_http_date() -> None:
    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:07 GMT", NOW) == 7.0
    # A date in the past means "now".
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", NOW) == 0.0


@pytest.mark.parametrize("header", [None, "", "soon", "-5", "1.5"])
def test_retry_after_invalid(header: str | None) -> None:
    assert retry_after_seconds(header, NOW) is None


def test_full_jitter_uses_rng_and_caps() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, rng=lambda: 0.5)
    assert [policy.backoff(a) for a in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 2.5, 2.5]
    assert RetryPolicy(base_delay=1.0, rng=lambda: 0.0).backoff(3) == 0.0


def test_retry_after_wins_but_is_capped() -> None:
    policy = RetryPolicy(max_retry_after=10.0, rng=lambda: 0.9)
    assert policy.delay(1, retry_after=4.0) == 4.0
    assert policy.delay(1, retry_after=3600.0) == 10.0


def test_attempt_budget() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.can_retry(a) for a in (1, 2, 3)] == [True, True, False]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("idempotent", "status", "expected"),
    [
        (True, 429, True),
        (True, 502, True),
        (True, 503, True),
        (True, 504, True),
        # a 500 on a read is retried (issue 9: one 500 failed the whole patient)
        (True, 500, True),
        (True, 404, False),
        (True, 501, False),
        (False, 429, True),
        (False, 503, True),
        # the server may have committed a POST behind a gateway error
        (False, 500, False),
        (False, 502, False),
        (False, 504, False),
    ],
)
def test_status_retry_rules(idempotent: bool, status: int, expected: bool) -> None:
    assert is_retryable(idempotent=idempotent, status=status) is expected


def test_transport_failure_rules() -> None:
    assert is_retryable(idempotent=True, failure=Failure.MAYBE_PROCESSED)
    assert is_retryable(idempotent=False, failure=Failure.NOT_SENT)
    assert not is_retryable(idempotent=False, failure=Failure.MAYBE_PROCESSED)
