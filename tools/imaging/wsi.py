"""Whole-slide pathology prepared as MedGemma expects: tissue patches of 896 x 896 at about 10X.

Recipe (DESIGN.md, from Google's MedGemma notebooks and model card): read the pyramid level
closest to 10X, cut non-overlapping 896 x 896 patches that contain tissue (tissue mask on a
thumbnail), sample at most 125. Our choices where the recipe is silent:

- **Level:** 10X is 1.0 um/px. We take the level whose pixel spacing is closest to 1.0 um/px on
  a log scale (a factor 2 finer is as far as a factor 2 coarser), ties going to the finer level;
  patches are read at that level as they are, never resampled, so what the model sees is the
  scanner's own pixels. When the nearest level is off by more than 25% (for example a 20X scan
  whose pyramid goes 1/4/16: 0.5, 2 and 8 um/px), the metadata carry a warning saying how
  large a field the patches cover.
- **Grid:** whole patches only, from the level's top-left corner; a partial strip on the right
  and bottom is not read (the model would see padding).
- **Tissue:** the mask is computed on a thumbnail of about 8 um/px (`tools.imaging.tissue`);
  a patch is a candidate when at least half of it is tissue (`min_tissue_fraction=0.5`): a
  patch of mostly glass spends 256 image tokens on nothing. When no patch reaches that (thin
  cores, small biopsies) the patches with at least half the best patch's tissue are kept, with
  a warning; a slide with no tissue at all is an error.
- **Sampling:** at most 125 candidates, evenly spaced in raster order (one from the middle of
  each of 125 equal runs). Deterministic without a seed, it covers every region of the
  tissue, and the same slide gives the same patches from a TIFF, a DICOM folder or DICOMweb.
- **Reads:** the selected patches of one grid row that touch each other are read as one region
  at the chosen level, then cut: each tile of that level is decoded once or twice (a tile row
  can straddle two patch rows), instead of the naive read of the 16x larger level-0 region of
  each patch followed by a downsample (bench/bench_wsi_patches.py: 12x faster).

Readers are thin: OpenSlide for files it opens (TIFF, SVS, ...), wsidicom for DICOM WSI in a
folder or over DICOMweb (`tools.imaging.wsi_web`, through the async DICOMweb client). Everything
else here is pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from tools.imaging.dicom_limits import screen_file
from tools.imaging.errors import ImagingError
from tools.imaging.prepared import IMAGES_KEY, METADATA_KEY
from tools.imaging.tissue import TissueMaskParams, tissue_mask

__all__ = [
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "JPEG_BASELINE",
    "MASK_MPP",
    "MAX_PATCHES",
    "MIN_TISSUE_FRACTION",
    "PATCH_PX",
    "TARGET_MPP",
    "WEB_TRANSFER_SYNTAXES",
    "OpenSlideReader",
    "PatchParams",
    "PatchPlan",
    "PatchRun",
    "PlannedPatch",
    "PreparedSlide",
    "SlideError",
    "SlideLevel",
    "SlideMetadata",
    "SlidePatch",
    "SlideReader",
    "WsiDicomReader",
    "choose_level",
    "choose_mask_level",
    "evenly_spaced",
    "patch_runs",
    "patch_tissue_fractions",
    "plan_patches",
    "prepare_slide",
    "prepare_slide_dicom",
    "prepare_slide_file",
    "read_patches",
]

TARGET_MPP: Final = 1.0  # 10X
PATCH_PX: Final = 896
MAX_PATCHES: Final = 125
MIN_TISSUE_FRACTION: Final = 0.5
MASK_MPP: Final = 8.0
# Nearest level more than this factor away from the target: warn.
LEVEL_TOLERANCE: Final = 1.25
# Below this, a patch's tissue is noise at the mask's resolution (a few thumbnail pixels).
_MIN_ANY_TISSUE: Final = 0.02
JPEG_BASELINE: Final = "1.2.840.10008.1.2.4.50"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
# Frames as most slides are stored (JPEG baseline, image/jpeg): no transcoding on the server.
# Raw frames are the fallback; wsidicom cannot take raw frames of YBR_FULL_422 JPEG data, and
# Orthanc 1.10's GDCM plugin has crashed here transcoding WSI JPEG frames to raw.
WEB_TRANSFER_SYNTAXES: Final = (JPEG_BASELINE, EXPLICIT_VR_LITTLE_ENDIAN)


class SlideError(ImagingError):
    """A slide (file path, DICOM folder or DICOMweb series) cannot be prepared."""

    def __init__(self, origin: str, reason: str) -> None:
        self.origin = origin
        self.reason = reason
        super().__init__(f"{origin}: {reason}")


# ---------------------------------------------------------------------------------------------
# Pure core


class SlideLevel(BaseModel):
    """One pyramid level: `index` is the reader's own level id, `downsample` is relative to level 0."""

    model_config = ConfigDict(frozen=True)

    index: int
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    mpp: float = Field(gt=0)
    downsample: float = Field(ge=1)


class PatchParams(BaseModel):
    model_config = ConfigDict(frozen=True)

    target_mpp: float = Field(default=TARGET_MPP, gt=0)
    patch_px: int = Field(default=PATCH_PX, gt=0)
    max_patches: int = Field(default=MAX_PATCHES, gt=0)
    min_tissue_fraction: float = Field(default=MIN_TISSUE_FRACTION, gt=0, le=1)
    mask_mpp: float = Field(default=MASK_MPP, gt=0)
    tissue: TissueMaskParams = TissueMaskParams()


class PlannedPatch(BaseModel):
    """A patch: grid cell, top-left at the chosen level and at level 0, tissue fraction."""

    model_config = ConfigDict(frozen=True)

    row: int
    col: int
    x: int
    y: int
    x0: int
    y0: int
    tissue_fraction: float


class PatchPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: SlideLevel
    grid_rows: int
    grid_cols: int
    candidates: int
    patches: tuple[PlannedPatch, ...]
    warnings: tuple[str, ...]


def choose_level(levels: Sequence[SlideLevel], target_mpp: float = TARGET_MPP) -> SlideLevel:
    """The level nearest `target_mpp` on a log scale; ties go to the finer level (pure).

    Distances within 0.1% count as ties: DICOM pixel spacings carry rounding (0.500000025 and
    2.0000001 around 1.0 must tie as 0.5 and 2.0 do).
    """
    if not levels:
        raise ValueError("a slide needs at least one pyramid level")
    distance = {lv.index: abs(math.log(lv.mpp / target_mpp)) for lv in levels}
    nearest = min(distance.values())
    return min((lv for lv in levels if distance[lv.index] <= nearest + 1e-3), key=lambda lv: lv.mpp)


def choose_mask_level(levels: Sequence[SlideLevel], mask_mpp: float = MASK_MPP) -> tuple[SlideLevel, int]:
    """The coarsest level no coarser than `mask_mpp`, and the integer factor that brings it near `mask_mpp`.

    A slide whose every level is coarser than `mask_mpp` uses its finest level as it is.
    """
    if not levels:
        raise ValueError("a slide needs at least one pyramid level")
    fine_enough = [lv for lv in levels if lv.mpp <= mask_mpp * 1.001]
    if not fine_enough:
        return min(levels, key=lambda lv: lv.mpp), 1
    level = max(fine_enough, key=lambda lv: lv.mpp)
    return level, max(1, math.floor(mask_mpp / level.mpp + 1e-6))


def patch_tissue_fractions(
    mask: npt.NDArray[np.bool_], cell_px: float, grid_rows: int, grid_cols: int
) -> npt.NDArray[np.float64]:
    """Tissue fraction of each grid cell; a cell is `cell_px` mask pixels on a side (pure).

    Cell edges are rounded to whole mask pixels; a summed-area table makes each cell O(1).
    """
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1)
    fractions = np.zeros((grid_rows, grid_cols), dtype=np.float64)
    edges_r = np.clip(np.round(np.arange(grid_rows + 1) * cell_px).astype(np.int64), 0, mask.shape[0])
    edges_c = np.clip(np.round(np.arange(grid_cols + 1) * cell_px).astype(np.int64), 0, mask.shape[1])
    r0, r1 = edges_r[:-1, None], edges_r[1:, None]
    c0, c1 = edges_c[None, :-1], edges_c[None, 1:]
    area = (r1 - r0) * (c1 - c0)
    inside = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
    np.divide(inside, area, out=fractions, where=area > 0)
    return fractions


def evenly_spaced(n: int, k: int) -> list[int]:
    """`k` of `range(n)`: the middle of each of `k` equal runs (all of them when n <= k) (pure)."""
    if n <= k:
        return list(range(n))
    return [math.floor((i + 0.5) * n / k) for i in range(k)]


def plan_patches(
    levels: Sequence[SlideLevel],
    mask: npt.NDArray[np.bool_],
    mask_downsample: float,
    params: PatchParams | None = None,
    *,
    origin: str = "slide",
) -> PatchPlan:
    """Choose the level, lay the grid, score each cell on the tissue mask and sample (pure).

    `mask_downsample` is how many level-0 pixels one mask pixel spans.
    """
    p = params or PatchParams()
    level = choose_level(levels, p.target_mpp)
    warnings: list[str] = []
    ratio = level.mpp / p.target_mpp
    if not 1 / LEVEL_TOLERANCE <= ratio <= LEVEL_TOLERANCE:
        field_um = p.patch_px * level.mpp
        warnings.append(
            f"no level near {p.target_mpp:g} um/px (10X): using level {level.index} "
            f"at {level.mpp:.3g} um/px, "
            f"so a patch covers {field_um:.0f} um instead of {p.patch_px * p.target_mpp:.0f} um"
        )
    grid_rows, grid_cols = level.height // p.patch_px, level.width // p.patch_px
    if grid_rows == 0 or grid_cols == 0:
        raise SlideError(
            origin,
            f"level {level.index} is {level.width}x{level.height} px, smaller than one {p.patch_px} px patch",
        )
    cell_px = p.patch_px * level.downsample / mask_downsample
    fractions = patch_tissue_fractions(mask, cell_px, grid_rows, grid_cols)
    flat = fractions.ravel()
    candidates = np.flatnonzero(flat >= p.min_tissue_fraction)
    best = float(flat.max())
    if candidates.size == 0:
        if best < _MIN_ANY_TISSUE:
            raise SlideError(origin, f"no tissue found (best patch {best:.1%} tissue on the thumbnail mask)")
        relaxed = best / 2
        candidates = np.flatnonzero(flat >= relaxed)
        warnings.append(
            f"no patch is {p.min_tissue_fraction:.0%} tissue; kept the {candidates.size} patches "
            f"with at least {relaxed:.0%} (the best has {best:.0%})"
        )
    chosen = candidates[evenly_spaced(candidates.size, p.max_patches)]
    patches = []
    for flat_index in chosen.tolist():
        row, col = divmod(flat_index, grid_cols)
        x, y = col * p.patch_px, row * p.patch_px
        patches.append(
            PlannedPatch(
                row=row,
                col=col,
                x=x,
                y=y,
                x0=round(x * level.downsample),
                y0=round(y * level.downsample),
                tissue_fraction=round(float(flat[flat_index]), 4),
            )
        )
    return PatchPlan(
        level=level,
        grid_rows=grid_rows,
        grid_cols=grid_cols,
        candidates=int(candidates.size),
        patches=tuple(patches),
        warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class PatchRun:
    """Selected patches that touch in one grid row: read as one region, then cut."""

    row: int
    first_col: int
    count: int
    indices: tuple[int, ...]  # positions of these patches in the plan


def patch_runs(patches: Sequence[PlannedPatch]) -> list[PatchRun]:
    """Group patches (in raster order) into horizontal runs of adjacent cells (pure)."""
    runs: list[PatchRun] = []
    for i, patch in enumerate(patches):
        last = runs[-1] if runs else None
        if last is not None and last.row == patch.row and last.first_col + last.count == patch.col:
            runs[-1] = PatchRun(last.row, last.first_col, last.count + 1, (*last.indices, i))
        else:
            runs.append(PatchRun(patch.row, patch.col, 1, (i,)))
    return runs


# ---------------------------------------------------------------------------------------------
# Output


class SlidePatch(BaseModel):
    """One prepared image: its grid cell and where it lies at the chosen level and at level 0."""

    model_config = ConfigDict(frozen=True)

    index: int
    row: int
    col: int
    x: int
    y: int
    x0: int
    y0: int
    size0: float  # level-0 pixels per patch side
    tissue_fraction: float


class SlideMetadata(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: Literal["wsi"] = "wsi"
    source: str
    study_uid: str | None = None
    series_uid: str | None = None
    level: int
    level_mpp: float
    level_downsample: float
    level_size: tuple[int, int]
    base_mpp: float
    target_mpp: float
    patch_px: int
    grid: tuple[int, int]  # rows, cols
    candidates: int
    min_tissue_fraction: float
    max_patches: int
    sampling: str
    mask_level: int
    mask_mpp: float
    mask_threshold: float
    patches: list[SlidePatch]
    warnings: list[str] = []


@dataclass(frozen=True, eq=False)
class PreparedSlide:
    """Patches as uint8 N x 896 x 896 x 3 plus their metadata (the shape of `PreparedImages`)."""

    images: npt.NDArray[np.uint8]
    metadata: SlideMetadata

    def __post_init__(self) -> None:
        shape = self.images.shape
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or shape[-1] != 3:
            raise ValueError(f"images must be uint8 N x H x W x 3, got {self.images.dtype} {shape}")
        if shape[0] != len(self.metadata.patches):
            raise ValueError(f"{shape[0]} images but {len(self.metadata.patches)} patch records")

    def save_npz(self, path: Path) -> None:
        """`images` and `metadata` (a JSON string) in one uncompressed .npz, as `PreparedImages.save_npz`."""
        payload: dict[str, Any] = {
            IMAGES_KEY: self.images,
            METADATA_KEY: np.array(self.metadata.model_dump_json()),
        }
        with path.open("wb") as fh:
            np.savez(fh, **payload)


# ---------------------------------------------------------------------------------------------
# Readers (thin I/O)


class SlideReader(Protocol):
    @property
    def origin(self) -> str: ...

    def levels(self) -> list[SlideLevel]: ...

    def read(self, level: SlideLevel, x: int, y: int, width: int, height: int) -> npt.NDArray[np.uint8]:
        """RGB uint8 height x width x 3 at `level`, top-left (x, y) in that level's pixels."""
        ...


class OpenSlideReader:
    """A slide file OpenSlide opens (generic tiled TIFF, Aperio SVS, ...)."""

    def __init__(self, path: Path) -> None:
        import openslide

        self._path = path
        try:
            self._slide = openslide.OpenSlide(path)
        except (openslide.OpenSlideError, OSError) as exc:
            raise SlideError(str(path), f"OpenSlide cannot open it ({exc})") from exc
        mpp = self._slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
        if mpp is None:
            raise SlideError(str(path), "no pixel spacing (openslide.mpp-x): cannot find the 10X level")
        self._mpp = float(mpp)

    @property
    def origin(self) -> str:
        return str(self._path)

    def levels(self) -> list[SlideLevel]:
        slide = self._slide
        return [
            SlideLevel(index=i, width=w, height=h, mpp=self._mpp * ds, downsample=ds)
            for i, ((w, h), ds) in enumerate(
                zip(slide.level_dimensions, slide.level_downsamples, strict=True)
            )
        ]

    def read(self, level: SlideLevel, x: int, y: int, width: int, height: int) -> npt.NDArray[np.uint8]:
        # OpenSlide takes the top-left in level-0 pixels and returns RGBA; outside the scan is transparent.
        location = (round(x * level.downsample), round(y * level.downsample))
        rgba = np.asarray(self._slide.read_region(location, level.index, (width, height)))
        rgb = np.ascontiguousarray(rgba[..., :3])
        rgb[rgba[..., 3] == 0] = 255
        return rgb

    def close(self) -> None:
        self._slide.close()


class WsiDicomReader:
    """DICOM WSI through wsidicom: a folder of files, or a series over DICOMweb (`tools.imaging.wsi_web`)."""

    def __init__(self, wsi: Any, origin: str) -> None:
        from wsidicom.errors import WsiDicomNoResolutionError

        self._wsi = wsi
        self._origin = origin
        base = wsi.levels.base_level
        try:
            self._levels = [
                SlideLevel(
                    index=level.level,
                    width=level.size.width,
                    height=level.size.height,
                    mpp=float(level.mpp.width),
                    downsample=base.size.width / level.size.width,
                )
                for level in wsi.levels
            ]
        except WsiDicomNoResolutionError as exc:
            raise SlideError(origin, "no pixel spacing (PixelSpacing): cannot find the 10X level") from exc

    @classmethod
    def from_folder(cls, folder: Path) -> WsiDicomReader:
        from wsidicom import WsiDicom
        from wsidicom.errors import WsiDicomNotFoundError

        if not folder.is_dir():
            raise SlideError(str(folder), "not a folder")
        for file in sorted(folder.iterdir()):  # the files wsidicom opens; it would inflate a bomb whole
            if file.is_file():
                screen_file(file, str(file))
        try:
            wsi = WsiDicom.open(folder)
        except WsiDicomNotFoundError as exc:
            raise SlideError(str(folder), f"no DICOM WSI pyramid found ({exc})") from exc
        return cls(wsi, str(folder))

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def uids(self) -> tuple[str | None, str | None]:
        uids = self._wsi.uids
        if uids is None:
            return None, None
        return str(uids.study_instance), str(uids.series_instance)

    def levels(self) -> list[SlideLevel]:
        return list(self._levels)

    def read(self, level: SlideLevel, x: int, y: int, width: int, height: int) -> npt.NDArray[np.uint8]:
        region = self._wsi.read_region((x, y), level.index, (width, height), as_array=True)
        rgb = np.asarray(region, dtype=np.uint8)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=-1)
        return np.ascontiguousarray(rgb[..., :3])

    def close(self) -> None:
        self._wsi.close()


# ---------------------------------------------------------------------------------------------
# Preparation (shell over the pure core)


def _thumbnail(reader: SlideReader, level: SlideLevel, factor: int) -> npt.NDArray[np.uint8]:
    image = reader.read(level, 0, 0, level.width, level.height)
    if factor > 1:
        image = np.asarray(Image.fromarray(image).reduce(factor))
    return image


def read_patches(reader: SlideReader, plan: PatchPlan, patch_px: int) -> npt.NDArray[np.uint8]:
    """The plan's patches, read one run of adjacent patches at a time."""
    images = np.empty((len(plan.patches), patch_px, patch_px, 3), dtype=np.uint8)
    for run in patch_runs(plan.patches):
        region = reader.read(
            plan.level, run.first_col * patch_px, run.row * patch_px, run.count * patch_px, patch_px
        )
        for k, index in enumerate(run.indices):
            images[index] = region[:, k * patch_px : (k + 1) * patch_px]
    return images


def prepare_slide(
    reader: SlideReader,
    params: PatchParams | None = None,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> PreparedSlide:
    """Tissue patches at the level nearest 10X from any reader."""
    p = params or PatchParams()
    levels = reader.levels()
    mask_level, factor = choose_mask_level(levels, p.mask_mpp)
    thumbnail = _thumbnail(reader, mask_level, factor)
    mask_downsample = mask_level.downsample * factor
    mask = tissue_mask(thumbnail, mpp=mask_level.mpp * factor, params=p.tissue)
    plan = plan_patches(levels, mask.mask, mask_downsample, p, origin=reader.origin)
    images = read_patches(reader, plan, p.patch_px)
    level = plan.level
    sampled = len(plan.patches) < plan.candidates
    metadata = SlideMetadata(
        source=reader.origin,
        study_uid=study_uid,
        series_uid=series_uid,
        level=level.index,
        level_mpp=level.mpp,
        level_downsample=level.downsample,
        level_size=(level.width, level.height),
        base_mpp=min(lv.mpp for lv in levels),
        target_mpp=p.target_mpp,
        patch_px=p.patch_px,
        grid=(plan.grid_rows, plan.grid_cols),
        candidates=plan.candidates,
        min_tissue_fraction=p.min_tissue_fraction,
        max_patches=p.max_patches,
        sampling="evenly spaced in raster order" if sampled else "all candidates",
        mask_level=mask_level.index,
        mask_mpp=mask.mpp,
        mask_threshold=round(mask.threshold, 6),
        patches=[
            SlidePatch(index=i, size0=p.patch_px * level.downsample, **patch.model_dump())
            for i, patch in enumerate(plan.patches)
        ],
        warnings=list(plan.warnings),
    )
    return PreparedSlide(images=images, metadata=metadata)


def prepare_slide_file(path: Path, params: PatchParams | None = None) -> PreparedSlide:
    """A slide file OpenSlide reads (TIFF, SVS, ...)."""
    reader = OpenSlideReader(path)
    try:
        return prepare_slide(reader, params)
    finally:
        reader.close()


def prepare_slide_dicom(folder: Path, params: PatchParams | None = None) -> PreparedSlide:
    """A DICOM WSI series whose instances lie in `folder`."""
    reader = WsiDicomReader.from_folder(folder)
    try:
        study_uid, series_uid = reader.uids
        return prepare_slide(reader, params, study_uid=study_uid, series_uid=series_uid)
    finally:
        reader.close()
