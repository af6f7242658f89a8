"""napari reader: DICOM folders and files, NIfTI scans and masks, DICOM SEG, through :func:`bmeviz.load`.

:func:`napari_get_reader` answers "can bmeviz read this?" cheaply and never raises. For a
folder it always answers with a reader: a folder bmeviz cannot read then gets bmeviz's own
reason ("no DICOM images found ... is this the right folder?") instead of napari's generic
"refused the file". Loading is :func:`bmeviz.load` and :func:`bmeviz.list_series`; this
module only chooses what to open by default and how napari shows it:

* **Several series**: the fluid-sensitive one (STIR first, then T2/PD FS, Dixon water),
  the others listed in the widget's series box.
* **Multi-echo** (one series, several echoes at the same positions, e.g. a T2-mapping
  MESE): the longest echo time, because the latest echo is the most T2-weighted (fluid and
  oedema brightest against marrow); a notification says which echo and why, and the
  others are listed.
* **Masks**: a NIfTI holding integers with few distinct values (0/1, or small label ids),
  such as a reader's region or normal-marrow outline, opens as a Labels layer on its own
  grid (not a grey image); a DICOM SEG opens as Labels on the grid of the series it
  references. The widget offers them as region or reference as soon as they appear.

Layer names carry what a radiologist looks for: description, sequence, echo and TE, and
series number (e.g. ``"ANONYMIZED · T2 · echo 8/8 (TE 50.5 ms) · series 8"``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BmevizWarning, ParameterError, SeriesSelectionError, UnreadableFileError, warn
from ._layers import image_kwargs, labels_kwargs, mask_style, series_records

__all__ = ["napari_get_reader", "read", "read_volume", "looks_like_dicom", "choose_series", "is_mask"]

#: How many files of a folder are sniffed for the DICOM preamble before giving up.
_SNIFF_FILES = 64
_NIFTI = (".nii", ".nii.gz")
_DICOM_EXT = (".dcm", ".dicom", ".ima")
#: A scan with at most this many distinct non-negative integer values is taken for a mask.
_MAX_LABELS = 255
_SEG_SOP = "1.2.840.10008.5.1.4.1.1.66.4"


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
    """The bmeviz reader for ``path``, or None if it is not bmeviz's kind of file (never raises).

    Any folder gets a reader: if it holds no DICOM series the reader says so in bmeviz's
    words (napari shows that message, not a generic refusal).
    """
    try:
        if isinstance(path, (list, tuple)):
            if len(path) != 1:
                return None
            path = path[0]
        p = Path(os.fspath(path))
        name = p.name.lower()
        if p.is_dir():
            return read
        if p.is_file() and name.endswith(_NIFTI):
            return read
        if p.is_file() and _is_dicom_file(p):
            return read
    except Exception:  # noqa: BLE001
        return None
    return None


def choose_series(infos: list) -> tuple[Any, str | None]:
    """The series to open by default and, when there was a choice, why (in words).

    Several echoes of one series: the longest echo time (the most T2-weighted echo, fluid
    and oedema brightest). Several series: the fluid-sensitive one, as :func:`bmeviz.load`
    picks it. Raises :class:`~bmeviz.SeriesSelectionError` when nothing fits (the message
    lists the series).
    """
    from ..io import select_series

    if len(infos) == 1:
        return infos[0], None
    uids = {s.uid for s in infos}
    if len(uids) == 1 and all(s.echo is not None for s in infos):
        best = max(infos, key=lambda s: (s.echo_time if s.echo_time is not None else -1.0, s.echo))
        te = f" (TE {best.echo_time:.1f} ms)" if best.echo_time is not None else ""
        why = (f"echo {best.echo:g} of {len(infos)}{te} opened: the longest echo time is the most T2-weighted, "
               "where fluid and oedema are brightest"
               + ("" if best.fat_suppressed else "; this series is not fat-suppressed, so fatty marrow is bright too")
               + ". Pick another echo in the widget's series box.")
        return best, why
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BmevizWarning)
        best = select_series(infos, None, None, where="")
    why = None
    if caught:
        why = (f"{len(infos)} series in this folder; the fluid-sensitive {best.sequence} "
               f"(series {best.number}, {best.description or 'no description'}) opened. "
               "Pick another in the widget's series box.")
    return best, why


def read_volume(path: str | os.PathLike, *, series: Any = None, echo: float | None = None):
    """``(volume, series_records, why)`` of ``path``: for a DICOM folder the default series
    (:func:`choose_series`) or ``series``, the records of every series in it, and why the
    default was chosen (None when there was no choice)."""
    from ..io import list_series, load
    from ..io.nifti import is_nifti

    p = Path(path)
    if p.is_dir():
        infos = list_series(p)
        why = None
        if series is None and echo is None:
            chosen, why = choose_series(infos)
            series = chosen.key
        return load(p, series=series, echo=echo), series_records(infos), why
    if is_nifti(p):
        return load(p), [], None
    try:
        return load(p, series=series, echo=echo), [], None
    except SeriesSelectionError:
        if series is not None or echo is not None:
            raise
        own = list_series(p)  # one file of a multi-echo series: open the echo this file holds
        echo = own[0].frames[0].echo if len(own) == 1 and own[0].frames else None
        if echo is None:
            raise
        return load(p, echo=echo), [], f"the file holds echo {echo:g} of a multi-echo series: that echo opened"


def is_mask(array: np.ndarray) -> bool:
    """True for what a reader's outline looks like: non-negative integers, few distinct values, a 0."""
    a = np.asarray(array)
    if a.ndim != 3 or a.size == 0:
        return False
    if np.issubdtype(a.dtype, np.floating):
        sample = a.reshape(-1)[:: max(1, a.size // 200_000)]
        if not np.all(np.isfinite(sample)) or not np.all(sample == np.round(sample)):
            return False
    elif not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        return False
    sample = a.reshape(-1)[:: max(1, a.size // 200_000)]
    if np.unique(sample).size > _MAX_LABELS:
        return False
    values = np.unique(a)
    return values.size <= _MAX_LABELS and values.min() == 0 and values.max() >= 1


def _mask_layer(vol, path: Path, name: str | None = None) -> tuple:
    arr = np.asarray(vol.array)
    n = int(arr.max())
    data = arr.astype(np.uint8 if n < 256 else np.int32)
    kwargs = labels_kwargs(vol, name=name or _stem(path))
    kwargs["metadata"]["bmeviz"]["path"] = os.fspath(path)
    kwargs["metadata"]["bmeviz"]["mask"] = True
    kwargs.update(mask_style(kwargs["name"], n))
    return (data, kwargs, "labels")


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _seg_source(ds, path: Path):
    """The Volume a DICOM SEG refers to: an image open in napari from that series, or the
    series found in the SEG's folder or the folder above."""
    refs = ds.get("ReferencedSeriesSequence") or []
    uid = str(refs[0].SeriesInstanceUID) if refs else None
    if uid is None:
        raise ParameterError(f"{path}: this DICOM SEG does not say which series it segments")
    try:
        import napari

        from ._layers import KEY, layer_volume

        viewer = napari.current_viewer()
        for layer in [] if viewer is None else viewer.layers:
            record = (layer.metadata or {}).get(KEY) or {}
            if (record.get("volume_metadata") or {}).get("series_uid") == uid and not record.get("mask"):
                return layer_volume(layer.data, layer.metadata, layer.scale, layer.translate)
    except ImportError:  # pragma: no cover  (the reader runs inside napari)
        pass
    from ..io import list_series, load

    for folder in (path.parent, path.parent.parent):
        with warnings.catch_warnings():  # the search, not the user's files: no "skipped N files"
            warnings.simplefilter("ignore", BmevizWarning)
            try:
                infos = [s for s in list_series(folder) if s.uid == uid]
            except Exception:  # noqa: BLE001  (a folder without images: look further up)
                continue
            if infos:
                return load(folder, series=infos[0].key)
    raise ParameterError(f"{path.name}: the series this segmentation belongs to (UID ...{uid[-12:]}) is not "
                         "open and not in the same folder: open the scan first, then this file")


def _read_seg(path: Path) -> list[tuple] | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001  (not for us to judge: bmeviz.load says what is wrong)
        return None
    if str(ds.get("SOPClassUID", "")) != _SEG_SOP and str(ds.get("Modality", "")) != "SEG":
        return None
    from ..io.seg import read_seg

    like = _seg_source(ds, path)
    labels = read_seg(path, like)
    return [_mask_layer(like.with_array(labels), path, name=f"{_stem(path)} (SEG)")]


def read(path: Any, *, series: Any = None, echo: float | None = None) -> list[tuple]:
    """Load ``path`` as napari layer data: ``[(array, kwargs, 'image' | 'labels')]``."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    p = Path(os.fspath(path))
    if p.is_dir() and not looks_like_dicom(p) and not any(p.glob("**/*.dcm")):
        raise UnreadableFileError(f"No DICOM images in the folder {p.name!r} (bmeviz opens DICOM folders, "
                                  "DICOM files and NIfTI): is this the right folder?")
    if p.is_file() and not p.name.lower().endswith(_NIFTI):
        seg = _read_seg(p)
        if seg is not None:
            return seg
    vol, records, why = read_volume(p, series=series, echo=echo)
    if why:
        warn(why)  # napari shows it as a notification that starts with the reason
    if p.name.lower().endswith(_NIFTI) and is_mask(vol.array):
        return [_mask_layer(vol, p)]
    kwargs = image_kwargs(vol, path=p, series=records)
    if why:
        kwargs["metadata"]["bmeviz"]["why"] = why
    return [(vol.array, kwargs, "image")]
