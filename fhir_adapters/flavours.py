"""Server flavours: only what genuinely differs between FHIR servers the client has to cope with.

Everything not listed here is plain FHIR R4 and handled once in the client. Page-size limits
matter because the client asks for large pages (fewer round trips to a remote EHR); a server
that refuses an oversize `_count` instead of clamping it would fail the whole search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fhir_adapters.errors import FhirProtocolError
from fhir_adapters.search import Param
from fhir_adapters.urls import describe_origin, same_origin

__all__ = [
    "AZURE",
    "CERNER",
    "EPIC",
    "FLAVOURS",
    "GENERIC",
    "GOOGLE",
    "HAPI",
    "MEDPLUM",
    "SEKMET",
    "Flavour",
    "flavour_from_capabilities",
    "get_flavour",
]

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True)
class Flavour:
    name: str
    # Largest `_count` the server honours; None: unknown, send what the caller asked for.
    max_count: int | None = None
    supports_everything: bool = True
    # A search of these types is refused without one of these parameters; when it is missing
    # the search is split into one search per listed value (results are de-duplicated).
    required_params: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    # sekmet builds `next` links from its configured base URL, which on loopback may name
    # another host alias or port than the one we reach it on.
    rewrite_loopback_links: bool = False

    def clamp_count(self, count: int | None) -> int | None:
        if count is None or self.max_count is None:
            return count
        return min(count, self.max_count)

    def expand_search(self, resource_type: str, params: Sequence[Param]) -> list[list[Param]]:
        """The searches to run for one logical search (more than one where a parameter is required)."""
        required = self.required_params.get(resource_type)
        if required is None:
            return [list(params)]
        name, values = required
        if any(p[0] == name or p[0].startswith(name + ":") for p in params):
            return [list(params)]
        return [[*params, (name, value)] for value in values]

    def resolve_link(self, url: str, base_url: str) -> str:
        """A `next` (or Location) URL safe to request: same origin as `base_url`, else FhirProtocolError.

        Never sends our Authorization header or patient ids to another origin, whatever the
        server writes into its Bundle.
        """
        link = urlsplit(url)
        base = urlsplit(base_url)
        if not link.scheme and not link.netloc:  # relative link: resolve against the base
            path = link.path if link.path.startswith("/") else f"{base.path.rstrip('/')}/{link.path}"
            return urlunsplit((base.scheme, base.netloc, path, link.query, ""))
        if same_origin(url, base_url):
            return url
        if (
            self.rewrite_loopback_links
            and link.scheme == base.scheme
            and (link.hostname or "") in _LOOPBACK
            and (base.hostname or "") in _LOOPBACK
            and link.path.startswith(base.path.rstrip("/") + "/")
        ):
            return urlunsplit((base.scheme, base.netloc, link.path, link.query, ""))
        message = (
            f"refusing to follow a link to another origin ({describe_origin(url)}) than the FHIR "
            f"base ({describe_origin(base_url)})"
        )
        loopback = (link.hostname or "") in _LOOPBACK and (base.hostname or "") in _LOOPBACK
        if loopback and not self.rewrite_loopback_links:
            # A server on loopback writes its links from its own configured base URL, which may
            # name another port or host alias than the one it is reached on.
            message += (
                "; the server builds its links from its own base URL: set CHARTAGENT_FHIR_FLAVOUR=sekmet "
                "(it rewrites loopback links onto the FHIR base), or set the server's base URL "
                "(e.g. SEKMET_BASE_URL) to the URL it is reached on"
            )
        raise FhirProtocolError(message)


GENERIC = Flavour("generic")
HAPI = Flavour("hapi")
SEKMET = Flavour("sekmet", max_count=1000, rewrite_loopback_links=True)
# Epic refuses Observation searches without `category` (or `code`) and has no Patient/$everything.
# Its page-size limit is not published per resource; 100 is a conservative guess (smaller pages
# only cost round trips).
EPIC = Flavour(
    "epic",
    max_count=100,
    supports_everything=False,
    required_params={
        "Observation": ("category", ("laboratory", "vital-signs", "social-history")),
    },
)
# Oracle Health (Cerner) Millennium: no Patient/$everything; page size conservative (unverified).
CERNER = Flavour("cerner", max_count=100, supports_everything=False)
MEDPLUM = Flavour("medplum", max_count=1000)
# Google Cloud Healthcare and Azure Health Data Services cap `_count` at 1000 (vendor docs).
GOOGLE = Flavour("google", max_count=1000)
AZURE = Flavour("azure", max_count=1000)

FLAVOURS: Mapping[str, Flavour] = {
    f.name: f for f in (GENERIC, HAPI, SEKMET, EPIC, CERNER, MEDPLUM, GOOGLE, AZURE)
}

# CapabilityStatement.software.name fragments, checked in order (lower case).
_SOFTWARE_HINTS: tuple[tuple[str, Flavour], ...] = (
    ("sekmet", SEKMET),
    ("hapi", HAPI),
    ("epic", EPIC),
    ("cerner", CERNER),
    ("millennium", CERNER),
    ("oracle health", CERNER),
    ("medplum", MEDPLUM),
    ("microsoft fhir", AZURE),
    ("azure", AZURE),
    ("cloud healthcare", GOOGLE),
    ("google", GOOGLE),
)


def get_flavour(name: str) -> Flavour:
    try:
        return FLAVOURS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown FHIR server flavour {name!r}; known: {', '.join(FLAVOURS)}") from None


def flavour_from_capabilities(capability_statement: Mapping[str, Any]) -> Flavour:
    """Best guess from `software.name` (and `publisher`); GENERIC when nothing matches."""
    software = capability_statement.get("software") or {}
    text = " ".join(
        str(v) for v in (software.get("name"), capability_statement.get("publisher")) if v
    ).lower()
    for hint, flavour in _SOFTWARE_HINTS:
        if hint in text:
            return flavour
    return GENERIC
