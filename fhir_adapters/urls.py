"""URL origins (pure): the one rule for "is this URL on the server we were configured with?".

Used wherever a server-supplied URL could send our credentials or patient ids elsewhere:
FHIR paging links, DocumentReference attachment URLs, ImagingStudy Endpoint addresses.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_PORTS", "origin", "same_origin"]

DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, lower-cased, default ports explicit; ValueError on a bad port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme)


def same_origin(url: str, base_url: str) -> bool:
    """True when ``url`` has the scheme, host and port of ``base_url`` (False on a malformed port)."""
    try:
        return origin(url) == origin(base_url)
    except ValueError:
        return False
