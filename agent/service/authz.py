"""Authorization of every API call: resolve the caller to a `Principal` before any FHIR call.

(being built: issue 11) The session cookie of a SMART launch, a SMART access token
(`Authorization: Bearer`, validated), or a service key from settings; otherwise 401.
"""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from agent.service.principal import Principal


async def current_principal(request: Request) -> Principal:
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="no session or access token",
        headers={"WWW-Authenticate": "Bearer"},
    )
