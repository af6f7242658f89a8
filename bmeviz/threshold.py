"""Reference statistics and threshold rules for bone marrow edema (BME).

On a fat-suppressed fluid-sensitive sequence (STIR) normal marrow is dark and BME is
bright. Intensities are not calibrated between scans, so a threshold is set relative to
a *reference region* of normal marrow on the same scan: the statistics of the reference
(:func:`reference_stats`) and a rule (:func:`compute_threshold`) give a scalar, and the
caller builds the mask (``image >= threshold.value``), as in scikit-image.

Rules
-----
``'q3-iqr'``
    ``Q3 + k * IQR`` of the reference. With ``k=None`` or ``k='adaptive'``, k is chosen
    as in Hepburn et al. ("Volume of hyperintense inflammation", VHI): it starts at 1.5
    and rises in steps of 0.05 until ``max(reference) - threshold < IQR / 2``, so the
    threshold settles just under the brightest normal marrow voxel.
``'mean-sd'``
    ``mean + k * SD`` (sample SD, ``ddof=1``), default ``k=2``.
``'percentile'``
    The ``k``-th percentile of the reference (linear interpolation), default ``k=99``.
``'otsu'``
    Otsu's threshold of the image values inside ``region`` (no reference needed).

A second, higher threshold (``high_k``) gives the strong cores for hysteresis
thresholding (``skimage.filters.apply_hysteresis_threshold(image, t.value, t.high)``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._arrays import ball
from ._jsonable import jsonable
from .errors import ParameterError, warn

__all__ = [
    "ReferenceStats",
    "Threshold",
    "RULES",
    "reference_stats",
    "sphere_mask",
    "compute_threshold",
]

#: The threshold rules :func:`compute_threshold` knows.
RULES = ("q3-iqr", "mean-sd", "percentile", "otsu")

#: Default ``k`` of each rule (``None``: adaptive for q3-iqr, unused for otsu).
_DEFAULT_K = {"q3-iqr": None, "mean-sd": 2.0, "percentile": 99.0, "otsu": None}

#: Adaptive q3-iqr: start, step and cap of k (Hepburn et al.).
ADAPTIVE_K_START = 1.5
ADAPTIVE_K_STEP = 0.05
ADAPTIVE_K_MAX = 20.0

#: Fewer reference voxels than this give a warning: quartiles become unstable.
MIN_REFERENCE_VOXELS = 30


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _as_image(image: Any, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 0 or arr.size == 0:
        raise ParameterError(f"{name} must be a non-empty array; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ParameterError(f"{name} must hold numbers; got dtype {arr.dtype}")
    return arr


def _as_mask(mask: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A bool mask of ``shape`` from a bool array or an array of 0/1 values."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ParameterError(
            f"{name} has shape {m.shape} but the image has shape {tuple(shape)}; "
            f"pass a mask on the image's grid"
        )
    if m.dtype == bool:
        return m
    if not np.issubdtype(m.dtype, np.number):
        raise ParameterError(f"{name} must be a boolean mask; got dtype {m.dtype}")
    if np.any((m != 0) & (m != 1)):
        raise ParameterError(
            f"{name} must be a boolean mask (or hold only 0 and 1); it has other values: "
            f"pass e.g. `labels == 1` to select one label"
        )
    return m != 0


def _check_k(k: Any, name: str = "k") -> float:
    if isinstance(k, bool) or not isinstance(k, numbers.Real):
        raise ParameterError(f"{name} must be a number; got {k!r}")
    k = float(k)
    if not math.isfinite(k):
        raise ParameterError(f"{name} must be finite; got {k}")
    if k < 0:
        raise ParameterError(f"{name} must not be negative; got {k}")
    return k


# ---------------------------------------------------------------------------------------
# reference statistics
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceStats:
    """Statistics of the reference (normal marrow) intensities.

    Non-finite voxels are left out; ``n`` counts the voxels used. ``sd`` is the sample
    standard deviation (``ddof=1``; 0 for a single voxel). Quartiles use numpy's
    default linear interpolation.
    """

    n: int
    mean: float
    sd: float
    median: float
    q1: float
    q3: float
    iqr: float
    min: float
    max: float

    def to_dict(self) -> dict:
        """The statistics as a JSON-serialisable dict of plain ints and floats."""
        return jsonable(asdict(self))


def _reference_values(image: np.ndarray, reference: Any) -> np.ndarray:
    ref = _as_mask(reference, image.shape, "reference")
    if not ref.any():
        raise ParameterError(
            "reference mask is empty: draw a region of normal marrow on the image"
        )
    values = np.asarray(image[ref], dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        n_bad = int(values.size - np.count_nonzero(finite))
        if n_bad == values.size:
            raise ParameterError(
                "reference covers only NaN/infinite image values: place it on real "
                "normal marrow"
            )
        warn(f"reference: ignored {n_bad} of {values.size} voxels with NaN/infinite values")
        values = values[finite]
    return values


def _stats_of(values: np.ndarray) -> ReferenceStats:
    q1, median, q3 = np.percentile(values, [25.0, 50.0, 75.0])
    n = int(values.size)
    return ReferenceStats(
        n=n,
        mean=float(values.mean()),
        sd=float(values.std(ddof=1)) if n > 1 else 0.0,
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        iqr=float(q3 - q1),
        min=float(values.min()),
        max=float(values.max()),
    )


def reference_stats(image: np.ndarray, reference: np.ndarray) -> ReferenceStats:
    """Statistics of the image intensities inside a reference region of normal marrow.

    Parameters
    ----------
    image : ndarray
        The image (e.g. STIR), any shape.
    reference : ndarray of bool
        Mask of normal marrow, same shape as ``image`` (0/1 numbers are accepted).

    Returns
    -------
    ReferenceStats
        ``n, mean, sd, median, q1, q3, iqr, min, max`` of the finite values in the
        reference (NaN and infinite voxels are left out, with a warning).

    Raises
    ------
    ParameterError
        Shapes differ, the mask is empty or covers only NaN values.

    Warns
    -----
    BmevizWarning
        Fewer than 30 usable voxels: the quartiles are unstable.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(80, dtype=float).reshape(1, 10, 8)
    >>> ref = np.zeros(image.shape, bool); ref[0, 1:5, :] = True   # values 8..39
    >>> s = reference_stats(image, ref)
    >>> s.n, s.median, s.q3, s.iqr, s.max
    (32, 23.5, 31.25, 15.5, 39.0)
    """
    img = _as_image(image)
    values = _reference_values(img, reference)
    if values.size < MIN_REFERENCE_VOXELS:
        warn(
            f"reference has only {values.size} usable voxels (fewer than "
            f"{MIN_REFERENCE_VOXELS}): its quartiles are unstable; draw a larger region"
        )
    return _stats_of(values)


# ---------------------------------------------------------------------------------------
# a ball-shaped reference
# ---------------------------------------------------------------------------------------
def sphere_mask(shape, center, radius_mm: float, *, spacing) -> np.ndarray:
    """A ball of physical radius around a voxel, clipped to the array.

    Useful as a quick reference region: a click on normal marrow plus a radius.

    Parameters
    ----------
    shape : tuple of int
        Shape of the array, e.g. ``(slices, rows, columns)``.
    center : sequence of float
        Index of the centre along each axis (fractional allowed); it must round to a
        voxel inside the array.
    radius_mm : float
        Radius in mm, > 0.
    spacing : sequence of float
        Voxel size in mm along each axis, e.g. ``(3.0, 0.5, 0.5)``.

    Returns
    -------
    ndarray of bool
        True where the voxel centre lies within ``radius_mm`` of ``center``. Only the
        bounding box of the ball is computed; the rest is a plain zero fill.

    Raises
    ------
    ParameterError
        Bad shape or spacing, ``radius_mm <= 0``, ``center`` outside the array.

    Examples
    --------
    >>> m = sphere_mask((5, 9, 9), (2, 4, 4), 2.0, spacing=(2.0, 1.0, 1.0))
    >>> int(m.sum()), m[:, 4, 4].astype(int).tolist()
    (15, [0, 1, 1, 1, 0])
    """
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ParameterError(f"shape must be a tuple of integers; got {shape!r}") from None
    if len(shp) == 0 or any(s <= 0 for s in shp):
        raise ParameterError(f"shape must be positive integers; got {shape!r}")
    ndim = len(shp)
    sp = np.asarray(spacing, dtype=float).reshape(-1)
    if sp.size != ndim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ParameterError(
            f"spacing must be {ndim} positive voxel sizes in mm (one per axis); got {spacing!r}"
        )
    c = np.asarray(center, dtype=float).reshape(-1)
    if c.size != ndim or not np.all(np.isfinite(c)):
        raise ParameterError(f"center must be {ndim} finite indices; got {center!r}")
    if np.any(np.rint(c) < 0) or np.any(np.rint(c) > np.array(shp) - 1):
        raise ParameterError(
            f"center {tuple(c.tolist())} is outside the array of shape {shp}; "
            f"pick a voxel inside the image"
        )
    if isinstance(radius_mm, bool) or not isinstance(radius_mm, numbers.Real):
        raise ParameterError(f"radius_mm must be a number of mm; got {radius_mm!r}")
    r = float(radius_mm)
    if not math.isfinite(r) or r <= 0:
        raise ParameterError(f"radius_mm must be > 0 mm; got {radius_mm!r}")

    half = r / sp
    lo = np.maximum(np.ceil(c - half - 1e-9).astype(int), 0)
    hi = np.minimum(np.floor(c + half + 1e-9).astype(int), np.array(shp) - 1)
    out = np.zeros(shp, dtype=bool)
    if np.any(hi < lo):  # cannot happen with the centre inside, kept for safety
        return out
    out[tuple(slice(a, b + 1) for a, b in zip(lo, hi))] = ball(lo, hi + 1, c, sp, r, rtol=1e-12)
    return out


# ---------------------------------------------------------------------------------------
# thresholds
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Threshold:
    """A threshold and how it was obtained.

    Attributes
    ----------
    value : float
        The lower threshold: voxels ``>= value`` are BME candidates.
    rule : str
        ``'q3-iqr'``, ``'mean-sd'``, ``'percentile'`` or ``'otsu'``.
    k : float or None
        The k actually used (the one the adaptive q3-iqr search settled on); the
        percentile for ``'percentile'``; None for ``'otsu'``.
    stats : ReferenceStats or None
        Statistics of the reference, when one was given.
    high : float or None
        Strong-core threshold for hysteresis, or None.
    details : dict
        How the value was found, e.g. ``{'adaptive': True, 'steps': 7}``.
    """

    value: float
    rule: str
    k: float | None
    stats: ReferenceStats | None
    high: float | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (``stats`` as a nested dict)."""
        return {
            "value": float(self.value),
            "rule": self.rule,
            "k": None if self.k is None else float(self.k),
            "stats": None if self.stats is None else self.stats.to_dict(),
            "high": None if self.high is None else float(self.high),
            "details": jsonable(dict(self.details)),
        }


def _adaptive_q3_iqr(stats: ReferenceStats, top: float | None = None,
                     top_label: str = "max") -> tuple[float, float, dict]:
    """The adaptive k of Hepburn et al.: the smallest k = 1.5 + n*0.05 with
    ``top - (Q3 + k*IQR) < IQR/2``, ``top`` the reference maximum (published) or a robust
    high quantile of it. Returns ``(value, k, details)``."""
    q3, iqr = stats.q3, stats.iqr
    top = stats.max if top is None else float(top)
    if iqr <= 0:
        raise ParameterError(
            "reference intensities have an interquartile range of 0, so the adaptive "
            "q3-iqr rule is undefined: draw a larger reference region or use "
            "rule='mean-sd' or rule='percentile'"
        )
    max_steps = int(round((ADAPTIVE_K_MAX - ADAPTIVE_K_START) / ADAPTIVE_K_STEP))
    steps = 0
    while True:
        # k from an integer step count: no drift from repeated float additions
        k = round(ADAPTIVE_K_START + steps * ADAPTIVE_K_STEP, 10)
        value = q3 + k * iqr
        if top - value < iqr / 2:
            capped = False
            break
        if steps >= max_steps:
            capped = True
            warn(
                f"adaptive q3-iqr: k reached its cap of {ADAPTIVE_K_MAX} before the threshold "
                f"came within IQR/2 of the reference maximum; the reference probably "
                f"contains bright (non-normal) voxels: check it"
            )
            break
        steps += 1
    details = {
        "adaptive": True,
        "steps": steps,
        "k_start": ADAPTIVE_K_START,
        "k_step": ADAPTIVE_K_STEP,
        "capped": capped,
        "top": top_label,
        "gap_to_reference_max": top - value,
    }
    return value, k, details


def _check_top(adaptive_top: Any) -> float | None:
    if adaptive_top is None or (isinstance(adaptive_top, str) and adaptive_top == "max"):
        return None
    if isinstance(adaptive_top, bool) or not isinstance(adaptive_top, numbers.Real) or not (
            50 <= float(adaptive_top) <= 100):
        raise ParameterError(
            f"adaptive_top must be 'max' (published rule) or a percentile in [50, 100]; got {adaptive_top!r}")
    return float(adaptive_top)


def _rule_value(rule: str, k: Any, stats: ReferenceStats, values: np.ndarray, name: str,
                adaptive_top: float | None = None):
    """``(value, k_used, details)`` of a reference-based rule."""
    if rule == "q3-iqr":
        if k is None or (isinstance(k, str) and k == "adaptive"):
            if adaptive_top is None:
                return _adaptive_q3_iqr(stats)
            return _adaptive_q3_iqr(stats, float(np.percentile(values, adaptive_top)), f"p{adaptive_top:g}")
        if isinstance(k, str):
            raise ParameterError(f"{name} must be a number or 'adaptive' for rule='q3-iqr'; got {k!r}")
        kf = _check_k(k, name)
        if stats.iqr <= 0:
            warn(
                "reference intensities have an interquartile range of 0: the q3-iqr "
                "threshold equals Q3 whatever k is"
            )
        return stats.q3 + kf * stats.iqr, kf, {"adaptive": False}
    if isinstance(k, str):
        raise ParameterError(
            f"{name}={k!r}: 'adaptive' only applies to rule='q3-iqr'; give a number"
        )
    if rule == "mean-sd":
        kf = _check_k(_DEFAULT_K[rule] if k is None else k, name)
        return stats.mean + kf * stats.sd, kf, {}
    if rule == "percentile":
        kf = _check_k(_DEFAULT_K[rule] if k is None else k, name)
        if not 0 < kf <= 100:
            raise ParameterError(
                f"{name} is the percentile for rule='percentile' and must be in (0, 100]; got {kf}"
            )
        return float(np.percentile(values, kf)), kf, {}
    raise AssertionError(rule)  # pragma: no cover


def compute_threshold(
    image: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    rule: str = "q3-iqr",
    k: float | str | None = None,
    region: np.ndarray | None = None,
    high_k: float | str | None = None,
    adaptive_top: float | str | None = None,
) -> Threshold:
    """Compute a BME threshold relative to normal marrow (or by Otsu in a region).

    Parameters
    ----------
    image : ndarray
        The fluid-sensitive image (STIR), any shape.
    reference : ndarray of bool, optional
        Mask of normal marrow; required by every rule except ``'otsu'``.
    rule : {'q3-iqr', 'mean-sd', 'percentile', 'otsu'}
        How to set the threshold (see the module docstring).
    k : float or 'adaptive', optional
        The rule's parameter. ``'q3-iqr'``: None or ``'adaptive'`` (default) for the
        adaptive k of Hepburn et al., or a number used as is. ``'mean-sd'``: default 2.
        ``'percentile'``: the percentile in (0, 100], default 99. ``'otsu'``: unused
        (must be None).
    region : ndarray of bool, optional
        The region searched for BME. Required by ``'otsu'`` (the threshold is computed
        from the image inside it); other rules only check its shape.
    high_k : float or 'adaptive', optional
        If given, also compute ``high``, the same rule with ``k=high_k``, for hysteresis.
        It must give ``high >= value``. Not available with ``'otsu'``.
    adaptive_top : 'max' or float, optional
        What the adaptive q3-iqr rule brings the threshold within IQR/2 of: the reference
        maximum (None or ``'max'``, the published rule) or this percentile of the
        reference (e.g. 99), which a few bright outliers (a vessel) do not move.

    Returns
    -------
    Threshold
        ``value`` (voxels ``>= value`` are candidates), the rule, the k used, the
        reference statistics, ``high`` and ``details``.

    Raises
    ------
    ParameterError
        Unknown rule, negative or out-of-range k, missing reference (or region for
        otsu), masks of the wrong shape, empty masks, an all-NaN reference,
        ``high < value``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> image = rng.normal(100, 10, (4, 32, 32))
    >>> ref = np.zeros(image.shape, bool); ref[:, 8:24, 8:24] = True
    >>> t = compute_threshold(image, reference=ref, rule='mean-sd', k=2)
    >>> bool(np.isclose(t.value, image[ref].mean() + 2 * image[ref].std(ddof=1)))
    True
    >>> t = compute_threshold(image, reference=ref)             # adaptive Q3 + k*IQR
    >>> t.rule, t.k >= 1.5, bool(t.stats.max - t.value < t.stats.iqr / 2)
    ('q3-iqr', True, True)
    >>> t = compute_threshold(image, reference=ref, rule='percentile', k=95, high_k=99)
    >>> bool(t.high >= t.value)
    True
    """
    top_q = _check_top(adaptive_top)
    if not isinstance(rule, str) or rule not in RULES:
        raise ParameterError(
            f"unknown threshold rule {rule!r}; choose one of {', '.join(repr(r) for r in RULES)}"
        )
    img = _as_image(image)

    stats = None
    values = None
    if reference is not None:
        values = _reference_values(img, reference)
        if values.size < MIN_REFERENCE_VOXELS:
            warn(
                f"reference has only {values.size} usable voxels (fewer than "
                f"{MIN_REFERENCE_VOXELS}): its quartiles are unstable; draw a larger region"
            )
        stats = _stats_of(values)

    region_mask = None
    if region is not None:
        region_mask = _as_mask(region, img.shape, "region")
        if not region_mask.any():
            raise ParameterError("region mask is empty: it must cover the bone searched for BME")

    if rule == "otsu":
        if k is not None:
            raise ParameterError("k is not used by rule='otsu'; leave it as None")
        if high_k is not None:
            raise ParameterError(
                "high_k (hysteresis) is not available with rule='otsu'; use a reference "
                "rule ('q3-iqr', 'mean-sd', 'percentile') or leave high_k as None"
            )
        if region_mask is None:
            raise ParameterError(
                "rule='otsu' needs region=, a mask of the bone searched for BME"
            )
        from skimage.filters import threshold_otsu

        inside = np.asarray(img[region_mask], dtype=np.float64)
        inside = inside[np.isfinite(inside)]
        if inside.size == 0 or inside.min() == inside.max():
            raise ParameterError(
                "rule='otsu' needs at least two different finite image values inside "
                "region; the region is uniform or all NaN"
            )
        value = float(threshold_otsu(inside))
        details = {"region_voxels": int(np.count_nonzero(region_mask)), "otsu_values": int(inside.size)}
        return Threshold(value=value, rule=rule, k=None, stats=stats, high=None, details=details)

    if stats is None:
        raise ParameterError(
            f"rule={rule!r} needs reference=, a mask of normal marrow on the same image "
            f"(or use rule='otsu' with region=)"
        )
    value, k_used, details = _rule_value(rule, k, stats, values, "k", top_q)
    high = None
    if high_k is not None:
        high, high_k_used, high_details = _rule_value(rule, high_k, stats, values, "high_k", top_q)
        if high < value:
            raise ParameterError(
                f"high_k={high_k!r} gives a high threshold {high:.6g} below the low one "
                f"{value:.6g} (k={k_used:.6g}); choose high_k larger than k"
            )
        details = {**details, "high_k": float(high_k_used)}
        if high_details.get("adaptive"):
            details["high_details"] = high_details
        high = float(high)
    for name, v in (("threshold", value), ("high threshold", high)):
        if v is not None and not np.isfinite(v):
            raise ParameterError(f"the {name} is {v} (k={k!r}, high_k={high_k!r}): choose a smaller k")
    return Threshold(
        value=float(value), rule=rule, k=float(k_used), stats=stats, high=high, details=details
    )
