"""``segment()``: one call from a fluid-sensitive Volume to measured BME lesions.

The path, and the only place it is written down (napari, the CLI, batch and notebooks
all call this):

1. **Reference**: normal marrow of the same scan, a mask or a point with a radius in mm
   (a ball clipped to the volume). Its statistics set the threshold with a rule
   (:func:`bmeviz.threshold.compute_threshold`).
2. **Grow**: from the user's seeds (voxel indices or RAS mm), 3D, inside the optional
   search region (bone), with a leak guard; without seeds, every above-threshold voxel
   in the region. With ``high_k``, only components that reach the strong threshold are
   kept (hysteresis).
3. **Clean**: drop lesions under ``min_volume_mm3`` or present on fewer than
   ``min_slices`` consecutive slices; label them (largest first).
4. **Measure**: the lesion table, with totals and the reference comparison.

Defaults (checked on the SIJ STIR development scans, see ``docs/validation.md``): the
published adaptive Q3 + k·IQR rule, 26-connectivity, edge at the threshold (what readers
outline; ``edge='half-max'`` measures the physical lesion better on the phantom); seeded
runs keep every clicked lesion, "all in region" runs keep lesions of at least 10 mm³
present on at least 2 consecutive slices (the ASAS definition counts BME on 2 slices).
The options and their defaults are :class:`bmeviz.options.SegmentOptions`.

``segment()`` orchestrates only: input resolution (``resolve_*``), the per-mode clean-up
defaults (:func:`bmeviz.options.mode_defaults`), the algorithms in order (``_threshold``,
``_grow``, ``_edges`` from :mod:`bmeviz.edge`, ``_clean``, the lesion table) and the
provenance (``_params``); messages are :class:`~bmeviz.result.Note` objects with a ``code``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._arrays import bbox, pad_box, parse_triple
from ._jsonable import jsonable
from .edge import _keep_components_reaching, drop_low_contrast, refine_half_max
from .errors import ParameterError, warn
from .clicks import climb_seeds, grow_without_leaks, join_seed_components, ordinal, snap_seeds
from .grow import confidence_grow, grow, grow_all
from .io import load
from .lesions import clean, lesion_table
from .options import DEFAULTS, Q3_IQR_K, REGION_MIN_CONTRAST_SD, SegmentOptions, mode_defaults
from .reference import MIN_VOXELS, auto_reference_cached, clean_reference, marrow_near_point, robust_sigma
from .result import Note, Result
from .threshold import compute_threshold, sphere_mask
from .geometry import grid_notes, mask_onto
from .volume import Volume

__all__ = ["segment", "Result", "Note", "DEFAULTS", "SegmentOptions", "resolve_reference", "resolve_mask",
           "reference_threshold",
           "resolve_seeds", "refine_half_max"]

_D = SegmentOptions()  # the defaults of segment()'s signature come from the one options model


# ----------------------------------------------------------------------------- input resolution
def resolve_mask(mask: Any, volume: Volume, name: str) -> np.ndarray | None:
    """A bool mask on ``volume``'s grid from an array, a Volume or a path (another grid of the same frame of
    reference is resampled by nearest neighbour with a warning: bmeviz.geometry.mask_onto)."""
    if mask is None:
        return None
    kind = name
    if isinstance(mask, (str, os.PathLike)):
        mask, name = load(mask), f"{name} ({os.fspath(mask)})"
    if isinstance(mask, Volume):  # same grid within 0.1 voxel, else resampled (warns); other frames refused
        mask, _ = mask_onto(mask, volume, name=name, note_as=kind)
    arr = np.asarray(mask)
    if arr.shape != volume.shape:
        raise ParameterError(f"{name} has shape {arr.shape}; the image is {volume.shape}: it must be on the same grid")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise ParameterError(f"{name} must be a mask of numbers or booleans, not {arr.dtype}")
        arr = np.nan_to_num(arr) > 0
    if not arr.any():
        raise ParameterError(f"{name} has no voxels: draw it again or check the file")
    return arr


def _radius(value: Any) -> float:
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"reference radius must be a number of mm; got {value!r}") from None
    if not np.isfinite(r) or r <= 0 or r > 1e4:
        raise ParameterError(f"reference radius must be a positive number of mm (at most 10,000); got {value!r}")
    return r


def _point(value: Any, name: str) -> np.ndarray:
    return np.array(parse_triple(value, name))


def resolve_reference(
    reference: Any, volume: Volume, *, radius_mm: float | None = None
) -> tuple[np.ndarray, dict]:
    """The reference mask and a JSON description of it.

    ``reference`` is a mask (array, Volume, NIfTI path) or a point: a voxel index
    ``(slice, row, column)``, or ``{"point_mm": (x, y, z)}`` in RAS mm, or
    ``{"point": (s, r, c)}``, with ``radius_mm`` (default 8 mm).
    """
    if reference is None:
        raise ParameterError(
            "reference is required: a mask of normal marrow, or a point in normal marrow with a radius "
            "(CLI: --reference MASK or --reference-point Z,Y,X --reference-radius-mm R)"
        )
    radius = _radius(DEFAULTS["reference_radius_mm"] if radius_mm is None else radius_mm)
    point = None
    if isinstance(reference, Mapping):
        if "point_mm" in reference:
            point = volume.ras_to_index(_point(reference["point_mm"], "reference point_mm"))
        elif "point" in reference:
            point = _point(reference["point"], "reference point")
        else:
            raise ParameterError("reference dict needs 'point' (voxel index) or 'point_mm' (RAS mm)")
        radius = _radius(reference.get("radius_mm", radius))
    elif not isinstance(reference, (str, os.PathLike, Volume)):
        arr = np.asarray(reference)
        if arr.ndim == 1 and arr.size == 3:
            point = arr.astype(float)
    if point is not None:
        idx = np.rint(point).astype(int)
        if not volume.contains_index(idx):
            raise ParameterError(f"reference point {idx.tolist()} is outside the image {volume.shape}")
        mask = sphere_mask(volume.shape, idx, radius, spacing=volume.spacing)
        return mask, {"kind": "sphere", "point": idx.tolist(), "point_mm": volume.index_to_ras(idx).round(3).tolist(),
                      "radius_mm": radius, "voxels": int(np.count_nonzero(mask[bbox(mask)]))}
    mask = resolve_mask(reference, volume, "reference")
    assert mask is not None
    return mask, {"kind": "mask", "voxels": int(np.count_nonzero(mask[bbox(mask)]))}


def resolve_seeds(volume: Volume, seeds: Any = None, seeds_mm: Any = None) -> np.ndarray:
    """Seeds as an (n, 3) int array of voxel indices; RAS-mm seeds are mapped to the nearest voxel."""
    parts = []
    for value, name, to_index in ((seeds, "seeds", False), (seeds_mm, "seeds_mm", True)):
        if value is None:
            continue
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be points of 3 numbers (slice,row,col / x,y,z); got {value!r}") from None
        if arr.size == 0:
            continue
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != 3 or not np.all(np.isfinite(arr)):
            raise ParameterError(f"{name} must be points of 3 finite numbers; got {np.asarray(value).tolist()!r}")
        idx = volume.ras_to_index(arr, round=True) if to_index else np.rint(arr).astype(int)
        for given, i in zip(arr, idx):
            if not volume.contains_index(i):
                what = f"RAS {given.tolist()} mm -> voxel {i.tolist()}" if to_index else f"voxel {i.tolist()}"
                raise ParameterError(f"seed {what} is outside the image of shape {volume.shape}")
        parts.append(idx)
    if not parts:
        return np.empty((0, 3), int)
    return np.concatenate(parts).astype(int)



# ----------------------------------------------------------------------------- the algorithms, in order
def _reference(image, reference, volume, region_mask, opts: SegmentOptions, spacing, *, radius_mm):
    """The reference mask the threshold is computed on, and its provenance.

    ``'auto'`` (or None with a region): normal marrow found in the region
    (:func:`bmeviz.reference.auto_reference`). Otherwise the mask or ball the user gave,
    cleaned by :func:`bmeviz.reference.clean_reference` unless ``robust_reference=False``.
    """
    is_auto = reference is None or (isinstance(reference, str) and reference == "auto")
    if is_auto:
        if region_mask is None:
            raise ParameterError(
                "reference is required without a region: a mask of normal marrow, or a point in normal marrow "
                "with a radius (CLI: --reference MASK or --reference-point Z,Y,X --reference-radius-mm R); "
                "reference='auto' finds normal marrow inside region= (CLI: --region MASK --reference auto)")
        auto = auto_reference_cached(image, region_mask, spacing)
        return auto.mask.copy(), {"kind": "auto", "voxels": auto.voxels, "robust": dict(auto.info)}
    ref_mask, ref_info = resolve_reference(reference, volume, radius_mm=radius_mm)
    if ref_info["kind"] == "sphere" and opts.robust_reference and region_mask is not None and opts.reference_search_mm:
        near = marrow_near_point(image, ref_info["point"], region=region_mask, spacing=spacing,
                                 search_mm=max(float(opts.reference_search_mm), float(ref_info["radius_mm"])))
        if near is not None:
            return near.mask, {**ref_info, "voxels_given": ref_info["voxels"], "voxels": near.voxels,
                               "search_mm": near.info["search_mm"], "robust": near.info}
        ref_info = {**ref_info, "search": f"fewer than {MIN_VOXELS} automatic-reference voxels within "
                    f"{opts.reference_search_mm:g} mm of the point: its ball was used, cleaned"}
    if opts.robust_reference:
        cleaned = clean_reference(image, ref_mask, region=region_mask, spacing=spacing,
                                  edge_mm=opts.reference_edge_mm, fence=opts.reference_fence)
        ref_info = {**ref_info, "voxels_given": ref_info["voxels"], "voxels": cleaned.voxels, "robust": cleaned.info}
        ref_mask = cleaned.mask
    return ref_mask, ref_info


def _threshold(image, ref_mask, region_mask, opts: SegmentOptions):
    """The threshold; reference rules read the image on the reference's box only (the same
    values in the same order as on the whole volume: the same statistics)."""
    # k not given: Q3_IQR_K (2) for q3-iqr on the robust reference (docs/reference.md)
    k = Q3_IQR_K if opts.k is None and opts.rule == "q3-iqr" else opts.k
    if opts.rule == "otsu":  # Otsu reads the whole region
        return compute_threshold(image, reference=ref_mask, rule=opts.rule, k=k, region=region_mask,
                                 high_k=opts.high_k, adaptive_top=opts.adaptive_top)
    box = bbox(ref_mask)
    return compute_threshold(image[box], reference=ref_mask[box], rule=opts.rule, k=k, high_k=opts.high_k,
                             adaptive_top=opts.adaptive_top)


def reference_threshold(volume: Volume, *, reference: Any = None, region: Any = None,
                        **options: Any) -> tuple[np.ndarray, dict, Any]:
    """The reference mask, its description and the threshold exactly as :func:`segment`
    computes them for these inputs and options (robust or automatic reference, the
    default k): what a preview (napari's) must show so that it agrees with the outline.

    Examples
    --------
    >>> import bmeviz
    >>> from bmeviz.data import make_phantom
    >>> ph = make_phantom(shape=(12, 64, 64), spacing=(3.0, 2.0, 2.0), seed=2)
    >>> _, _, thr = reference_threshold(ph.volume, reference=ph.reference, region=ph.bone)
    >>> res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    >>> thr.value == res.threshold.value
    True
    """
    opts = SegmentOptions(**{k: v for k, v in options.items() if v is not None or k != "reference_radius_mm"})
    region_mask = resolve_mask(region, volume, "region")
    ref_mask, ref_info = _reference(volume.array, reference, volume, region_mask, opts, volume.spacing,
                                    radius_mm=options.get("reference_radius_mm"))
    return ref_mask, ref_info, _threshold(volume.array, ref_mask, region_mask, opts)


def _lesion_voxel(value: float, index, low: float, high: float | None, region_mask) -> bool:
    """A voxel a seed can grow from: in [low, high] and inside the region."""
    return value >= low and (high is None or value <= high) and (region_mask is None or bool(region_mask[tuple(index)]))


def _grow(image, seed_idx, thr, region_mask, opts: SegmentOptions, spacing,
          ref_sigma: float | None = None) -> tuple[np.ndarray, Any, list[Note]]:
    """The candidate mask: grown from the seeds, or every above-threshold voxel in the region."""
    notes: list[Note] = []
    if not seed_idx.size:
        if opts.method == "confidence":
            raise ParameterError("method='confidence' needs seeds (click the lesions)")
        if region_mask is None:
            warn("no seeds and no region: every above-threshold voxel of the whole image is taken "
                 "(joint fluid included); give a bone region or seeds")
        return grow_all(image, low=thr.value, high=opts.upper, region=region_mask,
                        connectivity=opts.connectivity), None, notes
    guard = dict(region=region_mask, connectivity=opts.connectivity, spacing=spacing,
                 max_volume_ml=opts.max_volume_ml, max_radius_mm=opts.max_radius_mm)
    clicked = seed_idx
    if opts.method != "confidence" and opts.seed_snap_mm is not None:
        # uphill to the top of the clicked lesion (every click of one lesion lands on the same
        # voxel), then, when that is still below the threshold, onto the brightest voxel near it
        climbed, _ = climb_seeds(image, seed_idx, region=region_mask, spacing=spacing)
        snapped, _ = snap_seeds(image, seed_idx, low=thr.value, high=opts.upper, region=region_mask,
                                spacing=spacing, radius_mm=opts.seed_snap_mm)
        seed_idx = np.array([c if _lesion_voxel(float(image[tuple(c)]), c, thr.value, opts.upper, region_mask)
                             else s for c, s in zip(climbed, snapped)], dtype=seed_idx.dtype).reshape(-1, 3)
        for i, (a, b) in enumerate(zip(clicked, seed_idx)):
            va, vb = float(image[tuple(a)]), float(image[tuple(b)])
            if (a == b).all() or _lesion_voxel(va, a, thr.value, opts.upper, region_mask) \
                    or not _lesion_voxel(vb, b, thr.value, opts.upper, region_mask):
                continue
            d = float(np.sqrt((((b - a) * np.asarray(spacing)) ** 2).sum()))
            notes.append(Note(
                f"seed {i + 1} (the {ordinal(i + 1)} click) at voxel {a.tolist()} was below the threshold "
                f"{thr.value:.4g} (its value {va:.4g}): moved {d:.1f} mm to the brightest part of the lesion "
                f"near it, {b.tolist()} (value {vb:.4g})", code="seed-moved", seed=i + 1))
    if opts.method == "confidence":
        result = confidence_grow(image, seed_idx, k=opts.confidence_k, **guard)
    elif opts.leak_jump is not None and ref_sigma and np.isfinite(ref_sigma) and ref_sigma > 0:
        # a seed whose region collapses when the level rises a little had leaked (docs/reference.md)
        result, levels = grow_without_leaks(image, seed_idx, low=thr.value, high=opts.upper, step=ref_sigma / 4,
                                            jump=opts.leak_jump, fragment_gap_mm=opts.fragment_gap_mm, **guard)
        for lv in levels:
            if lv.get("separated") is False:
                i = lv["seed"] - 1
                notes.append(Note(
                    f"seed {i + 1} (the {ordinal(i + 1)} click) lies in a large faint region that leaked at the "
                    f"threshold {thr.value:.4g} (with the lesions of seeds {', '.join(map(str, lv['shared_from']))}) "
                    f"and is too faint to be separated from it: nothing grown; click the brighter part of its "
                    f"lesion", code="leak-shared", seed=i + 1))
            elif lv["raised_by_steps"]:
                i = lv["seed"] - 1
                size = ("past the leak guard" if lv["volume_ml_at_low"] is None
                        else f"{lv['volume_ml_at_low']:.3g} mL")
                notes.append(Note(
                    f"seed {i + 1} (the {ordinal(i + 1)} click) leaked at the threshold {thr.value:.4g} "
                    f"({size}): grown at {lv['level']:.4g}, where its lesion separates",
                    code="leak-raised", seed=i + 1))
    else:
        result = grow(image, seed_idx, low=thr.value, high=opts.upper, **guard)
    for i, (below, leaked) in enumerate(zip(result.below, result.leaked)):
        where = f"seed {i + 1} (the {ordinal(i + 1)} click) at voxel {clicked[i].tolist()}"
        if below:
            p = tuple(seed_idx[i])
            near = "" if opts.seed_snap_mm is None or opts.method == "confidence" else \
                f" and so is everything within {opts.seed_snap_mm:g} mm"
            if region_mask is not None and not region_mask[p]:
                text = (f"{where} is outside the region{near}: nothing grown; click inside the bone region "
                        f"(or correct the region)")
            else:
                text = (f"{where} is below the threshold {thr.value:.4g} (its value "
                        f"{float(image[tuple(clicked[i])]):.4g}){near}: "
                        f"nothing grown; move it into the brighter part of the lesion, or lower k "
                        f"(now {thr.k if thr.k is not None else 'n/a'})")
            note = Note(text, code="below-threshold", seed=i + 1)
            notes.append(note)
            warn(note)
        if leaked and not any(n.code == "leak-shared" and n.seed == i + 1 for n in notes):
            notes.append(Note(f"{where} hit the leak guard", code="leak-guard", seed=i + 1))
    return result.mask, result, notes


def _edges(image, mask, thr, opts: SegmentOptions, spacing, seeds=None) -> tuple[np.ndarray, list[dict] | None]:
    """Hysteresis (with ``high_k``) and the half-maximum edge (with ``edge='half-max'``)."""
    if thr.high is not None:
        mask = _keep_components_reaching(mask, image >= thr.high, opts.connectivity)
    if opts.edge != "half-max":
        return mask, None
    if thr.stats is None:
        raise ParameterError("edge='half-max' needs reference statistics (a reference region)")
    # with seeds, each clicked lesion stays one lesion (the piece holding its seed)
    return refine_half_max(image, mask, background=thr.stats.mean, floor=thr.value, spacing=spacing,
                           connectivity=opts.connectivity, seeds=seeds)


def _clean_box(volume: Volume, mask, grow_result, thr, opts: SegmentOptions) -> tuple[slice, slice, slice]:
    """Where the lesions are: clean-up and measurement work on this box only, so a
    seeded result costs what its lesions cost, not what the volume costs."""
    if grow_result is not None and thr.high is None and opts.edge == "threshold" and grow_result.bbox is not None:
        return pad_box(grow_result.bbox, volume.shape, 1)  # growing knows where its lesions are
    return bbox(mask, margin=1)


def _clean(image, mask, box, region_mask, opts: SegmentOptions, spacing, *, min_volume_mm3, min_slices,
           seed_labels=None):
    """The lesion labels on ``box``: small/thin lesions dropped, holes filled if asked
    (filled holes stay inside the region and never take missing (NaN) voxels)."""
    lesions = join_seed_components(mask[box], None if seed_labels is None else seed_labels[box], opts.connectivity)
    sub = clean(lesions, spacing=spacing, min_volume_mm3=min_volume_mm3, min_slices=min_slices,
                fill_holes=opts.fill_holes, connectivity=opts.connectivity)
    if opts.fill_holes:
        keep = np.isfinite(image[box]) if np.issubdtype(image.dtype, np.floating) else np.ones(sub.shape, bool)
        if region_mask is not None:
            keep &= region_mask[box]
        sub = np.where(keep, sub, 0).astype(sub.dtype)
    return sub


def _cleaned_away(grow_result, seed_idx, labels, *, min_volume_mm3, min_slices) -> list[Note]:
    notes = []
    if grow_result is not None:
        for i, (n, seed) in enumerate(zip(grow_result.voxels, seed_idx)):
            if n > 0 and labels[tuple(seed)] == 0:
                notes.append(Note(f"seed {i + 1} (the {ordinal(i + 1)} click) at voxel {seed.tolist()} grew {n} "
                                  f"voxel(s) that the clean-up removed (min_volume_mm3={min_volume_mm3:g}, "
                                  f"min_slices={min_slices})", code="cleaned-away", seed=i + 1))
    return notes


def _params(opts: SegmentOptions, thr, *, ref_info, region_voxels, seed_idx, seeds_mm, min_volume_mm3,
            min_slices, edge_info) -> dict:
    """The parameters as provenance records them."""
    return jsonable({
        "rule": opts.rule,
        "k": opts.k,
        "k_used": thr.k,
        "high_k": opts.high_k,
        "upper": opts.upper,
        "method": opts.method,
        "confidence_k": opts.confidence_k if opts.method == "confidence" else None,
        "min_volume_mm3": min_volume_mm3,
        "min_slices": min_slices,
        "fill_holes": opts.fill_holes,
        "connectivity": opts.connectivity,
        "max_volume_ml": opts.max_volume_ml,
        "max_radius_mm": opts.max_radius_mm,
        "reference": ref_info,
        "region": None if region_voxels is None else {"voxels": region_voxels},
        "seeds": seed_idx.tolist(),
        "seeds_mm_given": None if seeds_mm is None else np.asarray(seeds_mm, float).reshape(-1, 3).tolist(),
        "mode": "seeded" if seed_idx.size else "all-in-region",
        "edge": opts.edge,
        "robust_reference": opts.robust_reference,
        "reference_search_mm": opts.reference_search_mm,
        "reference_edge_mm": opts.reference_edge_mm,
        "reference_fence": opts.reference_fence,
        "adaptive_top": opts.adaptive_top,
        "seed_snap_mm": opts.seed_snap_mm,
        "fragment_gap_mm": opts.fragment_gap_mm,
        "leak_jump": opts.leak_jump,
        "edge_levels": None if edge_info is None else [round(e["level"], 4) for e in edge_info],
    })


# ----------------------------------------------------------------------------- the call
def segment(
    volume: Volume,
    *,
    reference: Any = None,
    seeds: Any = None,
    seeds_mm: Any = None,
    region: Any = None,
    rule: str = _D.rule,
    k: Any = _D.k,
    high_k: float | None = _D.high_k,
    upper: float | None = _D.upper,
    method: str = _D.method,
    min_volume_mm3: float | None = _D.min_volume_mm3,
    min_slices: int | None = _D.min_slices,
    fill_holes: bool = _D.fill_holes,
    connectivity: int = _D.connectivity,
    reference_radius_mm: float | None = None,
    max_volume_ml: float | None = _D.max_volume_ml,
    max_radius_mm: float | None = _D.max_radius_mm,
    confidence_k: float = _D.confidence_k,
    edge: str = _D.edge,
    robust_reference: bool = _D.robust_reference,
    reference_search_mm: float | None = _D.reference_search_mm,
    reference_edge_mm: float = _D.reference_edge_mm,
    reference_fence: float = _D.reference_fence,
    adaptive_top: float | None = _D.adaptive_top,
    seed_snap_mm: float | None = _D.seed_snap_mm,
    fragment_gap_mm: float | None = _D.fragment_gap_mm,
    leak_jump: float | None = _D.leak_jump,
    min_contrast_sd: float | None = _D.min_contrast_sd,
) -> Result:
    """Outline and measure BME in a fluid-sensitive ``volume``.

    The options (``rule`` ... ``edge``) and their defaults are those of
    :class:`bmeviz.options.SegmentOptions`; ``segment(vol, ..., **opts.kwargs())``
    runs with a model instance.

    Parameters
    ----------
    volume : Volume
        STIR / T2 FS / PD FS / Dixon water image.
    reference : mask, point or 'auto', optional
        Normal marrow of the same scan: a bool mask (array, Volume or NIfTI path on the
        image grid), a voxel index ``(slice, row, column)`` or ``{"point_mm": (x, y, z)}``
        with ``reference_radius_mm`` (default 8 mm); ``'auto'`` (or None, with a region):
        found inside ``region`` with no click (:func:`bmeviz.reference.auto_reference`;
        the mask used is ``Result.reference``). A given reference is cleaned before
        statistics (``robust_reference``, see :func:`bmeviz.reference.clean_reference`).
    reference_search_mm
        A reference point with a region stands for the normal marrow near it: the
        automatic reference's marrow within this distance (default 40 mm, at least the
        point's radius), so that two users' points in the same marrow give the same
        threshold. None or 0: the ball around the point, cleaned as below.
    robust_reference, reference_edge_mm, reference_fence, adaptive_top, seed_snap_mm
        The robust reference (inside the region, ``reference_edge_mm`` from its edge,
        outliers beyond ``reference_fence`` robust SDs dropped), the percentile the adaptive
        q3-iqr rule aims at instead of the maximum, and how far a click below the threshold
        may move to the brightest voxel near it (docs/reference.md).
    leak_jump : float, optional
        A seed's region that shrinks by this factor (default 3) when the threshold rises by
        a quarter of the reference's robust SD had leaked through a thin bridge; that seed
        grows at the level above the collapse (:func:`bmeviz.clicks.grow_without_leaks`;
        None: off). Seeds in the same leaked region share its leak.
    fragment_gap_mm : float, optional
        With the leak check: a clicked lesion also takes its above-threshold fragments
        (>= 20 mm³) that an in-plane gap of this size (default 0.6 mm) separates from it,
        so that every click in a faint lesion gives the same outline
        (:func:`bmeviz.clicks.with_fragments`; None: off).
    min_contrast_sd : float, optional
        "All in region" runs keep only lesions whose 90th-percentile intensity is at least
        this many robust SDs (1.4826·MAD) above the reference median (default 7; seeded
        runs: off; 0: off; :func:`bmeviz.edge.drop_low_contrast`).
    seeds, seeds_mm : (n, 3) array_like, optional
        Points the user clicked in lesions: voxel indices (slice, row, column) and/or
        RAS mm (x, y, z). Without seeds, every above-threshold component in ``region``
        is taken ("find all in region").
    region : mask, optional
        Where BME is searched (bone/marrow); joint fluid outside it is never counted.
    rule, k, high_k
        Threshold rule on the reference: ``'q3-iqr'`` (k=None: k = 2 on the robust
        reference, chosen on the SIJ development scans; ``k='adaptive'``: the published
        adaptive k, aiming at the reference's ``adaptive_top`` percentile),
        ``'mean-sd'``, ``'percentile'``, ``'otsu'`` (inside ``region``); ``high_k`` adds a
        strong threshold: only lesions reaching it are kept (hysteresis).
    upper : float, optional
        An upper intensity bound (e.g. to keep very bright fluid out).
    method : {'connected', 'confidence'}
        Connected threshold from the seeds, or confidence-connected (re-estimates the
        lesion's mean/SD and grows again; soft edges). Needs seeds.
    min_volume_mm3, min_slices, fill_holes, connectivity
        Clean-up: smallest lesion kept, consecutive slices required, fill enclosed holes,
        6/18/26-connectivity. By default seeded runs keep everything the user clicked
        (0 mm³, 1 slice) and "all in region" runs keep lesions of >= 10 mm³ seen on >= 2
        consecutive slices (chosen on the SIJ development scans, docs/validation.md).
        A clicked lesion removed by an explicit clean-up is reported in ``messages``.
    max_volume_ml, max_radius_mm
        Leak guard per seed: a seed whose region would exceed ``max_volume_ml`` is
        stopped and dropped with a warning; ``max_radius_mm`` confines growth to a ball.

    Returns
    -------
    Result
        ``.mask``, ``.labels``, ``.table``, ``.threshold``, ``.params``, ``.messages``
        (:class:`~bmeviz.result.Note`, each with a ``code``), ``.save(dir)``.

    Examples
    --------
    >>> import bmeviz
    >>> from bmeviz.data import make_phantom
    >>> ph = make_phantom(seed=1)
    >>> res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    >>> res.n_lesions == len(ph.lesion_volumes_ml)
    True
    """
    if not isinstance(volume, Volume):
        raise ParameterError(f"volume must be a bmeviz.Volume (from bmeviz.load); got {type(volume).__name__}")
    opts = SegmentOptions(rule=rule, k=k, high_k=high_k, upper=upper, method=method, min_volume_mm3=min_volume_mm3,
                          min_slices=min_slices, fill_holes=fill_holes, connectivity=connectivity,
                          reference_radius_mm=_D.reference_radius_mm if reference_radius_mm is None
                          else reference_radius_mm, max_volume_ml=max_volume_ml, max_radius_mm=max_radius_mm,
                          confidence_k=confidence_k, edge=edge, robust_reference=robust_reference,
                          reference_search_mm=reference_search_mm, reference_edge_mm=reference_edge_mm, reference_fence=reference_fence,
                          adaptive_top=adaptive_top, seed_snap_mm=seed_snap_mm, fragment_gap_mm=fragment_gap_mm,
                          min_contrast_sd=min_contrast_sd,
                          leak_jump=leak_jump)
    image, spacing = volume.array, volume.spacing
    with grid_notes() as grid:  # masks on (nearly) another grid: what was done goes to provenance
        region_mask = resolve_mask(region, volume, "region")
        ref_mask, ref_info = _reference(image, reference, volume, region_mask, opts, spacing,
                                        radius_mm=reference_radius_mm)
    region_voxels = None if region_mask is None else int(np.count_nonzero(region_mask))
    seed_idx = resolve_seeds(volume, seeds, seeds_mm)
    thr = _threshold(image, ref_mask, region_mask, opts)
    ref_box = bbox(ref_mask)
    ref_median, ref_sigma = robust_sigma(image[ref_box][ref_mask[ref_box]])
    mask, grow_result, notes = _grow(image, seed_idx, thr, region_mask, opts, spacing, ref_sigma=ref_sigma)
    mask, edge_info = _edges(image, mask, thr, opts, spacing,
                             seeds=None if grow_result is None else grow_result.seeds)
    min_volume_mm3, min_slices = mode_defaults(seeded=bool(seed_idx.size), min_volume_mm3=opts.min_volume_mm3,
                                               min_slices=opts.min_slices)
    box = _clean_box(volume, mask, grow_result, thr, opts)
    sub = _clean(image, mask, box, region_mask, opts, spacing, min_volume_mm3=min_volume_mm3, min_slices=min_slices,
                 seed_labels=None if grow_result is None or not opts.fragment_gap_mm else grow_result.seed_labels)
    min_contrast = opts.min_contrast_sd
    if min_contrast is None:
        min_contrast = None if seed_idx.size else REGION_MIN_CONTRAST_SD
    contrast_dropped = None
    if min_contrast:
        # a point stands for nearby marrow, whose spread varies with where the point is (1234:
        # 11.9 vs 13.3): the contrast rule reads the region's own automatic reference, the same
        # for every user, so a faint band at the rule's edge is not kept by some users only
        robust = ref_info.get("robust") or {}
        c_median = float(robust.get("region_median", ref_median))
        c_sigma = float(robust.get("region_sigma", ref_sigma))
        sub, contrast_dropped = drop_low_contrast(sub, image[box], median=c_median, sigma=c_sigma,
                                                  min_contrast_sd=min_contrast)
    labels = np.zeros(volume.shape, dtype=sub.dtype)
    labels[box] = sub
    final_mask = np.zeros(volume.shape, dtype=bool)
    final_mask[box] = sub > 0
    notes += _cleaned_away(grow_result, seed_idx, labels, min_volume_mm3=min_volume_mm3, min_slices=min_slices)
    table = lesion_table(sub, image[box], affine=volume.affine, reference=thr.stats,
                         region=None if region_mask is None else region_mask[box],
                         origin=tuple(sl.start for sl in box), region_voxels=region_voxels)
    params = _params(opts, thr, ref_info=ref_info, region_voxels=region_voxels, seed_idx=seed_idx, seeds_mm=seeds_mm,
                     min_volume_mm3=min_volume_mm3, min_slices=min_slices, edge_info=edge_info)
    params["min_contrast_sd"] = min_contrast
    params["low_contrast_dropped"] = None if contrast_dropped is None else len(contrast_dropped)
    params["grid"] = jsonable(grid) if grid else None
    return Result(volume=volume, mask=final_mask, labels=labels, table=table, threshold=thr, params=params,
                  reference=ref_mask, region=region_mask, grow=grow_result, messages=tuple(notes))
