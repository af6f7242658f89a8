"""Volume <-> SimpleITK image, and RAS <-> LPS transforms: the one place they are converted.

bmeviz: ``Volume.array`` axes ``(slice, row, column)``; ``Volume.affine`` maps those indices
to RAS mm. SimpleITK: ``GetArrayFromImage`` gives ``[z, y, x]`` for the index
``(x, y, z)``, and the image maps that index to LPS mm with
``origin + direction @ diag(spacing) @ (x, y, z)``. So the bmeviz array is the SimpleITK
array as it is (``z = slice``, ``y = row``, ``x = column``), and the geometry is

    M_lps = F @ A[:3, :3] @ P,   spacing = column norms of M_lps,
    direction = M_lps / spacing,  origin = F @ A[:3, 3],

with ``F = diag(-1, -1, 1)`` (RAS -> LPS) and ``P`` the reversal of the three axes
(``(x, y, z) -> (slice, row, column)``). A rigid transform that maps LPS points
``p -> R p + t`` maps RAS points ``q -> F R F q + F t``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..volume import Volume

__all__ = ["to_sitk", "from_sitk", "LPS", "transform_to_ras_matrix", "ras_matrix_to_transform", "require_sitk"]

#: RAS <-> LPS (its own inverse).
LPS = np.diag([-1.0, -1.0, 1.0])
_REV = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)


def require_sitk():
    """The SimpleITK module, or a clear :class:`~bmeviz.BmevizError` saying how to install it."""
    try:
        import SimpleITK
    except ImportError:
        from ..errors import BmevizError

        raise BmevizError("the follow-up needs SimpleITK for registration: pip install 'bmeviz[followup]' "
                          "(or pip install SimpleITK)") from None
    return SimpleITK


def to_sitk(volume: Volume, array: Any = None, *, dtype: Any = np.float32):
    """A ``SimpleITK.Image`` of ``volume`` (or of ``array`` on its grid), LPS geometry.

    Examples
    --------
    >>> import numpy as np
    >>> vol = Volume(np.zeros((4, 5, 6)), np.diag([3.0, 0.5, 0.6, 1.0]))
    >>> img = to_sitk(vol)
    >>> img.GetSize(), img.GetSpacing()
    ((6, 5, 4), (0.6, 0.5, 3.0))
    """
    import SimpleITK as sitk

    data = volume.array if array is None else np.asarray(array)
    if data.shape != volume.shape:
        from ..errors import ParameterError

        raise ParameterError(f"array shape {data.shape} differs from the volume's {volume.shape}")
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    img = sitk.GetImageFromArray(np.ascontiguousarray(data))
    m = LPS @ volume.affine[:3, :3] @ _REV
    spacing = np.linalg.norm(m, axis=0)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (m / spacing).reshape(-1)])
    img.SetOrigin([float(v) for v in LPS @ volume.affine[:3, 3]])
    return img


def from_sitk(image, *, metadata: dict | None = None) -> Volume:
    """The :class:`~bmeviz.Volume` of a 3D ``SimpleITK.Image`` (inverse of :func:`to_sitk`)."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(image)
    d = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    m = d * np.array(image.GetSpacing(), dtype=float)  # scales the columns
    aff = np.eye(4)
    aff[:3, :3] = LPS @ m @ _REV
    aff[:3, 3] = LPS @ np.array(image.GetOrigin(), dtype=float)
    return Volume(arr, aff, metadata)


def transform_to_ras_matrix(transform) -> np.ndarray:
    """4x4 matrix of an affine-like SimpleITK transform in RAS mm (same direction of mapping).

    ITK transforms map points of the fixed (baseline) space to the moving (follow-up) space.
    """
    import SimpleITK as sitk

    tx = transform
    if isinstance(tx, sitk.CompositeTransform) or tx.GetName() == "CompositeTransform":
        tx = sitk.CompositeTransform(tx)
        tx.FlattenTransform()
    # evaluate the transform at 4 points: exact for any affine map
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float) * 100.0
    out = np.array([tx.TransformPoint([float(v) for v in p]) for p in pts])
    t = out[0]
    r = (out[1:] - t).T / 100.0
    m = np.eye(4)
    m[:3, :3] = LPS @ r @ LPS
    m[:3, 3] = LPS @ t
    return m


def ras_matrix_to_transform(matrix: Any):
    """A ``SimpleITK.AffineTransform`` (LPS) of a 4x4 RAS matrix (inverse of :func:`transform_to_ras_matrix`)."""
    import SimpleITK as sitk

    m = np.asarray(matrix, dtype=float)
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([float(v) for v in (LPS @ m[:3, :3] @ LPS).reshape(-1)])
    tx.SetTranslation([float(v) for v in LPS @ m[:3, 3]])
    return tx
