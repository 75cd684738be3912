"""One transaction Bundle per patient for the trend write-back (pure).

Entries (all ``POST`` with ``ifNoneExist``, so a rerun creates nothing new): the model Device,
one trend Observation per series, the longitudinal DiagnosticReport, the Provenance, then any
``extra`` entries the caller built for the same transaction (imaging reports with their Device
and Provenance, say); entries with the same fullUrl are the same resource and are sent once. New
resources refer to each other by their deterministic ``urn:uuid`` fullUrls, which the server
resolves atomically (or to the existing resource when ``ifNoneExist`` matched).
``ifNoneExist`` is ``identifier=<system>|<value>`` except for Provenance, which has no
identifier in R4 and is matched with ``_tag=<system>|<value>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tools.trends import Trend
from tools.writeback.ai_labels import ModelIdentity, build_model_device, trend_engine_identity
from tools.writeback.builders import build_provenance, build_summary_report, build_trend_observation
from tools.writeback.bundle import conditional_create_bundle
from tools.writeback.identifiers import Built, Param

__all__ = ["build_patient_transaction"]


def build_patient_transaction(
    *,
    subject: str,
    trends: Sequence[Trend],
    narrative: str,
    issued: datetime,
    identity: ModelIdentity | None = None,
    narrative_identity: ModelIdentity | None = None,
    parameters: Mapping[str, Param] | None = None,
    document_refs: frozenset[str] = frozenset(),
    extra: Sequence[Built[Any]] = (),
    imaging_summaries: Sequence[str] = (),
    read_inputs: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The transaction Bundle (as JSON-ready dict) writing ``trends`` and the summary for ``subject``.

    ``identity`` computed the trends (default: the trend engine). ``narrative_identity`` wrote the
    report's text when it is another engine (a model): the report is then credited to its own
    Device with a Provenance of its own, derived from the trend Observations, so that nothing
    the model did not compute is attributed to it.

    ``issued`` is both the resources' ``issued`` and the Provenance's ``recorded``: the caller's
    clock, so that the function stays pure. Raises ``ValueError`` on bad input.

    ``document_refs``: source references of points transcribed from PDF reports (marked in the
    report's table and plots). ``extra``: other built entries to write in the same transaction.
    ``imaging_summaries``: lines the report lists under "Imaging comparisons". ``read_inputs``:
    what the run read (`tools.writeback.read_inputs`), carried by the report for the next run.
    """
    if not trends:
        raise ValueError("nothing to write: no trends")
    engine = identity or trend_engine_identity()
    device = build_model_device(engine)
    observations = [
        build_trend_observation(
            t, subject=subject, device=device, identity=engine, issued=issued, parameters=parameters
        )
        for t in trends
    ]
    if len({o.identifier.value for o in observations}) != len(observations):
        raise ValueError("two trends have the same inputs and parameters: pass each series once")
    narrator = narrative_identity or engine
    report = build_summary_report(
        subject=subject,
        observations=observations,
        trends=trends,
        narrative=narrative,
        identity=narrator,
        issued=issued,
        parameters=parameters,
        document_refs=document_refs,
        imaging_summaries=imaging_summaries,
        read_inputs=read_inputs,
    )
    sources = [s.reference for t in trends for s in t.sources]
    if narrator == engine:
        provenance = build_provenance(
            targets=[*observations, report], device=device, sources=sources, identity=engine, recorded=issued
        )
        built: list[Built[Any]] = [device, *observations, report, provenance]
    else:
        narrator_device = build_model_device(narrator)
        trend_provenance = build_provenance(
            targets=observations, device=device, sources=sources, identity=engine, recorded=issued
        )
        report_provenance = build_provenance(
            targets=[report],
            device=narrator_device,
            sources=[o.full_url for o in observations] + sources,
            identity=narrator,
            recorded=issued,
        )
        built = [device, narrator_device, *observations, report, trend_provenance, report_provenance]
    return conditional_create_bundle([*built, *extra])
