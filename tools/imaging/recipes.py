"""Which preparation recipe a CT, MRI or chest X-ray series goes through, and running it (pure).

One table for every caller: the `imaging prepare` and `analyze` commands and the imaging review
service (`tools.imaging_review`) prepare a series the same way, with the same record of the
non-image objects that came with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tools.imaging.ct import CT_MODALITIES, prepare_ct
from tools.imaging.cxr import CXR_MODALITIES, prepare_cxr
from tools.imaging.mri import MRI_MODALITIES, prepare_mri
from tools.imaging.prepared import PreparedImages, Task
from tools.imaging.volume import Assembly, SkippedObject, Volume

__all__ = ["RECIPES", "Preparer", "Recipe", "prepare_volume", "related_skipped"]

Preparer = Callable[..., PreparedImages]


@dataclass(frozen=True)
class Recipe:
    """A task's preparer (`prepare(volume, source=..., skipped=...)`) and the DICOM modalities it takes."""

    prepare: Preparer
    modalities: tuple[str, ...]


RECIPES: Mapping[Task, Recipe] = MappingProxyType(
    {
        Task.CT: Recipe(prepare_ct, CT_MODALITIES),
        Task.MRI: Recipe(prepare_mri, MRI_MODALITIES),
        Task.CXR: Recipe(prepare_cxr, CXR_MODALITIES),
    }
)


def related_skipped(assembly: Assembly, series_uid: str) -> list[SkippedObject]:
    """The skipped non-image objects of this series, and those that belong to no series."""
    return [s for s in assembly.skipped if s.series_uid in (None, series_uid)]


def prepare_volume(task: Task, volume: Volume, assembly: Assembly, *, source: str) -> PreparedImages:
    """`volume` prepared by the task's recipe; raises `ImagingError` when it cannot be."""
    return RECIPES[task].prepare(volume, source=source, skipped=related_skipped(assembly, volume.series_uid))
