"""Loading and saving: DICOM folders and files, NIfTI, masks on the source grid.

>>> import bmeviz, numpy as np, tempfile, os
>>> vol = bmeviz.Volume(np.zeros((4, 8, 8), np.int16), np.diag([3.0, 0.5, 0.5, 1.0]))
>>> path = os.path.join(tempfile.mkdtemp(), "mask.nii.gz")
>>> bmeviz.save_mask(np.ones((4, 8, 8), bool), vol, path)
PosixPath('...mask.nii.gz')
>>> bmeviz.load(path).shape
(4, 8, 8)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InconsistentGeometryError, ParameterError, SeriesSelectionError, UnreadableFileError, warn
from ..volume import Volume
from ._atomic import atomic_path
from .dicom import SeriesInfo, group, read_stack, scan
from .nifti import is_nifti, read_nifti
from .sequence import fluid_rank

__all__ = ["load", "list_series", "save_mask", "save_volume", "SeriesInfo", "select_series"]


def _input_path(path: Any) -> Path:
    """``path`` as an existing :class:`~pathlib.Path`, or a BmevizError that says what is wrong."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise ParameterError(
            f"path must be a file or folder (str or pathlib.Path), not {type(path).__name__}: {path!r:.60}"
        )
    if not str(os.fspath(path)).strip():
        raise ParameterError("path is empty: give a DICOM folder or file, or a NIfTI file")
    p = Path(path)
    try:
        p.stat()
    except FileNotFoundError:
        raise UnreadableFileError(f"{p}: no such file or folder") from None
    except (OSError, ValueError) as exc:  # name too long, permission denied, embedded NUL...
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UnreadableFileError(f"{str(p)[:300]}: cannot open ({reason})") from None
    return p


def list_series(path: str | os.PathLike) -> list[SeriesInfo]:
    """Every DICOM series (stack) under ``path``, from headers only.

    Files are grouped by SeriesInstanceUID and, where one UID holds several stacks, by
    echo, image type, matrix size and orientation. Localizers are left out. Each record
    has ``key``, ``uid``, ``number``, ``description``, ``sequence`` (the guess from the
    tags: STIR, T2 FS, PD FS, T1, DIXON WATER...), ``n_slices``, ``shape``, ``spacing``,
    ``plane`` and ``echo``. Pass ``record.key`` (or the record) to :func:`load`.
    """
    p = _input_path(path)
    if p.is_file() and is_nifti(p):
        raise ParameterError(f"{p}: list_series reads DICOM; a NIfTI file holds one volume: use bmeviz.load")
    return group(scan(p))


def _describe(s: SeriesInfo) -> str:
    echo = f", echo {s.echo:g}" if s.echo is not None else ""
    return f"[{s.number}] {s.description or '(no description)'} — {s.sequence}{echo}, {s.n_slices} slices (key {s.key!r})"


def select_series(
    infos: Sequence[SeriesInfo], series: Any = None, echo: float | None = None, *, where: str = ""
) -> SeriesInfo:
    """Choose one series: by key, UID, SeriesNumber, description, or the fluid-sensitive one."""
    if not infos:
        raise SeriesSelectionError(f"{where}: no image series found")
    cands = list(infos)
    listing = "\n  ".join(_describe(s) for s in infos)
    if isinstance(series, SeriesInfo):
        series = series.key
    if series is not None:
        if isinstance(series, (int, np.integer)) and not isinstance(series, bool):
            cands = [s for s in infos if s.number == int(series)]
        elif isinstance(series, str):
            text = series.strip()
            cands = [s for s in infos if s.key == text]
            if not cands:
                cands = [s for s in infos if s.uid == text]
            if not cands and re.fullmatch(r"\d+", text):
                cands = [s for s in infos if s.number == int(text)]
            if not cands:
                cands = [s for s in infos if text.lower() in s.description.lower()]
        else:
            raise ParameterError(f"series must be a key, UID, series number or description, not {type(series).__name__}")
        if not cands:
            raise SeriesSelectionError(f"{where}: no series matches {series!r}; found:\n  {listing}")
    if echo is not None:
        try:
            echo_value = float(echo)
        except (TypeError, ValueError):
            echo_value = float("nan")
        if isinstance(echo, bool) or not np.isfinite(echo_value):
            raise ParameterError(f"echo must be an echo number or echo time (a number), not {echo!r:.40}")
        with_echo = [s for s in cands if s.echo is not None and np.isclose(s.echo, echo_value)]
        if not with_echo:
            echoes = sorted({s.echo for s in cands if s.echo is not None})
            raise SeriesSelectionError(
                f"{where}: echo={echo!r} not found"
                + (f"; the series has echoes {', '.join(f'{e:g}' for e in echoes)}" if echoes else "; the series has a single echo")
            )
        cands = with_echo
    if len(cands) == 1:
        return cands[0]
    uids = {s.uid for s in cands}
    if len(uids) == 1 and all(s.echo is not None for s in cands):
        raise SeriesSelectionError(
            f"{where}: series {cands[0].number} has {len(cands)} echoes "
            f"({', '.join(f'{s.echo:g}' for s in cands)}); choose one with echo=N (CLI: --echo N)"
        )
    if series is None:
        split = [s for s in cands if "#stack=" in s.key]
        if split and len({s.uid for s in cands}) == 1:
            raise InconsistentGeometryError(
                f"{where}: mixed slice orientations: series UID {cands[0].uid} holds {len(split)} stacks "
                f"in different planes ({', '.join(sorted({s.plane for s in split}))}); pick one with "
                f"series=<key> (CLI: --series):\n  {listing}"
            )
        fluid = [s for s in cands if s.fluid_sensitive]
        if fluid:
            best = min(fluid, key=lambda s: (fluid_rank(s.sequence), -s.n_slices, s.number or 0, s.key))
            if len(cands) > 1:
                warn(
                    f"{where}: {len(cands)} series found; picked the fluid-sensitive {_describe(best)}. "
                    "Choose another with series=<key> (CLI: --series)."
                )
            return best
        raise SeriesSelectionError(
            f"{where}: {len(cands)} series and none looks fluid-sensitive (STIR, T2/PD FS, Dixon water); "
            f"choose one with series=<key> (CLI: --series):\n  {listing}"
        )
    raise SeriesSelectionError(
        f"{where}: {series!r} matches {len(cands)} series; use a key from bmeviz.list_series:\n  "
        + "\n  ".join(_describe(s) for s in cands)
    )


def load(
    path: str | os.PathLike,
    *,
    series: Any = None,
    echo: float | None = None,
    volume: int | None = None,
) -> Volume:
    """Load a DICOM folder, a DICOM file (classic or enhanced multi-frame) or a NIfTI file.

    Parameters
    ----------
    path : path-like
        A folder (searched recursively), a DICOM file, or ``.nii`` / ``.nii.gz``.
    series : str, int or SeriesInfo, optional
        Which series: a key or UID from :func:`list_series`, a SeriesNumber, or a unique
        part of the description. By default the only series, or else the fluid-sensitive
        one (STIR first, then T2 FS, PD FS, Dixon water), with a warning that says so.
    echo : number, optional
        Echo number (or echo time) of a multi-echo series.
    volume : int, optional
        Which volume of a 4D NIfTI file.

    Returns
    -------
    Volume
        Axes (slice, row, column), RAS affine, rescaling applied and recorded in metadata.

    Raises
    ------
    BmevizError
        A subclass naming the file and the reason: unreadable, not a volume, inconsistent
        geometry, series not found or ambiguous.
    """
    p = _input_path(path)
    if p.is_file() and is_nifti(p):
        if series is not None or echo is not None:
            raise ParameterError(f"{p}: series= and echo= apply to DICOM; a NIfTI file holds one series")
        return read_nifti(p, volume=volume)
    if volume is not None:
        raise ParameterError(f"{p}: volume= applies to 4D NIfTI files, not DICOM (use series=/echo=)")
    if p.is_dir():
        infos = group(scan(p))
        chosen = select_series(infos, series, echo, where=str(p))
        return read_stack(chosen)
    frames = scan(p)
    if all(f.frame is None for f in frames):
        # one classic slice: load the series it belongs to from its folder
        uid = frames[0].series_uid
        folder = p.parent
        siblings = [f for f in scan(folder) if f.series_uid == uid]
        infos = group(siblings)
        chosen = select_series(infos, series, echo, where=f"{p} (series of this file in {folder})")
        return read_stack(chosen)
    infos = group(frames)
    return read_stack(select_series(infos, series, echo, where=str(p)))


def save_volume(volume: Volume, path: str | os.PathLike, *, array: Any = None, dtype: Any = None) -> Path:
    """Write ``volume`` (or ``array`` on its grid) to NIfTI atomically; returns the path."""
    import nibabel as nib

    out = Path(path)
    if not str(out).endswith((".nii", ".nii.gz")):
        raise ParameterError(f"{out}: output must end in .nii or .nii.gz")
    img = volume.to_nifti(array, dtype=dtype)
    with atomic_path(out) as tmp:
        nib.save(img, str(tmp))
    return out


def save_mask(mask: Any, like: Volume, path: str | os.PathLike) -> Path:
    """Write a bool or label array to NIfTI on exactly the source grid of ``like``.

    The file has ``like``'s shape (as NIfTI's column, row, slice) and its affine in
    both sform and qform, so nibabel, ITK-SNAP and 3D Slicer overlay it on the source
    scan voxel for voxel. Booleans are stored as uint8; labels as the smallest of
    uint8/uint16/int32 that holds them. Written atomically (temp file, then rename).
    """
    arr = np.asarray(mask)
    if arr.shape != like.shape:
        raise ParameterError(f"mask shape {arr.shape} differs from the volume's {like.shape}; it must be on the same grid")
    if arr.dtype == bool:
        dtype = np.uint8
    elif np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0:
            raise ParameterError(f"mask has negative labels (min {lo}); labels must be >= 0")
        dtype = np.uint8 if hi < 256 else (np.uint16 if hi < 65536 else np.int32)
    else:
        raise ParameterError(f"mask must be bool or integer labels, not {arr.dtype}")
    return save_volume(like, path, array=arr, dtype=dtype)
