"""Per-lesion measurements behind :func:`bmeviz.lesions.lesion_table`, two ways to one answer.

:func:`_measure_voxels` works from every foreground voxel (``bincount``/``ufunc.at``: many
lesions); :func:`_measure_boxes` measures each of a few lesions inside its own bounding
box from projections (a seeded result: costs the boxes, not per-voxel coordinates).
tests/test_architecture.py checks that both give the same table.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .errors import ParameterError

#: Up to this many lesions, lesion_table measures each inside its own bounding box.
_PER_BOX_LESIONS = 32

#: Above this many (label, slice) cells, slice presence is found by sorting, not a dense table.
_DENSE_PRESENCE_LIMIT = 20_000_000


def _slice_runs(cv: np.ndarray, z: np.ndarray, m: int, n_slices: int):
    """Per label 0..m: number of slices it is on, and its longest run of consecutive ones."""
    key = cv.astype(np.int64) * n_slices + z
    if (m + 1) * n_slices <= _DENSE_PRESENCE_LIMIT:
        present = np.zeros((m + 1) * n_slices, dtype=bool)
        present[key] = True
        ukeys = np.flatnonzero(present)
    else:
        ukeys = np.unique(key)
    lab_u = ukeys // n_slices
    z_u = ukeys % n_slices
    on_slices = np.bincount(lab_u, minlength=m + 1)
    start = np.ones(ukeys.size, dtype=bool)
    start[1:] = (lab_u[1:] != lab_u[:-1]) | (z_u[1:] != z_u[:-1] + 1)
    run_len = np.bincount(np.cumsum(start) - 1)
    longest = np.zeros(m + 1, dtype=np.int64)
    np.maximum.at(longest, lab_u[start], run_len)
    return on_slices, longest


def _measure_voxels(lab, img, nz, cv, m, region_mask, off):
    """Per lesion 1..m (compact ids ``cv`` of the voxels ``nz``): voxels, finite voxels, sum
    and max of finite intensities, centroid and first/last index per axis (in the grid the
    crop starts at ``off`` in), slices on, voxels in the region. Vectorised over every voxel
    (many lesions)."""
    local = np.unravel_index(nz, lab.shape)
    coords = tuple(c + o for c, o in zip(local, off)) if off.any() else local
    counts = np.bincount(cv, minlength=m + 1)[1:]
    values = np.asarray(img[local], dtype=np.float64)
    finite = np.isfinite(values)
    n_finite = np.bincount(cv[finite], minlength=m + 1)[1:]
    sums = np.bincount(cv[finite], weights=values[finite], minlength=m + 1)[1:]
    maxs = np.full(m + 1, -np.inf)
    np.maximum.at(maxs, cv[finite], values[finite])
    centroid = np.empty((m, 3))
    lo = np.empty((m, 3), dtype=np.int64)
    hi = np.empty((m, 3), dtype=np.int64)
    for ax in range(3):
        cax = coords[ax]
        centroid[:, ax] = np.bincount(cv, weights=cax, minlength=m + 1)[1:] / counts
        mn = np.full(m + 1, np.iinfo(np.int64).max, dtype=np.int64)
        mx = np.full(m + 1, -1, dtype=np.int64)
        np.minimum.at(mn, cv, cax)
        np.maximum.at(mx, cv, cax)
        lo[:, ax], hi[:, ax] = mn[1:], mx[1:]
    on_slices, _ = _slice_runs(cv, local[0], m, lab.shape[0])
    per = None
    if region_mask is not None:
        inside = region_mask.reshape(-1)[nz]
        per = np.bincount(cv[inside], minlength=m + 1)[1:]
    return counts, n_finite, sums, maxs[1:], centroid, lo, hi, on_slices[1:], per


def _few_boxes(lab: np.ndarray) -> list | None:
    """Bounding boxes (``find_objects``) when ``lab`` holds at most :data:`_PER_BOX_LESIONS`
    lesions with small ids; None otherwise (or when empty). Refuses negative labels."""
    if lab.size == 0:
        return None
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0:
        raise ParameterError(f"labels has negative labels (e.g. {lo}); labels must be 0 (background) "
                             "or positive lesion ids")
    if hi == 0 or hi > 64 * _PER_BOX_LESIONS + 1024:
        return None
    boxes = ndi.find_objects(lab.astype(np.int64) if lab.dtype.kind == "u" and lab.dtype.itemsize >= 8 else lab)
    if sum(b is not None for b in boxes) > _PER_BOX_LESIONS:
        return None
    return boxes


def _measure_boxes(lab, img, ids, boxes, region_mask, off):
    """The same as :func:`_measure_voxels`, each lesion measured inside its own bounding
    box from projections (a few lesions: costs their boxes, not per-voxel coordinates)."""
    m = int(ids.size)
    counts = np.zeros(m, np.int64)
    n_finite = np.zeros(m, np.int64)
    sums = np.zeros(m)
    maxs = np.full(m, -np.inf)
    centroid = np.empty((m, 3))
    lo = np.empty((m, 3), dtype=np.int64)
    hi = np.empty((m, 3), dtype=np.int64)
    on_slices = np.zeros(m, np.int64)
    per = None if region_mask is None else np.zeros(m, np.int64)
    for j, i in enumerate(ids):
        box = boxes[int(i) - 1]
        comp = lab[box] == i
        n = int(np.count_nonzero(comp))
        counts[j] = n
        for ax in range(3):
            other = tuple(a for a in range(3) if a != ax)
            prof = np.count_nonzero(comp, axis=other)
            hit = np.flatnonzero(prof)
            start = box[ax].start + int(off[ax])
            centroid[j, ax] = float(np.dot(np.arange(start, start + prof.size, dtype=np.int64), prof)) / n
            lo[j, ax], hi[j, ax] = start + hit[0], start + hit[-1]
            if ax == 0:
                on_slices[j] = hit.size
        values = np.asarray(img[box][comp], dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            values = values[finite]
        n_finite[j] = values.size
        if values.size:
            sums[j] = values.sum()
            maxs[j] = values.max()
        if per is not None:
            per[j] = int(np.count_nonzero(region_mask[box][comp]))
    return counts, n_finite, sums, maxs, centroid, lo, hi, on_slices, per
