"""napari writer: a Labels layer to NIfTI (``.nii.gz``) on the grid of its source scan.

The geometry comes from the layer's ``metadata["bmeviz"]`` (the source's RAS affine, set
by the bmeviz reader and widget); a labels layer without it is written with the affine
implied by its ``scale`` and ``translate``. The file is written by
:func:`bmeviz.save_mask`: same shape and affine (sform and qform) as the source, so it
overlays the scan voxel for voxel in nibabel, ITK-SNAP and 3D Slicer.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..volume import Volume
from ._layers import layer_affine

__all__ = ["write_labels"]


def write_labels(path: str | os.PathLike, data: Any, meta: dict) -> list[str]:
    """Write a labels layer's ``data`` to ``path`` (``.nii.gz`` added if no NIfTI extension)."""
    from ..io import save_mask

    out = os.fspath(path)
    if not out.lower().endswith((".nii", ".nii.gz")):
        out += ".nii.gz"
    if isinstance(data, (list, tuple)):  # multiscale labels: the full-resolution level
        data = data[0]
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise ParameterError(f"{out}: bmeviz writes 3D label volumes; this layer has shape {arr.shape}")
    affine = layer_affine(meta.get("metadata"), meta.get("scale", (1.0, 1.0, 1.0)),
                          meta.get("translate", (0.0, 0.0, 0.0)), arr.shape)
    # a zero-strided stand-in: save_mask needs the grid (shape and affine), not the voxels
    like = Volume(np.broadcast_to(np.uint8(0), arr.shape), affine)
    return [str(save_mask(arr, like, out))]
