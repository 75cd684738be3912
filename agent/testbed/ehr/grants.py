"""What the authorization server remembers between requests (in memory: a restart of the stand-in
ends every launch, code and refresh token, as a real EHR's restart would not, which tests accept).

Codes and refresh tokens are single-use: `take` removes them, so a second use finds nothing.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar


@dataclass(frozen=True)
class Launch:
    """An EHR launch the launcher issued: the patient and user it binds."""

    patient_id: str
    fhir_user: str


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked /auth/authorize request waiting for its patient (standalone launch picker)."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    code_challenge: str
    nonce: str | None
    fhir_user: str


@dataclass(frozen=True)
class Grant:
    """What a code or refresh token stands for."""

    client_id: str
    scope: str
    patient_id: str | None
    fhir_user: str | None
    # Codes only: the redirect URI and PKCE challenge the token request must match.
    redirect_uri: str | None = None
    code_challenge: str | None = None
    nonce: str | None = None


T = TypeVar("T")


@dataclass
class ExpiringStore(Generic[T]):
    """Random opaque handles -> values, each valid for `lifetime_s`."""

    lifetime_s: float
    _items: dict[str, tuple[float, T]] = field(default_factory=dict)

    def issue(self, value: T) -> str:
        self._expire()
        handle = secrets.token_urlsafe(32)
        self._items[handle] = (time.monotonic() + self.lifetime_s, value)
        return handle

    def get(self, handle: str) -> T | None:
        self._expire()
        item = self._items.get(handle)
        return item[1] if item else None

    def take(self, handle: str) -> T | None:
        """The value, once: the handle is gone afterwards."""
        self._expire()
        item = self._items.pop(handle, None)
        return item[1] if item else None

    def _expire(self) -> None:
        now = time.monotonic()
        for handle in [h for h, (until, _) in self._items.items() if until < now]:
            del self._items[handle]


@dataclass
class GrantStores:
    launches: ExpiringStore[Launch]
    requests: ExpiringStore[AuthorizationRequest]
    codes: ExpiringStore[Grant]
    refresh_tokens: ExpiringStore[Grant]

    @classmethod
    def create(cls, *, code_lifetime_s: float, refresh_lifetime_s: float) -> GrantStores:
        return cls(
            launches=ExpiringStore(lifetime_s=3600),
            requests=ExpiringStore(lifetime_s=600),
            codes=ExpiringStore(lifetime_s=code_lifetime_s),
            refresh_tokens=ExpiringStore(lifetime_s=refresh_lifetime_s),
        )
