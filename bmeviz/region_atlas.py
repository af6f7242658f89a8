"""Region assist from atlases: drawn regions of other patients, registered to the clicked scan.

An *atlas* is a T1-weighted scan of another patient with its bone region drawn by hand
(the same protocol and the same drawing rule as the regions wanted). For a new scan and
one click per bone, each atlas is registered to the scan and its region carried over; the
regions of the atlases that matched best are fused. No trained model: SimpleITK
registration only (:mod:`bmeviz.region_refine` can then redraw the border with a classifier
trained on the same folder).

A scan stored in another array orientation than the atlases' (rows, columns or slices in
another order) is first turned into theirs by transposes and flips, and the region turned
back (:func:`bmeviz.geometry.orientation_like`); so is an atlas stored otherwise than the
folder's first (:mod:`bmeviz.region_atlas_files`, which reads the folders).

Per atlas (all on intensities normalised by the 99th percentile):

1. Start: the atlas's own clicks (the deepest bright point of each bone of its region,
   found automatically) are shifted onto the user's clicks (centre onto centre), with
   the rotation between the two scans' image frames; an exhaustive search (one SimpleITK
   run, a fraction of a second) of translations (LPS x and y +-15 mm in 5 mm steps, z +-6.6 mm) and
   rotations about LPS z (-6, 0, +6 degrees; on these oblique-coronal SIJ scans not the slice
   normal) on the coarsest level picks the start of best mutual information.
2. Rigid, then affine registration (Mattes mutual information, sampled within
   ``metric_mm`` of the clicks), level by level on the pyramid of ``pyramid_mm`` (4.8-mm, then
   2.4-mm pixels in-plane: 8x and 4x on the SIJ; thick slices are not shrunk). The pyramid is built once per image, not by
   SimpleITK in every stage: that cut the whole outline from about 11 s to 3 s.
3. Ranking: the normalised cross-correlation between the warped atlas T1 and the
   scan within the warped region widened by ``rank_mm``; it needs no truth on the scan.
   Only the ``n_best`` best continue.
4. Fast symmetric-forces demons at reduced in-plane size (``demons_shrink``) refine each
   selected atlas; its region is warped (linear) to a probability.

Fusion (of the ``n_best`` = 4 best): the probabilities are averaged with weights = the ranking correlation, the
region is the mean >= 0.35 (``threshold``), only components that touch a click (within
5 mm) are kept and holes are filled slice by slice. An atlas counts only where its own scan
reaches (``fov``: its field of view is warped too); where none reaches, the nearest reached
slice's value stands. Before (2026-12-03), an atlas said "no bone" beyond its slices, and the
end slices of a scan that covers more of the joint than the atlases lost their bone.

Atlases are given as a folder of ``<id>_T1W.nii.gz`` + ``<id>_disease_region.nii.gz``,
a CSV manifest with ``image,region`` columns (paths relative to the CSV), or a list of
``(Volume, mask)`` pairs. The scan itself is never used as its own atlas: an atlas with
the scan's id (its file name without ``_T1W``), its file, or its voxel data is left out.

Repeatable: every stage draws its own fixed metric sample, each registration runs on one
SimpleITK thread, and the atlases run side by side in Python threads.

Check: the fused atlases' regions are compared (mean pairwise Dice, ``info["agreement"]``);
below ``agreement_warn`` a :class:`~bmeviz.errors.BmevizWarning` says the region is likely
wrong in places.

Measured on 7 SIJ scans, leave-one-out, in ``docs/region.md``: mean Dice 0.77 against the
manual regions with the demons (the classical outline: 0.36), 5-6 s per scan, but far from a
drawn region; registration of other patients on 25 thick slices sometimes goes wrong (1234:
0.66), which the ranking only partly catches. With a U-Net refiner (no demons): 0.909 in 3 s.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .errors import ParameterError, warn
from .geometry import directions, orientation_like, turned, turned_index, unturn
from .region_atlas_files import (
    Atlas,
    _describe,
    _is_target,
    _target_keys,
    load_atlases,
)
from .volume import Volume

__all__ = ["Atlas", "load_atlases", "prepare_atlases", "atlas_probability", "atlas_outline", "ATLAS_PARAMS"]

#: Tunable parameters of the atlas path (see the module docstring).
ATLAS_PARAMS: dict[str, Any] = {
    "n_best": 4,  # atlases kept after the affine ranking (demons + fusion). 7 SIJ scans, leave-one-out (6 atlases):
    # 4 against 3, the atlas region 0.767 against 0.739, with a U-Net refiner 0.883 against 0.875 (docs/region.md)
    "metric_mm": 70.0,  # registration metric sampled within this distance of the clicks
    "pyramid_mm": (4.8, 2.4),  # the pyramid's in-plane pixels: the search at the first, then rigid and affine at
    # each (thick slices are not shrunk; _shrunk). On the SIJ's 0.6-mm pixels 8x and 4x: with sampling 0.05 the same
    # atlas Dice as one level at 4x with 0.2 (7 SIJ scans, no demons: 0.697 against 0.694) in a third of the time
    # (1.9 s against 6.2 s per outline). In mm since 2026-12-03 (before: 'shrink' (8, 4), pixels): 1013 and 1234
    # resampled to 1-mm pixels, atlas region (no demons) 0.643 -> 0.728 and 0.358 -> 0.424 (0.699 and 0.606 as
    # stored); the same levels, and the same regions, on the SIJ's own pixels (docs/region.md)
    "iterations": 60,  # per stage and level
    "search_mm": (15.0, 15.0, 6.6),  # exhaustive search around the start: LPS x, y, z (mm) ...
    "search_step_mm": 5.0,  # ... in these steps (z: one step of search_mm[2] each side), before the rigid stage
    "search_deg": 6.0,  # ... and in-plane rotations by -this, 0, +this degrees
    "sampling": 0.05,  # fraction of the metric voxels sampled (of the shrunk scan within metric_mm of the clicks)
    "seeds": (1,),  # metric sampling seeds: fixed, so the same clicks give the same region run after run. Each
    # stage (search, rigid, affine) draws its own sample from the seed: with one sample for all three, a seed that
    # misled the search misled the rest (a good atlas then landed at Dice 0.3; docs/region.md). Several seeds:
    # each atlas is registered once per seed and the best by the ranking is kept ((1, 2): +0.01 mean Dice at
    # 1.5x the time, less than the spread between single seeds).
    "rank_mm": 5.0,  # the warped region widened by this much is where the ranking correlation is computed
    "demons": True,  # the deformable stage (off: the selected atlases keep their affine registration)
    "demons_shrink": (4, 4, 1),  # demons on the image shrunk by (column, row, slice)
    "demons_iterations": 50,
    "demons_sd": 1.5,  # Gaussian smoothing of the displacement field (voxels of the shrunk grid)
    "threshold": 0.35,  # fused probability threshold. The fused region came out smaller than the drawn one at 0.5
    # (6 of 7 SIJ scans): leave-one-out mean Dice 0.727 at 0.5, 0.756 at 0.35, 0.728 at 0.25 (docs/region.md)
    "agreement_warn": 0.4,  # warn when the fused atlases' regions agree less than this (mean pairwise Dice): on
    # the 7 SIJ scans 0.51-0.70 where the region reached Dice 0.71-0.82, 0.32 on the weakest (1234, 0.67)
    "touch_mm": 5.0,  # a fused component is kept if within this distance of a click
    "fov": True,  # fusion counts an atlas only where its scan reaches (its field of view warped onto the scan);
    # where none reaches, each voxel takes the fused value of the nearest reached slice. False: an atlas votes
    # "no bone" beyond its field of view
    "threads": 2,  # atlases registered side by side (each on one SimpleITK thread: repeatable)
}

# ----------------------------------------------------------------------------- registration
def _norm(sitk, volume: Volume):
    from .followup._sitk import to_sitk

    a = np.nan_to_num(np.asarray(volume.array, np.float32))
    hi = float(np.percentile(a, 99)) or 1.0
    return to_sitk(volume, np.clip(a / hi, 0, 1.5))


def atlas_clicks(image: Volume, region: np.ndarray) -> np.ndarray:
    """One point per bone of a drawn SIJ region: the deepest bright point (smoothed T1 above
    the region's median) of its right ilium, sacrum and left ilium (RAS x below -45 mm,
    within 20 mm, above +45 mm of the region's median x); fewer if a part is empty."""
    from scipy import ndimage as ndi

    # On the region's box widened by the smoothing's reach (8 pixels in-plane, none across slices): the
    # same points as on the whole scan, in half the time (an atlas is prepared once per process)
    pts = np.argwhere(region)
    if not len(pts):
        return np.zeros((0, 3), dtype=int)
    margin = np.array([0, 9, 9])
    lo, hi = np.maximum(pts.min(0) - margin, 0), np.minimum(pts.max(0) + margin + 1, region.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    region = np.asarray(region, bool)[box]
    sm = ndi.gaussian_filter(np.asarray(image.array[box], np.float32), (0, 2, 2))
    bright = region & (sm >= np.median(sm[region]))
    bright = ndi.binary_opening(bright, np.ones((1, 3, 3), bool))
    if not bright.any():
        bright = region
    edt = ndi.distance_transform_edt(bright, sampling=image.spacing)
    idx = np.argwhere(bright)  # in the box
    x = image.index_to_ras(idx + lo)[:, 0]
    xc = float(np.median(x))
    out = [idx[sel][int(np.argmax(edt[tuple(idx[sel].T)]))] + lo
           for sel in (x - xc < -45, np.abs(x - xc) < 20, x - xc > 45) if sel.any()]
    return np.asarray(out, dtype=int)


def _lps(volume: Volume, idx) -> np.ndarray:
    return volume.index_to_ras(np.asarray(idx, float)) * np.array([-1.0, -1.0, 1.0])


_STAGE_SALT = {"search": 1, "rigid": 2, "affine": 3}


def _shrunk(sitk, image, level_mm: float):
    """``image`` smoothed (Gaussian, sigma ``level_mm / 1.2`` mm: 0.83 of a shrunk pixel) and shrunk in-plane
    by the whole factor nearest to pixels of ``level_mm``; across slices only as far as they stay no farther
    apart than the shrunk pixels (thick slices: not at all). On the SIJ's 0.595-mm pixels, 4.8 and 2.4 mm are
    8x and 4x with sigmas of 4 and 2 mm, as before the levels were given in mm."""
    sp = image.GetSpacing()
    factor = max(1, int(round(float(level_mm) / min(sp[:2]))))
    if factor <= 1:
        return image
    fz = max(1, int(round(factor * min(sp[:2]) / sp[2])))
    return sitk.Shrink(sitk.SmoothingRecursiveGaussian(image, float(level_mm) / 1.2), [factor, factor, fz])


def _near_mask(sitk, ref, points_lps: np.ndarray, radius_mm: float):
    """A uint8 image on the grid of ``ref``: 1 within ``radius_mm`` of any of the points (LPS mm)."""
    size = ref.GetSize()
    ijk = np.indices(size[::-1]).reshape(3, -1)[::-1].T * np.asarray(ref.GetSpacing())
    pts = np.asarray(ref.GetOrigin()) + ijk @ np.asarray(ref.GetDirection()).reshape(3, 3).T
    d2 = np.min([((pts - c) ** 2).sum(1) for c in np.atleast_2d(points_lps)], axis=0)
    out = sitk.GetImageFromArray((d2 <= radius_mm ** 2).reshape(size[::-1]).astype(np.uint8))
    out.CopyInformation(ref)
    return out


def _stage(sitk, F, M, init, kind: str, mask, p: dict):
    """One registration stage on images already smoothed and shrunk (:func:`_shrunk`), ``mask`` on ``F``'s grid."""
    R = sitk.ImageRegistrationMethod()
    R.SetMetricAsMattesMutualInformation(32)
    R.SetMetricSamplingStrategy(R.RANDOM)
    # a fixed sample per stage (seed 0 would be SimpleITK's wall clock: another region every run)
    R.SetMetricSamplingPercentage(p["sampling"], seed=_STAGE_SALT[kind] + 7919 * int(p["seed"]))
    R.SetMetricFixedMask(mask)
    R.SetInterpolator(sitk.sitkLinear)
    # The pyramid is built once per image (:func:`_shrunk`), not by SimpleITK in every stage: its pyramid and the
    # fixed mask at full size took 90% of a stage (0.72 s of a rigid stage on an SIJ scan, 0.06 s pre-shrunk)
    R.SetShrinkFactorsPerLevel([1])
    R.SetSmoothingSigmasPerLevel([0.0])
    if kind == "search":  # a coarse grid of translations and in-plane rotations: the best start
        step = float(p["search_step_mm"])
        n = [int(round(v / step)) if i < 2 else (1 if v > 0 else 0) for i, v in enumerate(p["search_mm"])]
        deg = float(p["search_deg"])
        R.SetOptimizerAsExhaustive([0, 0, 1 if deg > 0 else 0, *n], stepLength=1.0)
        R.SetOptimizerScales([1.0, 1.0, np.deg2rad(deg) or 1.0, step, step, float(p["search_mm"][2]) or 1.0])
    else:
        R.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, int(p["iterations"]), relaxationFactor=0.6)
        R.SetOptimizerScalesFromPhysicalShift()
    if kind in ("rigid", "search"):
        t = sitk.Euler3DTransform()
        t.SetCenter(init.GetCenter())
        m = np.array(init.GetMatrix()).reshape(3, 3)
        u, _, vt = np.linalg.svd(m)
        t.SetMatrix((u @ vt).ravel().tolist())
        t.SetTranslation(init.GetTranslation())
    else:
        t = sitk.AffineTransform(3)
        t.SetCenter(init.GetCenter())
        t.SetMatrix(init.GetMatrix())
        t.SetTranslation(init.GetTranslation())
    R.SetInitialTransform(t, inPlace=True)
    R.Execute(F, M)
    return t


def _demons(sitk, F, M, tx, p: dict):
    shrink = [int(v) for v in p["demons_shrink"]]
    fs = sitk.Shrink(sitk.SmoothingRecursiveGaussian(F, 1.0), shrink)
    mr = sitk.Resample(M, F, tx, sitk.sitkLinear, 0.0)
    ms = sitk.Shrink(sitk.SmoothingRecursiveGaussian(mr, 1.0), shrink)
    ms = sitk.HistogramMatching(ms, fs, 64, 7)
    d = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    d.SetNumberOfIterations(int(p["demons_iterations"]))
    d.SetStandardDeviations(float(p["demons_sd"]))
    d.SmoothDisplacementFieldOn()
    field = d.Execute(fs, ms)
    field = sitk.Resample(field, F, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID())
    dt = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    return sitk.CompositeTransform([tx, dt])


def _fuse(probs, reaches, w: np.ndarray) -> np.ndarray:
    """The weighted mean of the atlas probabilities (float32: tensordot went by float64, 10x slower). With
    ``reaches`` (each atlas's field of view warped, 0-1), each voxel is the mean over the atlases that reach it;
    voxels no atlas reaches take the value of the nearest reached slice in their column (else 0)."""
    w = w / w.sum()
    fused = np.zeros(probs[0].shape, np.float32)
    for wi, pr in zip(w, probs):
        fused += np.float32(wi) * pr
    if reaches is None:
        return fused
    den = np.zeros(probs[0].shape, np.float32)
    for wi, c in zip(w, reaches):
        den += np.float32(wi) * c
    ok = den > 1e-3
    fused = np.where(ok, fused / np.maximum(den, np.float32(1e-3)), np.float32(0))
    if ok.all() or not ok.any():
        return np.clip(fused, 0, 1, out=fused)
    z = np.arange(len(ok))[:, None, None]
    below = np.maximum.accumulate(np.where(ok, z, -1), axis=0)  # the nearest reached slice at or before
    above = np.flip(np.minimum.accumulate(np.flip(np.where(ok, z, len(ok)), 0), axis=0), 0)  # at or after
    take = np.where((below >= 0) & ((above >= len(ok)) | (z - below <= above - z)), below, above)
    has = (take >= 0) & (take < len(ok))
    filled = np.take_along_axis(fused, np.clip(take, 0, len(ok) - 1), axis=0)
    return np.clip(np.where(has, filled, 0), 0, 1).astype(np.float32)


def _warp(sitk, src, ref, tx) -> np.ndarray:
    """``src`` (an atlas's normalised image or its region as float) resampled onto ``ref``."""
    return sitk.GetArrayFromImage(sitk.Resample(src, ref, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def _agreement(masks: list[np.ndarray]) -> float | None:
    """Mean pairwise Dice of the atlases' warped regions (None for a single atlas)."""
    if len(masks) < 2:
        return None
    sizes = [int(np.count_nonzero(m)) for m in masks]
    pairs = [(i, j) for i in range(len(masks)) for j in range(i + 1, len(masks))]
    return float(np.mean([2.0 * np.count_nonzero(masks[i] & masks[j]) / max(1, sizes[i] + sizes[j])
                          for i, j in pairs]))


def _near(shape, spacing, idx: np.ndarray, radius_mm: float) -> np.ndarray:
    """Bool mask of the voxels within ``radius_mm`` of any of the voxels ``idx``."""
    out = np.zeros(shape, bool)
    sp = np.asarray(spacing, float)
    reach = np.floor(radius_mm / sp).astype(int)
    for c in np.atleast_2d(np.asarray(idx, int)):  # a box around each voxel: no distance map of the whole scan
        lo, hi = np.maximum(c - reach, 0), np.minimum(c + reach + 1, shape)
        if np.any(lo >= hi):
            continue
        grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        d2 = sum(((g - v) * s) ** 2 for g, v, s in zip(grid, c, sp))
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] |= d2 <= radius_mm ** 2
    return out


def _components_meeting(mask: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` that have a voxel in ``where``."""
    from scipy import ndimage as ndi

    lab, _ = ndi.label(mask)
    keep = np.unique(lab[where & mask])
    return np.isin(lab, keep[keep > 0])


def _atlas_params(params: dict | None, n_best: int | None) -> dict:
    p = dict(ATLAS_PARAMS)
    unknown = set(params or {}) - set(ATLAS_PARAMS)
    if "shrink" in unknown:
        raise ParameterError("atlas parameter 'shrink' (pyramid factors in pixels) is now 'pyramid_mm', the levels' "
                             "in-plane pixel sizes in mm (default (4.8, 2.4): 8x and 4x on 0.6-mm pixels)")
    if unknown & {"seed", "restarts"}:
        raise ParameterError("atlas parameters 'seed' and 'restarts' are now one, 'seeds' (fixed sampling seeds, "
                             "default (1,)): the region is repeatable by default")
    if unknown:
        raise ParameterError(f"unknown atlas parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(ATLAS_PARAMS)}")
    p.update(params or {})
    if n_best is not None:
        p["n_best"] = n_best
    if int(p["n_best"]) < 1:
        raise ParameterError(f"atlas_best must be at least 1; got {p['n_best']}")
    return p


def _prepare(sitk, a: Atlas, levels) -> dict:
    """What registering atlas ``a`` needs whatever the scan, made once and kept in ``a.prep`` (an
    atlas read from a file): its normalised image, its region as float, the centre of its clicks
    and its pyramid (~1 s per SIJ atlas)."""
    from .followup._sitk import to_sitk

    prep = a.prep if a.prep is not None else {}
    if "M" not in prep:
        prep["M"] = _norm(sitk, a.image)
        prep["R"] = to_sitk(a.image, a.region.astype(np.float32))
        prep["O"] = to_sitk(a.image, np.ones(a.image.shape, np.float32))
        prep["centre"] = _lps(a.image, atlas_clicks(a.image, a.region)).mean(0)
    key = ("pyramid", tuple(levels))
    if key not in prep:
        prep[key] = [_shrunk(sitk, prep["M"], s) for s in levels]
    return prep


def prepare_atlases(atlas: Any, *, params: dict | None = None) -> list[Atlas]:
    """The atlases of ``atlas`` (see :func:`load_atlases`), each prepared for registration now
    rather than at the first scan that uses it (a cohort: every scan then costs the outline alone)."""
    from .followup._sitk import require_sitk

    sitk = require_sitk()
    p = _atlas_params(params, None)
    atlases = load_atlases(atlas)
    levels = [float(v) for v in p["pyramid_mm"]]
    with ThreadPoolExecutor(max_workers=max(1, int(p["threads"]))) as pool:
        list(pool.map(lambda a: _prepare(sitk, a, levels), atlases))
    return atlases


def atlas_probability(volume: Volume, idx: np.ndarray, atlas: Any, *, n_best: int | None = None,
                      params: dict | None = None, contrast: str = "t1") -> tuple[np.ndarray, dict]:
    """The fused atlas probability on ``volume``'s grid (float32, 0-1) and a record.

    ``idx``: the clicks, ``(N, 3)`` voxel indices of ``volume``; ``atlas``: see
    :func:`load_atlases`. ``contrast``: the scan's, ``'t1'`` or ``'stir'`` (T1 atlases on a
    STIR scan: mutual information registers them all the same, and the ranking correlation
    still holds around the bones (measured: the scan's own T1 ranks first), but no demons).
    :func:`atlas_outline` thresholds it; :func:`bmeviz.region_refine.train_refiner` learns from it.
    """
    from scipy import ndimage as ndi

    from .followup._sitk import require_sitk

    sitk = require_sitk()
    p = _atlas_params(params, n_best)
    t0 = time.perf_counter()
    atlases = load_atlases(atlas)
    # Registration starts from the atlas's image axes laid on the scan's (the SIJ is prescribed along the
    # sacrum), and the refiner's U-Net learned slices in the atlases' array orientation: a scan stored with
    # another row, column or slice order is turned into theirs, and back. Before (1013 rows or slices
    # reversed, or rows and columns swapped): Dice 0.25-0.31 instead of 0.77.
    how = orientation_like(volume, directions(atlases[0].image))
    if how is not None:  # in the atlases' array orientation, and back
        fused, info = atlas_probability(turned(volume, how), turned_index(idx, how, volume.shape), atlases,
                                        n_best=n_best, params=params, contrast=contrast)
        return unturn(fused, how), {**info, "reoriented": _describe(how)}
    keys = _target_keys(volume)
    excluded = [a.name for a in atlases if _is_target(a, volume, keys)]
    atlases = [a for a in atlases if a.name not in excluded]
    if not atlases:
        raise ParameterError(f"no atlas left: the only atlas(es) {', '.join(excluded)} are this scan itself")
    F = _norm(sitk, volume)
    levels = [float(v) for v in p["pyramid_mm"]]
    clicks = _lps(volume, idx)
    # the scan's pyramid and metric mask (within metric_mm of the clicks), once for all atlases
    pyramid = [(Fs, _near_mask(sitk, Fs, clicks, float(p["metric_mm"])))
               for Fs in (_shrunk(sitk, F, s) for s in levels)]
    target = sitk.GetArrayFromImage(F)
    pf = clicks.mean(0)
    df = np.array(F.GetDirection()).reshape(3, 3)
    grow = max(1, int(round(p["rank_mm"] / min(volume.spacing[1:]))))
    cross = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool)

    def register(a: Atlas) -> dict:
        """Start search, rigid, affine and the ranking score of one atlas (its best seed)."""
        ta = time.perf_counter()
        prep = _prepare(sitk, a, levels)
        M, R, pm, Ms = prep["M"], prep["R"], prep["centre"], prep[("pyramid", tuple(levels))]
        init = sitk.AffineTransform(3)
        init.SetCenter(pf.tolist())
        init.SetMatrix((np.array(M.GetDirection()).reshape(3, 3) @ df.T).ravel().tolist())
        init.SetTranslation((pm - pf).tolist())
        best, error = None, None
        for seed in p["seeds"]:
            q = {**p, "seed": int(seed)}
            try:  # the start search on the coarsest level, then rigid and affine level by level
                (F0, m0), M0 = pyramid[0], Ms[0]
                start = _stage(sitk, F0, M0, init, "search", m0, q) if q["search_mm"] else init
                for kind in ("rigid", "affine"):
                    for (Fs, ms), Mx in zip(pyramid, Ms):
                        start = _stage(sitk, Fs, Mx, start, kind, ms, q)
                aff = start
            except RuntimeError as exc:  # ITK: too few samples (the images do not overlap), etc.
                error = str(exc).splitlines()[-1][:200]
                continue
            zone = ndi.binary_dilation(_warp(sitk, R, F, aff) >= 0.5, iterations=grow, structure=cross)
            warped = _warp(sitk, M, F, aff)
            score = _ncc(warped[zone], target[zone]) if zone.sum() > 100 else -1.0
            if best is None or score > best[0]:
                best = (score, aff)
        if best is None:
            return {"name": a.name, "ncc": -1.0, "error": error, "seconds": time.perf_counter() - ta}
        return {"name": a.name, "ncc": best[0], "M": M, "R": R, "O": prep["O"], "affine": best[1],
                "seconds": time.perf_counter() - ta}

    def deform(r: dict) -> tuple[np.ndarray, np.ndarray | None]:
        td = time.perf_counter()
        # demons matches intensities: T1 atlases on a STIR scan keep their affine registration
        tx = r["affine"] if contrast == "stir" or not p["demons"] else _demons(sitk, F, r["M"], r["affine"], p)
        prob = _warp(sitk, r["R"], F, tx)
        reach = _warp(sitk, r["O"], F, tx) if p["fov"] else None
        r["seconds"] += time.perf_counter() - td
        return prob, reach

    # Each registration runs on one SimpleITK thread (with more, the metric's sums come in a
    # load-dependent order and a loaded machine gives another region); the atlases run side by
    # side in ``threads`` Python threads (SimpleITK releases the GIL), each result in its place.
    old_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, int(p["threads"]))) as pool:
            ranked = list(pool.map(register, atlases))
            ranked.sort(key=lambda r: -r["ncc"])  # stable: ties keep the folder's order
            chosen = [r for r in ranked[: int(p["n_best"])] if r["ncc"] > 0]
            if not chosen:
                raise ParameterError("no atlas could be registered to this scan (check that the atlases are T1 scans "
                                     "of the same joint and the clicks are in the bones)")
            probs, reaches = zip(*pool.map(deform, chosen))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old_threads)
    weights = [r["ncc"] for r in chosen]
    agreement = _agreement([pr >= 0.5 for pr in probs])
    warning = None
    if agreement is not None and agreement < float(p["agreement_warn"]):
        warning = (f"the {len(chosen)} atlases fused ({', '.join(r['name'] for r in chosen)}) disagree on this scan "
                   f"(their regions overlap at Dice {agreement:.2f}): the region is likely wrong in places; check it "
                   "slice by slice and correct it with the brush, or add atlases closer to this patient")
        warn(warning)
    fused = _fuse(probs, reaches if p["fov"] else None, np.asarray(weights, float))
    info = {
        "atlases": [r["name"] for r in chosen],
        "ranking": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                     if k in ("name", "ncc", "seconds", "error")} for r in ranked],
        "excluded": excluded,
        "agreement": None if agreement is None else round(agreement, 4),
        "warning": warning,
        "seconds": time.perf_counter() - t0,
        "atlas_params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()},
    }
    return fused, info


def atlas_outline(volume: Volume, idx: np.ndarray, atlas: Any, *, n_best: int | None = None,
                  params: dict | None = None, contrast: str = "t1", refine: Any = None) -> tuple[np.ndarray, dict]:
    """The fused atlas region on ``volume``'s grid (bool array) and a record.

    The probability of :func:`atlas_probability` at ``threshold``; with ``refine`` (a
    :class:`~bmeviz.region_refine.Refiner` or its file, T1 scans only), its boundary is
    redrawn voxel by voxel by the classifier trained on the atlas folder. Then only the
    components that touch a click (within ``touch_mm``; refined: that overlap those) are
    kept and holes are filled slice by slice. Used by
    :func:`bmeviz.region.region_from_seeds` with ``atlas=``.
    """
    from scipy import ndimage as ndi

    refiner = None
    if refine is not None:
        from .region_refine import as_refiner

        if contrast != "t1":
            raise ParameterError("refine: the refiner learned T1 intensities; on a STIR scan use the atlas region "
                                 "without it (or outline on the T1 of the session)")
        refiner = as_refiner(refine)
        # the atlas path its training outlines were made with (a U-Net: no demons), unless overridden here
        params = {**refiner.atlas_params, **(params or {})}
    p = _atlas_params(params, n_best)
    t0 = time.perf_counter()
    atlases = load_atlases(atlas)
    how = orientation_like(volume, directions(atlases[0].image))
    if how is not None:  # in the atlases' array orientation (the U-Net learned its slices so), and back
        mask, info = atlas_outline(turned(volume, how), turned_index(idx, how, volume.shape), atlases,
                                   n_best=n_best, params=params, contrast=contrast, refine=refiner)
        return unturn(mask, how), {**info, "reoriented": _describe(how), "seconds": time.perf_counter() - t0}
    fused, info = atlas_probability(volume, idx, atlases, n_best=n_best, params=params, contrast=contrast)
    mask = _components_meeting(fused >= p["threshold"], _near(volume.shape, volume.spacing, idx, p["touch_mm"]))
    if not mask.any():
        raise ParameterError(f"the regions of the atlases {', '.join(info['atlases'])} registered to this "
                             "scan do not reach the clicks: click deep inside each bone's marrow, or try other atlases")
    if refiner is not None:
        tr = time.perf_counter()
        mask = _components_meeting(refiner.apply(volume, fused), mask)
        if not mask.any():
            raise ParameterError("the refiner removed the whole atlas region: retrain it on this protocol's atlases "
                                 "(bmeviz region-refiner) or outline without --refine")
        info["refiner"] = refiner.describe()
        info["refine_seconds"] = round(time.perf_counter() - tr, 3)
    for z in range(mask.shape[0]):
        mask[z] = ndi.binary_fill_holes(mask[z])
    info["seconds"] = time.perf_counter() - t0
    return mask, info
