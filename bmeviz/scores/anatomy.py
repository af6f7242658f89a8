"""Anatomy as label maps with named labels: SIJ quadrants and knee (MOAKS/WORMS) subregions.

Three cheap ways to get one:

- :func:`sij_quadrants`: the 8 SIJ quadrants from a joint line drawn on a few slices
  (interpolated between them) inside the bone region -- what the napari tool calls.
- :func:`load_anatomy`: a label map from a file (NIfTI on the image grid) with an optional
  name table (JSON ``{"1": "right_upper_iliac", ...}`` or CSV ``value,name``).
- :func:`knee_subregions`: user-given femur / tibia / patella masks split into the 15
  MOAKS/WORMS subregions by stated (approximate) geometric rules.

SIJ label values are fixed so that maps from other tools work too: 1 right upper iliac,
2 right lower iliac, 3 right upper sacral, 4 right lower sacral, 5-8 the same on the left.
The articular surface is where the iliac and sacral quadrants of a joint face each other.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError, UnreadableFileError
from ..volume import Volume

__all__ = [
    "SIJ_LABELS", "KNEE_LABELS", "Anatomy", "sij_quadrants", "interpolate_lines", "lines_from_paths",
    "load_anatomy", "knee_subregions", "joint_of", "bone_of", "half_of", "snap_line",
]

#: SIJ quadrant label values (fixed; other tools' maps use the same values).
SIJ_LABELS: dict[int, str] = {
    1: "right_upper_iliac", 2: "right_lower_iliac", 3: "right_upper_sacral", 4: "right_lower_sacral",
    5: "left_upper_iliac", 6: "left_lower_iliac", 7: "left_upper_sacral", 8: "left_lower_sacral",
}
#: Knee subregions (MOAKS names; WORMS uses the same 15 regions: P M/L, F M/L x A/C/P, T M/L x A/C/P, S).
KNEE_LABELS: dict[int, str] = {
    1: "patella_medial", 2: "patella_lateral",
    3: "femur_medial_trochlea", 4: "femur_lateral_trochlea",
    5: "femur_medial_central", 6: "femur_lateral_central",
    7: "femur_medial_posterior", 8: "femur_lateral_posterior",
    9: "tibia_medial_anterior", 10: "tibia_lateral_anterior",
    11: "tibia_medial_central", 12: "tibia_lateral_central",
    13: "tibia_medial_posterior", 14: "tibia_lateral_posterior",
    15: "tibia_subspinous",
}
SIDES = ("right", "left")
QUADRANTS = ("upper_iliac", "lower_iliac", "upper_sacral", "lower_sacral")


def joint_of(value: int) -> str:
    """``'right'`` for SIJ labels 1-4, ``'left'`` for 5-8."""
    return "right" if value <= 4 else "left"


def bone_of(value: int) -> str:
    """``'iliac'`` or ``'sacral'`` for an SIJ label value."""
    return "iliac" if (value - 1) % 4 in (0, 1) else "sacral"


def half_of(value: int) -> str:
    """``'upper'`` or ``'lower'`` for an SIJ label value."""
    return "upper" if (value - 1) % 2 == 0 else "lower"


@dataclass(frozen=True)
class Anatomy:
    """A label map on the image grid with named labels.

    Attributes
    ----------
    labels : (S, R, C) int16 array
    names : dict
        label value -> name (``SIJ_LABELS``, ``KNEE_LABELS`` or the file's table).
    kind : {'sij', 'knee', 'custom'}
    lines : dict, optional
        For SIJ maps built from joint lines: ``{side: {slice: (n, 2) (row, col) array}}`` on every
        slice between the first and last drawn one (the drawn ones marked in ``source['drawn']``).
    source : dict
        How it was made (JSON-ready; no file names).
    """

    labels: np.ndarray
    names: dict
    kind: str
    lines: dict | None = None
    source: dict = field(default_factory=dict)

    def slices(self) -> list[int]:
        """Slices that carry any label."""
        return [int(s) for s in np.nonzero(self.labels.reshape(self.labels.shape[0], -1).any(axis=1))[0]]


# ----------------------------------------------------------------------------- joint lines
def _as_line(pts: Any, name: str) -> np.ndarray:
    try:
        p = np.asarray(pts, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a list of (row, column) points; got {pts!r}") from None
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2 or not np.all(np.isfinite(p)):
        raise ParameterError(f"{name} must be at least 2 finite (row, column) points; got shape {p.shape}")
    if np.all(np.abs(np.diff(p, axis=0)).sum(axis=1) == 0):
        raise ParameterError(f"{name} has zero length (all points equal)")
    return p


def _orient_superior_first(p: np.ndarray, affine: np.ndarray) -> np.ndarray:
    z = affine[2, 1] * p[:, 0] + affine[2, 2] * p[:, 1]
    return p if z[0] >= z[-1] else p[::-1].copy()


def _resample(p: np.ndarray, n: int, spacing: tuple[float, float]) -> np.ndarray:
    """``n`` points equally spaced by arc length (in mm) along the polyline ``p`` (row, col)."""
    mm = p * np.asarray(spacing)
    seg = np.sqrt((np.diff(mm, axis=0) ** 2).sum(axis=1))
    keep = np.concatenate([[True], seg > 0])
    p, mm = p[keep], mm[keep]
    s = np.concatenate([[0.0], np.cumsum(np.sqrt((np.diff(mm, axis=0) ** 2).sum(axis=1)))])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])], axis=1)


def interpolate_lines(drawn: Mapping[int, Any], *, affine: np.ndarray, spacing: tuple[float, float],
                      n_points: int = 64) -> dict[int, np.ndarray]:
    """A joint line on every slice from the first to the last drawn one.

    Each drawn line is oriented superior end first and resampled to ``n_points`` by arc
    length; a slice between two drawn slices gets the point-wise linear interpolation of
    its neighbours. Slices outside the drawn range get no line (no quadrants there).
    """
    keys = sorted(int(k) for k in drawn)
    res = {k: _resample(_orient_superior_first(_as_line(drawn[k], f"joint line on slice {k}"), affine),
                        n_points, spacing) for k in keys}
    out: dict[int, np.ndarray] = {}
    for a, b in zip(keys[:-1], keys[1:]):
        for s in range(a, b):
            w = (s - a) / (b - a)
            out[s] = (1 - w) * res[a] + w * res[b]
    out[keys[-1]] = res[keys[-1]]
    return out


def lines_from_paths(paths: Any, *, volume: Volume, region: np.ndarray | None = None) -> dict[str, dict[int, np.ndarray]]:
    """Sort drawn paths into ``{'right': {slice: pts}, 'left': {...}}`` by the patient side.

    ``paths`` are (n, 3) arrays of (slice, row, column) voxel coordinates on one slice each (a
    napari Shapes path, a JSON list). Two lines on a slice: the one further to the patient's
    right (RAS x) is the right joint; a single line is compared with the middle of ``region``
    on that slice (or of the image).
    """
    per_slice: dict[int, list[np.ndarray]] = {}
    for i, path in enumerate(paths):
        p = np.asarray(path, dtype=float)
        if p.ndim != 2 or p.shape[1] != 3 or len(p) < 2:
            raise ParameterError(f"joint line {i} must be (n >= 2, 3) (slice, row, column) points; got shape {p.shape}")
        s = np.rint(p[:, 0])
        if np.ptp(s) > 0:
            raise ParameterError(f"joint line {i} spans slices {int(s.min())}-{int(s.max())}; draw each line on one slice")
        k = int(s[0])
        if not 0 <= k < volume.shape[0]:
            raise ParameterError(f"joint line {i} is on slice {k}, outside the image (0-{volume.shape[0] - 1})")
        per_slice.setdefault(k, []).append(p[:, 1:])
    a = volume.affine
    out: dict[str, dict[int, np.ndarray]] = {"right": {}, "left": {}}
    for k, lines in per_slice.items():
        if len(lines) > 2:
            raise ParameterError(f"slice {k} has {len(lines)} joint lines; draw at most one per joint (2 per slice)")
        xs = [float(np.mean(a[0, 1] * p[:, 0] + a[0, 2] * p[:, 1])) for p in lines]
        if len(lines) == 2:
            order = np.argsort(xs)[::-1]
            out["right"][k], out["left"][k] = lines[order[0]], lines[order[1]]
        else:
            if region is not None and region[k].any():
                rr, cc = np.nonzero(region[k])
                mid = float(np.mean(a[0, 1] * rr + a[0, 2] * cc))
            else:
                mid = float(a[0, 1] * (volume.shape[1] - 1) / 2 + a[0, 2] * (volume.shape[2] - 1) / 2)
            out["right" if xs[0] > mid else "left"][k] = lines[0]
    return out


def snap_line(image2d: np.ndarray, pts: Any, *, spacing: tuple[float, float], corridor_mm: float = 4.0,
              step_mm: float = 1.0, smooth_px: float = 1.0, bend: float = 0.02) -> np.ndarray:
    """Move a roughly drawn joint line onto the darkest nearby valley of ``image2d`` (the articular
    line is dark on T1: cortex and cartilage between bright marrow).

    The line is resampled every ``step_mm``; each point may move up to ``corridor_mm`` along the
    line's normal; dynamic programming picks the offsets that minimise the summed (smoothed,
    median-normalised) intensity plus ``bend`` per step of change between neighbours (at most one
    0.5-pixel step per point), so the result stays a smooth curve. Returns (n, 2) (row, col).
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    p = _as_line(pts, "joint line")
    sp = np.asarray(spacing, float)
    mm = p * sp
    length = float(np.sqrt((np.diff(mm, axis=0) ** 2).sum(axis=1)).sum())
    m = max(int(np.ceil(length / step_mm)) + 1, 3)
    q = _resample(p, m, tuple(sp)) * sp  # mm
    tang = np.gradient(q, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    normal = np.stack([-tang[:, 1], tang[:, 0]], axis=1)
    dstep = 0.5 * float(sp.min())
    offs = np.arange(-corridor_mm, corridor_mm + 1e-9, dstep)
    img = gaussian_filter(np.nan_to_num(np.asarray(image2d, float)), smooth_px)
    cand = q[:, None, :] + offs[None, :, None] * normal[:, None, :]  # (m, K, 2) mm
    vals = map_coordinates(img, [cand[..., 0].ravel() / sp[0], cand[..., 1].ravel() / sp[1]], order=1,
                           mode="nearest").reshape(len(q), len(offs))
    cost = vals / max(float(np.median(np.abs(vals))), 1e-9)
    K = len(offs)
    acc = cost[0].copy()
    back = np.zeros((len(q), K), int)
    for i in range(1, len(q)):
        prev = np.stack([np.r_[np.inf, acc[:-1]] + bend, acc, np.r_[acc[1:], np.inf] + bend])  # from k-1, k, k+1
        arg = np.argmin(prev, axis=0)
        back[i] = np.arange(K) + (arg - 1)
        acc = cost[i] + prev[arg, np.arange(K)]
    k = int(np.argmin(acc))
    path = [k]
    for i in range(len(q) - 1, 0, -1):
        k = back[i, k]
        path.append(k)
    path = path[::-1]
    out = cand[np.arange(len(q)), path] / sp
    return out


def _nearest_on_line(line_mm: np.ndarray, pts_mm: np.ndarray):
    """Distance (mm), foot index and signed side (+1/-1) of points to a densely sampled polyline."""
    from scipy.spatial import cKDTree

    d, idx = cKDTree(line_mm).query(pts_mm)
    n = len(line_mm)
    tangent = line_mm[np.minimum(idx + 1, n - 1)] - line_mm[np.maximum(idx - 1, 0)]
    rel = pts_mm - line_mm[idx]
    side = np.sign(tangent[:, 0] * rel[:, 1] - tangent[:, 1] * rel[:, 0])
    return d, idx, side


def sij_quadrants(region: Any, lines: Mapping[str, Mapping[int, Any]], *, volume: Volume,
                  max_distance_mm: float | None = 30.0, n_points: int = 64, snap_to: Any = None,
                  snap_mm: float = 4.0) -> Anatomy:
    """The 8 SIJ quadrants from joint lines drawn on a few slices, inside the bone ``region``.

    Parameters
    ----------
    region : (S, R, C) bool array
        Bone (sacrum and ilia); only its voxels get a quadrant.
    lines : dict
        ``{'right': {slice: [(row, col), ...]}, 'left': {...}}`` -- the line between ilium and
        sacrum (the articular surface) on a few slices of each joint; see :func:`lines_from_paths`.
    volume : Volume
        The image (geometry: which way is superior and which is the patient's right).
    max_distance_mm : float or None
        Voxels further than this (in-plane) from every joint line get no quadrant (default 30 mm:
        the juxta-articular bone SPARCC/Berlin score; None = the whole region).
    snap_to : Volume or array, optional
        An image on the same grid (T1 is best) whose dark articular line each slice's (drawn or
        interpolated) line is moved onto, within ``snap_mm`` (:func:`snap_line`).

    Rules: on each slice between a joint's first and last drawn line (interpolated between drawn
    slices), each region voxel goes to the joint whose line is nearest in-plane; its foot point on
    that line decides upper/lower (the superior or inferior half of the line by arc length) and the
    side of the line decides iliac (lateral: towards the patient's right for the right joint) or sacral.
    """
    from ..pipeline import resolve_mask

    reg = resolve_mask(region, volume, "region")
    spacing = tuple(float(v) for v in volume.spacing[1:])
    a = volume.affine
    per_side = {}
    if not isinstance(lines, Mapping) or not set(lines) <= set(SIDES):
        raise ParameterError(f"lines must be {{'right': {{slice: points}}, 'left': {{...}}}}; got keys "
                             f"{sorted(lines) if isinstance(lines, Mapping) else type(lines).__name__}")
    for side in SIDES:
        drawn = dict(lines.get(side, {}) or {})
        for k, pts in drawn.items():
            p = _as_line(pts, f"{side} joint line on slice {k}")
            if not 0 <= int(k) < volume.shape[0]:
                raise ParameterError(f"{side} joint line on slice {k}: outside the image (slices 0-{volume.shape[0] - 1})")
            lim = np.array(volume.shape[1:]) - 0.5
            if np.any(p < -0.5) or np.any(p > lim):
                raise ParameterError(f"{side} joint line on slice {k} leaves the image (rows 0-{volume.shape[1] - 1}, "
                                     f"columns 0-{volume.shape[2] - 1}); points are (row, column) voxel indices")
        if drawn:
            per_side[side] = interpolate_lines(drawn, affine=a, spacing=spacing, n_points=n_points)
    if snap_to is not None:
        snap_img = snap_to.array if isinstance(snap_to, Volume) else np.asarray(snap_to)
        if snap_img.shape != volume.shape:
            raise ParameterError(f"snap_to has shape {snap_img.shape}; the image is {volume.shape}")
        per_side = {side: {s: _resample(snap_line(snap_img[s], pts, spacing=spacing, corridor_mm=snap_mm),
                                        n_points, spacing)
                           for s, pts in d.items()} for side, d in per_side.items()}
    if not per_side:
        raise ParameterError("no joint line given: draw the line between ilium and sacrum on a few slices of each joint")
    labels = np.zeros(volume.shape, np.int16)
    # in-plane direction of the patient's right (RAS +x) in (row mm, col mm)
    right_dir = np.array([a[0, 1] / spacing[0], a[0, 2] / spacing[1]])
    for s in sorted({k for d in per_side.values() for k in d}):
        rr, cc = np.nonzero(reg[s])
        if rr.size == 0:
            continue
        pts_mm = np.stack([rr * spacing[0], cc * spacing[1]], axis=1)
        best = np.full(rr.size, np.inf)
        lab = np.zeros(rr.size, np.int16)
        for j, side in enumerate(SIDES):
            if s not in per_side.get(side, {}):
                continue
            dense = _resample(per_side[side][s], 4 * n_points * 4, spacing) * np.asarray(spacing)
            d, idx, sgn = _nearest_on_line(dense, pts_mm)
            # which sign of the cross product is lateral: from the line's mean normal vs patient right
            t = dense[-1] - dense[0]
            normal_sign = np.sign(t[0] * right_dir[1] - t[1] * right_dir[0]) or 1.0
            lateral = sgn * normal_sign > 0
            if side == "left":
                lateral = ~lateral
            upper = idx < len(dense) / 2
            value = np.where(lateral, np.where(upper, 1, 2), np.where(upper, 3, 4)) + 4 * j
            take = d < best
            if max_distance_mm is not None:
                take &= d <= float(max_distance_mm)
            lab[take] = value[take]
            best[take] = d[take]
        labels[s, rr, cc] = lab
    drawn = {side: sorted(int(k) for k in (lines.get(side) or {})) for side in SIDES}
    drawn_lines = {side: {str(int(k)): np.round(np.asarray(v, float), 2).tolist() for k, v in (lines.get(side) or {}).items()}
                   for side in SIDES}
    return Anatomy(labels=labels, names=dict(SIJ_LABELS), kind="sij", lines=per_side,
                   source={"method": "joint lines", "drawn_slices": drawn, "drawn_lines_row_col": drawn_lines,
                           "max_distance_mm": max_distance_mm,
                           "interpolated": "point-wise linear between drawn slices, lines resampled by arc length",
                           "snapped_mm": snap_mm if snap_to is not None else None})


# ----------------------------------------------------------------------------- files
def _read_names(path: str | os.PathLike) -> dict[int, str]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UnreadableFileError(f"cannot read the label name table {p}: {e}") from None
    names: dict[int, str] = {}
    try:
        if p.suffix.lower() == ".json":
            obj = json.loads(text)
            if isinstance(obj, Mapping) and "labels" in obj:
                obj = obj["labels"]
            items = obj.items() if isinstance(obj, Mapping) else [(d["value"], d["name"]) for d in obj]
        else:
            rows = [r for r in csv.reader(text.splitlines()) if r and not r[0].lstrip().startswith("#")]
            if rows and not rows[0][0].strip().lstrip("-").isdigit():
                rows = rows[1:]  # header
            items = [(r[0], r[1]) for r in rows]
        for k, v in items:
            names[int(str(k).strip())] = str(v).strip()
    except (ValueError, KeyError, IndexError, TypeError, json.JSONDecodeError) as e:
        raise UnreadableFileError(f"{p} is not a label name table (JSON {{value: name}} or CSV value,name): {e}") from None
    return names


def load_anatomy(labels: Any, *, like: Volume, names: Any = None) -> Anatomy:
    """A subregion map from a file (or array) on ``like``'s grid, with an optional name table.

    ``names``: a mapping, or a JSON / CSV file path. Without one, a map whose values are all in
    1-8 is read as SIJ quadrants (the fixed values of :data:`SIJ_LABELS`); 1-15 with ``names``
    equal to the knee names is a knee map. Names given that are SIJ or knee names set the kind.
    """
    if isinstance(labels, (str, os.PathLike)):
        from ..io import load

        src = load(labels)
        if src.shape != like.shape or not np.allclose(src.affine, like.affine, atol=1e-3):
            raise ParameterError(f"anatomy {Path(labels).name} is not on the image grid "
                                 f"(shape {src.shape} vs {like.shape}); resample it onto the image first")
        arr = src.array
    else:
        arr = labels.array if isinstance(labels, Volume) else np.asarray(labels)
        if arr.shape != like.shape:
            raise ParameterError(f"anatomy has shape {arr.shape}; the image is {like.shape}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise ParameterError(f"anatomy must be integer labels, not {arr.dtype}")
    arr = np.nan_to_num(np.asarray(arr, dtype=float))
    if np.any(arr != np.round(arr)) or arr.min() < 0 or arr.max() > 32767:
        raise ParameterError("anatomy must hold non-negative integer labels (0 = none)")
    lab = arr.astype(np.int16)
    values = sorted(int(v) for v in np.unique(lab) if v)
    if not values:
        raise ParameterError("anatomy has no labelled voxels")
    if names is None:
        table = None
    elif isinstance(names, Mapping):
        table = {int(k): str(v) for k, v in names.items()}
    else:
        table = _read_names(names)
    if table is None:
        if max(values) <= 8:
            return Anatomy(lab, dict(SIJ_LABELS), "sij", source={"method": "file", "names": "SIJ values 1-8"})
        table = {v: f"label_{v}" for v in values}
    missing = [v for v in values if v not in table]
    if missing:
        raise ParameterError(f"anatomy values {missing} have no name in the name table")
    named = {v: table[v] for v in values}
    if set(named.items()) <= set(SIJ_LABELS.items()):
        kind, names_out = "sij", dict(SIJ_LABELS)
    elif set(named.values()) <= set(KNEE_LABELS.values()):
        # knee names from another tool's values: renumbered to bmeviz's (by name)
        by_name = {v: k for k, v in KNEE_LABELS.items()}
        lut = np.zeros(max(values) + 1, np.int16)
        for v, n in named.items():
            lut[v] = by_name[n]
        lab = lut[lab]
        kind, names_out = "knee", dict(KNEE_LABELS)
    elif set(named.values()) & set(SIJ_LABELS.values()):
        raise ParameterError("an SIJ map must use the fixed values: " +
                             ", ".join(f"{k} {v}" for k, v in SIJ_LABELS.items()))
    else:
        kind, names_out = "custom", named
    return Anatomy(lab, names_out, kind, source={"method": "file", "names": "table" if names is not None else "none"})


# ----------------------------------------------------------------------------- knee
def knee_subregions(*, femur: Any, tibia: Any, patella: Any = None, volume: Volume, knee: str,
                    epiphysis_mm: float = 35.0, subspinous_fraction: float = 0.2) -> Anatomy:
    """Split femur / tibia / patella masks into the 15 MOAKS/WORMS subregions (approximate).

    Rules, in patient (RAS) millimetres; ``knee`` is ``'right'`` or ``'left'`` (which side is medial):

    - Only the epiphyses are scored: femur voxels within ``epiphysis_mm`` above its most distal
      voxel, tibia voxels within ``epiphysis_mm`` below its most proximal voxel (approximate: the
      published subregions follow the physeal scar).
    - Medial / lateral (femur, tibia): a sagittal plane through the middle of the tibial epiphysis's
      left-right extent (approximate: the published split follows the intercondylar notch; the
      trochlear groove is medial in WORMS).
    - Femur anterior (trochlea) / central / posterior: in front of the tibial epiphysis's anterior
      edge, above the plateau, behind its posterior edge (approximate: MOAKS uses the meniscal
      horns, which sit on those edges).
    - Tibia anterior / central / posterior: thirds of the tibial epiphysis's antero-posterior extent;
      subspinous: the middle ``subspinous_fraction`` of its left-right width (approximate).
    - Patella medial / lateral: a sagittal plane through the middle of the patella (the median
      ridge counts as medial, as in WORMS).
    """
    from ..pipeline import resolve_mask

    if knee not in ("right", "left"):
        raise ParameterError(f"knee must be 'right' or 'left' (decides which side is medial); got {knee!r}")
    fem = resolve_mask(femur, volume, "femur")
    tib = resolve_mask(tibia, volume, "tibia")
    pat = resolve_mask(patella, volume, "patella") if patella is not None else None
    idx = np.indices(volume.shape).reshape(3, -1).T
    ras = idx @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    x, y, z = (ras[:, i].reshape(volume.shape) for i in range(3))
    medial_sign = -1.0 if knee == "right" else 1.0  # right knee: medial is towards the patient's left (-x)
    labels = np.zeros(volume.shape, np.int16)
    tib_epi = tib & (z >= z[tib].max() - epiphysis_mm)
    fem_epi = fem & (z <= z[fem].min() + epiphysis_mm)
    tx, ty = x[tib_epi], y[tib_epi]
    x_mid = 0.5 * (tx.min() + tx.max())
    y_ant, y_post = ty.max(), ty.min()
    medial = (x - x_mid) * medial_sign >= 0
    # femur
    f_part = np.where(y > y_ant, 0, np.where(y < y_post, 2, 1))  # 0 trochlea, 1 central, 2 posterior
    f_val = 3 + 2 * f_part + np.where(medial, 0, 1)
    labels[fem_epi] = f_val[fem_epi]
    # tibia
    third = (y_ant - y_post) / 3.0
    t_part = np.where(y > y_ant - third, 0, np.where(y < y_post + third, 2, 1))
    t_val = 9 + 2 * t_part + np.where(medial, 0, 1)
    half_w = subspinous_fraction * (tx.max() - tx.min()) / 2
    t_val = np.where(np.abs(x - x_mid) <= half_w, 15, t_val)
    labels[tib_epi] = t_val[tib_epi]
    if pat is not None:
        px = x[pat]
        p_mid = 0.5 * (px.min() + px.max())
        p_val = np.where((x - p_mid) * medial_sign >= 0, 1, 2)
        labels[pat] = p_val[pat]
    return Anatomy(labels, dict(KNEE_LABELS), "knee",
                   source={"method": "knee masks", "knee": knee, "epiphysis_mm": epiphysis_mm,
                           "subspinous_fraction": subspinous_fraction, "approximate": True})
