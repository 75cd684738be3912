"""Synthetic whole-slide image: a pyramidal tiled JPEG TIFF with H&E-like tissue islands, and its DICOM WSI.

The slide is deterministic from its seed. Islands are star-shaped blobs (an ellipse whose
radius is modulated by a few harmonics) placed one per cell of a jittered grid, so they never
touch and each has a known level-0 bounding box; `SlideTruth` keeps their exact shape, so tests
can re-render the tissue mask at any scale (`tissue_mask`) and know which patches hold tissue.

Level 0 is rendered strip by strip and written tile by tile, so a large benchmark slide never
sits in memory at full resolution; the lower levels are area averages of level 0 (as a scanner
makes them) and are small. OpenSlide reads the file as `generic-tiff` and reports
`openslide.mpp-x` from the TIFF resolution tags (centimetre unit).

`dicomize` runs Debian's `OrthancWSIDicomizer`. A JPEG TIFF is copied tile for tile (no
re-encoding); other compressions go through OpenSlide (`--openslide`). The dicomizer derives
PixelSpacing from the imaged size we pass (from the TIFF's resolution tags) and mixes up width
and height (see `dicomizer_args`); each level is written as one instance, because wsidicom
cannot read concatenated instances over DICOMweb. Upload the files with STOW-RS.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pydicom
import tifffile
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from tools.imaging.errors import ImagingError

__all__ = [
    "DICOMIZER",
    "DicomizeError",
    "Island",
    "SlideTruth",
    "dicomize",
    "dicomizer_args",
    "find_libopenslide",
    "make_slide_tiff",
    "render_island_mask",
    "sample_dataset",
    "slide_dataset",
]

DICOMIZER: Final = "OrthancWSIDicomizer"
BACKGROUND_RGB: Final = (243, 242, 240)
_EOSIN_RGB: Final = (232, 158, 198)
_HEMATOXYLIN_RGB: Final = (88, 52, 138)
# The texture repeats every _TEXTURE_PX level-0 pixels; each island reads it at its own offset.
_TEXTURE_PX: Final = 1024
_HARMONICS: Final = 4
# Tissue is decided per MASK_CELL x MASK_CELL block of level-0 pixels (see _cells_inside).
MASK_CELL: Final = 4

Compression = Literal["jpeg", "deflate", "lzw", "none"]


class Island(BaseModel):
    """One tissue island at level 0: centre, radii, radial harmonics and its exact bounding box."""

    model_config = ConfigDict(frozen=True)

    cx: float
    cy: float
    rx: float = Field(gt=0)
    ry: float = Field(gt=0)
    # radius(theta) = 1 + sum a_k cos(k theta + phi_k), k = 2..1+len(amplitudes)
    amplitudes: tuple[float, ...]
    phases: tuple[float, ...]
    # Tint toward hematoxylin (0: eosin-dominant stroma, 1: very cellular); texture offset.
    cellularity: float = Field(ge=0, le=1)
    texture_offset: tuple[int, int]
    # Half-open pixel box [x0, x1) x [y0, y1) of the rendered island at level 0.
    x0: int
    y0: int
    x1: int
    y1: int


class SlideTruth(BaseModel):
    """What `make_slide_tiff` wrote: geometry, pyramid and the islands (the known answers)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    seed: int
    width: int
    height: int
    mpp: float
    downsamples: tuple[int, ...]
    tile_size: int
    compression: Compression
    islands: tuple[Island, ...]

    @property
    def level_mpps(self) -> tuple[float, ...]:
        return tuple(self.mpp * d for d in self.downsamples)

    def tissue_mask(self, downsample: float) -> NDArray[np.bool_]:
        """The exact island mask on a grid `downsample` times coarser than level 0 (pixel-centre sampling)."""
        w = math.ceil(self.width / downsample)
        h = math.ceil(self.height / downsample)
        return render_island_mask(self.islands, 0.0, 0.0, w, h, downsample)


class DicomizeError(ImagingError):
    """OrthancWSIDicomizer is missing or failed on the named input."""


# ---------------------------------------------------------------------------------------------
# Scene (pure)


def _island_radius(island: Island, theta: NDArray[np.float64]) -> NDArray[np.float64]:
    r = np.ones_like(theta)
    for k, (a, phi) in enumerate(zip(island.amplitudes, island.phases, strict=True), start=2):
        r += a * np.cos(k * theta + phi)
    return r


def _inside(island: Island, xs: NDArray[np.float64], ys: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Level-0 points (broadcast xs over columns, ys over rows) inside the island."""
    dx = (xs[None, :] - island.cx) / island.rx
    dy = (ys[:, None] - island.cy) / island.ry
    rho = np.hypot(dx, dy)
    return rho <= _island_radius(island, np.arctan2(dy, dx))


def _cells_inside(island: Island, cols: NDArray[np.int64], rows: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Whether level-0 pixels (cols x rows) are tissue: a pixel takes the value of its mask cell's centre.

    Deciding per MASK_CELL x MASK_CELL cell keeps rendering cheap (1/16 of the trigonometry)
    and still gives one exact rule that tests can sample at any scale.
    """
    cell_cols = cols // MASK_CELL
    cell_rows = rows // MASK_CELL
    cx0, cy0 = int(cell_cols.min()), int(cell_rows.min())
    ux = np.arange(cx0, int(cell_cols.max()) + 1)
    uy = np.arange(cy0, int(cell_rows.max()) + 1)
    centre = (MASK_CELL - 1) / 2
    cells = _inside(
        island, (ux * MASK_CELL + centre).astype(np.float64), (uy * MASK_CELL + centre).astype(np.float64)
    )
    return cells[np.ix_(cell_rows - cy0, cell_cols - cx0)]


def render_island_mask(
    islands: Sequence[Island], x0: float, y0: float, width: int, height: int, scale: float
) -> NDArray[np.bool_]:
    """Mask of a `width` x `height` grid whose pixel (i, j) covers level-0 [x0 + j*scale, ...) (pure).

    Each grid pixel takes the value of the level-0 pixel under its centre, so `scale=1`
    reproduces level 0 exactly.
    """
    mask = np.zeros((height, width), dtype=bool)
    cols = np.floor(x0 + (np.arange(width) + 0.5) * scale).astype(np.int64)
    rows = np.floor(y0 + (np.arange(height) + 0.5) * scale).astype(np.int64)
    for island in islands:
        jx = np.flatnonzero((cols >= island.x0) & (cols < island.x1))
        iy = np.flatnonzero((rows >= island.y0) & (rows < island.y1))
        if jx.size and iy.size:
            block = np.ix_(iy, jx)
            mask[block] |= _cells_inside(island, cols[jx], rows[iy])
    return mask


def _exact_box(island: Island, width: int, height: int) -> tuple[int, int, int, int]:
    """Tight half-open level-0 box of the island's tissue cells."""
    reach = 1.0 + sum(island.amplitudes)
    bx0 = max(0, math.floor(island.cx - island.rx * reach) - MASK_CELL)
    bx1 = min(width, math.ceil(island.cx + island.rx * reach) + MASK_CELL)
    by0 = max(0, math.floor(island.cy - island.ry * reach) - MASK_CELL)
    by1 = min(height, math.ceil(island.cy + island.ry * reach) + MASK_CELL)
    cols = np.arange(bx0, bx1, MASK_CELL, dtype=np.int64) // MASK_CELL * MASK_CELL
    rows = np.arange(by0, by1, MASK_CELL, dtype=np.int64) // MASK_CELL * MASK_CELL
    inside = _cells_inside(island, cols, rows)
    hit_rows = rows[inside.any(axis=1)]
    hit_cols = cols[inside.any(axis=0)]
    return (
        int(hit_cols[0]),
        int(hit_rows[0]),
        min(width, int(hit_cols[-1]) + MASK_CELL),
        min(height, int(hit_rows[-1]) + MASK_CELL),
    )


def plan_islands(
    rng: np.random.Generator, width: int, height: int, n_islands: int, *, fill: float = 0.42
) -> tuple[Island, ...]:
    """`n_islands` disjoint islands, one per randomly chosen cell of a grid (pure given `rng`).

    `fill` bounds the island's reach (radius times 1 + harmonics) to that fraction of the
    cell, so neighbouring islands keep a background gap of at least 16% of a cell.
    """
    cols = max(1, round(math.sqrt(n_islands * width / height)))
    rows = max(1, math.ceil(n_islands / cols))
    while rows * cols < n_islands:
        cols += 1
    cell_w, cell_h = width / cols, height / rows
    cells = sorted(rng.choice(rows * cols, size=n_islands, replace=False).tolist())
    islands: list[Island] = []
    for cell in cells:
        r, c = divmod(int(cell), cols)
        amplitudes = tuple(float(a) for a in rng.uniform(0.0, 0.07, size=_HARMONICS))
        phases = tuple(float(p) for p in rng.uniform(0.0, 2 * math.pi, size=_HARMONICS))
        reach = 1.0 + sum(amplitudes)
        scale = rng.uniform(0.7, 1.0)
        rx = fill * cell_w * scale / reach * rng.uniform(0.8, 1.0)
        ry = fill * cell_h * scale / reach * rng.uniform(0.8, 1.0)
        slack_x = 0.5 * cell_w - rx * reach - 0.08 * cell_w
        slack_y = 0.5 * cell_h - ry * reach - 0.08 * cell_h
        cx = (c + 0.5) * cell_w + rng.uniform(-slack_x, slack_x)
        cy = (r + 0.5) * cell_h + rng.uniform(-slack_y, slack_y)
        draft = Island(
            cx=cx,
            cy=cy,
            rx=rx,
            ry=ry,
            amplitudes=amplitudes,
            phases=phases,
            cellularity=float(rng.uniform(0.0, 1.0)),
            texture_offset=(int(rng.integers(_TEXTURE_PX)), int(rng.integers(_TEXTURE_PX))),
            x0=0,
            y0=0,
            x1=width,
            y1=height,
        )
        x0, y0, x1, y1 = _exact_box(draft, width, height)
        islands.append(draft.model_copy(update={"x0": x0, "y0": y0, "x1": x1, "y1": y1}))
    return tuple(islands)


def make_texture(rng: np.random.Generator, mpp: float, size: int = _TEXTURE_PX) -> NDArray[np.float32]:
    """A seamless H&E-like texture (size x size x 3, float RGB): eosin stroma with fibres and nuclei.

    Nuclei are 2.5-4.5 um in radius and about one per 180 um^2, so they look alike at 20X and 40X.
    """
    fibres = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=(2.0, 12.0), mode="wrap")
    blotches = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=size / 24, mode="wrap")
    fibres /= np.abs(fibres).max()
    blotches /= np.abs(blotches).max()
    eosin = np.asarray(_EOSIN_RGB, dtype=np.float32)
    tex = np.empty((size, size, 3), dtype=np.float32)
    tex[:] = eosin
    tex += (fibres * 14.0)[..., None].astype(np.float32) * np.asarray([1.0, 1.6, 1.0], dtype=np.float32)
    tex += (blotches * 10.0)[..., None].astype(np.float32)
    nuclei = np.zeros((size, size), dtype=np.float32)
    n_nuclei = int(size * size * mpp * mpp / 180.0)
    for _ in range(n_nuclei):
        radius = rng.uniform(2.5, 4.5) / mpp
        aspect = rng.uniform(0.6, 1.0)
        angle = rng.uniform(0.0, math.pi)
        cy, cx = rng.uniform(0.0, size, size=2)
        half = math.ceil(radius) + 1
        ys = np.arange(math.floor(cy) - half, math.floor(cy) + half + 1)
        xs = np.arange(math.floor(cx) - half, math.floor(cx) + half + 1)
        dy = ys[:, None] - cy
        dx = xs[None, :] - cx
        u = dx * math.cos(angle) + dy * math.sin(angle)
        v = -dx * math.sin(angle) + dy * math.cos(angle)
        inside = (u / radius) ** 2 + (v / (radius * aspect)) ** 2 <= 1.0
        # Wrap indices so the texture tiles without seams.
        block = np.ix_(ys % size, xs % size)
        nuclei[block] = np.maximum(nuclei[block], inside * rng.uniform(0.75, 1.0))
    hema = np.asarray(_HEMATOXYLIN_RGB, dtype=np.float32)
    tex = tex * (1.0 - nuclei[..., None]) + hema * nuclei[..., None]
    noisy: NDArray[np.float32] = (tex + rng.normal(0.0, 4.0, size=tex.shape)).astype(np.float32)
    return noisy


def tint_texture(texture: NDArray[np.float32], cellularity: float) -> NDArray[np.uint8]:
    """The texture leaned toward hematoxylin by `cellularity` (0: pink stroma, 1: purple, cellular)."""
    hema = np.asarray(_HEMATOXYLIN_RGB, dtype=np.float32)
    mixed = texture * (1.0 - 0.3 * cellularity) + hema * (0.3 * cellularity)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def render_region(
    islands: Sequence[Island],
    textures: Sequence[NDArray[np.uint8]],
    x0: int,
    y0: int,
    width: int,
    height: int,
) -> NDArray[np.uint8]:
    """Level-0 pixels [x0, x0+width) x [y0, y0+height) as RGB uint8; `textures[i]` fills island i (pure)."""
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = BACKGROUND_RGB
    for island, texture in zip(islands, textures, strict=True):
        bx0, bx1 = max(x0, island.x0), min(x0 + width, island.x1)
        by0, by1 = max(y0, island.y0), min(y0 + height, island.y1)
        if bx0 >= bx1 or by0 >= by1:
            continue
        xs = np.arange(bx0, bx1, dtype=np.int64)
        ys = np.arange(by0, by1, dtype=np.int64)
        inside = _cells_inside(island, xs, ys)
        size = texture.shape[0]
        ox, oy = island.texture_offset
        patch = np.take(np.take(texture, (ys + oy) % size, axis=0), (xs + ox) % size, axis=1)
        view = out[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
        np.copyto(view, patch, where=inside[..., None])
    return out


def _reduce(level: NDArray[np.uint8], factor: int) -> NDArray[np.uint8]:
    """Area average by an integer factor (PIL's box reduce, as a scanner's pyramid)."""
    return np.asarray(Image.fromarray(level).reduce(factor))


# ---------------------------------------------------------------------------------------------
# TIFF writer (I/O shell)


def make_slide_tiff(
    path: Path,
    *,
    seed: int,
    size: tuple[int, int] = (8192, 8192),
    mpp: float = 0.5,
    downsamples: Sequence[int] = (1, 4, 16),
    n_islands: int = 4,
    tile_size: int = 256,
    compression: Compression = "jpeg",
    jpeg_quality: int = 90,
) -> SlideTruth:
    """Write a pyramidal tiled RGB TIFF of `size` = (width, height) at level 0 and return its truth.

    `mpp` is level 0's pixel spacing (0.25 is 40X, 0.5 is 20X); `downsamples` start at 1 and
    each must divide the width and height, so every level has an exact integer size.
    """
    width, height = size
    ds = tuple(int(d) for d in downsamples)
    if not ds or ds[0] != 1 or any(b % a for a, b in itertools.pairwise(ds)):
        raise ValueError(f"{path}: downsamples must start at 1 and each divide the next, got {ds}")
    if width % ds[-1] or height % ds[-1]:
        raise ValueError(
            f"{path}: size {width}x{height} is not a multiple of the largest downsample {ds[-1]}"
        )
    if tile_size % 16 or tile_size <= 0:
        raise ValueError(f"{path}: tile size {tile_size} must be a positive multiple of 16")
    if not 0.05 <= mpp <= 20:
        raise ValueError(f"{path}: mpp {mpp} is outside 0.05..20 um/px")
    rng = np.random.default_rng(seed)
    islands = plan_islands(rng, width, height, n_islands)
    texture = make_texture(rng, mpp)
    textures = [tint_texture(texture, island.cellularity) for island in islands]
    lower = {d: np.empty((height // d, width // d, 3), dtype=np.uint8) for d in ds[1:]}
    strip_rows = math.lcm(tile_size, ds[-1])

    def level0_tiles() -> Iterator[NDArray[np.uint8]]:
        for y in range(0, height, strip_rows):
            rows = min(strip_rows, height - y)
            strip = render_region(islands, textures, 0, y, width, rows)
            # Each level from the previous one: area averages compose exactly for integer factors.
            previous, previous_d = strip, 1
            for d, level in lower.items():
                previous = _reduce(previous, d // previous_d)
                previous_d = d
                level[y // d : (y + rows) // d] = previous
            for ty in range(0, rows, tile_size):
                for tx in range(0, width, tile_size):
                    part = strip[ty : ty + tile_size, tx : tx + tile_size]
                    if part.shape[:2] == (tile_size, tile_size):
                        yield part
                        continue
                    tile = np.empty((tile_size, tile_size, 3), dtype=np.uint8)
                    tile[:] = BACKGROUND_RGB
                    tile[: part.shape[0], : part.shape[1]] = part
                    yield tile

    codec: dict[str, object] = {"compression": None if compression == "none" else compression}
    if compression == "jpeg":
        codec["compressionargs"] = {"level": jpeg_quality}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tiff:
        for d in ds:
            pixels_per_cm = 1e4 / (mpp * d)
            tiff.write(
                level0_tiles() if d == 1 else lower[d],
                shape=(height // d, width // d, 3),
                dtype=np.uint8,
                photometric="rgb",
                tile=(tile_size, tile_size),
                resolution=(pixels_per_cm, pixels_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if d == 1 else 1,
                # metadata=None: no tifffile JSON description beside ours (libtiff warns on duplicates).
                description=f"ChartAgent synthetic H&E slide seed={seed} mpp={mpp}" if d == 1 else None,
                metadata=None,
                **codec,  # type: ignore[arg-type]
            )
    return SlideTruth(
        path=path,
        seed=seed,
        width=width,
        height=height,
        mpp=mpp,
        downsamples=ds,
        tile_size=tile_size,
        compression=compression,
        islands=islands,
    )


# ---------------------------------------------------------------------------------------------
# DICOM WSI (OrthancWSIDicomizer)


def find_libopenslide() -> Path:
    """The libopenslide.so the dicomizer can load: openslide-bin's wheel, else Debian's libopenslide0."""
    try:
        import openslide_bin

        for lib in sorted(Path(openslide_bin.__file__).parent.glob("libopenslide.so*")):
            return lib
    except ImportError:
        pass
    for lib in sorted(Path("/usr/lib").glob("*/libopenslide.so*")):
        return lib
    raise DicomizeError("no libopenslide.so found (install openslide-bin or Debian's libopenslide0)")


def _tiff_geometry(tiff_path: Path) -> tuple[int, int, float, str]:
    """Level-0 width, height, mpp (from the resolution tags) and compression name of a TIFF."""
    try:
        with tifffile.TiffFile(tiff_path) as tif:
            page = tif.pages.first
            width, height = int(page.imagewidth), int(page.imagelength)
            x_res = page.tags.get("XResolution")
            unit = page.tags.get("ResolutionUnit")
            compression = tifffile.COMPRESSION(page.compression).name
            if x_res is None or unit is None:
                raise DicomizeError(f"{tiff_path}: no XResolution/ResolutionUnit tags, pixel spacing unknown")
            num, den = x_res.value
            per_unit = num / den
            unit_um = {2: 25400.0, 3: 10000.0}.get(int(unit.value))
            if unit_um is None or per_unit <= 0:
                raise DicomizeError(f"{tiff_path}: resolution unit {unit.value} gives no physical pixel size")
            return width, height, unit_um / per_unit, compression
    except (OSError, tifffile.TiffFileError) as exc:
        raise DicomizeError(f"{tiff_path}: not a readable TIFF ({exc})") from exc


def sample_dataset() -> dict[str, object]:
    """The dicomizer's own minimal dataset (`--sample-dataset`), the base of every dataset we pass."""
    if shutil.which(DICOMIZER) is None:
        raise DicomizeError(f"{DICOMIZER} not found on PATH (apt-get install orthanc-wsi)")
    done = subprocess.run([DICOMIZER, "--sample-dataset"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DicomizeError(f"{DICOMIZER} --sample-dataset failed (exit {done.returncode})")
    parsed = json.loads(done.stdout)
    if not isinstance(parsed, dict):
        raise DicomizeError(f"{DICOMIZER} --sample-dataset did not print a JSON object")
    return parsed


def slide_dataset(
    base: Mapping[str, object],
    *,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The `--dataset` JSON: the sample dataset with our identity and UIDs (pure).

    The sample's invented patient name, birth date and sex are blanked unless `overrides` sets them.
    """
    dataset = dict(base)
    dataset.update(
        {
            "PatientID": patient_id,
            "PatientName": "",
            "PatientBirthDate": "",
            "PatientSex": "",
            "ReferringPhysicianName": "",
            "AccessionNumber": "",
            "StudyInstanceUID": study_uid,
            "SeriesInstanceUID": series_uid,
            "Manufacturer": "ChartAgent",
            "ManufacturerModelName": "synthetic slide",
        }
    )
    dataset.update(overrides or {})
    return dataset


def dicomizer_args(
    tiff_path: Path,
    dataset_path: Path,
    out_dir: Path,
    *,
    width: int,
    height: int,
    mpp: float,
    openslide: Path | None = None,
    threads: int = 2,
    max_size_mb: int = 0,
) -> list[str]:
    """The OrthancWSIDicomizer command line (pure).

    OrthancWSIDicomizer 1.1 divides the imaged width by the number of rows and the imaged height
    by the number of columns when it writes PixelSpacing, so a non-square slide gets wrong,
    anisotropic spacing. We pass the two sizes swapped, which makes PixelSpacing right, and
    `dicomize` then writes the true ImagedVolumeWidth/Height back into the files.
    """
    args = [
        DICOMIZER,
        "--dataset",
        str(dataset_path),
        f"--threads={threads}",
        # 0: one instance per level. Split levels are concatenations, which wsidicom 0.36
        # reads from files but not over DICOMweb.
        f"--max-size={max_size_mb}",
        f"--imaged-width={height * mpp / 1000:.9f}",
        f"--imaged-height={width * mpp / 1000:.9f}",
    ]
    if openslide is not None:
        args += ["--openslide", str(openslide)]
    return [*args, "--folder", str(out_dir), str(tiff_path)]


def _fix_imaged_volume(files: Sequence[Path], width_mm: float, height_mm: float) -> None:
    """Put the true imaged size back (see `dicomizer_args`); PixelSpacing is already right."""
    for file in files:
        ds = pydicom.dcmread(file)
        ds.ImagedVolumeWidth = width_mm
        ds.ImagedVolumeHeight = height_mm
        ds.save_as(file, enforce_file_format=True)


def dicomize(
    tiff_path: Path,
    out_dir: Path,
    *,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    overrides: Mapping[str, str] | None = None,
    threads: int = 2,
    max_size_mb: int = 0,
    timeout_s: float = 600.0,
) -> list[Path]:
    """Convert a tiled TIFF to DICOM WSI files (one series, a few instances per level) in `out_dir`.

    JPEG TIFFs are copied tile for tile; others are read through OpenSlide (`--openslide`).
    PatientID and the study/series UIDs come from the arguments so the slide links to a FHIR
    Patient and ImagingStudy. Upload the files with STOW-RS (or Orthanc's `POST /instances`):
    the dicomizer's own `--orthanc` upload would skip the ImagedVolume fix.
    """
    width, height, mpp, compression = _tiff_geometry(tiff_path)
    openslide = None if compression == "JPEG" else find_libopenslide()
    dataset = slide_dataset(
        sample_dataset(),
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        overrides=overrides,
    )
    out_dir.mkdir(parents=True, exist_ok=True)  # the dicomizer does not create it
    if any(out_dir.glob("wsi-*.dcm")):
        raise DicomizeError(f"{out_dir}: already holds wsi-*.dcm files; use an empty folder")
    with tempfile.TemporaryDirectory(prefix="dicomizer-") as tmp:
        dataset_path = Path(tmp) / "dataset.json"
        dataset_path.write_text(json.dumps(dataset))
        args = dicomizer_args(
            tiff_path,
            dataset_path,
            out_dir,
            width=width,
            height=height,
            mpp=mpp,
            openslide=openslide,
            threads=threads,
            max_size_mb=max_size_mb,
        )
        try:
            done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise DicomizeError(f"{tiff_path}: {DICOMIZER} ran longer than {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        # Error lines only (E...): the dicomizer's log does not carry dataset values.
        errors = [line for line in done.stderr.splitlines() if line.startswith("E")][-3:]
        raise DicomizeError(f"{tiff_path}: {DICOMIZER} exited {done.returncode}: {' | '.join(errors)}")
    files = sorted(out_dir.glob("wsi-*.dcm"))
    if not files:
        raise DicomizeError(f"{tiff_path}: {DICOMIZER} wrote no DICOM files to {out_dir}")
    _fix_imaged_volume(files, width * mpp / 1000, height * mpp / 1000)
    return files
