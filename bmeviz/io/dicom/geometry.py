"""Stack geometry: sort slices along the normal, check they form a volume, build the affine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InconsistentGeometryError, NotAVolumeError
from ...volume import plane_of
from .headers import Frame, _float

if TYPE_CHECKING:
    from .series import SeriesInfo

#: Fewer slices than this do not make a volume.
MIN_SLICES = 3
#: Relative and absolute tolerance on the slice increment (uniform spacing check).
SPACING_RTOL, SPACING_ATOL = 0.02, 0.01
#: Largest angle (degrees) between slice steps and the slice normal before it is gantry tilt.
TILT_TOLERANCE_DEG = 0.5
#: Matrix/orientation rounding used when grouping.
_IOP_DECIMALS = 4

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _orientation_key(f: Frame) -> tuple | None:
    return None if f.orientation is None else tuple(np.round(f.orientation, _IOP_DECIMALS))


def _normal(orientation: Sequence[float]) -> np.ndarray:
    o = np.asarray(orientation, dtype=float)
    n = np.cross(o[:3], o[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n



def common_folder(files: Sequence[str | os.PathLike]) -> str:
    """The folder holding all ``files`` (the file itself for one), always a real path.

    ``os.path.commonpath`` of names relative to the working folder (``IM1.dcm``,
    ``IM2.dcm``) is ``""``, and it refuses a mix of absolute and relative names; then the
    absolute common folder is given.
    """
    names = [os.fspath(f) for f in files]
    if not names:
        return os.getcwd()
    if len(names) == 1:
        return names[0]
    try:
        common = os.path.commonpath(names)
    except ValueError:  # absolute and relative names mixed
        common = ""
    return common or os.path.commonpath([os.path.abspath(n) for n in names])


def _where(series: SeriesInfo) -> str:
    folder = common_folder(series.files)
    desc = f" ({series.description})" if series.description else ""
    return f"{folder}: series {series.number if series.number is not None else '?'}{desc}"


def check_geometry(series: SeriesInfo) -> tuple[list[Frame], np.ndarray, dict]:
    """Sort a stack and check it forms a volume; returns (sorted frames, LPS affine, facts).

    Raises
    ------
    NotAVolumeError
        Too few slices, images without position, all images at one position, duplicates, Siemens mosaics.
    InconsistentGeometryError
        Mixed orientations or pixel spacing, uneven slice increment (missing slices), gantry tilt.
    """
    frames = list(series.frames)
    where = _where(series)
    mosaic = next((f for f in frames if f.mosaic), None)
    if mosaic is not None:
        count = f"{mosaic.mosaic} slices" if mosaic.mosaic > 0 else "several slices"
        raise NotAVolumeError(
            f"{where}: a Siemens mosaic ({count} tiled in each {mosaic.rows} x {mosaic.columns} image, e.g. "
            f"{mosaic.path}), not supported: bmeviz does not un-tile mosaics; convert the series with dcm2niix "
            "(which un-tiles it from the CSA header) and load the NIfTI"
        )
    missing = [f.path for f in frames if f.position is None or f.orientation is None or f.pixel_spacing is None]
    if missing:
        raise NotAVolumeError(
            f"{where}: {len(missing)} image(s) lack ImagePositionPatient, ImageOrientationPatient or "
            f"PixelSpacing (e.g. {missing[0]}), so their place in space is unknown; bmeviz cannot build "
            "a volume from them"
        )
    orientations = {_orientation_key(f) for f in frames}
    if len(orientations) > 1:
        planes = sorted({plane_of(_normal(o)) for o in orientations})
        raise InconsistentGeometryError(
            f"{where}: mixed slice orientations ({len(orientations)} different ImageOrientationPatient, "
            f"{', '.join(planes)}) in one series; pick one stack with series='<key>' from bmeviz.list_series"
        )
    spacings = {tuple(np.round(f.pixel_spacing, 4)) for f in frames}
    if len(spacings) > 1:
        raise InconsistentGeometryError(f"{where}: mixed PixelSpacing {sorted(spacings)} in one series")
    if len(frames) < MIN_SLICES:
        raise NotAVolumeError(
            f"{where}: too few slices ({len(frames)}); a volume needs at least {MIN_SLICES}"
        )
    orientation = np.asarray(frames[0].orientation, dtype=float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    if abs(np.dot(row_dir, col_dir)) > 1e-3 or not (
        np.isclose(np.linalg.norm(row_dir), 1, atol=1e-3) and np.isclose(np.linalg.norm(col_dir), 1, atol=1e-3)
    ):
        raise InconsistentGeometryError(
            f"{where}: ImageOrientationPatient {list(orientation)} is not two orthogonal unit vectors"
        )
    normal = _normal(orientation)
    positions = np.array([f.position for f in frames], dtype=float)
    d = positions @ normal
    order = np.argsort(d, kind="stable")
    frames = [frames[i] for i in order]
    positions, d = positions[order], d[order]
    steps = np.diff(d)
    n_unique = 1 + int(np.sum(steps > 1e-3))
    if n_unique == 1:
        raise NotAVolumeError(
            f"{where}: not a volume: all {len(frames)} images lie at one position (a time series, "
            "repeated acquisitions or derived images of one slice)"
        )
    if n_unique < len(frames):
        raise NotAVolumeError(
            f"{where}: not a volume: {len(frames)} images at only {n_unique} positions (duplicate "
            "slices; several acquisitions, echoes or time points mixed in one series?)"
        )
    if n_unique < MIN_SLICES:
        raise NotAVolumeError(f"{where}: too few slices ({n_unique}); a volume needs at least {MIN_SLICES}")
    step = float(np.median(steps))
    bad = np.abs(steps - step) > max(SPACING_ATOL, SPACING_RTOL * step)
    if np.any(bad):
        i = int(np.argmax(bad))
        ratio = steps[i] / step
        hint = (f"about {round(ratio) - 1} missing slice(s)" if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1
                else "irregular positions")
        raise InconsistentGeometryError(
            f"{where}: uneven slice increment: {steps[i]:.3f} mm between slices {i} and {i + 1} where "
            f"{step:.3f} mm is usual ({hint}; files {Path(frames[i].path).name} and "
            f"{Path(frames[i + 1].path).name}); bmeviz will not interpolate a volume with gaps"
        )
    total = positions[-1] - positions[0]
    along = float(np.dot(total, normal))
    across = float(np.linalg.norm(total - along * normal))
    tilt = float(np.degrees(np.arctan2(across, abs(along))))
    if tilt > TILT_TOLERANCE_DEG:
        raise InconsistentGeometryError(
            f"{where}: gantry tilt / sheared stack: slices step {tilt:.1f} degrees off the slice normal; "
            "resample it (e.g. dcm2niix's tilt correction) before measuring"
        )
    ps = frames[0].pixel_spacing
    if not (ps[0] > 0 and ps[1] > 0):
        raise InconsistentGeometryError(
            f"{where}: PixelSpacing {list(ps)} is not positive (e.g. {frames[0].path}); the header is corrupt"
        )
    affine = np.eye(4)
    affine[:3, 0] = total / (len(frames) - 1)
    affine[:3, 1] = col_dir * ps[0]
    affine[:3, 2] = row_dir * ps[1]
    affine[:3, 3] = positions[0]
    facts = {"slice_spacing_mm": step, "n_slices": len(frames)}
    thickness = _float(frames[0].header.get("SliceThickness"))
    if thickness is not None and abs(thickness - step) > max(SPACING_ATOL, SPACING_RTOL * step):
        facts["slice_thickness_mm"] = thickness
        facts["note"] = (f"slice spacing from positions is {step:.3f} mm; SliceThickness says {thickness:g} mm "
                         "(gap or overlap); positions were used")
    return frames, affine, facts

