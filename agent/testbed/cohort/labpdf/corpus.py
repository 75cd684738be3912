"""The extraction benchmark's corpus: ~20 PDFs across layouts, dialects and bad inputs.

``build_corpus`` writes ``<name>.pdf`` and, for each report with truth, ``<name>.truth.json``
(the ``LabReport`` as JSON) plus ``manifest.json`` listing every file with its layout.
``build_fuzz_corpus`` writes documents of the layout fuzzer (``labpdf.fuzz``) the same way, each
with its exact truth (``FuzzTruth``: value boxes, unreadable rows) and, for the first few, a
scanned copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from agent.testbed.cohort.labpdf.bad import (
    blank_pdf,
    empty_file,
    encrypted_pdf,
    huge_pdf,
    injection_report,
    truncated_pdf,
)
from agent.testbed.cohort.labpdf.catalog import Panel, panel_keys
from agent.testbed.cohort.labpdf.fuzz import fuzz_document, scan_document
from agent.testbed.cohort.labpdf.layouts import (
    cumulative_truth,
    render_commercial,
    render_cumulative,
    render_hospital,
    render_panel,
    render_scanned,
)
from agent.testbed.cohort.labpdf.make import Dialect, make_report, sample_results
from agent.testbed.cohort.labpdf.truth import LabReport

__all__ = ["CorpusEntry", "build_corpus", "build_fuzz_corpus", "corpus_entries"]

_START: Final = datetime(2024, 3, 4, 7, 45)
_B12_NOTE: Final = "Vitamin B12: specimen haemolysed, result withheld; please send a new sample."


_CUMULATIVE_PANELS: Final = (
    Panel.CMP,
    Panel.CBC,
    Panel.LIPID,
    Panel.DIABETES,
    Panel.THYROID,
    Panel.COAGULATION,
    Panel.IRON,
    Panel.CHEMISTRY,
)
_CUMULATIVE_KEYS: Final = tuple(k for p in _CUMULATIVE_PANELS for k in panel_keys(p))


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    """One corpus file: its name, layout, bytes and truth (None for bad inputs)."""

    name: str
    layout: str
    pdf: bytes
    truth: LabReport | None


def _keys(*panels: Panel, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(k for p in panels for k in panel_keys(p)) + extra


def _report(
    index: int, seed: int, keys: tuple[str, ...], dialect: Dialect, **special: float | str
) -> LabReport:
    values = {**sample_results(keys, seed * 1000 + index), **special}
    notes = {"b12": _B12_NOTE} if special.get("b12") == "see note" else None
    return make_report(
        f"pat-{seed % 1000:03d}-{index:02d}",
        _START + timedelta(days=index, hours=index % 5),
        values,
        seed * 1000 + index,
        dialect=dialect,
        notes=notes,
    )


def corpus_entries(seed: int) -> list[CorpusEntry]:
    """The corpus in memory (pure, deterministic for ``seed``)."""
    entries: list[CorpusEntry] = []
    render: dict[str, Callable[[LabReport], bytes]] = {
        "hospital": render_hospital,
        "commercial": render_commercial,
        "panel": render_panel,
    }
    plans: list[tuple[str, tuple[str, ...], Dialect, dict[str, float | str]]] = [
        ("hospital", _keys(Panel.CMP, Panel.CBC), Dialect.US, {"egfr": ">90"}),
        (
            "hospital",
            _keys(Panel.CMP, extra=("crp", "magnesium", "phosphate")),
            Dialect.SI_COMMA,
            {"crp": "<0.5"},
        ),
        ("hospital", _keys(Panel.IRON, Panel.VITAMINS), Dialect.SI, {"b12": "see note"}),
        (
            "hospital",
            _keys(Panel.URINALYSIS, Panel.COAGULATION),
            Dialect.US_LEGACY,
            {"urine_nitrite": "positive"},
        ),
        ("commercial", _keys(Panel.CMP, Panel.LIPID, Panel.DIABETES), Dialect.US_LEGACY, {"egfr": ">90"}),
        ("commercial", _keys(Panel.CBC, Panel.THYROID), Dialect.US, {}),
        (
            "commercial",
            _keys(Panel.CARDIAC, Panel.INFLAMMATION, Panel.CHEMISTRY),
            Dialect.SI_COMMA,
            {"crp": "<0.5"},
        ),
        ("commercial", _keys(Panel.TUMOR, Panel.VITAMINS, Panel.IRON), Dialect.US, {"b12": "see note"}),
        ("panel", _keys(Panel.LIPID), Dialect.US, {}),
        ("panel", _keys(Panel.CBC), Dialect.SI_COMMA, {}),
        ("panel", _keys(Panel.THYROID, extra=("hba1c",)), Dialect.SI, {}),
        ("panel", _keys(Panel.URINALYSIS), Dialect.US, {"urine_protein": "trace"}),
    ]
    for index, (layout, keys, dialect, special) in enumerate(plans):
        report = _report(index, seed, keys, dialect, **special)
        entries.append(
            CorpusEntry(f"{index:02d}_{layout}_{dialect.value}", layout, render[layout](report), report)
        )
    for offset, dialect in enumerate((Dialect.US, Dialect.SI_COMMA)):
        base = len(entries)
        draws = [
            make_report(
                f"pat-{seed % 1000:03d}-cum{offset}",
                _START - timedelta(days=90 * (5 - visit)),
                sample_results(_CUMULATIVE_KEYS, seed + 7 * visit),
                seed * 100 + visit,
                dialect=dialect,
            )
            for visit in range(4 + offset)
        ]
        entries.append(
            CorpusEntry(
                f"{base:02d}_cumulative_{dialect.value}",
                "cumulative",
                render_cumulative(draws),
                cumulative_truth(draws),
            )
        )
    scan_source = _report(30, seed, _keys(Panel.CMP), Dialect.US, egfr=">90")
    entries.append(
        CorpusEntry(
            f"{len(entries):02d}_scanned_us", "scanned", render_scanned(scan_source, seed), scan_source
        )
    )
    injected_pdf, injected_truth = injection_report(
        _report(31, seed, _keys(Panel.LIPID, Panel.DIABETES), Dialect.US)
    )
    entries.append(CorpusEntry(f"{len(entries):02d}_injection_us", "injection", injected_pdf, injected_truth))
    good = entries[0].pdf
    bad: list[tuple[str, bytes]] = [
        ("encrypted", encrypted_pdf(good)),
        ("truncated", truncated_pdf(good)),
        ("blank", blank_pdf()),
        ("empty", empty_file()),
        ("huge", huge_pdf()),
    ]
    base = len(entries)
    for offset, (kind, data) in enumerate(bad):
        entries.append(CorpusEntry(f"{base + offset:02d}_bad_{kind}", kind, data, None))
    return entries


def build_corpus(out_dir: Path, seed: int) -> list[tuple[Path, LabReport | None]]:
    """Write the corpus to ``out_dir`` (created if missing); returns (PDF path, truth or None)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, LabReport | None]] = []
    manifest = []
    for entry in corpus_entries(seed):
        path = out_dir / f"{entry.name}.pdf"
        path.write_bytes(entry.pdf)
        if entry.truth is not None:
            (out_dir / f"{entry.name}.truth.json").write_text(entry.truth.model_dump_json(indent=1) + "\n")
        manifest.append({"file": path.name, "layout": entry.layout, "has_truth": entry.truth is not None})
        written.append((path, entry.truth))
    (out_dir / "manifest.json").write_text(json.dumps({"seed": seed, "files": manifest}, indent=1) + "\n")
    return written


def build_fuzz_corpus(out_dir: Path, seed: int, count: int, scanned: int = 0) -> list[Path]:
    """Write ``count`` fuzzed documents (seeds ``seed * 1000`` on) to ``out_dir``: ``<name>.pdf``,
    ``<name>.truth.json`` and, for the first ``scanned``, ``<name>.scan.pdf``; returns the PDFs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    manifest = []
    for index in range(count):
        document = fuzz_document(seed * 1000 + index)
        path = out_dir / f"{document.name}.pdf"
        path.write_bytes(document.pdf)
        (out_dir / f"{document.name}.truth.json").write_text(document.truth.model_dump_json(indent=1) + "\n")
        written.append(path)
        files = [path.name]
        if index < scanned:
            scan = out_dir / f"{document.name}.scan.pdf"
            scan.write_bytes(scan_document(document, seed * 1000 + index))
            written.append(scan)
            files.append(scan.name)
        manifest.append({"files": files, "families": list(document.truth.families)})
    (out_dir / "manifest.json").write_text(json.dumps({"seed": seed, "documents": manifest}, indent=1) + "\n")
    return written
