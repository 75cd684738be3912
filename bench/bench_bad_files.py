#!/usr/bin/env python3
"""Benchmark: peak memory of reading each bad file of the test corpus vs a normal file of about the
same size on disk, each read in a fresh process.

The bad files are those of `tests/unit/bad_files.py` (made here, nothing committed): DICOM deflate
bomb (1 MB inflating to 1 GiB), a 4 GB declared length, truncated, short and excess pixel data,
not-DICOM, empty, a TIFF named .dcm; PDFs: empty, a PNG named .pdf, truncated, encrypted, a stream
bomb (1 MB inflating to 1 GiB), a double-Flate bomb, a 200,000-pt page, LZW, run-length and
ASCII85-wrapped Flate bombs, an image declaring 10 gigapixels, a page of a million tiny paths,
an inline-image bomb and an inline image declaring 10 gigapixels, a billion form draws (three
levels of 1,000), a form cycle and forms nested 70 deep.
The baselines, written beside them: a 512 x 1024 16-bit CT slice (1 MiB) and a one-page lab
report carrying a 1 MB scan image.

Each case runs in a new interpreter that imports the readers first, then resets its peak resident
set (Linux `/proc/self/clear_refs`, 5) and reads the file the way the CLI does:
- DICOM: `tools.imaging.sources.load_file`, then `assemble` and the decode of the slice
  (what `chartagent imaging prepare` does before windowing);
- PDF: `tools.labs.pdf.extract_labs` (what `chartagent extract-labs` does).
The peak resident set during the read (VmHWM) is reported, with how much it rose over the process
after its imports (rises of a few MiB are within the measure's grain: the reader reuses memory the
imports freed, and the kernel counts resident pages in batches). With `--before`, the two bombs
are also read the way they were before the limits: the deflated DICOM with
`pydicom.dcmread(path, defer_size=16 KiB)` (the fallback of sources; about 2.2 GiB for 6-10 s),
the PDF with pymupdf's words of every page.

    .venv/bin/python bench/bench_bad_files.py [--before]

Last line: `bench bad-files: <ratio>x (<worst bad file> vs <normal file>)`, ratio = the largest
peak of any bad file over the peak of the normal file of its kind (1.0x: a bad file costs what a
good one does). With `--before`, `bench bad-files-before: <ratio>x (<before> vs <now>)` for the
deflate bomb comes first.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

MIB = 1 << 20


# ---------------------------------------------------------------------------- the worker (one read)


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(how: str, path: Path) -> dict[str, Any]:
    import pydicom
    import pymupdf

    from tools.imaging.errors import ImagingError
    from tools.imaging.sources import DicomSourceError, load_file
    from tools.imaging.volume import assemble
    from tools.labs.pdf import LabPdfError, extract_labs

    def read_dicom() -> str:
        inst = load_file(path)
        volume = assemble([inst]).select(str(path))
        return f"read: {volume.stored(0).shape}"

    def read_pdf() -> str:
        got = extract_labs(path)
        return f"read: {len(got.results)} result(s), {len(got.warnings)} warning(s)"

    def dicom_before() -> str:
        ds = pydicom.dcmread(path, defer_size=16 * 1024)
        return f"read: {len(ds)} elements"

    def pdf_before() -> str:
        doc: Any = pymupdf.open(path, filetype="pdf")  # type: ignore[no-untyped-call]
        words = sum(len(doc[i].get_text("words")) for i in range(doc.page_count))
        return f"read: {words} words"

    reads = {"dicom": read_dicom, "pdf": read_pdf, "dicom-before": dicom_before, "pdf-before": pdf_before}
    rss0 = _status_kib("VmRSS") or 0
    reset = _reset_peak()
    start = time.perf_counter()
    try:
        outcome = reads[how]()
    except (DicomSourceError, ImagingError, LabPdfError) as exc:
        reason = str(exc).split(": ", 1)[-1]  # without the file's name
        outcome = reason if reason.startswith("refused: ") else f"refused: {reason}"
    except Exception as exc:
        outcome = f"error: {type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM") if reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_kib": peak, "rss0_kib": rss0, "seconds": seconds, "outcome": outcome, "reset": reset}


# ---------------------------------------------------------------------------- the run


def write_files(folder: Path) -> dict[str, Path]:
    import bad_files
    import numpy as np
    import pymupdf

    written = bad_files.write_bad_files(folder)
    normal_dcm = folder / "normal.dcm"
    normal_dcm.write_bytes(bad_files.normal_dicom(512, 1024))
    mupdf: Any = pymupdf  # untyped library
    doc = mupdf.open(stream=bad_files.normal_pdf(), filetype="pdf")
    noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)  # does not compress
    pixmap = mupdf.Pixmap(mupdf.csRGB, 600, 600, noise.tobytes(), False)
    doc[0].insert_image(mupdf.Rect(300, 400, 550, 650), pixmap=pixmap)
    normal_pdf = folder / "normal.pdf"
    normal_pdf.write_bytes(doc.tobytes(deflate=True))
    return {"normal.dcm": normal_dcm, "normal.pdf": normal_pdf, **written}


def measure(how: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", how, str(path)], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"worker for {path.name} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def line(name: str, how: str, size: int, r: dict[str, Any]) -> str:
    peak, extra = r["peak_kib"] / 1024, (r["peak_kib"] - r["rss0_kib"]) / 1024
    outcome = r["outcome"] if len(r["outcome"]) <= 90 else r["outcome"][:87] + "..."
    return (
        f"{name:<22} {how:<13} {size / 1024:8.1f} KiB  peak {peak:7.1f} MiB "
        f"(+{extra:7.1f})  {r['seconds']:6.2f} s  {outcome}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--before", action="store_true", help="also read the bombs the old way (2.4 GB)")
    parser.add_argument("--worker", nargs=2, metavar=("HOW", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-bad-files-") as tmp:
        files = write_files(Path(tmp))
        results: dict[str, dict[str, Any]] = {}
        print(f"{'file':<22} {'read as':<13} {'on disk':>12}  {'peak RSS (rise)':>27}  {'time':>8}  outcome")
        for name, path in files.items():
            how = "dicom" if name.endswith(".dcm") else "pdf"
            results[name] = measure(how, path)
            print(line(name, how, path.stat().st_size, results[name]))
        if not all(r["reset"] for r in results.values()):
            print("(no /proc/self/clear_refs: peaks include the imports; compare them with each other only)")
        before: dict[str, dict[str, Any]] = {}
        if args.before:
            for name, how in (("deflate-bomb.dcm", "dicom-before"), ("stream-bomb.pdf", "pdf-before")):
                before[name] = measure(how, files[name])
                print(line(name, how, files[name].stat().st_size, before[name]))
        worst_ratio, worst = 0.0, ""
        for name, r in results.items():
            if name.startswith("normal."):
                continue
            base = results["normal" + Path(name).suffix]
            ratio = r["peak_kib"] / base["peak_kib"]
            if ratio > worst_ratio:
                worst_ratio = ratio
                worst = (
                    f"{r['peak_kib'] / 1024:.1f} MiB reading {name} vs "
                    f"{base['peak_kib'] / 1024:.1f} MiB reading normal{Path(name).suffix}"
                )
        if before:
            b, now = before["deflate-bomb.dcm"], results["deflate-bomb.dcm"]
            ratio = b["peak_kib"] / now["peak_kib"]
            mib = f"{b['peak_kib'] / 1024:.1f} MiB before vs {now['peak_kib'] / 1024:.1f} MiB now"
            print(f"bench bad-files-before: {ratio:.1f}x ({mib}, deflate bomb)")
        print(f"bench bad-files: {worst_ratio:.2f}x ({worst})")


if __name__ == "__main__":
    main()
