"""CSRF protection for the app's unsafe requests (POST, PUT, PATCH, DELETE).

A session's requests carry its cookie automatically, so a page on another site could make the
browser post one. Each session has a random CSRF token (created with it, never in a URL); the
app reads it from `GET /api/session` and sends it back in the `X-CSRF-Token` header, which a
cross-site page can neither read nor set without CORS. Bearer-token and service-key callers send
no ambient credentials, so they are exempt.

Use on a route: `principal: Annotated[Principal, Depends(require_csrf)]` (it resolves the
principal too).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from agent.service.authz import current_principal, session_of
from agent.service.principal import Principal

CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def require_csrf(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> Principal:
    """The caller's principal; 403 for a session's unsafe request without its CSRF token."""
    if principal.kind != "session" or request.method in _SAFE_METHODS:
        return principal
    session = session_of(request)
    given = request.headers.get(CSRF_HEADER, "")
    if session is None or not given or not hmac.compare_digest(given.encode(), session.csrf_token.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="missing or wrong CSRF token")
    return principal
