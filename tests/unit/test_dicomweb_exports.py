"""The public surface of `tools.imaging` (DICOMweb client, multipart, sources) is deliberate."""

from __future__ import annotations

import tools.imaging
from tools.imaging import dicomweb, multipart, sources


def test_package_exports_exactly_the_public_api() -> None:
    assert sorted(tools.imaging.__all__) == sorted(
        [
            "BasicAuth", "DicomSourceError", "DicomWebAuthError", "DicomWebClient", "DicomWebConflict",
            "DicomWebError", "DicomWebHttpError", "DicomWebInvalid", "DicomWebNotAcceptable",
            "DicomWebNotFound", "DicomWebProtocolError", "DicomWebRef", "DicomWebServerError",
            "DicomWebTransportError", "FailedInstance", "FileSource", "FolderSource", "InstanceFailure",
            "InstanceMatch", "LoadResult", "LoadedInstance", "MultipartError", "SeriesMatch", "Source",
            "StoreResult", "StoredInstance", "StudyMatch", "load_dicomweb", "load_file", "load_folder",
            "load_source", "parse_source",
        ]
    )  # fmt: skip
    for name in tools.imaging.__all__:
        assert getattr(tools.imaging, name) is not None


def test_module_exports_resolve() -> None:
    for module in (dicomweb, multipart, sources):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_dicomweb_error_is_a_dicomweb_error() -> None:
    for name in dicomweb.__all__:
        obj = getattr(dicomweb, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, dicomweb.DicomWebError), name
