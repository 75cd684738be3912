"""Whole-slide images over DICOMweb, read through the one async `DicomWebClient`.

wsidicom parses the pyramid and decodes tiles; it is synchronous and asks a `WsiDicomWebClient`
for QIDO results, instance metadata and frames. `_BridgedClient` answers those calls with the
async client the caller gave (its auth, retries, concurrency bound and error mapping), from the
worker thread that runs wsidicom: each call is scheduled on the caller's event loop and waited
for. No second HTTP client exists, so the configured credentials go with every frame request.

On the wire (base = the DICOMweb root):
    GET {base}/studies/{st}/series/{se}/instances?includefield=...     (the series' instances)
    GET {base}/studies/{st}/series/{se}/instances/{i}/metadata          (each WSI instance)
    GET {base}/studies/{st}/series/{se}/instances/{i}/frames/1          (probe of the transfer syntax)
    GET {base}/studies/{st}/series/{se}/instances/{i}/frames/a,b,...    (tiles of the thumbnail level,
        Accept: multipart/related; type="image/jpeg"                     then of each run of patches)
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from pydicom import Dataset
from pydicom.uid import UID, VLWholeSlideMicroscopyImageStorage
from wsidicom import WsiDicom, WsiDicomWebClient
from wsidicom.errors import WsiDicomNotFoundError

from tools.imaging.dicomweb import DicomWebClient, DicomWebInvalid, DicomWebNotAcceptable
from tools.imaging.wsi import (
    WEB_TRANSFER_SYNTAXES,
    PatchParams,
    PreparedSlide,
    SlideError,
    WsiDicomReader,
    prepare_slide,
)

__all__ = ["open_dicomweb_slide", "prepare_slide_dicomweb"]

T = TypeVar("T")


class _BridgedClient(WsiDicomWebClient):  # type: ignore[misc]  # wsidicom is untyped here
    """wsidicom's client interface, answered by the async client on `loop` (call from another thread)."""

    def __init__(self, client: DicomWebClient, loop: asyncio.AbstractEventLoop) -> None:
        # No super().__init__: there is no dicomweb-client (requests) client behind this one.
        self._web = client
        self._loop = loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coro.close()
            raise RuntimeError("the DICOMweb slide reader must run off the event loop (asyncio.to_thread)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def get_wsi_instances(
        self, study_uid: UID, series_uids: Iterable[UID]
    ) -> Iterator[tuple[UID, UID, set[UID] | None]]:
        # QIDO per series, filtered here: servers differ in which instance-level filters they take.
        found: list[tuple[UID, UID, set[UID] | None]] = []
        for series_uid in series_uids:
            matches = self._call(self._web.search_instances(str(study_uid), str(series_uid)))
            found += [
                (UID(m.series_instance_uid), UID(m.sop_instance_uid), None)
                for m in matches
                if m.sop_class_uid == VLWholeSlideMicroscopyImageStorage
            ]
        return iter(found)

    def get_annotation_instances(
        self, study_uid: UID, series_uids: Iterable[UID]
    ) -> Iterator[tuple[UID, UID, set[UID] | None]]:
        return iter(())  # annotations are not read: patches are all the model sees

    def get_instance(self, study_uid: UID, series_uid: UID, instance_uid: UID) -> Dataset:
        docs = self._call(self._web.retrieve_metadata(str(study_uid), str(series_uid), str(instance_uid)))
        if len(docs) != 1:
            raise SlideError(f"instance {instance_uid}", f"metadata answered {len(docs)} objects, expected 1")
        return Dataset.from_json(docs[0], bulk_data_uri_handler=_not_fetched)

    def get_frames(
        self,
        study_uid: UID,
        series_uid: UID,
        instance_uid: UID,
        frame_indices: list[int],
        transfer_syntax: UID,
    ) -> Iterator[bytes]:
        frames = self._web.retrieve_frames(
            str(study_uid),
            str(series_uid),
            str(instance_uid),
            list(frame_indices),
            transfer_syntax=str(transfer_syntax),
        )
        return iter(self._call(frames))

    def is_transfer_syntax_supported(
        self, study_uid: UID, series_uid: UID, instance_uid: UID, transfer_syntax: UID
    ) -> bool:
        try:
            self.get_frames(study_uid, series_uid, instance_uid, [1], transfer_syntax)
        except (DicomWebNotAcceptable, DicomWebInvalid):  # 406/415, or Orthanc's 400 for a media type
            return False
        return True


def _not_fetched(tag: str, vr: str, uri: str) -> bytes | None:
    """Bulk data (the ICC profile, in practice) is not fetched: the tiles are decoded without it."""
    return b"" if vr in ("OB", "OW", "UN") else None


def open_dicomweb_slide(
    client: DicomWebClient,
    loop: asyncio.AbstractEventLoop,
    study_uid: str,
    series_uid: str,
    *,
    transfer_syntaxes: Sequence[str] = WEB_TRANSFER_SYNTAXES,
) -> WsiDicomReader:
    """A reader of the series over `client` (blocking: call from a worker thread; `loop` runs `client`).

    Frames come in the first of `transfer_syntaxes` the server gives. DICOMweb errors propagate
    as the client raised them (`DicomWebError`); a series without a readable pyramid is a SlideError.
    """
    origin = f"{client.base_url}/studies/{study_uid}/series/{series_uid}"
    bridged = _BridgedClient(client, loop)
    try:
        wsi = WsiDicom.open_web(
            bridged, study_uid, series_uid, requested_transfer_syntax=[UID(t) for t in transfer_syntaxes]
        )
    except WsiDicomNotFoundError as exc:
        raise SlideError(
            origin,
            f"no DICOM WSI pyramid in the series readable as {', '.join(transfer_syntaxes)} ({exc})",
        ) from exc
    # wsidicom 0.36 asks DICOMweb for a concatenation part's frames by their number in the
    # whole concatenation, not in the part: the server answers 400. Refuse up front.
    if any(ds.frame_offset for level in wsi.levels for ds in level.datasets):
        wsi.close()
        raise SlideError(
            origin,
            "a level is stored as a concatenation (ConcatenationFrameOffsetNumber > 0), which wsidicom "
            "cannot read over DICOMweb; store one instance per level",
        )
    return WsiDicomReader(wsi, origin)


async def prepare_slide_dicomweb(
    client: DicomWebClient,
    study_uid: str,
    series_uid: str,
    params: PatchParams | None = None,
    *,
    transfer_syntaxes: Sequence[str] = WEB_TRANSFER_SYNTAXES,
) -> PreparedSlide:
    """Tissue patches at about 10X of a DICOM WSI series on `client`'s server (module docstring).

    The tile decoding runs in a worker thread; the event loop stays free to carry its requests.
    """
    loop = asyncio.get_running_loop()

    def run() -> PreparedSlide:
        reader = open_dicomweb_slide(client, loop, study_uid, series_uid, transfer_syntaxes=transfer_syntaxes)
        try:
            return prepare_slide(reader, params, study_uid=study_uid, series_uid=series_uid)
        finally:
            reader.close()

    return await asyncio.to_thread(run)
