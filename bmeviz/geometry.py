"""Grids: when two volumes share one, and putting a mask drawn on another grid onto the image.

A *grid* is a shape and an affine (index ``(slice, row, column)`` to RAS mm). Two grids
are the same when they have the same shape and every corner of the volume lands within
``tol_voxels`` voxels of the same place (default :data:`GRID_TOLERANCE_VOXELS`, 0.1 voxel):
headers that were rounded differently (a NIfTI qform is stored as a float32 quaternion,
an sform as float32 rows) differ by micrometres and still describe one grid. The
tolerance is in voxels, not mm, because what matters is whether a voxel could land in
its neighbour: nearest-neighbour resampling with a shift under half a voxel gives the
same labels anyway, so 0.1 voxel leaves a wide margin.

A mask on another grid of the same frame of reference (another series of the same
session, a mask saved cropped or at another resolution) is resampled onto the image by
nearest neighbour (labels stay labels) with a warning that says so; when both volumes
know their DICOM FrameOfReferenceUID and the UIDs differ, the mask is refused (the
patient's coordinates are not comparable without registration).

The same image stored in another array orientation (rows, columns or slices in another order)
is brought into a given one by transposes and flips only (:func:`orientation_like`,
:func:`turned`, :func:`unturn`).

>>> import numpy as np
>>> from bmeviz import Volume
>>> from bmeviz.geometry import same_grid, to_grid, grid_deviation
>>> image = Volume(np.zeros((4, 8, 8), np.float32), np.diag([3.0, 0.5, 0.5, 1.0]))
>>> nudged = np.diag([3.0, 0.5, 0.5, 1.0]); nudged[0, 3] = 0.0036  # 3.6 micrometres
>>> same_grid(image, Volume(np.zeros((4, 8, 8)), nudged))
True
>>> coarse = Volume(np.ones((2, 4, 4), np.uint8), np.diag([6.0, 1.0, 1.0, 1.0]))
>>> same_grid(image, coarse)
False
>>> to_grid(coarse, image).shape
(4, 8, 8)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import InconsistentGeometryError, ParameterError, warn
from .volume import Volume

__all__ = [
    "directions", "orientation_like", "turn", "unturn", "turned", "turned_index",
    "GRID_TOLERANCE_VOXELS",
    "grid_deviation",
    "same_grid",
    "to_grid",
    "mask_onto",
    "grid_notes",
    "frame_of_reference",
]

#: Two grids whose corners agree to this fraction of a voxel are the same grid.
GRID_TOLERANCE_VOXELS = 0.1

_NOTES: contextvars.ContextVar[list | None] = contextvars.ContextVar("bmeviz_grid_notes", default=None)


def _grid(v: Any, name: str) -> tuple[tuple[int, int, int], np.ndarray]:
    if isinstance(v, Volume):
        return v.shape, v.affine
    if isinstance(v, tuple) and len(v) == 2:
        shape, affine = v
        aff = np.asarray(affine, dtype=float)
        if aff.shape != (4, 4) or len(tuple(shape)) != 3:
            raise ParameterError(f"{name} must be a Volume or (shape, 4x4 affine); got shape {shape} and affine {aff.shape}")
        return tuple(int(s) for s in shape), aff
    raise ParameterError(f"{name} must be a bmeviz.Volume or (shape, affine); got {type(v).__name__}")


def _corners(shape: tuple[int, int, int]) -> np.ndarray:
    """The 8 corner voxel centres of a grid as homogeneous index columns (4, 8)."""
    hi = np.maximum(np.asarray(shape) - 1, 0)
    c = np.array([[i, j, k] for i in (0, hi[0]) for j in (0, hi[1]) for k in (0, hi[2])], dtype=float)
    return np.vstack([c.T, np.ones(8)])


def grid_deviation(a: Any, b: Any) -> dict:
    """How far apart two grids are at the corners of the volume.

    Parameters
    ----------
    a, b : Volume or (shape, affine)
        The two grids.

    Returns
    -------
    dict
        ``voxels``: the largest distance, in voxel indices of the other grid, between where a
        corner of one grid lands and the same corner index of the other (both ways);
        ``mm``: the largest distance in millimetres between corresponding corners;
        ``same_shape``: whether the shapes agree.
    """
    shape_a, aff_a = _grid(a, "a")
    shape_b, aff_b = _grid(b, "b")
    worst_vox, worst_mm = 0.0, 0.0
    for (s1, a1), (_, a2) in (((shape_a, aff_a), (shape_b, aff_b)), ((shape_b, aff_b), (shape_a, aff_a))):
        c = _corners(s1)
        mm1 = a1 @ c
        idx2 = np.linalg.solve(a2, mm1)
        worst_vox = max(worst_vox, float(np.abs(idx2[:3] - c[:3]).max()))
        worst_mm = max(worst_mm, float(np.linalg.norm((a2 @ c - mm1)[:3], axis=0).max()))
    return {"voxels": worst_vox, "mm": worst_mm, "same_shape": shape_a == shape_b}


def same_grid(a: Any, b: Any, *, tol_voxels: float = GRID_TOLERANCE_VOXELS) -> bool:
    """True when ``a`` and ``b`` have one shape and their corners agree to ``tol_voxels`` voxels.

    Parameters
    ----------
    a, b : Volume or (shape, affine)
        The two grids.
    tol_voxels : float
        Largest corner deviation, in voxels (index units of either grid), still called the
        same grid.
    """
    tol = _tolerance(tol_voxels)
    d = grid_deviation(a, b)
    return bool(d["same_shape"] and d["voxels"] <= tol)


def _tolerance(tol_voxels: Any) -> float:
    try:
        tol = float(tol_voxels)
    except (TypeError, ValueError):
        raise ParameterError(f"tol_voxels must be a number of voxels, not {tol_voxels!r:.40}") from None
    if not (0 <= tol < 0.5):
        raise ParameterError(f"tol_voxels must be at least 0 and below half a voxel; got {tol_voxels!r}")
    return tol


def frame_of_reference(v: Volume) -> str | None:
    """The DICOM FrameOfReferenceUID a volume came with, or None when unknown (NIfTI, arrays)."""
    uid = v.metadata.get("frame_of_reference_uid")
    return str(uid) if uid else None


def to_grid(volume: Volume, target: Volume, *, order: int = 0, cval: float = 0) -> Volume:
    """Resample ``volume`` onto ``target``'s grid (shape and affine), in patient millimetres.

    Parameters
    ----------
    volume : Volume
        What to resample (a mask or label image: ``order=0``, the default, keeps labels).
    target : Volume
        The grid to land on (usually the image being measured).
    order : int
        Spline order: 0 nearest neighbour (labels, masks), 1 linear (intensities).
    cval : float
        Value outside ``volume``.

    Returns
    -------
    Volume
        On ``target``'s grid, ``volume``'s dtype (bool stays bool) and metadata plus
        ``resampled_from`` (the source shape and affine).

    Raises
    ------
    InconsistentGeometryError
        Both volumes know their DICOM FrameOfReferenceUID and the UIDs differ.
    """
    from scipy import ndimage as ndi

    if not isinstance(volume, Volume) or not isinstance(target, Volume):
        raise ParameterError("to_grid takes two bmeviz.Volume objects (what to resample, and the target grid)")
    if order not in (0, 1, 2, 3):
        raise ParameterError(f"order must be 0 (nearest, labels), 1 (linear) or 3 (cubic); got {order!r}")
    _check_frames(volume, target, "volume")
    # index of target -> mm -> index of the source
    m = np.linalg.solve(volume.affine, target.affine)
    arr = volume.array
    src = arr.view(np.uint8) if arr.dtype == bool else arr
    if order > 0 and src.dtype.kind != "f":
        src = src.astype(np.float32)
    out = ndi.affine_transform(src, m[:3, :3], offset=m[:3, 3], output_shape=target.shape, order=order,
                               mode="grid-constant", cval=cval, prefilter=order > 1)
    if arr.dtype == bool:
        out = out.astype(bool)
    md = {**volume.metadata, "resampled_from": {"shape": list(volume.shape),
                                                "affine": np.round(volume.affine, 6).tolist(), "order": order}}
    return Volume(out, target.affine, md)


def _check_frames(volume: Volume, target: Volume, name: str) -> None:
    fa, fb = frame_of_reference(volume), frame_of_reference(target)
    if fa and fb and fa != fb:
        raise InconsistentGeometryError(
            f"{name} is in another frame of reference (DICOM FrameOfReferenceUID {fa}) than the image ({fb}): "
            "its coordinates are not the image's (another session or patient position); register it to the "
            "image first, bmeviz will not resample across frames of reference"
        )


def mask_onto(mask: Volume, image: Volume, *, name: str = "mask", note_as: str | None = None,
              tol_voxels: float = GRID_TOLERANCE_VOXELS) -> tuple[np.ndarray, dict | None]:
    """``mask``'s voxels on ``image``'s grid, and a note of what was done (None: nothing).

    * same grid within ``tol_voxels``: the array as it is; when the headers differ at all,
      the note says by how much (it goes to provenance, no warning);
    * another grid of the same (or an unknown) frame of reference: resampled by nearest
      neighbour, with a :class:`~bmeviz.BmevizWarning` that says so and how much of the
      mask's volume lands inside the image;
    * different DICOM frames of reference: refused.

    ``name`` is used in messages (it may name the file); the note names the mask by
    ``note_as`` (default ``name``), since provenance carries no paths.
    Inside :func:`grid_notes`, the note is also recorded there (``segment`` puts it in
    provenance).
    """
    tol = _tolerance(tol_voxels)
    if not isinstance(mask, Volume) or not isinstance(image, Volume):
        raise ParameterError(f"{name}: mask_onto takes two bmeviz.Volume objects")
    _check_frames(mask, image, name)
    d = grid_deviation(mask, image)
    note: dict | None = None
    if d["same_shape"] and d["voxels"] <= tol:
        arr = mask.array
        if d["mm"] > 1e-9:
            note = {"mask": note_as or name, "action": "same grid within tolerance", "tolerance_voxels": tol,
                    "deviation_voxels": round(d["voxels"], 6), "deviation_mm": round(d["mm"], 6)}
    else:
        moved = to_grid(mask, image, order=0)
        arr = moved.array
        before = float(np.count_nonzero(np.nan_to_num(mask.array))) * mask.voxel_volume_mm3 / 1000
        after = float(np.count_nonzero(np.nan_to_num(arr))) * image.voxel_volume_mm3 / 1000
        frame = "the same frame of reference" if frame_of_reference(mask) else "frame of reference unknown (NIfTI)"
        note = {"mask": note_as or name, "action": "resampled onto the image grid (nearest neighbour)",
                "tolerance_voxels": tol, "deviation_voxels": round(d["voxels"], 4), "deviation_mm": round(d["mm"], 4),
                "source_shape": list(mask.shape), "source_spacing_mm": [round(s, 4) for s in mask.spacing],
                "volume_ml_before": round(before, 4), "volume_ml_after": round(after, 4)}
        warn(f"{name} is on another grid than the image ({mask.shape} voxels of "
             f"{' x '.join(f'{s:.3g}' for s in mask.spacing)} mm vs {image.shape} of "
             f"{' x '.join(f'{s:.3g}' for s in image.spacing)} mm; corners up to {d['voxels']:.2f} voxels / "
             f"{d['mm']:.2f} mm apart; {frame}): resampled onto the image by nearest neighbour "
             f"({before:.2f} mL before, {after:.2f} mL on the image grid)", stacklevel=4)
    notes = _NOTES.get()
    if note is not None and notes is not None:
        notes.append(note)
    return arr, note


@contextlib.contextmanager
def grid_notes() -> Iterator[list]:
    """Collect the notes of every :func:`mask_onto` call inside the block (a list of dicts)."""
    got: list = []
    token = _NOTES.set(got)
    try:
        yield got
    finally:
        _NOTES.reset(token)


# ----------------------------------------------------------------------------- array orientation
# The same image can be stored with its rows, columns or slices in another order (another converter,
# another vendor). orientation_like finds the transpose and flips that bring a volume's array axes
# closest to given directions; turned applies them, exactly (no resampling), and unturn undoes them on
# an array of the turned grid. Region assist turns a scan into its atlases' orientation this way.
def directions(volume: Volume) -> np.ndarray:
    a = np.asarray(volume.affine, float)[:3, :3]
    return a / np.linalg.norm(a, axis=0)


def orientation_like(volume: Volume, ref: np.ndarray) -> tuple | None:
    """The transpose and flips (``(axes, flipped)``: per new axis, the old axis and whether it runs
    backwards) that bring ``volume``'s array axes closest to the directions ``ref``; None if none
    is needed."""
    from itertools import permutations, product

    d = directions(volume)
    best = max(((axes, signs) for axes in permutations(range(3)) for signs in product((1, -1), repeat=3)),
               key=lambda c: float(np.trace(ref.T @ (d[:, list(c[0])] * np.asarray(c[1])))))
    if best == ((0, 1, 2), (1, 1, 1)):
        return None
    return best[0], tuple(s < 0 for s in best[1])


def turn(a: np.ndarray, how: tuple) -> np.ndarray:
    axes, flipped = how
    out = np.transpose(np.asarray(a), axes)
    flips = tuple(k for k, f in enumerate(flipped) if f)
    return np.ascontiguousarray(np.flip(out, flips) if flips else out)


def unturn(a: np.ndarray, how: tuple) -> np.ndarray:
    axes, flipped = how
    flips = tuple(k for k, f in enumerate(flipped) if f)
    a = np.flip(a, flips) if flips else a
    return np.ascontiguousarray(np.transpose(a, np.argsort(axes)))


def turned(volume: Volume, how: tuple) -> Volume:
    """``volume`` with its array turned (:func:`turn`) and its affine to match: the same image in
    the world."""
    axes, flipped = how
    A = np.asarray(volume.affine, float)
    B = np.eye(4)
    B[:3, 3] = A[:3, 3]
    for k, (ax, f) in enumerate(zip(axes, flipped)):
        B[:3, k] = -A[:3, ax] if f else A[:3, ax]
        if f:
            B[:3, 3] += A[:3, ax] * (volume.shape[ax] - 1)
    return Volume(turn(volume.array, how), B, volume.metadata)


def turned_index(idx: np.ndarray, how: tuple, shape) -> np.ndarray:
    axes, flipped = how
    idx = np.atleast_2d(np.asarray(idx))
    return np.stack([shape[ax] - 1 - idx[:, ax] if f else idx[:, ax] for ax, f in zip(axes, flipped)], 1)
