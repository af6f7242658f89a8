"""Rigid registration of a follow-up scan onto its baseline (SimpleITK), with a quality check.

The follow-up (moving) is aligned to the baseline (fixed) by a rigid transform (6 degrees
of freedom: 3 rotations about the centre, 3 translations) that maximises Mattes mutual
information, which does not care about a different receiver gain or contrast. The start
is the better (by the metric) of the scanner frame as it is, the image centres and the
intensity centres of mass (``CenteredTransformInitializer``); then a three-level pyramid
(block means towards 4, 2 and 1 times the finest spacing on each axis: 4x4x1, 2x2x1, 1x1x1 for
0.6 x 0.6 x 3.3 mm voxels, whose slices are thick already) with a
regular-step gradient descent, each level sampling a fixed number of voxels.
Given a region (bone), the metric only samples the baseline inside that region grown by
``margin_mm``, so soft tissue and bowel that move differently do not steer the bones.

Quality is measured on the baseline grid, inside the region when given (else inside the
baseline's body), before (scanner frame) and after: normalised cross-correlation (NCC,
gain-invariant) and mutual information (MI, in nats, 32-bin histogram). A registration
that ends with NCC below ``warn_ncc`` warns; below ``min_ncc`` it is refused with
:class:`RegistrationError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BmevizError, ParameterError, warn
from ..volume import Volume
from ._sitk import require_sitk, to_sitk, transform_to_ras_matrix

__all__ = ["register", "Registration", "RegistrationError", "similarity", "REGISTER_DEFAULTS"]

#: Defaults of :func:`register` (also in provenance).
REGISTER_DEFAULTS: dict[str, Any] = {
    "metric": "mattes-mi",
    "bins": 32,
    "sampling": [20000, 40000, 40000],
    "levels": [4, 2, 1],
    "iterations": [100, 60, 30],
    "margin_mm": 15.0,
    "initializer": "auto",
    "seed": 0,
    "warn_ncc": 0.5,
    "min_ncc": 0.15,
}


class RegistrationError(BmevizError):
    """The follow-up could not be aligned with the baseline (too little overlap or similarity)."""


@dataclass(frozen=True)
class Registration:
    """A rigid transform from baseline to follow-up space and how good it is.

    ``transform`` is a ``SimpleITK.Euler3DTransform`` mapping baseline LPS points to
    follow-up LPS points (ITK's fixed-to-moving convention, what resampling needs and what
    3D Slicer reads from the ``.tfm``); ``matrix_ras`` is the same map as a 4x4 RAS matrix.
    """

    transform: Any = field(repr=False)
    matrix_ras: np.ndarray = field(repr=False)
    quality: dict = field(default_factory=dict)
    params: dict = field(repr=False, default_factory=dict)
    seconds: float = 0.0

    @property
    def rotation_deg(self) -> float:
        """Angle of the rotation (degrees)."""
        r = self.matrix_ras[:3, :3]
        return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))

    @property
    def translation_mm(self) -> float:
        """Length of the translation at the centre of rotation (mm)."""
        c = np.array(self.transform.GetCenter())
        return float(np.linalg.norm(np.array(self.transform.TransformPoint(c.tolist())) - c))

    def to_dict(self) -> dict:
        from .._jsonable import jsonable

        return jsonable({"matrix_ras": np.round(self.matrix_ras, 6), "rotation_deg": round(self.rotation_deg, 4),
                         "translation_mm": round(self.translation_mm, 4), "quality": self.quality,
                         "params": self.params, "seconds": round(self.seconds, 3)})

    def resample(self, moving: Volume, like: Volume, *, labels: bool = False, array: Any = None) -> np.ndarray:
        """``moving`` (or ``array`` on its grid) resampled onto ``like``'s grid.

        Linear interpolation for images (0 outside the follow-up's field of view), nearest
        neighbour for ``labels=True`` (ids kept, 0 outside).
        """
        return resample(moving, like, self.transform, labels=labels, array=array)


def resample(moving: Volume, like: Volume, transform, *, labels: bool = False, array: Any = None,
             outside: float = 0.0) -> np.ndarray:
    """Resample ``moving`` onto ``like``'s grid through ``transform`` (like -> moving points);
    images get ``outside`` where the moving scan has no data."""
    import SimpleITK as sitk

    data = moving.array if array is None else np.asarray(array)
    if labels:
        src = to_sitk(moving, data, dtype=np.int32)
        out = sitk.Resample(src, to_sitk(like, np.zeros(like.shape, np.uint8), dtype=None), transform,
                            sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
        return sitk.GetArrayFromImage(out)
    src = to_sitk(moving, data, dtype=np.float32)
    out = sitk.Resample(src, to_sitk(like, np.zeros(like.shape, np.uint8), dtype=None), transform,
                        sitk.sitkLinear, float(outside), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def _body(image: np.ndarray) -> np.ndarray:
    """Voxels above a low level (the body, not the air around it)."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros(image.shape, bool)
    level = 0.1 * float(np.percentile(finite, 99))
    return np.nan_to_num(image) > level


def similarity(a: np.ndarray, b: np.ndarray, mask: np.ndarray, *, bins: int = 32) -> dict:
    """NCC and MI (nats) of two images on one grid inside ``mask``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(4, 20, 20)); m = np.ones(a.shape, bool)
    >>> round(similarity(a, 0.7 * a + 5, m)["ncc"], 6)
    1.0
    >>> similarity(a, rng.normal(size=a.shape), m)["ncc"] < 0.1
    True
    """
    m = mask & np.isfinite(a) & np.isfinite(b)
    x = np.asarray(a, float)[m]
    y = np.asarray(b, float)[m]
    n = int(x.size)
    if x.size > 2_000_000:  # an even subsample is plenty for two summary numbers
        step = x.size // 1_000_000
        x, y = x[::step], y[::step]
    if x.size < 10 or x.std() == 0 or y.std() == 0:
        return {"ncc": float("nan"), "mi": float("nan"), "voxels": n}
    ncc = float(np.mean((x - x.mean()) * (y - y.mean())) / (x.std() * y.std()))
    h, _, _ = np.histogram2d(x, y, bins=bins)
    p = h / h.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    mi = float(np.sum(p[nz] * np.log(p[nz] / (px @ py)[nz])))
    return {"ncc": ncc, "mi": mi, "voxels": n}


def _factors(spacing, level: int) -> tuple[int, int, int]:
    """Per-axis shrink factors of a pyramid level: each axis shrinks towards ``level`` x the finest
    spacing, so 0.6 x 0.6 x 3.3 mm voxels shrink 4x4x1, 2x2x1, 1x1x1 and isotropic ones 4x4x4, ...

    >>> _factors((0.6, 0.6, 3.3), 4), _factors((1.0, 1.0, 1.0), 2)
    ((4, 4, 1), (2, 2, 2))
    """
    finest = min(spacing)
    return tuple(max(1, int(round(level * finest / s))) for s in spacing)  # type: ignore[return-value]


def _grow(mask: np.ndarray, spacing, margin_mm: float) -> np.ndarray:
    from scipy import ndimage as ndi

    if margin_mm <= 0:
        return mask
    # a box-shaped growth per axis, in voxels of that axis (cheap and enough for a metric mask)
    out = mask
    for ax, sp in enumerate(spacing):
        n = int(round(margin_mm / sp))
        if n > 0:
            out = ndi.maximum_filter1d(out.astype(np.uint8), size=2 * n + 1, axis=ax).astype(bool)
    return out


def register(
    baseline: Volume,
    followup: Volume,
    *,
    region: Any = None,
    sampling: Any = None,
    iterations: int = 100,
    margin_mm: float = REGISTER_DEFAULTS["margin_mm"],
    initializer: str = REGISTER_DEFAULTS["initializer"],
    seed: int = REGISTER_DEFAULTS["seed"],
    warn_ncc: float = REGISTER_DEFAULTS["warn_ncc"],
    min_ncc: float = REGISTER_DEFAULTS["min_ncc"],
) -> Registration:
    """Rigidly register ``followup`` onto ``baseline``.

    Parameters
    ----------
    baseline, followup : Volume
        The two visits (any grids; the follow-up's is its own scanner grid).
    region : mask on the baseline grid, optional
        Bone region: the metric samples only inside it grown by ``margin_mm``, and the
        quality is measured inside it.
    sampling : int or sequence of 3 ints, optional
        Number of baseline voxels (inside the metric mask) the metric samples at each
        pyramid level (in-plane shrink 4, 2, 1; default 20k, 40k, 40k), at random with a
        fixed ``seed``: the same inputs give the same transform. The cost of an iteration
        is set by the samples, not by the size of the scan.
    iterations : int
        Most iterations at any level (the levels stop at 100, 60 and 30 anyway).
    initializer : {'auto', 'scanner', 'geometry', 'moments'}
        The start: the scanner frame as it is, the image centres, or the intensity centres
        of mass; ``'auto'`` takes whichever of them the metric likes best.
    warn_ncc, min_ncc : float
        Warn when the NCC after registration is below ``warn_ncc``; refuse below ``min_ncc``.

    Returns
    -------
    Registration

    Raises
    ------
    RegistrationError
        The registration ends with NCC below ``min_ncc`` or the scans do not overlap.
    """
    from ..pipeline import resolve_mask

    sitk = require_sitk()
    for name, v in (("baseline", baseline), ("followup", followup)):
        if not isinstance(v, Volume):
            raise ParameterError(f"{name} must be a bmeviz.Volume; got {type(v).__name__}")
    if initializer not in {"auto", "scanner", "geometry", "moments"}:
        raise ParameterError(f"initializer must be 'auto', 'scanner', 'geometry' or 'moments'; got {initializer!r}")
    if sampling is None:
        sampling = REGISTER_DEFAULTS["sampling"]
    try:
        sampling = [int(v) for v in np.broadcast_to(np.asarray(sampling, dtype=float), (3,))]
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(f"sampling must be a number of samples (or 3, one per level); got {sampling!r}") from None
    if not all(v >= 1000 for v in sampling):
        raise ParameterError(f"sampling must be at least 1000 samples per level; got {sampling!r}")
    if int(iterations) < 1:
        raise ParameterError(f"iterations must be at least 1; got {iterations!r}")
    t0 = time.perf_counter()
    region_mask = resolve_mask(region, baseline, "region")
    fixed_arr = np.nan_to_num(np.asarray(baseline.array, dtype=np.float32))
    moving_arr = np.nan_to_num(np.asarray(followup.array, dtype=np.float32))
    fixed = to_sitk(baseline, fixed_arr)
    moving = to_sitk(followup, moving_arr)
    if region_mask is not None:
        metric_mask = _grow(region_mask, baseline.spacing, float(margin_mm))
    else:
        metric_mask = _body(fixed_arr)
    fixed_mask = to_sitk(baseline, metric_mask.astype(np.uint8), dtype=None)

    levels = [_factors(fixed.GetSpacing(), f) for f in REGISTER_DEFAULTS["levels"]]

    def shrink(img, factors, mask=False):
        if factors == (1, 1, 1):
            return img
        if mask:
            return sitk.BinShrink(sitk.Cast(img, sitk.sitkFloat32), list(factors)) > 0.5
        return sitk.BinShrink(img, list(factors))  # block means: shrinking without aliasing

    def method(mask_img, fraction, iters):
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=REGISTER_DEFAULTS["bins"])
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        # SimpleITK's seed 0 means "from the wall clock": seeds are shifted by one, so every
        # seed (0 included) gives the same samples each run
        reg.SetMetricSamplingPercentage(float(fraction), int(seed) + 1)
        reg.SetMetricFixedMask(mask_img)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=int(iters),
                                                     relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
        reg.SetOptimizerScalesFromPhysicalShift()
        return reg

    def fraction(mask_img, target):
        n = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask_img)))
        return min(1.0, max(1e-4, target / max(n, 1.0)))

    # the pyramid is built here, per axis: thick slices are not shrunk further; the
    # starts are compared on the coarsest level
    pyramid = [(shrink(fixed, lv), shrink(moving, lv), shrink(fixed_mask, lv, mask=True)) for lv in levels]
    small_f, small_m, small_mask = pyramid[0]
    candidates = {}
    if initializer in ("auto", "scanner"):
        tx = sitk.Euler3DTransform()
        centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()])
        tx.SetCenter(centre)
        candidates["scanner"] = tx
    for name, mode in (("geometry", sitk.CenteredTransformInitializerFilter.GEOMETRY),
                       ("moments", sitk.CenteredTransformInitializerFilter.MOMENTS)):
        if initializer in ("auto", name):
            candidates[name] = sitk.CenteredTransformInitializer(small_f, small_m, sitk.Euler3DTransform(), mode)
    scores = {}
    probe = method(small_mask, fraction(small_mask, sampling[0]), 1)
    for name, tx in candidates.items():
        probe.SetInitialTransform(tx, inPlace=False)
        try:
            scores[name] = float(probe.MetricEvaluate(small_f, small_m))
        except RuntimeError:  # no overlap from this start
            scores[name] = float("inf")
    best = min(scores, key=scores.get)
    if not np.isfinite(scores[best]):
        raise RegistrationError("the follow-up does not overlap the baseline from any start (scanner frame, image "
                                "centres, centres of mass): are they scans of the same body part?")
    current = sitk.Euler3DTransform(candidates[best])
    level_log = []
    for (f_img, m_img, k_img), target, iters in zip(pyramid, sampling, REGISTER_DEFAULTS["iterations"]):
        reg = method(k_img, fraction(k_img, target), min(int(iters), int(iterations)))
        reg.SetInitialTransform(current, inPlace=False)
        try:
            out = reg.Execute(f_img, m_img)
        except RuntimeError as exc:
            raise RegistrationError(f"registration failed: {str(exc).strip().splitlines()[-1]}") from None
        if out.GetName() == "CompositeTransform":
            comp = sitk.CompositeTransform(out)
            out = comp.GetNthTransform(comp.GetNumberOfTransforms() - 1)
        current = sitk.Euler3DTransform(out)
        level_log.append({"iterations": int(reg.GetOptimizerIteration()), "metric": float(reg.GetMetricValue())})
    final = current
    seconds_reg = time.perf_counter() - t0

    # quality, on the baseline grid
    qmask = region_mask if region_mask is not None else _body(fixed_arr)
    moved_before = resample(followup, baseline, sitk.Euler3DTransform(), array=moving_arr, outside=np.nan)
    moved_after = resample(followup, baseline, final, array=moving_arr, outside=np.nan)
    inside_after = np.isfinite(moved_after)  # NaN where the follow-up has no data
    before = similarity(fixed_arr, moved_before, qmask)
    after = similarity(fixed_arr, moved_after, qmask)
    overlap = float(np.count_nonzero(qmask & inside_after) / max(1, np.count_nonzero(qmask)))
    quality = {
        "ncc_before": before["ncc"], "ncc_after": after["ncc"], "mi_before": before["mi"], "mi_after": after["mi"],
        "measured_in": "region" if region_mask is not None else "body", "overlap_after": overlap,
        "metric_final": level_log[-1]["metric"], "levels": level_log, "start": best,
        "start_metrics": {k: (None if not np.isfinite(v) else round(v, 5)) for k, v in scores.items()},
    }
    params = {**REGISTER_DEFAULTS, "sampling": sampling, "iterations": int(iterations),
              "margin_mm": float(margin_mm), "initializer": initializer, "seed": int(seed),
              "warn_ncc": float(warn_ncc), "min_ncc": float(min_ncc), "transform": "Euler3DTransform (rigid, 6 dof)",
              "metric_mask": "region grown by margin_mm" if region_mask is not None else "baseline body"}
    result = Registration(transform=final, matrix_ras=transform_to_ras_matrix(final), quality=quality, params=params,
                          seconds=time.perf_counter() - t0)
    quality["seconds_registration"] = seconds_reg
    ncc = after["ncc"]
    if not np.isfinite(ncc) or ncc < min_ncc or overlap < 0.3:
        raise RegistrationError(
            f"registration is poor (NCC after {ncc:.3f}, below {min_ncc}; {100 * overlap:.0f}% of the "
            f"{quality['measured_in']} overlaps the follow-up): check that both visits show the same anatomy, "
            "or give a bone region to focus on")
    if ncc < warn_ncc or (np.isfinite(before["ncc"]) and ncc < before["ncc"] - 0.02):
        warn(f"registration may be poor: NCC {before['ncc']:.3f} before, {ncc:.3f} after (warning below "
             f"{warn_ncc}); look at the checkerboard figure before trusting the change")
    return result


