"""SMART on FHIR scopes (App Launch 2.2): parse a scope string and answer "may this token do X?".

One reading for every place that enforces scopes: the EHR stand-in's FHIR proxy, the service's
API and MCP tools. v2 scopes (`patient/Observation.rs`, `user/*.cruds`, `system/*.rs`) and the v1
forms (`patient/*.read`, `patient/*.write`, `patient/*.*`) are understood. A v2 scope narrowed by
a query (`patient/Observation.rs?category=laboratory`) grants nothing here: honouring it would
mean checking every result against the query, and granting it whole would over-grant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

ScopeContext = Literal["patient", "user", "system"]
# create, read, update, delete, search (SMART v2's letters, in their required order).
Interaction = Literal["c", "r", "u", "d", "s"]
_V2_ORDER = "cruds"
_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(_V2_ORDER)}
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(\?.*)?$")


class ResourceScope(BaseModel):
    """One resource scope: `patient/Observation.rs` -> (patient, Observation, {r, s})."""

    model_config = ConfigDict(frozen=True)

    context: ScopeContext
    resource_type: str  # a FHIR type or "*"
    interactions: frozenset[str]
    query: str | None = None

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        if self.query is not None:
            return False
        return self.resource_type in ("*", resource_type) and interaction in self.interactions


def parse_resource_scope(text: str) -> ResourceScope | None:
    """The resource scope `text` names, or None (`openid`, `launch`, a malformed scope)."""
    m = _RESOURCE_SCOPE.match(text)
    if m is None:
        return None
    context, resource_type, verbs, query = m.groups()
    if verbs in _V1:
        interactions = _V1[verbs]
    else:
        # v2: a subsequence of "cruds" in that order ("rs", "cu"); anything else is malformed.
        it = iter(_V2_ORDER)
        if not verbs or not all(ch in it for ch in verbs):
            return None
        interactions = frozenset(verbs)
    return ResourceScope(
        context=context,  # the regex admits only the three contexts
        resource_type=resource_type,
        interactions=interactions,
        query=query[1:] if query else None,
    )


class ScopeSet(BaseModel):
    """The scopes a token or session holds."""

    model_config = ConfigDict(frozen=True)

    names: frozenset[str]

    @classmethod
    def parse(cls, text: str | Iterable[str] | None) -> ScopeSet:
        parts = text.split() if isinstance(text, str) else list(text or ())
        return cls(names=frozenset(p for p in parts if p))

    @property
    def text(self) -> str:
        return " ".join(sorted(self.names))

    def has(self, name: str) -> bool:
        """A non-resource scope is held: `launch`, `openid`, `fhirUser`, `offline_access`."""
        return name in self.names

    def resource_scopes(self) -> tuple[ResourceScope, ...]:
        parsed = (parse_resource_scope(n) for n in sorted(self.names))
        return tuple(s for s in parsed if s is not None)

    def allows(
        self,
        resource_type: str,
        interaction: Interaction,
        *,
        contexts: Iterable[ScopeContext] = ("patient", "user", "system"),
    ) -> bool:
        """Some scope of one of `contexts` grants `interaction` on `resource_type`."""
        wanted = frozenset(contexts)
        return any(
            s.context in wanted and s.allows(resource_type, interaction) for s in self.resource_scopes()
        )

    def contexts(self) -> frozenset[ScopeContext]:
        return frozenset(s.context for s in self.resource_scopes())

    def narrowed_to(self, requested: ScopeSet) -> ScopeSet:
        """The requested scopes this set covers (a token request may only narrow a grant)."""
        return ScopeSet(names=self.names & requested.names)
