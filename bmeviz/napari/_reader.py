"""napari reader: DICOM folders, single DICOM files and NIfTI, through :func:`bmeviz.load`.

:func:`napari_get_reader` answers "can bmeviz read this?" cheaply and never raises: for
anything it cannot read it returns None and napari asks the next plugin. The reader it
returns loads the volume and hands napari one image layer with the scan's voxel size in
mm (``scale``), its position (``translate``), ``units``, a percentile contrast window,
a name from the series description, and the geometry in ``metadata["bmeviz"]`` (RAS
affine, source path, series key and, for a folder with several series, the list the
widget offers to switch series).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._layers import image_kwargs, series_records

__all__ = ["napari_get_reader", "read", "read_volume", "looks_like_dicom"]

#: How many files of a folder are sniffed for the DICOM preamble before giving up.
_SNIFF_FILES = 64
_NIFTI = (".nii", ".nii.gz")
_DICOM_EXT = (".dcm", ".dicom", ".ima")


def _is_dicom_file(path: Path) -> bool:
    """True if the file carries the DICM magic at byte 128 (or a DICOM extension and a
    plausible group-0008 start, as in old preamble-less files)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return path.suffix.lower() in _DICOM_EXT and head[:2] in (b"\x08\x00", b"\x00\x08")


def looks_like_dicom(path: str | os.PathLike) -> bool:
    """A DICOM file, or a folder holding one among its first files (searched breadth-first)."""
    p = Path(path)
    try:
        if p.is_file():
            return _is_dicom_file(p)
        if not p.is_dir():
            return False
        seen = 0
        queue = [p]
        while queue and seen < _SNIFF_FILES:
            folder = queue.pop(0)
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        queue.append(Path(entry.path))
                    elif entry.is_file():
                        seen += 1
                        if _is_dicom_file(Path(entry.path)):
                            return True
                        if seen >= _SNIFF_FILES:
                            break
                except OSError:
                    continue
        return False
    except Exception:  # noqa: BLE001  (never raise from the sniffing step)
        return False


def napari_get_reader(path: Any) -> Callable | None:
    """The bmeviz reader for ``path``, or None if bmeviz cannot read it (never raises)."""
    try:
        if isinstance(path, (list, tuple)):
            if len(path) != 1:
                return None
            path = path[0]
        p = Path(os.fspath(path))
        name = p.name.lower()
        if p.is_file() and name.endswith(_NIFTI):
            return read
        if looks_like_dicom(p):
            return read
    except Exception:  # noqa: BLE001
        return None
    return None


def read_volume(path: str | os.PathLike, *, series: Any = None, echo: float | None = None):
    """``(volume, series_records)`` of ``path``; for a DICOM folder the fluid-sensitive series
    (or ``series``) and the records of every series in it."""
    from ..io import list_series, load, select_series
    from ..io.dicom import read_stack
    from ..io.nifti import is_nifti

    p = Path(path)
    if p.is_dir():
        infos = list_series(p)
        chosen = select_series(infos, series, echo, where=str(p))
        return read_stack(chosen), series_records(infos)
    if is_nifti(p):
        return load(p), []
    return load(p, series=series, echo=echo), []


def read(path: Any, *, series: Any = None) -> list[tuple]:
    """Load ``path`` (folder, DICOM file or NIfTI) as napari layer data: ``[(array, kwargs, 'image')]``."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    vol, records = read_volume(path, series=series)
    return [(vol.array, image_kwargs(vol, path=path, series=records), "image")]
