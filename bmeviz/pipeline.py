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
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._jsonable import jsonable
from .errors import ParameterError, warn
from .volume import Volume

__all__ = ["segment", "Result", "DEFAULTS", "resolve_reference", "resolve_mask", "resolve_seeds"]

#: Defaults of :func:`segment` (also written to provenance).
DEFAULTS: dict[str, Any] = {
    "rule": "q3-iqr",
    "k": None,  # adaptive for q3-iqr; 2.0 for mean-sd; 99 for percentile
    "high_k": None,
    "upper": None,
    "method": "connected",
    # clean-up: None = by mode. Seeded: keep what the user clicked (0 mm3, 1 slice);
    # all-in-region: 10 mm3 on >= 2 consecutive slices (ASAS: BME seen on 2 slices)
    "min_volume_mm3": None,
    "min_slices": None,
    "fill_holes": False,
    "connectivity": 26,
    "reference_radius_mm": 8.0,
    "max_volume_ml": 300.0,  # real SIJ lesions reach ~110 mL (1013); a flood of joint fluid and soft tissue is far larger
    "max_radius_mm": None,
    "confidence_k": 2.5,
    "edge": "threshold",
    # robust reference (bmeviz/reference.py, docs/reference.md): the reference is cut to the
    # region away from its edge and outliers are fenced off before statistics; the adaptive
    # q3-iqr rule aims at its 99th percentile instead of its maximum
    "robust_reference": True,
    "reference_edge_mm": 2.0,
    "reference_fence": 2.5,
    "adaptive_top": 99.0,
}


def _version() -> str:
    from . import __version__

    return __version__


def resolve_mask(mask: Any, volume: Volume, name: str) -> np.ndarray | None:
    """A bool mask on ``volume``'s grid from an array, a Volume (same grid) or a path."""
    if mask is None:
        return None
    if isinstance(mask, (str, os.PathLike)):
        from .io import load

        mask = load(mask)
    if isinstance(mask, Volume):
        if mask.shape != volume.shape:
            raise ParameterError(f"{name} has shape {mask.shape}; the image is {volume.shape}: it must be on the same grid")
        if not np.allclose(mask.affine, volume.affine, atol=1e-3):
            raise ParameterError(
                f"{name} is on another grid than the image (affines differ by up to "
                f"{np.abs(mask.affine - volume.affine).max():.3g} mm); resample it onto the image first"
            )
        mask = mask.array
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
    try:
        p = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be 3 numbers; got {value!r}") from None
    if p.size != 3 or not np.all(np.isfinite(p)):
        raise ParameterError(f"{name} must be 3 finite numbers; got {value!r}")
    return p


def resolve_reference(
    reference: Any, volume: Volume, *, radius_mm: float | None = None
) -> tuple[np.ndarray, dict]:
    """The reference mask and a JSON description of it.

    ``reference`` is a mask (array, Volume, NIfTI path) or a point: a voxel index
    ``(slice, row, column)``, or ``{"point_mm": (x, y, z)}`` in RAS mm, or
    ``{"point": (s, r, c)}``, with ``radius_mm`` (default 8 mm).
    """
    from .threshold import sphere_mask

    if isinstance(reference, str) and reference == "auto":
        raise ParameterError("reference='auto' needs region= (normal marrow is searched inside it)")
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
                      "radius_mm": radius, "voxels": int(np.count_nonzero(mask))}
    mask = resolve_mask(reference, volume, "reference")
    assert mask is not None
    return mask, {"kind": "mask", "voxels": int(np.count_nonzero(mask))}


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


@dataclass(frozen=True)
class Result:
    """What :func:`segment` found: mask, labels, table, threshold and provenance."""

    volume: Volume = field(repr=False)
    mask: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    table: Any = field(repr=False)  # pandas.DataFrame
    threshold: Any  # bmeviz.threshold.Threshold
    params: dict = field(repr=False)
    reference: np.ndarray = field(repr=False)
    region: np.ndarray | None = field(repr=False, default=None)
    grow: Any = field(repr=False, default=None)  # bmeviz.grow.GrowResult or None
    messages: tuple[str, ...] = ()

    @property
    def totals(self) -> dict:
        from .lesions import summarize

        return summarize(self.table)

    @property
    def total_volume_ml(self) -> float:
        return float(self.totals["total_volume_ml"])

    @property
    def n_lesions(self) -> int:
        return int(self.totals["n_lesions"])

    def __repr__(self) -> str:
        return (f"Result(n_lesions={self.n_lesions}, total_volume_ml={self.total_volume_ml:.3f}, "
                f"threshold={self.threshold.value:.4g} ({self.threshold.rule}, k={self.threshold.k}))")

    def provenance(self, *, include_phi: bool = False) -> dict:
        """Everything that shaped the result, JSON-serialisable; no identifiers unless asked."""
        md = self.volume.metadata
        source = {
            "name": _input_name(md, include_phi),
            "description": md.get("description"),
            "sequence": md.get("sequence"),
            "series_number": md.get("series_number"),
            "echo": md.get("echo"),
            "manufacturer": md.get("manufacturer"),
            "shape": list(self.volume.shape),
            "spacing_mm": [round(s, 6) for s in self.volume.spacing],
            "affine": np.round(self.volume.affine, 6).tolist(),
            "rescale": md.get("rescale"),
        }
        if include_phi:
            source["files"] = md.get("source_files")
            source["series_uid"] = md.get("series_uid")
        return {
            "software": {"name": "bmeviz", "version": _version()},
            "input": source,
            "params": self.params,
            "threshold": self.threshold.to_dict(),
            "grow": None if self.grow is None else self.grow.to_dict(),
            "totals": jsonable(self.totals),
            "messages": list(self.messages),
        }

    def save(
        self,
        out_dir: str | os.PathLike,
        *,
        overlay: bool = True,
        include_phi: bool = False,
        seg: bool = False,
        report: bool = False,
    ) -> dict[str, Path]:
        """Write ``bme_mask.nii.gz`` (lesion ids on the source grid), ``lesions.csv``,
        ``provenance.json`` and ``overlay.png`` to ``out_dir``, each atomically; with
        ``seg=True`` also ``bme_seg.dcm`` (DICOM SEG, DICOM sources only) and with
        ``report=True`` ``report.html``."""
        from .io import save_mask
        from .io._atomic import atomic_path, atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"mask": save_mask(self.labels, self.volume, out / "bme_mask.nii.gz")}
        with atomic_path(out / "lesions.csv") as tmp:
            self.table.to_csv(tmp, index=False, float_format="%.6g")
        paths["table"] = out / "lesions.csv"
        paths["provenance"] = atomic_write_text(
            out / "provenance.json", json.dumps(self.provenance(include_phi=include_phi), indent=2) + "\n"
        )
        if overlay:
            from .plot import save_overlay

            paths["overlay"] = save_overlay(self, out / "overlay.png")
        if seg:
            from .io.seg import save_seg

            paths["seg"] = save_seg(self, out / "bme_seg.dcm", include_phi=include_phi)
        if report:
            from .report import save_report

            paths["report"] = save_report(self, out / "report.html", include_phi=include_phi)
        return paths


def _input_name(md: Mapping, include_phi: bool) -> str | None:
    files = md.get("source_files") or []
    if not files:
        return None
    where = str(files[0]) if len(files) == 1 else os.path.commonpath(files)
    if include_phi:
        return where
    # folder and file names often carry patient names: a short digest identifies the input
    # (the same input gives the same id) without naming it
    import hashlib

    return "sha256:" + hashlib.sha256(os.path.abspath(where).encode()).hexdigest()[:16]


def _bbox(mask: np.ndarray, *, margin: int = 1) -> tuple[slice, slice, slice]:
    """Bounding box of ``mask`` grown by ``margin`` voxels (a 1-voxel box when empty)."""
    if not mask.any():
        return (slice(0, 1), slice(0, 1), slice(0, 1))
    box = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(0, int(hit[0]) - margin), min(mask.shape[ax], int(hit[-1]) + 1 + margin)))
    return tuple(box)  # type: ignore[return-value]


def _pad(box: tuple[slice, ...], shape: tuple[int, ...], margin: int) -> tuple[slice, slice, slice]:
    return tuple(slice(max(0, b.start - margin), min(n, b.stop + margin)) for b, n in zip(box, shape))  # type: ignore[return-value]


def _keep_components_reaching(mask: np.ndarray, strong: np.ndarray, connectivity: int) -> np.ndarray:
    """Hysteresis: the components of ``mask`` that hold at least one ``strong`` voxel."""
    from .lesions import label

    labels = label(mask, connectivity=connectivity)
    hit = np.unique(labels[strong & mask])
    hit = hit[hit > 0]
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[hit] = True
    return keep[labels]


def refine_half_max(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    background: float,
    floor: float,
    spacing: Sequence[float],
    connectivity: int = 26,
    core_mm: float = 1.5,
) -> tuple[np.ndarray, list[dict]]:
    """Re-threshold each lesion of ``mask`` at the half-maximum of its own edge.

    For every connected component the plateau is the median intensity of its core (the
    component eroded in-plane by ``core_mm``; the whole component when the core is tiny):
    a median is not pulled up by noise nor down by the soft rim. The component keeps its
    voxels at or above ``(background + plateau) / 2`` (where a soft edge is 50% lesion),
    never using a level below ``floor`` (the reference threshold). This removes the
    partial-volume rim and the noise specks that a reference-relative threshold takes
    along a soft edge. On the phantom it takes volume errors from +16..+30% to within
    about ±3.5% (see tests/test_pipeline.py).
    """
    from scipy import ndimage as ndi

    from .lesions import label

    labels = label(mask, connectivity=connectivity)
    out = np.zeros(mask.shape, bool)
    info = []
    iterations = max(1, int(round(core_mm / float(min(spacing[1], spacing[2])))))
    plane = np.zeros((1, 3, 3), bool)
    plane[0] = ndi.generate_binary_structure(2, 1)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        comp = labels[box] == i
        core = ndi.binary_erosion(comp, plane, iterations=iterations)
        vals = image[box][core if core.sum() >= 10 else comp]
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            continue
        plateau = float(np.median(vals))
        level = max(float(floor), (float(background) + plateau) / 2.0)
        keep = comp & (image[box] >= level)
        out[box] |= keep
        info.append({"component": i, "plateau": plateau, "level": level, "voxels_before": int(comp.sum()),
                     "voxels_after": int(keep.sum())})
    return out, info


def segment(
    volume: Volume,
    *,
    reference: Any,
    seeds: Any = None,
    seeds_mm: Any = None,
    region: Any = None,
    rule: str = DEFAULTS["rule"],
    k: Any = DEFAULTS["k"],
    high_k: float | None = DEFAULTS["high_k"],
    upper: float | None = DEFAULTS["upper"],
    method: str = DEFAULTS["method"],
    min_volume_mm3: float | None = DEFAULTS["min_volume_mm3"],
    min_slices: int | None = DEFAULTS["min_slices"],
    fill_holes: bool = DEFAULTS["fill_holes"],
    connectivity: int = DEFAULTS["connectivity"],
    reference_radius_mm: float | None = None,
    max_volume_ml: float | None = DEFAULTS["max_volume_ml"],
    max_radius_mm: float | None = DEFAULTS["max_radius_mm"],
    confidence_k: float = DEFAULTS["confidence_k"],
    edge: str = DEFAULTS["edge"],
    robust_reference: bool = DEFAULTS["robust_reference"],
    reference_edge_mm: float = DEFAULTS["reference_edge_mm"],
    reference_fence: float = DEFAULTS["reference_fence"],
    adaptive_top: float | str | None = DEFAULTS["adaptive_top"],
) -> Result:
    """Outline and measure BME in a fluid-sensitive ``volume``.

    Parameters
    ----------
    volume : Volume
        STIR / T2 FS / PD FS / Dixon water image.
    reference : mask or point
        Normal marrow of the same scan: a bool mask (array, Volume or NIfTI path on the
        image grid), a voxel index ``(slice, row, column)`` or ``{"point_mm": (x, y, z)}``
        with ``reference_radius_mm`` (default 8 mm).
    seeds, seeds_mm : (n, 3) array_like, optional
        Points the user clicked in lesions: voxel indices (slice, row, column) and/or
        RAS mm (x, y, z). Without seeds, every above-threshold component in ``region``
        is taken ("find all in region").
    region : mask, optional
        Where BME is searched (bone/marrow); joint fluid outside it is never counted.
    rule, k, high_k
        Threshold rule on the reference: ``'q3-iqr'`` (k=None: the published adaptive k),
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
        ``.mask``, ``.labels``, ``.table``, ``.threshold``, ``.params``, ``.save(dir)``.

    Examples
    --------
    >>> import bmeviz
    >>> from bmeviz.data import make_phantom
    >>> ph = make_phantom(seed=1)
    >>> res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    >>> res.n_lesions == len(ph.lesion_volumes_ml)
    True
    """
    from .grow import confidence_grow, grow, grow_all
    from .lesions import clean, lesion_table
    from .threshold import compute_threshold

    if not isinstance(volume, Volume):
        raise ParameterError(f"volume must be a bmeviz.Volume (from bmeviz.load); got {type(volume).__name__}")
    if edge not in {"threshold", "half-max"}:
        raise ParameterError(f"edge must be 'threshold' or 'half-max'; got {edge!r}")
    if method not in {"connected", "confidence"}:
        raise ParameterError(f"method must be 'connected' or 'confidence'; got {method!r}")
    if upper is not None:
        try:
            upper = float(upper)
        except (TypeError, ValueError):
            raise ParameterError(f"upper must be a number (an upper intensity bound) or None; got {upper!r}") from None
        if np.isnan(upper):
            raise ParameterError("upper is NaN; give a number or None")
    image = volume.array
    spacing = volume.spacing
    region_mask = resolve_mask(region, volume, "region")
    from .reference import auto_reference, clean_reference

    if isinstance(reference, str) and reference == "auto" and region_mask is not None:
        auto = auto_reference(image, region=region_mask, spacing=spacing)
        ref_mask, ref_info = auto.mask, {"kind": "auto", **auto.info}
    else:
        ref_mask, ref_info = resolve_reference(reference, volume, radius_mm=reference_radius_mm)
        if robust_reference:
            cleaned = clean_reference(image, ref_mask, region=region_mask, spacing=spacing,
                                      edge_mm=reference_edge_mm, fence=reference_fence)
            ref_mask, ref_info = cleaned.mask, {**ref_info, "robust": cleaned.info}
    seed_idx = resolve_seeds(volume, seeds, seeds_mm)
    thr = compute_threshold(image, reference=ref_mask, rule=rule, k=k, region=region_mask, high_k=high_k,
                            adaptive_top=adaptive_top)
    messages: list[str] = []
    grow_result = None
    if seed_idx.size:
        if method == "confidence":
            grow_result = confidence_grow(
                image, seed_idx, k=confidence_k, region=region_mask, connectivity=connectivity, spacing=spacing,
                max_volume_ml=max_volume_ml, max_radius_mm=max_radius_mm,
            )
        else:
            grow_result = grow(
                image, seed_idx, low=thr.value, high=upper, region=region_mask, connectivity=connectivity,
                spacing=spacing, max_volume_ml=max_volume_ml, max_radius_mm=max_radius_mm,
            )
        mask = grow_result.mask
        for i, (below, leaked) in enumerate(zip(grow_result.below, grow_result.leaked)):
            if below:
                messages.append(f"seed {i} at voxel {seed_idx[i].tolist()} is below the threshold "
                                f"{thr.value:.4g} or outside the region: nothing grown")
            if leaked:
                messages.append(f"seed {i} at voxel {seed_idx[i].tolist()} hit the leak guard")
        for m in messages:
            if "below the threshold" in m:
                warn(m)
    else:
        if method == "confidence":
            raise ParameterError("method='confidence' needs seeds (click the lesions)")
        if region_mask is None:
            warn("no seeds and no region: every above-threshold voxel of the whole image is taken "
                 "(joint fluid included); give a bone region or seeds")
        mask = grow_all(image, low=thr.value, high=upper, region=region_mask, connectivity=connectivity)
    if thr.high is not None:
        mask = _keep_components_reaching(mask, image >= thr.high, connectivity)
    edge_info = None
    if edge == "half-max":
        if thr.stats is None:
            raise ParameterError("edge='half-max' needs reference statistics (a reference region)")
        mask, edge_info = refine_half_max(image, mask, background=thr.stats.mean, floor=thr.value,
                                          spacing=spacing, connectivity=connectivity)
    seeded = bool(seed_idx.size)
    if min_volume_mm3 is None:
        min_volume_mm3 = 0.0 if seeded else 10.0
    if min_slices is None:
        min_slices = 1 if seeded else 2
    # clean-up and measurement work on the lesions' bounding box only: a seeded result
    # costs what its lesions cost, not what the volume costs
    if grow_result is not None and thr.high is None and edge == "threshold" and grow_result.bbox is not None:
        box = _pad(grow_result.bbox, volume.shape, 1)  # growing knows where its lesions are
    else:
        box = _bbox(mask, margin=1)
    sub = clean(mask[box], spacing=spacing, min_volume_mm3=min_volume_mm3, min_slices=min_slices,
                fill_holes=fill_holes, connectivity=connectivity)
    sub_region = None if region_mask is None else region_mask[box]
    if fill_holes:  # filled holes stay inside the region and never take missing (NaN) voxels
        keep = np.isfinite(image[box]) if np.issubdtype(image.dtype, np.floating) else np.ones(sub.shape, bool)
        if sub_region is not None:
            keep &= sub_region
        sub = np.where(keep, sub, 0).astype(sub.dtype)
    labels = np.zeros(volume.shape, dtype=sub.dtype)
    labels[box] = sub
    final_mask = np.zeros(volume.shape, dtype=bool)
    final_mask[box] = sub > 0
    if grow_result is not None:
        for i, (n, seed) in enumerate(zip(grow_result.voxels, seed_idx)):
            if n > 0 and labels[tuple(seed)] == 0:
                messages.append(f"seed {i} at voxel {seed.tolist()} grew {n} voxel(s) that the clean-up removed "
                                f"(min_volume_mm3={min_volume_mm3:g}, min_slices={min_slices})")
    table = lesion_table(sub, image[box], affine=volume.affine, reference=thr.stats, region=sub_region,
                         origin=tuple(sl.start for sl in box),
                         region_voxels=None if region_mask is None else int(np.count_nonzero(region_mask)))
    params = jsonable({
        "rule": rule,
        "k": k,
        "k_used": thr.k,
        "high_k": high_k,
        "upper": upper,
        "method": method,
        "confidence_k": confidence_k if method == "confidence" else None,
        "min_volume_mm3": min_volume_mm3,
        "min_slices": min_slices,
        "fill_holes": fill_holes,
        "connectivity": connectivity,
        "max_volume_ml": max_volume_ml,
        "max_radius_mm": max_radius_mm,
        "reference": ref_info,
        "region": None if region_mask is None else {"voxels": int(np.count_nonzero(region_mask))},
        "seeds": seed_idx.tolist(),
        "seeds_mm_given": None if seeds_mm is None else np.asarray(seeds_mm, float).reshape(-1, 3).tolist(),
        "mode": "seeded" if seed_idx.size else "all-in-region",
        "edge": edge,
        "robust_reference": robust_reference,
        "reference_edge_mm": reference_edge_mm if robust_reference else None,
        "reference_fence": reference_fence if robust_reference else None,
        "adaptive_top": adaptive_top,
        "edge_levels": None if edge_info is None else [round(e["level"], 4) for e in edge_info],
    })
    return Result(volume=volume, mask=final_mask, labels=labels, table=table, threshold=thr, params=params,
                  reference=ref_mask, region=region_mask, grow=grow_result, messages=tuple(messages))
