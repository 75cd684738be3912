"""Which requested scopes a client gets: those it is registered for, and narrower forms of them
(`system/Patient.rs` under `system/*.rs`, `patient/Observation.r` under `patient/*.rs`)."""

from __future__ import annotations

from fhir_adapters.smart_scopes import Interaction, ScopeSet, parse_resource_scope

_VERBS: tuple[Interaction, ...] = ("c", "r", "u", "d", "s")


def grantable(allowed: ScopeSet, requested: ScopeSet) -> ScopeSet:
    granted = set(allowed.narrowed_to(requested).names)
    for name in requested.names - granted:
        scope = parse_resource_scope(name)
        if scope is None or scope.query is not None:
            continue
        if all(
            allowed.allows(scope.resource_type, verb, contexts=(scope.context,))
            for verb in _VERBS
            if verb in scope.interactions
        ):
            granted.add(name)
    return ScopeSet(names=frozenset(granted))
