"""Every bad file of the corpus (bad_files.py) through the CLI, each in a process of its own:
`chartagent imaging prepare ct FILE` and `chartagent extract-labs FILE.pdf` name the input, state the
problem, exit with the code the README documents (2: unreadable; 1: partial) and print no traceback.

The command lines run in forked children of one process that imported the CLI once (cli_fork.py:
`agent.cli.main`, what the installed script runs), so the module costs one CLI start-up and the
work itself, a few seconds. Memory is not asserted here (bench/bench_bad_files.py measures it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bad_files
import pytest

CLI_FORK = Path(__file__).with_name("cli_fork.py")
MODULES = ("agent.cli.imaging", "agent.cli.extract_labs")  # the commands run here, imported once
Run = tuple[int, str, str]  # exit code, stdout, stderr

# file -> (exit code, what stderr must say besides the file's name)
DICOM_EXPECTED = {
    "deflate-bomb.dcm": (2, "the deflated dataset inflates to more than 256 MiB"),
    "huge-length.dcm": (2, "element (7FE0,0010) declares 4294967280 bytes (4.0 GiB), over the limit"),
    "truncated.dcm": (2, "truncated DICOM file (element (7FE0,0010) has 4096 of 8192 bytes)"),
    "short-pixels.dcm": (2, "pixel data has 1000 bytes, shorter than the 8192 bytes 1 frame(s) of 64 x 64"),
    "excess-pixels.dcm": (2, "at least one frame more than the 512 bytes 1 frame(s) of 16 x 16 allow"),
    "not-dicom.dcm": (2, "not a DICOM Part 10 file (no 'DICM' prefix; looks like text)"),
    "empty.dcm": (2, "not a DICOM Part 10 file (an empty file)"),
    "tiff-renamed.dcm": (2, "not a DICOM Part 10 file (no 'DICM' prefix; looks like TIFF)"),
}
PDF_EXPECTED = {
    "zero-bytes.pdf": (2, "the file is empty (0 bytes)"),
    "png-renamed.pdf": (2, "not a PDF at all (looks like PNG)"),
    # mupdf repairs what is left: a partial result (exit 1), the damage stated.
    "truncated.pdf": (1, "the file is damaged (truncated?) and was repaired on reading"),
    "encrypted.pdf": (2, "the PDF is encrypted (password-protected)"),
    "stream-bomb.pdf": (2, "is a stream that inflates to more than 128 MiB (a decompression bomb?)"),
    "double-flate-bomb.pdf": (2, "object 4 is a stream that inflates to more than 128 MiB"),
    "giant-page.pdf": (2, "page 1 measures 200000 x 200000 pt, over the 14400 pt"),
    "lzw-bomb.pdf": (2, "object 4 is a stream that inflates to more than 128 MiB"),
    "run-length-bomb.pdf": (2, "object 4 is a stream that inflates to more than 128 MiB"),
    "ascii85-flate-bomb.pdf": (2, "object 4 is a stream that inflates to more than 128 MiB"),
    "huge-image.pdf": (2, "object 6 is an image of 100000 x 100000 pixels, over the 268 million"),
    # Read as a scan (no text layer), in bounded memory: nothing to read without the model.
    "many-paths.pdf": (1, "page 1 has no text layer (a scan?): it needs the model"),
    # Refused before mupdf draws them (content_limits): without the check, the first took 925 MB,
    # the second and the last ended in a traceback from mupdf, the reuse bomb still ran after 60 s.
    "inline-image-bomb.pdf": (2, "draws an inline image of 16000 x 16000 pixels that decodes to 732 MiB"),
    "inline-huge-image.pdf": (2, "draws an inline image of 100000 x 100000 pixels, over the 268 million"),
    "form-reuse-bomb.pdf": (2, "object 8 1,000,000,000 times, in forms drawn inside forms), over the 128"),
    "form-cycle.pdf": (2, "draws form XObject object 6, which draws itself through object 7 (a cycle)"),
    "deep-forms.pdf": (2, "page 1 draws forms nested more than 32 deep (mupdf stops past 61)"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """label -> (exit code, stdout, stderr) of every command line, run once for the module."""
    root = tmp_path_factory.mktemp("bad-files")
    files = bad_files.write_bad_files(root / "in")
    (root / "normal.dcm").write_bytes(bad_files.normal_dicom())
    (root / "normal.pdf").write_bytes(bad_files.normal_pdf())
    folder = root / "dicom"
    folder.mkdir()
    for name in DICOM_EXPECTED:
        (folder / name).write_bytes(files[name].read_bytes())
    out = root / "out"
    out.mkdir()

    def prepare(source: Path, label: str) -> list[str]:
        return ["imaging", "prepare", "ct", str(source), "--out", str(out / f"{label}.npz")]

    commands = {name: prepare(files[name], name) for name in DICOM_EXPECTED}
    commands |= {name: ["extract-labs", str(files[name])] for name in PDF_EXPECTED}
    commands["folder"] = prepare(folder, "folder")
    commands["normal.dcm"] = prepare(root / "normal.dcm", "normal")
    commands["normal.pdf"] = ["extract-labs", str(root / "normal.pdf")]
    labels = list(commands)
    forked = subprocess.run(
        [sys.executable, str(CLI_FORK), str(out), json.dumps([commands[k] for k in labels]), *MODULES],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert forked.returncode == 0, forked.stderr
    return {
        label: (
            int((out / f"{i}.rc").read_text()),
            (out / f"{i}.out").read_text(),
            (out / f"{i}.err").read_text(),
        )
        for i, label in enumerate(labels)
    }


def test_the_harness_runs_good_files_cleanly(runs: dict[str, Run]) -> None:
    for label in ("normal.dcm", "normal.pdf"):
        code, _, err = runs[label]
        assert code == 0, (label, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("name", [*DICOM_EXPECTED, *PDF_EXPECTED])
def test_each_bad_file_is_named_with_its_problem(runs: dict[str, Run], name: str) -> None:
    expected_code, problem = {**DICOM_EXPECTED, **PDF_EXPECTED}[name]
    code, _, err = runs[name]
    assert code == expected_code, err
    assert "Traceback" not in err
    assert problem in err
    if expected_code == 2:
        assert f"{name}: " in err  # the input named in the error itself


def test_a_folder_of_bad_dicom_names_each_file(runs: dict[str, Run]) -> None:
    code, _, err = runs["folder"]
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    for name, (_, problem) in DICOM_EXPECTED.items():
        assert any(f"{name}: " in line and problem in line for line in lines), name
