"""Normal-marrow references that do not depend on the exact click.

A reference-relative threshold is only as good as the normal marrow it is computed on.
A ball of 8 mm around a click in normal marrow easily catches a vessel, a little fluid,
the edge of a lesion or the cortex; a few such voxels move the statistics (above all the
maximum, which the published adaptive Q3 + k·IQR rule uses) and with them every lesion.
This module turns any reference the user gives into normal marrow only, and finds one
when the user gives none:

:func:`clean_reference`
    Keeps the part of a reference (ball or drawn mask) that is marrow: inside the search
    region and at least ``edge_mm`` in-plane from its edge (cortex, joint fluid and the
    partial-volume rim live there), then drops outliers with a robust fence
    ``median ± fence · 1.4826 · MAD`` (repeated until stable). Each step is skipped when
    it would leave fewer than :data:`MIN_VOXELS` voxels, and says so in ``info``.
:func:`marrow_near_point`
    What a reference point stands for: the automatic reference's normal marrow near it
    (a ball around a click depends on exactly where it lands).
:func:`auto_reference`
    Normal marrow found inside the region without a click: the region away from its edge,
    smoothed in-plane, keeps the voxels around the dominant (dark-marrow) mode of its
    histogram that are also locally homogeneous. It returns a mask a user (or the napari
    widget) can see and accept, or replace by a click.

Both return a :class:`CleanReference` (mask + JSON-able info); the threshold rules of
:mod:`bmeviz.threshold` are then computed on its mask. Measured on the SIJ STIR
development scans in ``benchmarks/reproducibility_sij.py`` (see ``docs/reference.md``).
"""

from __future__ import annotations

import hashlib
import math
import numbers
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._arrays import ball
from ._jsonable import jsonable
from .errors import ParameterError, warn

__all__ = ["CleanReference", "clean_reference", "auto_reference", "auto_reference_cached", "marrow_near_point",
           "robust_sigma", "MIN_VOXELS", "NEAR_POINT_VOXELS"]

#: A step of the cleaning is skipped when it would leave fewer voxels than this.
MIN_VOXELS = 50

#: 1.4826 * MAD estimates the SD of a normal distribution.
MAD_TO_SD = 1.4826


@dataclass(frozen=True, eq=False)
class CleanReference:
    """A reference mask of normal marrow and how it was obtained.

    Attributes
    ----------
    mask : ndarray of bool
        The voxels to compute reference statistics on.
    info : dict
        JSON-serialisable: the steps applied, voxel counts after each, the robust
        centre/spread (``median``, ``sigma`` = 1.4826·MAD) and the fence used.
    """

    mask: np.ndarray = field(repr=False)
    info: dict = field(default_factory=dict)

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    def __repr__(self) -> str:
        return f"CleanReference(voxels={self.voxels}, method={self.info.get('method')!r})"


def robust_sigma(values: np.ndarray) -> tuple[float, float]:
    """``(median, 1.4826 * MAD)`` of finite ``values`` (NaN, NaN when empty).

    Examples
    --------
    >>> med, sig = robust_sigma(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    >>> float(med), round(float(sig), 4)
    (3.0, 1.4826)
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    return med, float(MAD_TO_SD * np.median(np.abs(v - med)))


def _number(value: Any, name: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ParameterError(f"{name} must be a finite number; got {value!r}")
    if float(value) < minimum:
        raise ParameterError(f"{name} must be >= {minimum:g}; got {value!r}")
    return float(value)


def _mask(mask: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ParameterError(f"{name} has shape {m.shape} but the image has shape {tuple(shape)}")
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number):
            raise ParameterError(f"{name} must be a boolean mask; got dtype {m.dtype}")
        m = np.nan_to_num(m) > 0
    return m


def _spacing(spacing: Any, ndim: int) -> np.ndarray:
    sp = np.asarray(spacing, dtype=float).reshape(-1)
    if sp.size != ndim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ParameterError(f"spacing must be {ndim} positive voxel sizes in mm; got {spacing!r}")
    return sp


def erode_in_plane(mask: np.ndarray, distance_mm: float, spacing) -> np.ndarray:
    """``mask`` eroded by ``distance_mm`` within each slice (axis 0), by a distance map.

    In-plane only: SIJ (and most MSK) STIR slices are 3-4 mm thick, so a 3D erosion of a
    few mm would remove whole slices.
    """
    if distance_mm <= 0:
        return mask.copy()
    sp = _spacing(spacing, mask.ndim)
    out = np.zeros_like(mask)
    if mask.ndim == 3 and mask.any():  # the mask's in-plane box only: the same distances
        rows = np.flatnonzero(mask.any(axis=(0, 2)))
        cols = np.flatnonzero(mask.any(axis=(0, 1)))
        box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        if (box[1].stop - box[1].start, box[2].stop - box[2].start) != mask.shape[1:]:
            out[box] = erode_in_plane(mask[box], distance_mm, spacing)
            return out
    for z in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
        # distance (mm) from each inside voxel to the nearest outside voxel of the slice;
        # pad so the image border counts as outside
        padded = np.pad(mask[z], 1, constant_values=False)
        d = ndi.distance_transform_edt(padded, sampling=sp[1:])[1:-1, 1:-1]
        out[z] = d > distance_mm
    return out


def _fence(image: np.ndarray, mask: np.ndarray, fence: float, max_rounds: int = 10):
    """Iterated robust fence: keep ``|x - median| <= fence * sigma``. Returns the mask,
    the last median, sigma and the number of rounds."""
    keep = mask & np.isfinite(image) if np.issubdtype(image.dtype, np.floating) else mask.copy()
    med = sig = float("nan")
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        med, sig = robust_sigma(image[keep])
        if not np.isfinite(sig) or sig <= 0:
            break
        new = keep & (np.abs(image - med) <= fence * sig)
        if np.count_nonzero(new) < MIN_VOXELS or np.array_equal(new, keep):
            if np.count_nonzero(new) >= MIN_VOXELS:
                keep = new
            break
        keep = new
    return keep, med, sig, rounds


def _reference_box(ref: np.ndarray, edge_mm: float, spacing) -> tuple[slice, ...] | None:
    """The reference's bounding box, padded in-plane by more than ``edge_mm`` (so an in-plane
    erosion of the region by ``edge_mm`` is the same inside it); None when that box is the
    whole image (nothing to gain) or the reference is empty."""
    if ref.ndim != 3 or not ref.any():
        return None
    sp = _spacing(spacing, 3)
    pad = [0] + [int(math.ceil(edge_mm / float(s))) + 2 for s in sp[1:]]
    box = []
    for ax in range(3):
        hit = np.flatnonzero(ref.any(axis=tuple(a for a in range(3) if a != ax)))
        box.append(slice(max(0, int(hit[0]) - pad[ax]), min(ref.shape[ax], int(hit[-1]) + 1 + pad[ax])))
    if all(b.start == 0 and b.stop == n for b, n in zip(box, ref.shape)):
        return None
    return tuple(box)


def clean_reference(
    image: Any,
    reference: Any,
    *,
    region: Any = None,
    spacing: Any = (1.0, 1.0, 1.0),
    edge_mm: float = 2.0,
    fence: float = 2.5,
) -> CleanReference:
    """Keep the normal marrow of a reference (a ball around a click, or a drawn mask).

    Parameters
    ----------
    image : (S, R, C) ndarray
        The fluid-sensitive image.
    reference : (S, R, C) ndarray of bool
        The reference the user gave.
    region : (S, R, C) ndarray of bool, optional
        The bone searched for BME. The reference is restricted to it, at least
        ``edge_mm`` in-plane away from its edge.
    spacing : 3 floats
        Voxel size in mm (slice, row, column).
    edge_mm : float
        Distance from the region's edge that is left out (default 2 mm: cortex and the
        partial-volume rim at the joint). 0: no edge exclusion.
    fence : float
        Robust fence in SDs (1.4826·MAD) around the median; voxels outside it (vessels,
        fluid, lesion edge, cortex) are left out. 0 or ``inf``: no fence.

    Returns
    -------
    CleanReference
        The cleaned mask and ``info`` (voxel counts per step, ``median``, ``sigma``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100, 10, (3, 40, 40))
    >>> ref = np.zeros(img.shape, bool); ref[:, 10:30, 10:30] = True
    >>> img[1, 20, 20:23] = 1000                       # a vessel in the reference
    >>> c = clean_reference(img, ref, fence=2.5)
    >>> bool(c.mask[1, 20, 20]), c.voxels < int(ref.sum())
    (False, True)
    """
    img = np.asarray(image)
    ref = _mask(reference, img.shape, "reference")
    edge_mm = _number(edge_mm, "edge_mm")
    box = _reference_box(ref, edge_mm, spacing)
    if box is not None:  # the same answer from the reference's box: its cost follows the reference
        sub = clean_reference(img[box], ref[box], region=None if region is None else
                              _mask(region, img.shape, "region")[box], spacing=spacing, edge_mm=edge_mm, fence=fence)
        full = np.zeros(img.shape, bool)
        full[box] = sub.mask
        return CleanReference(full, sub.info)
    fence = float(fence) if fence == math.inf else _number(fence, "fence")
    info: dict[str, Any] = {"method": "clean", "voxels_given": int(np.count_nonzero(ref)), "steps": []}
    mask = ref
    if region is not None:
        reg = _mask(region, img.shape, "region")
        inside = mask & reg
        if np.count_nonzero(inside) >= MIN_VOXELS:
            mask = inside
            info["steps"].append("region")
        else:
            info["steps"].append("region skipped (too few voxels inside the region)")
        info["voxels_in_region"] = int(np.count_nonzero(mask))
        if edge_mm > 0:
            core = mask & erode_in_plane(reg, edge_mm, spacing)
            if np.count_nonzero(core) >= MIN_VOXELS:
                mask = core
                info["steps"].append(f"edge {edge_mm:g} mm")
            else:
                info["steps"].append(f"edge {edge_mm:g} mm skipped (too few voxels away from the edge)")
            info["voxels_away_from_edge"] = int(np.count_nonzero(mask))
    if 0 < fence < math.inf:
        kept, med, sig, rounds = _fence(img, mask, fence)
        info["steps"].append(f"fence {fence:g} SD ({rounds} rounds)")
        info["fence_sd"] = fence
        mask = kept
    med, sig = robust_sigma(img[mask])
    info.update({"voxels": int(np.count_nonzero(mask)), "median": med, "sigma": sig})
    if info["voxels"] < MIN_VOXELS:
        warn(f"reference: only {info['voxels']} voxels of normal marrow after cleaning; "
             f"place the reference in a larger area of normal marrow or give a larger radius")
    return CleanReference(mask=mask, info=jsonable(info))


def auto_reference(
    image: Any,
    *,
    region: Any,
    spacing: Any = (1.0, 1.0, 1.0),
    edge_mm: float = 3.0,
    smooth_mm: float = 1.5,
    fence: float = 1.0,
    homogeneity_quantile: float = 1.0,
) -> CleanReference:
    """Find normal marrow inside ``region`` with no click.

    On STIR normal marrow is the dominant, dark and homogeneous tissue of the bone; BME,
    vessels and fluid are brighter, cortex darker. The method:

    1. the region eroded in-plane by ``edge_mm`` (no cortex, no joint rim);
    2. the image smoothed in-plane (Gaussian, ``smooth_mm``) and its local SD;
    3. the mode of the smoothed values there (a histogram of 256 bins smoothed over
       ~1/20 of the robust range): the dark-marrow peak. Voxels within
       ``fence`` robust SDs of the mode (measured on the raw values around it) are kept;
       with ``homogeneity_quantile < 1`` only those whose local SD is below that quantile
       of the candidates (the most homogeneous patches). Off by default: it narrows the
       spread of the reference and so lowers the threshold (measured on the SIJ scans:
       thresholds 5-15% below the readers' ROI with 0.5, within a few % with 1.0).

    Parameters
    ----------
    image : (S, R, C) ndarray
        The fluid-sensitive image.
    region : (S, R, C) ndarray of bool
        The bone searched for BME (required).
    spacing : 3 floats
        Voxel size in mm (slice, row, column).
    edge_mm, smooth_mm, fence, homogeneity_quantile
        As above.

    Returns
    -------
    CleanReference
        The mask (show it; the user may accept it or click a reference instead) and
        ``info`` with the mode, the robust spread and voxel counts.

    Raises
    ------
    ParameterError
        No region, or a region too small to find normal marrow in.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> img = rng.normal(100, 10, (4, 60, 60))
    >>> img[:, 10:25, 10:25] += 150                      # a bright lesion
    >>> region = np.zeros(img.shape, bool); region[:, 5:55, 5:55] = True
    >>> ref = auto_reference(img, region=region, spacing=(3.0, 0.6, 0.6))
    >>> bool(ref.mask[:, 10:25, 10:25].any()), abs(ref.info["median"] - 100) < 5
    (False, True)
    """
    img = np.asarray(image)
    if region is None:
        raise ParameterError("auto_reference needs region=, the bone mask searched for BME")
    reg = _mask(region, img.shape, "region")
    sp = _spacing(spacing, img.ndim)
    edge_mm = _number(edge_mm, "edge_mm")
    smooth_mm = _number(smooth_mm, "smooth_mm")
    fence = _number(fence, "fence")
    hq = _number(homogeneity_quantile, "homogeneity_quantile")
    if not 0 < hq <= 1:
        raise ParameterError(f"homogeneity_quantile must be in (0, 1]; got {homogeneity_quantile!r}")
    finite = np.isfinite(img) if np.issubdtype(img.dtype, np.floating) else np.ones(img.shape, bool)
    core = erode_in_plane(reg, edge_mm, sp) & finite
    steps = [f"region eroded {edge_mm:g} mm"]
    if np.count_nonzero(core) < 10 * MIN_VOXELS:
        core = reg & finite
        steps = ["region (too small to erode)"]
    if np.count_nonzero(core) < MIN_VOXELS:
        raise ParameterError(
            f"region has only {int(np.count_nonzero(core))} usable voxels: too small to find normal "
            f"marrow in; give a reference point or mask")
    # work on the region's bounding box only
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(core))
    f = np.where(finite[box], img[box], 0).astype(np.float64)
    sigma = [0.0] + [smooth_mm / s for s in sp[1:]] if smooth_mm > 0 else [0.0] * img.ndim
    mean = ndi.gaussian_filter(f, sigma) if smooth_mm > 0 else f
    c = core[box]
    vals = mean[c]
    lo, hi = np.percentile(vals, [1, 99])
    if hi <= lo:
        hi = lo + 1.0
    hist, edges = np.histogram(vals, bins=256, range=(lo, hi))
    hist = ndi.gaussian_filter1d(hist.astype(float), 256 / 20 / 2.355)
    peak = int(np.argmax(hist))
    mode = float((edges[peak] + edges[peak + 1]) / 2)
    # spread of normal marrow: raw values of voxels whose smoothed value is near the mode
    near = c & (np.abs(mean - mode) <= (hi - lo) / 20)
    _, sig = robust_sigma(f[near])
    if not np.isfinite(sig) or sig <= 0:
        _, sig = robust_sigma(f[c])
    cand = c & (np.abs(mean - mode) <= fence * sig)
    if np.count_nonzero(cand) >= MIN_VOXELS and hq < 1:
        sq = ndi.gaussian_filter(f * f, sigma) if smooth_mm > 0 else f * f
        local_sd = np.sqrt(np.maximum(sq - mean * mean, 0.0))
        cut = float(np.quantile(local_sd[cand], hq))
        homo = cand & (local_sd <= cut)
        if np.count_nonzero(homo) >= MIN_VOXELS:
            cand = homo
    if np.count_nonzero(cand) < MIN_VOXELS:
        cand = near if np.count_nonzero(near) >= MIN_VOXELS else c
    mask = np.zeros(img.shape, bool)
    mask[box] = cand
    med, rs = robust_sigma(img[mask])
    info = {"method": "auto", "steps": steps + [f"smooth {smooth_mm:g} mm", f"mode ± {fence:g} SD",
                                                f"local SD <= q{hq:g}"],
            "mode": mode, "mode_sigma": sig, "voxels": int(np.count_nonzero(mask)),
            "median": med, "sigma": rs, "edge_mm": edge_mm}
    return CleanReference(mask=mask, info=jsonable(info))


# ----------------------------------------------------------------------------- a point's marrow
_AUTO_CACHE: OrderedDict = OrderedDict()
_AUTO_LOCK = threading.Lock()


def auto_reference_cached(image: np.ndarray, region: np.ndarray, spacing: Any) -> CleanReference:
    """:func:`auto_reference` (defaults) of this image and region, remembered for the last
    four (image, region) contents: a napari session or a study segments one scan many
    times, and the automatic reference is the costly part of a click (~0.3 s on a SIJ
    scan, against ~15 ms to recognise the contents). Do not modify the returned mask."""
    img = np.ascontiguousarray(image)
    reg = _mask(region, img.shape, "region")
    key = (hashlib.blake2b(img.view(np.uint8), digest_size=16).hexdigest(),
           hashlib.blake2b(np.packbits(reg), digest_size=16).hexdigest(),
           img.shape, str(img.dtype), tuple(float(s) for s in _spacing(spacing, img.ndim)))
    with _AUTO_LOCK:
        if key in _AUTO_CACHE:
            _AUTO_CACHE.move_to_end(key)
            return _AUTO_CACHE[key]
    auto = auto_reference(img, region=reg, spacing=spacing)
    with _AUTO_LOCK:
        _AUTO_CACHE[key] = auto
        while len(_AUTO_CACHE) > 4:
            _AUTO_CACHE.popitem(last=False)
    return auto


#: A point needs this many voxels of the automatic reference's marrow near it (about 0.6 mL
#: on the SIJ protocol); with fewer, the normal marrow is looked for near the point alone.
NEAR_POINT_VOXELS = 500


def marrow_near_point(image: Any, point: Any, *, region: Any, spacing: Any = (1.0, 1.0, 1.0),
                      search_mm: float = 40.0) -> CleanReference | None:
    """The normal marrow a reference point stands for.

    A ball around a click is a sample of marrow whose brightness drifts across a STIR
    field of view (coil sensitivity) and that catches vessels or a lesion edge, so two
    users' balls in the same normal marrow give thresholds 4-10% apart (SIJ development
    scans). The point is read instead as "the normal marrow around here": the voxels of
    the automatic reference (:func:`auto_reference` of the whole region) within
    ``search_mm`` of it. Where fewer than :data:`NEAR_POINT_VOXELS` of them are that
    near (the marrow there is brighter or darker than the region's dominant mode), the
    automatic reference of the region within ``search_mm`` is used. Measured with 10
    simulated users per scan (docs/reference.md): threshold CV 0.6-1.7% with 40 mm.

    Returns
    -------
    CleanReference or None
        None when neither has :data:`MIN_VOXELS` voxels (use the ball, cleaned). ``info``
        says which (``method``), with ``search_mm``, and the whole region's automatic
        reference ``region_median`` / ``region_sigma``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> img = rng.normal(100, 10, (4, 60, 60)); img[:, 10:25, 10:25] += 150
    >>> region = np.zeros(img.shape, bool); region[:, 5:55, 5:55] = True
    >>> a = marrow_near_point(img, (2, 40, 40), region=region, spacing=(3.0, 0.6, 0.6), search_mm=10)
    >>> b = marrow_near_point(img, (2, 45, 30), region=region, spacing=(3.0, 0.6, 0.6), search_mm=10)
    >>> abs(a.info["median"] - b.info["median"]) < 2, bool(a.mask[:, 10:25, 10:25].any())
    (True, False)
    """
    img = np.asarray(image)
    reg = _mask(region, img.shape, "region")
    search_mm = _number(search_mm, "search_mm")
    sp = _spacing(spacing, img.ndim)
    p = np.asarray(point, float).reshape(-1)
    half = np.ceil(search_mm / sp).astype(int)
    lo = np.maximum(np.rint(p).astype(int) - half, 0)
    hi = np.minimum(np.rint(p).astype(int) + half + 1, img.shape)
    near = np.zeros(img.shape, bool)
    near[tuple(slice(a, b) for a, b in zip(lo, hi))] = ball(lo, hi, p, sp, search_mm)
    auto = auto_reference_cached(img, reg, sp)
    whole = {"region_median": auto.info["median"], "region_sigma": auto.info["sigma"]}
    mask, how = near & auto.mask, "automatic reference near the point"
    if np.count_nonzero(mask) < NEAR_POINT_VOXELS:
        local = near & reg
        if np.count_nonzero(local) < MIN_VOXELS:
            return None
        try:
            auto = auto_reference(img, region=local, spacing=sp)
        except ParameterError:
            return None
        mask, how = auto.mask, "automatic reference of the region near the point"
    voxels = int(np.count_nonzero(mask))
    if voxels < MIN_VOXELS:
        return None
    med, sig = robust_sigma(img[mask])
    return CleanReference(mask=mask, info=jsonable({**auto.info, "method": how, "search_mm": search_mm,
                                                    "voxels": voxels, "median": med, "sigma": sig, **whole}))
