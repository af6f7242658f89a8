"""Small array helpers shared by the core: bounding boxes, balls, spacing and three-number checks.

>>> import numpy as np
>>> m = np.zeros((4, 5, 6), bool); m[1, 2:4, 3] = True
>>> bbox(m)
(slice(1, 2, None), slice(2, 4, None), slice(3, 4, None))
>>> parse_triple("12, 140,96", "seed")
(12.0, 140.0, 96.0)
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .errors import ParameterError

__all__ = ["bbox", "pad_box", "ball", "check_spacing", "parse_triple"]


def bbox(mask: np.ndarray, *, margin: int = 0) -> tuple[slice, slice, slice]:
    """Bounding box of the True voxels of a 3D mask grown by ``margin`` voxels (clipped);
    a 1-voxel box at the origin when the mask is empty.

    The slices holding voxels are found first (a fast reduction over the whole mask); the
    rows and columns only within them, so a small mask in a big volume costs one pass.
    """
    on = np.flatnonzero(mask.any(axis=(1, 2)))
    if on.size == 0:
        return (slice(0, 1), slice(0, 1), slice(0, 1))
    plane = mask[on[0]:on[-1] + 1].any(axis=0)
    out = []
    for n, hit in zip(mask.shape, (on, np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0)))):
        out.append(slice(max(0, int(hit[0]) - margin), min(n, int(hit[-1]) + 1 + margin)))
    return tuple(out)  # type: ignore[return-value]


def pad_box(box: tuple[slice, ...], shape: tuple[int, ...], margin: int) -> tuple[slice, slice, slice]:
    """``box`` grown by ``margin`` voxels on every side, clipped to ``shape``."""
    return tuple(slice(max(0, b.start - margin), min(n, b.stop + margin)) for b, n in zip(box, shape))  # type: ignore[return-value]


def ball(lo: Any, hi: Any, centre: Any, spacing: Any, radius_mm: float, *, rtol: float = 0.0) -> np.ndarray:
    """Bool crop of indices ``[lo, hi)`` (any number of axes): voxels whose centre lies
    within ``radius_mm`` of ``centre`` (an index, fractional allowed), in mm with ``spacing``."""
    axes = np.ogrid[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
    d2 = sum(((ax - c) * s) ** 2 for ax, c, s in zip(axes, centre, spacing))
    return d2 <= radius_mm * radius_mm * (1 + rtol)


def check_spacing(spacing: Any) -> tuple[float, float, float]:
    """Three positive finite voxel sizes in mm, or ParameterError."""
    try:
        sp = np.asarray(spacing, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        sp = np.array([])
    if sp.size != 3 or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ParameterError(f"spacing must be 3 positive voxel sizes in mm (slice, row, column); got {spacing!r}")
    return tuple(float(s) for s in sp)  # type: ignore[return-value]


def parse_triple(value: Any, what: str, *, error: type[Exception] = ParameterError,
                 hint: str = "") -> tuple[float, float, float]:
    """Three finite numbers from ``"12,140,96"`` (commas and/or spaces, optional brackets)
    or a sequence; ``error`` (ParameterError by default) naming ``what`` otherwise."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s]+", value.strip().strip("()[]")) if p]
    else:
        try:
            parts = list(np.asarray(value, dtype=object).reshape(-1))
        except (TypeError, ValueError):
            parts = []
    try:
        vals = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise error(f"{what} must be three numbers like 12,140,96; got {value!r}{hint}")
    return vals  # type: ignore[return-value]
