"""Transactions whose outcome is always known: post, and when the answer is lost, read the server back.

A transaction that times out, is cut mid-answer or gets a 500 may have been committed. The client
resends a Bundle of conditional creates by itself (`FhirClient.transaction_answer`): an entry its
answer then calls "already there" may be the lost attempt's own write, so it is reported like one
found by a read-back (created by this run or an earlier one). What is left unknown after that is
settled here by reading the server:

- each ``POST`` entry with ``ifNoneExist`` is searched with its own condition;
- each ``PUT`` entry is read and compared on ``status`` (the one field our updates change).

A FHIR transaction is atomic, so when every entry is found the transaction (or an earlier identical
one) was committed, and when one is missing nothing of it was: it is then safe to send it again.
What stays unknown after that (the read fails too) is reported as unknown, never as "nothing
written": a rerun completes it without duplicates, since every create is conditional.

On the wire after an unknown outcome, per entry: ``GET {base}/{type}?{ifNoneExist}`` or
``GET {base}/{type}/{id}``; then at most one more ``POST {base}`` of the same Bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import parse_qsl

from fhir_adapters.client import FhirClient, JsonDict
from fhir_adapters.error_tree import ServiceError, ServiceOutcomeUnknown
from fhir_adapters.errors import FhirError, FhirOutcomeUnknown

__all__ = [
    "ConfirmedTransaction",
    "EntryOutcome",
    "WriteNotStored",
    "WriteOutcomeUnknown",
    "post_transaction",
    "read_back",
]

# Sends of one Bundle in all, each after a read-back found it not stored.
_MAX_SENDS: Final = 2


class WriteNotStored(FhirError, ServiceError):
    """The transaction failed and a read of the server shows that none of it was stored."""

    def __init__(self, cause: str) -> None:
        self.cause = cause  # what went wrong on the wire, e.g. "HTTP 500" or "ReadTimeout"
        super().__init__(f"the write failed ({cause}); a read of the server shows nothing of it stored")


class WriteOutcomeUnknown(FhirError, ServiceOutcomeUnknown):
    """The transaction's outcome stayed unknown: the server may or may not hold it."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(
            f"the write's outcome is unknown ({cause}): the server may hold it; "
            "a rerun completes it without duplicates"
        )


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """One entry of a posted transaction, as the server holds it."""

    # "Type/id" on the server (None when the answer named none).
    reference: str | None
    # True: created by this transaction; False: already there (matched, or updated); None: found
    # after a lost answer (by a read-back, or in a resend's answer), so whether this run or an
    # earlier one created it is unknown.
    created: bool | None
    # The resource as the server holds it, where the answer or the read-back carried it.
    resource: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class ConfirmedTransaction:
    entries: list[EntryOutcome]
    # The answer was lost and a read of the server confirmed that the Bundle is stored.
    read_back: bool = False


async def post_transaction(fhir: FhirClient, bundle: Mapping[str, Any]) -> ConfirmedTransaction:
    """POST ``bundle`` (a transaction) and return what the server holds for each entry.

    Raises `WriteNotStored` when it failed and the server holds none of it, `WriteOutcomeUnknown`
    when that cannot be told, and the client's `FhirError` for a refusal (4xx) of the first send.
    """
    last: FhirOutcomeUnknown | None = None
    for _ in range(_MAX_SENDS):
        try:
            answer = await fhir.transaction_answer(bundle)
        except FhirOutcomeUnknown as exc:
            last = exc
        else:
            entries = _from_response(bundle, answer.response)
            if answer.resent_after_lost_answer:
                entries = [replace(e, created=None) if e.created is False else e for e in entries]
            return ConfirmedTransaction(entries=entries)
        try:
            found = await read_back(fhir, bundle)
        except FhirError as exc:
            cause = last.cause if last is not None else "no answer"
            raise WriteOutcomeUnknown(
                f"{cause}; reading the server back failed: {type(exc).__name__}"
            ) from exc
        if found is not None:
            return ConfirmedTransaction(entries=found, read_back=True)
    raise WriteNotStored(last.cause if last is not None else "no answer") from last


async def read_back(fhir: FhirClient, bundle: Mapping[str, Any]) -> list[EntryOutcome] | None:
    """Each entry as the server holds it now, or None when one of them is not there (then, the
    transaction being atomic, nothing of this Bundle was committed)."""
    out: list[EntryOutcome] = []
    for entry in _entries(bundle):
        request = entry["request"]
        rtype = str(entry["resource"]["resourceType"])
        if request.get("method") == "POST" and request.get("ifNoneExist"):
            params = parse_qsl(str(request["ifNoneExist"]), keep_blank_values=True)
            matches = [r for r in await fhir.search(rtype, params, count=2) if r.get("resourceType") == rtype]
            if not matches:
                return None
            held = matches[0]
        elif request.get("method") == "PUT":
            held = await fhir.read(rtype, str(request["url"]).split("?")[0].rsplit("/", 1)[-1])
            if held.get("status") != entry["resource"].get("status"):
                return None
        else:  # a plain create cannot be found again: its outcome stays unknown
            raise WriteOutcomeUnknown(f"a {request.get('method')} of {rtype} cannot be read back")
        out.append(EntryOutcome(reference=f"{rtype}/{held.get('id')}", created=None, resource=held))
    return out


def _entries(bundle: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    return [e for e in bundle.get("entry") or [] if isinstance(e, Mapping)]


def _from_response(bundle: Mapping[str, Any], response: Mapping[str, Any]) -> list[EntryOutcome]:
    answers = [a if isinstance(a, Mapping) else {} for a in response.get("entry") or []]
    out: list[EntryOutcome] = []
    for sent, got in zip(_entries(bundle), answers, strict=False):
        answer = got.get("response") or {}
        status = str(answer.get("status", ""))
        resource = got.get("resource")
        out.append(
            EntryOutcome(
                reference=_reference(str(sent["resource"]["resourceType"]), answer.get("location"), resource),
                created=status.startswith("201"),
                resource=dict(resource) if isinstance(resource, Mapping) else None,
            )
        )
    return out


def _reference(rtype: str, location: Any, resource: Any) -> str | None:
    if isinstance(resource, Mapping) and resource.get("id"):
        return f"{rtype}/{resource['id']}"
    if not isinstance(location, str):
        return None
    parts = location.split("?")[0].split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == rtype and parts[-1]:
        return f"{rtype}/{parts[-1]}"
    return None
