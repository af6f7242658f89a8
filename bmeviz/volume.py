"""The :class:`Volume` type: a 3D array, its geometry, and what is known about it.

Geometry is stated once, in a 4x4 ``affine`` that maps array indices, in the order
``(slice, row, column)``, to patient millimetres in RAS (x towards the patient's
Right, y Anterior, z Superior), the frame of NIfTI's sform. Spacing, orientation codes and the
acquisition plane are computed from the affine and never stored twice.

NIfTI arrays are stored as ``(i, j, k)`` = ``(column, row, slice)``; bmeviz holds them
as ``(slice, row, column)``: the two differ by a reversal of the axes, which
:meth:`Volume.to_nifti` and :meth:`Volume.from_nifti` undo exactly, so a mask written
by bmeviz lands on its source grid voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import ParameterError

__all__ = ["Volume", "REVERSE_AXES"]

#: Index permutation between bmeviz's (slice, row, column) and NIfTI's (i, j, k).
#: It is its own inverse: ``A_nifti = A_volume @ REVERSE_AXES`` and back.
REVERSE_AXES = np.array(
    [[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float
)

_PLANES = {0: "sagittal", 1: "coronal", 2: "axial"}


def _as_affine(affine: Any) -> np.ndarray:
    aff = np.array(affine, dtype=float)  # a copy: the caller's array stays writeable
    if aff.shape != (4, 4):
        raise ParameterError(f"affine must be 4x4, got shape {aff.shape}")
    if not np.all(np.isfinite(aff)):
        raise ParameterError("affine has NaN or infinite entries")
    if not np.allclose(aff[3], [0, 0, 0, 1]):
        raise ParameterError(f"affine's last row must be [0, 0, 0, 1], got {aff[3]}")
    if abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise ParameterError("affine is singular (a zero or degenerate voxel size)")
    return aff


class Volume:
    """A 3D image with its geometry and metadata.

    Parameters
    ----------
    array : (S, R, C) array_like
        Voxel values, axes ``(slice, row, column)``.
    affine : (4, 4) array_like
        Maps ``(slice, row, column, 1)`` indices to RAS millimetres.
    metadata : mapping, optional
        Series description, sequence type, vendor, rescale decisions, source files...
        Kept JSON-serialisable by the loaders.

    Examples
    --------
    >>> import numpy as np
    >>> from bmeviz import Volume
    >>> vol = Volume(np.zeros((10, 64, 64), np.float32), np.diag([3.0, 0.5, 0.5, 1.0]))
    >>> vol.spacing
    (3.0, 0.5, 0.5)
    >>> vol.orientation
    ('R', 'A', 'S')
    >>> vol.index_to_ras([1, 2, 4]).tolist()
    [3.0, 1.0, 2.0]
    >>> vol.ras_to_index([3.0, 1.0, 2.0]).tolist()
    [1.0, 2.0, 4.0]
    """

    __slots__ = ("_array", "_affine", "_metadata")

    def __init__(self, array: Any, affine: Any, metadata: Mapping | None = None) -> None:
        arr = np.asarray(array)
        if arr.ndim != 3:
            raise ParameterError(
                f"a Volume is 3D (slice, row, column); got an array of shape {arr.shape}"
            )
        if 0 in arr.shape:
            raise ParameterError(f"a Volume cannot be empty; got shape {arr.shape}")
        self._array = arr
        self._affine = _as_affine(affine)
        self._affine.setflags(write=False)
        self._metadata = dict(metadata or {})

    # -- data ---------------------------------------------------------------------
    @property
    def array(self) -> np.ndarray:
        """Voxel values, axes ``(slice, row, column)``."""
        return self._array

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix from ``(slice, row, column)`` indices to RAS mm (read-only)."""
        return self._affine

    @property
    def metadata(self) -> dict:
        """What the loader learnt: description, sequence, vendor, rescale, sources..."""
        return self._metadata

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self._array.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    @property
    def nbytes(self) -> int:
        return int(self._array.nbytes)

    # -- geometry, all derived from the affine ---------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (slice, row, column)."""
        return tuple(float(s) for s in np.sqrt((self._affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³ (|det| of the affine's 3x3 part)."""
        return float(abs(np.linalg.det(self._affine[:3, :3])))

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Anatomical direction each array axis points to, e.g. ``('S', 'P', 'R')``."""
        import nibabel.orientations as nio

        return tuple(nio.aff2axcodes(self._affine))  # type: ignore[return-value]

    @property
    def plane(self) -> str:
        """Acquisition plane from the slice normal: axial, coronal, sagittal or oblique-*."""
        return plane_of(self._affine[:3, 0])

    def index_to_ras(self, index: Any) -> np.ndarray:
        """Map ``(slice, row, column)`` indices (one or ``(N, 3)``) to RAS mm."""
        idx = np.asarray(index, dtype=float)
        if idx.shape[-1:] != (3,):
            raise ParameterError(f"indices must have 3 values (slice, row, column); got shape {idx.shape}")
        return idx @ self._affine[:3, :3].T + self._affine[:3, 3]

    def ras_to_index(self, ras: Any, *, round: bool = False) -> np.ndarray:
        """Map RAS mm points (one or ``(N, 3)``) to fractional (or rounded) indices."""
        xyz = np.asarray(ras, dtype=float)
        if xyz.shape[-1:] != (3,):
            raise ParameterError(f"RAS points must have 3 values (x, y, z); got shape {xyz.shape}")
        inv = np.linalg.inv(self._affine)
        idx = xyz @ inv[:3, :3].T + inv[:3, 3]
        if round:
            return np.rint(idx).astype(int)
        return idx

    def contains_index(self, index: Any) -> bool:
        """True if the integer index ``(slice, row, column)`` lies inside the array."""
        idx = np.asarray(index)
        return bool(idx.shape == (3,) and np.all(idx >= 0) and np.all(idx < np.array(self.shape)))

    # -- conversions -----------------------------------------------------------------
    def with_array(self, array: Any, **metadata: Any) -> "Volume":
        """A Volume on the same grid holding ``array`` (same shape required)."""
        arr = np.asarray(array)
        if arr.shape != self.shape:
            raise ParameterError(f"array shape {arr.shape} differs from the volume's {self.shape}")
        return Volume(arr, self._affine.copy(), {**self._metadata, **metadata})

    def to_nifti(self, array: Any | None = None, *, dtype: Any = None):
        """A ``nibabel.Nifti1Image`` of this volume (or of ``array`` on its grid).

        The array is written as NIfTI's ``(column, row, slice)``; sform and qform both
        carry the affine (code 1, scanner), so nibabel, ITK-SNAP and 3D Slicer place it
        exactly where the source scan is.
        """
        import nibabel as nib

        data = self._array if array is None else np.asarray(array)
        if data.shape != self.shape:
            raise ParameterError(f"array shape {data.shape} differs from the volume's {self.shape}")
        if dtype is not None:
            data = data.astype(dtype, copy=False)
        img = nib.Nifti1Image(data.transpose(2, 1, 0), self._affine @ REVERSE_AXES)
        img.set_sform(self._affine @ REVERSE_AXES, code=1)
        img.set_qform(self._affine @ REVERSE_AXES, code=1)
        img.header.set_xyzt_units("mm", "sec")
        return img

    @classmethod
    def from_nifti(cls, img, *, metadata: Mapping | None = None, array: Any | None = None) -> "Volume":
        """The Volume of a 3D ``nibabel`` image: axes reversed, affine permuted to match."""
        data = np.asanyarray(img.dataobj) if array is None else np.asarray(array)
        if data.ndim != 3:
            raise ParameterError(f"from_nifti needs a 3D image; got shape {data.shape}")
        return cls(data.transpose(2, 1, 0), img.affine @ REVERSE_AXES, metadata)

    # -- display ----------------------------------------------------------------------
    def __repr__(self) -> str:
        sp = "x".join(f"{s:.3g}" for s in self.spacing)
        seq = self._metadata.get("sequence") or "?"
        desc = self._metadata.get("description")
        mem = self.nbytes
        unit = "MB" if mem >= 1e6 else "kB"
        mem_s = f"{mem / 1e6:.1f} MB" if unit == "MB" else f"{mem / 1e3:.1f} kB"
        parts = [
            f"shape={self.shape}",
            f"spacing={sp} mm",
            f"orientation={''.join(self.orientation)}",
            f"plane={self.plane}",
            f"dtype={self.dtype}",
            f"sequence={seq}",
        ]
        if desc:
            parts.append(f"description={desc!r}")
        parts.append(f"memory={mem_s}")
        return f"Volume({', '.join(parts)})"

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._array, dtype=dtype)


def plane_of(normal: Any, *, tolerance_deg: float = 10.0) -> str:
    """Name the plane whose normal is ``normal`` (any scale, RAS or LPS alike).

    Within ``tolerance_deg`` of a main axis the plane is ``axial``, ``coronal`` or
    ``sagittal``; beyond it, ``oblique-<nearest>``.
    """
    n = np.abs(np.asarray(normal, dtype=float))
    norm = np.linalg.norm(n)
    if norm == 0:
        return "unknown"
    n = n / norm
    axis = int(np.argmax(n))
    name = _PLANES[axis]
    if n[axis] < np.cos(np.deg2rad(tolerance_deg)):
        return f"oblique-{name}"
    return name
