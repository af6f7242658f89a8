"""Lesions: connected components, clean-up rules and the per-lesion measurement table.

A thresholded or grown BME mask becomes a label image (:func:`label`), is cleaned
(:func:`clean`: minimum volume in mm³, presence on consecutive slices as in the ASAS
definition of sacroiliitis, optional hole filling) and measured (:func:`lesion_table`:
volume, intensity relative to the normal-marrow reference, centroid in RAS mm, extent).

Everything works from the foreground voxels (``np.flatnonzero``) with ``np.bincount``
and ``ufunc.at`` reductions, and from per-lesion bounding boxes
(``scipy.ndimage.find_objects``): the cost grows with the volume plus the lesion voxels,
never with (number of lesions x volume). A few lesions (a seeded result) are measured
inside their own boxes (projections of each box), which costs the boxes, not the voxels'
coordinates. Components are found with ``connected-components-3d`` (cc3d) when it is
installed (the same labels as ``scipy.ndimage.label``, several times faster), else scipy.

Axis 0 is the slice axis, as in :class:`bmeviz.Volume` (``(slice, row, column)``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._arrays import check_spacing as _check_spacing
from ._measure import _few_boxes, _measure_boxes, _measure_voxels, _slice_runs

try:  # a faster labeller with the same output as scipy.ndimage.label (benchmarks/bench_segment.py)
    import cc3d as _cc3d
except ImportError:  # pragma: no cover - cc3d is a dependency; scipy is the fallback
    _cc3d = None
from .errors import ParameterError
from .threshold import ReferenceStats, _as_mask
from .volume import _as_affine

__all__ = ["label", "clean", "lesion_table", "summarize", "TABLE_COLUMNS"]

#: Columns of :func:`lesion_table`, in order.
TABLE_COLUMNS = (
    "lesion_id",
    "voxels",
    "volume_mm3",
    "volume_ml",
    "mean_intensity",
    "max_intensity",
    "ratio_to_reference",
    "z_score",
    "centroid_slice",
    "centroid_row",
    "centroid_col",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "extent_slice_mm",
    "extent_row_mm",
    "extent_col_mm",
    "first_slice",
    "last_slice",
    "n_slices",
)

_INT_COLUMNS = ("lesion_id", "voxels", "first_slice", "last_slice", "n_slices")

_CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}



# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------
def _structure(connectivity: Any) -> np.ndarray:
    if isinstance(connectivity, bool) or connectivity not in _CONNECTIVITY_RANK:
        raise ParameterError(
            f"connectivity must be 6 (faces), 18 (faces+edges) or 26 (faces+edges+corners); "
            f"got {connectivity!r}"
        )
    return ndi.generate_binary_structure(3, _CONNECTIVITY_RANK[int(connectivity)])


def _check_3d(arr: np.ndarray, name: str) -> None:
    if arr.ndim != 3:
        raise ParameterError(
            f"{name} must be 3D (slice, row, column); got shape {arr.shape}"
        )


def _check_labels(labels: Any, name: str) -> np.ndarray:
    lab = np.asarray(labels)
    _check_3d(lab, name)
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        raise ParameterError(
            f"{name} must be an integer label image; got dtype {lab.dtype}. "
            f"For a mask, use bmeviz.lesions.label(mask) or clean(mask, ...) first"
        )
    return lab


# ---------------------------------------------------------------------------------------
# foreground bookkeeping
# ---------------------------------------------------------------------------------------
def _components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Label the components of a bool mask: (int32 labels in scan order, count)."""
    # cc3d's label estimate fails (and prints) on 1-D arrays (two axes of size 1): scipy there
    if _cc3d is not None and mask.size and sorted(mask.shape)[1] > 1:
        try:
            out = _cc3d.connected_components(mask, connectivity=int(connectivity), out_dtype=np.uint32)
        except RuntimeError:  # any other shape it cannot take
            out = None
        if out is not None:
            out = out.view(np.int32)
            return out, int(out.max())
    out, n = ndi.label(mask, structure=_structure(connectivity), output=np.int32)
    return out, int(n)


def _foreground(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the labelled voxels (ascending) and their label values."""
    flat = lab.reshape(-1)  # a view for contiguous arrays; one copy otherwise
    nz = np.flatnonzero(flat)
    return nz, flat[nz]


def _compact(values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Map label values to 1..M. Returns (original ids ascending, compact values)."""
    if values.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if values.dtype.kind == "u" and values.dtype.itemsize >= 8:
        values = values.astype(np.int64)  # bincount refuses uint64
    vmin = values.min()
    if vmin < 0:
        raise ParameterError(
            f"{name} has negative labels (e.g. {int(vmin)}); labels must be 0 (background) "
            f"or positive lesion ids"
        )
    vmax = int(values.max())
    if vmax <= max(4 * values.size, 1 << 20):
        present = np.bincount(values, minlength=vmax + 1) > 0
        present[0] = False
        lut = np.cumsum(present)
        return np.flatnonzero(present), lut[values]
    ids, inverse = np.unique(values, return_inverse=True)
    return ids.astype(np.int64), inverse.reshape(-1) + 1


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def label(mask: np.ndarray, *, connectivity: int = 26) -> np.ndarray:
    """Label the connected components of a 3D mask.

    Parameters
    ----------
    mask : (S, R, C) ndarray of bool
        BME mask (0/1 numbers are accepted).
    connectivity : {6, 18, 26}
        Neighbours that connect: faces (6), faces and edges (18), or also corners (26).

    Returns
    -------
    (S, R, C) ndarray of int32
        0 for background, 1..N for the components (in scan order).

    Raises
    ------
    ParameterError
        Not 3D, not a mask, or a bad ``connectivity``.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((1, 3, 3), bool); m[0, 0, 0] = m[0, 1, 1] = True
    >>> int(label(m).max()), int(label(m, connectivity=6).max())
    (1, 2)
    """
    _structure(connectivity)  # checks it
    arr = np.asarray(mask)
    _check_3d(arr, "mask")
    m = _as_mask(arr, arr.shape, "mask")
    return _components(m, connectivity)[0]


def clean(
    mask_or_labels: np.ndarray,
    *,
    spacing,
    min_volume_mm3: float = 0.0,
    min_slices: int = 1,
    fill_holes: bool = False,
    connectivity: int = 26,
) -> np.ndarray:
    """Drop small or thin lesions, optionally fill their holes, and relabel.

    Parameters
    ----------
    mask_or_labels : (S, R, C) ndarray
        A bool mask (split into components with ``connectivity``) or an integer label
        image (each label is one lesion, kept whole even if it is not connected).
        Float arrays are refused: pass ``mask > 0`` or ``labels.astype(int)``.
    spacing : sequence of 3 float
        Voxel size in mm along (slice, row, column).
    min_volume_mm3 : float
        Lesions smaller than this (voxels x voxel volume) are dropped.
    min_slices : int
        Lesions must be present on at least this many *consecutive* slices (axis 0);
        the ASAS definition of BME on sacroiliac-joint MRI uses 2.
    fill_holes : bool
        Fill the holes each lesion encloses in 3D (in its bounding box). Anything inside
        a hole, including another lesion, becomes part of the enclosing lesion, as with
        ``scipy.ndimage.binary_fill_holes`` on the whole mask. Holes are filled before
        the size and slice rules are applied.
    connectivity : {6, 18, 26}
        Used to find components in a bool mask (and, for hole filling, the background
        connectivity that pairs with it: 26 for 6, else 6).

    Returns
    -------
    (S, R, C) ndarray of int32
        Lesions relabelled 1..N, the largest first; equal volumes are ordered by the
        smallest flat (C-order) index of the lesion. The order depends only on the
        lesions, not on their input ids.

    Raises
    ------
    ParameterError
        Bad shape, dtype, spacing, negative thresholds or labels, bad connectivity.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((4, 8, 8), bool)
    >>> m[0, 0, 0] = True                 # 1 voxel on 1 slice
    >>> m[1:3, 4:6, 4:6] = True           # 8 voxels on 2 slices
    >>> m[0:3, 0:2, 6:8] = True           # 12 voxels on 3 slices
    >>> out = clean(m, spacing=(3.0, 1.0, 1.0), min_volume_mm3=20.0)
    >>> [int((out == i).sum()) for i in range(1, int(out.max()) + 1)]
    [12, 8]
    >>> int(clean(m, spacing=(3.0, 1.0, 1.0), min_slices=3).max())
    1
    """
    sp = _check_spacing(spacing)
    if isinstance(min_volume_mm3, bool) or not isinstance(min_volume_mm3, numbers.Real) or not (
        math.isfinite(float(min_volume_mm3)) and min_volume_mm3 >= 0
    ):
        raise ParameterError(f"min_volume_mm3 must be a number >= 0 (mm³); got {min_volume_mm3!r}")
    if isinstance(min_slices, bool) or not isinstance(min_slices, numbers.Integral) or min_slices < 1:
        raise ParameterError(f"min_slices must be an integer >= 1; got {min_slices!r}")
    if not isinstance(fill_holes, (bool, np.bool_)):
        raise ParameterError(f"fill_holes must be True or False; got {fill_holes!r}")
    _structure(connectivity)  # checks it

    arr = np.asarray(mask_or_labels)
    _check_3d(arr, "mask_or_labels")
    shape = arr.shape
    if arr.dtype == bool:
        work, m = _components(arr, connectivity)
        nz, cv = _foreground(work)
    elif np.issubdtype(arr.dtype, np.integer):
        nz, vals = _foreground(arr)
        ids, cv = _compact(vals, "mask_or_labels")
        m = int(ids.size)
        work = None
    else:
        raise ParameterError(
            f"mask_or_labels must be a bool mask or an integer label image; got dtype "
            f"{arr.dtype}: pass `mask > 0` (components are then found) or `labels.astype(int)`"
        )

    if fill_holes and m:
        if work is None:
            work = np.zeros(shape, dtype=np.int32)
            work.reshape(-1)[nz] = cv
        # background connectivity paired with the foreground one (digital topology)
        bg = ndi.generate_binary_structure(3, 3 if int(connectivity) == 6 else 1)
        for i, box in enumerate(ndi.find_objects(work), start=1):
            if box is None:
                continue
            sub = work[box]  # a view: writes go to work
            own = sub == i
            if not own.any():  # swallowed by an enclosing lesion already
                continue
            hole = ndi.binary_fill_holes(own, structure=bg) & ~own
            if hole.any():
                sub[hole] = i
        nz, cv = _foreground(work)

    n_slices = shape[0]
    counts = np.bincount(cv, minlength=m + 1)
    first = np.full(m + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, cv, nz)
    voxel_mm3 = sp[0] * sp[1] * sp[2]
    keep = counts > 0
    keep[0] = False
    if min_volume_mm3 > 0:
        keep &= counts * voxel_mm3 >= float(min_volume_mm3) * (1 - 1e-9)
    if min_slices > 1:
        _, longest = _slice_runs(cv, nz // (shape[1] * shape[2]), m, n_slices)
        keep &= longest >= min_slices

    kept = np.flatnonzero(keep)
    order = kept[np.lexsort((first[kept], -counts[kept]))]
    lut = np.zeros(m + 1, dtype=np.int32)
    lut[order] = np.arange(1, order.size + 1, dtype=np.int32)
    out = np.zeros(shape, dtype=np.int32)
    out.reshape(-1)[nz] = lut[cv]
    return out


def _empty_table() -> "Any":
    import pandas as pd

    cols = {}
    for c in TABLE_COLUMNS:
        cols[c] = pd.Series([], dtype="int64" if c in _INT_COLUMNS else "float64")
    return pd.DataFrame(cols, columns=list(TABLE_COLUMNS))


def lesion_table(
    labels: np.ndarray,
    image: np.ndarray,
    *,
    affine,
    reference: ReferenceStats | None = None,
    region: np.ndarray | None = None,
    origin: tuple[int, int, int] = (0, 0, 0),
    region_voxels: int | None = None,
):
    """Measure each lesion: size, intensity relative to normal marrow, position, extent.

    ``labels``, ``image`` and ``region`` may be a crop of a larger grid that starts at
    index ``origin`` there (``affine`` stays the full grid's): indices and positions are
    then reported in the full grid, and ``region_voxels`` gives the full region's size
    for the region fraction. This is how a seeded segmentation measures only where the
    lesions are.

    Parameters
    ----------
    labels : (S, R, C) ndarray of int
        Lesion ids (0 is background), e.g. from :func:`clean`.
    image : (S, R, C) ndarray
        The image the intensities are read from (NaN voxels are left out of the means).
    affine : (4, 4) array_like
        Maps ``(slice, row, column, 1)`` to RAS mm (:attr:`bmeviz.Volume.affine`).
        Voxel volume is ``|det(affine[:3, :3])|``, spacing its column norms.
    reference : ReferenceStats, optional
        Normal-marrow statistics (:func:`bmeviz.threshold.reference_stats`) for
        ``ratio_to_reference`` and ``z_score`` (NaN without it, or when its SD is 0).
    region : (S, R, C) ndarray of bool, optional
        The region searched for BME (e.g. the bone), for ``region_volume_ml`` and
        ``bme_fraction_of_region`` in the totals.

    Returns
    -------
    pandas.DataFrame
        One row per lesion id present, sorted by id, with the columns of
        :data:`TABLE_COLUMNS`. ``extent_*_mm`` is the bounding-box size along each
        array axis (voxels x spacing). ``n_slices`` counts the slices the lesion is on.
        ``df.attrs['totals']`` holds ``n_lesions, total_voxels, total_volume_mm3,
        total_volume_ml, region_volume_ml, bme_fraction_of_region`` (the last two None
        without a region); see :func:`summarize`.

    Raises
    ------
    ParameterError
        Shapes differ, labels are not integers or negative, a bad affine or reference,
        an empty region.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((3, 10, 10), np.int32)
    >>> labels[1, 2:4, 2:4] = 1; labels[0:3, 6:8, 6:9] = 2
    >>> image = np.full(labels.shape, 100.0); image[labels > 0] = 250.0
    >>> affine = np.diag([3.0, 0.5, 0.5, 1.0])
    >>> df = lesion_table(labels, image, affine=affine)
    >>> df[['lesion_id', 'voxels', 'first_slice', 'n_slices']].values.tolist()
    [[1, 4, 1, 1], [2, 18, 0, 3]]
    >>> df.volume_mm3.tolist(), df.mean_intensity.tolist()
    ([3.0, 13.5], [250.0, 250.0])
    >>> df.attrs['totals']['total_volume_mm3']
    16.5
    """
    import pandas as pd

    lab = _check_labels(labels, "labels")
    img = np.asarray(image)
    if img.shape != lab.shape:
        raise ParameterError(
            f"image has shape {img.shape} but labels have shape {lab.shape}; they must "
            f"be on the same grid"
        )
    if not np.issubdtype(img.dtype, np.number):
        raise ParameterError(f"image must hold numbers; got dtype {img.dtype}")
    aff = _as_affine(affine)
    if reference is not None and not isinstance(reference, ReferenceStats):
        raise ParameterError(
            "reference must be a ReferenceStats (from bmeviz.threshold.reference_stats) "
            f"or None; got {type(reference).__name__}"
        )
    region_mask = None
    if region is not None:
        region_mask = _as_mask(region, lab.shape, "region")
        if region_voxels is None and not region_mask.any():  # a crop may hold none of it
            raise ParameterError("region mask is empty: it must cover the bone searched for BME")

    spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    voxel_mm3 = float(abs(np.linalg.det(aff[:3, :3])))

    boxes = _few_boxes(lab)  # a few lesions: measured in their boxes, no per-voxel pass
    if boxes is None:
        nz, vals = _foreground(lab)
        ids, cv = _compact(vals, "labels")
    else:
        ids = np.array([i for i, b in enumerate(boxes, start=1) if b is not None], dtype=np.int64)
    m = int(ids.size)

    if region_mask is None:
        region_voxels = None
    elif region_voxels is None:
        region_voxels = int(np.count_nonzero(region_mask))
    off = np.asarray(origin, dtype=np.int64).reshape(3)
    in_region_by_id: dict[int, int] = {}

    if m == 0:
        df = _empty_table()
    else:
        if boxes is not None:
            counts, n_finite, sums, maxs, centroid, lo, hi, on_slices, per = _measure_boxes(
                lab, img, ids, boxes, region_mask, off)
        else:
            counts, n_finite, sums, maxs, centroid, lo, hi, on_slices, per = _measure_voxels(
                lab, img, nz, cv, m, region_mask, off)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_finite > 0, sums / np.maximum(n_finite, 1), np.nan)
        maxs = np.where(n_finite > 0, maxs, np.nan)

        if reference is not None and reference.mean != 0:
            ratio = mean / reference.mean
        else:
            ratio = np.full(m, np.nan)
        if reference is not None and reference.sd > 0:
            z = (mean - reference.mean) / reference.sd
        else:
            z = np.full(m, np.nan)
        ras = centroid @ aff[:3, :3].T + aff[:3, 3]
        extent = (hi - lo + 1) * spacing

        volume = counts * voxel_mm3
        df = pd.DataFrame(
            {
                "lesion_id": ids.astype(np.int64),
                "voxels": counts.astype(np.int64),
                "volume_mm3": volume,
                "volume_ml": volume / 1000.0,
                "mean_intensity": mean,
                "max_intensity": maxs,
                "ratio_to_reference": ratio,
                "z_score": z,
                "centroid_slice": centroid[:, 0],
                "centroid_row": centroid[:, 1],
                "centroid_col": centroid[:, 2],
                "centroid_x_mm": ras[:, 0],
                "centroid_y_mm": ras[:, 1],
                "centroid_z_mm": ras[:, 2],
                "extent_slice_mm": extent[:, 0],
                "extent_row_mm": extent[:, 1],
                "extent_col_mm": extent[:, 2],
                "first_slice": lo[:, 0],
                "last_slice": hi[:, 0],
                "n_slices": on_slices.astype(np.int64),
            },
            columns=list(TABLE_COLUMNS),
        )
        if region_mask is not None:
            in_region_by_id = {int(i): int(n) for i, n in zip(ids, per)}

    total_voxels = int(df["voxels"].sum())
    totals = {
        "n_lesions": int(m),
        "total_voxels": total_voxels,
        "total_volume_mm3": float(total_voxels * voxel_mm3),
        "total_volume_ml": float(total_voxels * voxel_mm3 / 1000.0),
        "region_volume_ml": None,
        "bme_fraction_of_region": None,
    }
    if region_voxels is not None:
        totals["region_volume_ml"] = float(region_voxels * voxel_mm3 / 1000.0)
        totals["bme_fraction_of_region"] = float(sum(in_region_by_id.values()) / region_voxels)
    df.attrs["totals"] = totals
    # what summarize() needs to recompute the totals of a subset of rows
    df.attrs["voxel_volume_mm3"] = voxel_mm3
    df.attrs["region_voxels"] = region_voxels
    df.attrs["lesion_voxels_in_region"] = in_region_by_id if region_voxels is not None else None
    return df


def summarize(table) -> dict:
    """Totals of a lesion table: number of lesions, voxels, volume, fraction of region.

    Returns ``table.attrs['totals']`` (a copy). If the attrs are missing, or the
    table no longer matches them (rows were filtered: pandas carries ``attrs`` over to
    subsets), the totals are recomputed from the rows; the region figures are kept
    when the attrs still describe the region, else None.

    Parameters
    ----------
    table : pandas.DataFrame
        A table from :func:`lesion_table` (or a subset of its rows).

    Returns
    -------
    dict
        ``n_lesions, total_voxels, total_volume_mm3, total_volume_ml,
        region_volume_ml, bme_fraction_of_region`` as plain Python numbers or None.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((2, 6, 6), np.int32); labels[0, :2, :2] = 1; labels[1, 4:, 4:] = 2
    >>> df = lesion_table(labels, np.ones(labels.shape), affine=np.eye(4),
    ...                   region=np.ones(labels.shape, bool))
    >>> summarize(df)['bme_fraction_of_region']
    0.1111111111111111
    >>> summarize(df[df.lesion_id == 2])['total_voxels']
    4
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame) or not {"lesion_id", "voxels", "volume_mm3"} <= set(
        table.columns
    ):
        raise ParameterError(
            "table must be a pandas DataFrame from bmeviz.lesions.lesion_table "
            "(with lesion_id, voxels and volume_mm3 columns)"
        )
    attrs = getattr(table, "attrs", {}) or {}
    totals = attrs.get("totals")
    n = int(len(table))
    total_voxels = int(table["voxels"].sum())
    if isinstance(totals, dict) and totals.get("n_lesions") == n and totals.get(
        "total_voxels"
    ) == total_voxels:
        return dict(totals)

    voxel_mm3 = attrs.get("voxel_volume_mm3")
    total_mm3 = (
        float(total_voxels * voxel_mm3) if voxel_mm3 is not None else float(table["volume_mm3"].sum())
    )
    out = {
        "n_lesions": n,
        "total_voxels": total_voxels,
        "total_volume_mm3": total_mm3,
        "total_volume_ml": total_mm3 / 1000.0,
        "region_volume_ml": None,
        "bme_fraction_of_region": None,
    }
    region_voxels = attrs.get("region_voxels")
    per = attrs.get("lesion_voxels_in_region")
    if region_voxels and voxel_mm3 is not None and isinstance(per, dict):
        ids = [int(i) for i in table["lesion_id"]]
        if all(i in per for i in ids):
            out["region_volume_ml"] = float(region_voxels * voxel_mm3 / 1000.0)
            out["bme_fraction_of_region"] = float(sum(per[i] for i in ids) / region_voxels)
    return out
