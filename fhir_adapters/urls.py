"""URL origins (pure): the one rule for "is this URL on the server we were configured with?".

Used wherever a server-supplied URL could send our credentials or patient ids elsewhere:
FHIR paging links, DocumentReference attachment URLs, ImagingStudy Endpoint addresses.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_PORTS", "describe_origin", "origin", "same_origin"]

DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of ``url``, lower-cased, default ports explicit; None when the URL is
    malformed (a port that is not a number, an unclosed IPv6 bracket)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def same_origin(url: str, base_url: str) -> bool:
    """True when ``url`` has the scheme, host and port of ``base_url`` (False on a malformed URL)."""
    found = origin(url)
    return found is not None and found == origin(base_url)


def describe_origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` for messages, the port always written (default ports made
    explicit): two origins that differ only in port must not read the same."""
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc:
        return "(a relative URL)"
    prefix = f"{parts.scheme.lower()}:" if parts.scheme else "(scheme-relative) "
    found = origin(url)
    if found is None:
        return f"{prefix}//{parts.netloc.rpartition('@')[2]} (port not a number)"
    _, host, port = found
    if not host:
        return f"{prefix}// (no host)"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{prefix}//{host}:{port}" if port is not None else f"{prefix}//{host}"
