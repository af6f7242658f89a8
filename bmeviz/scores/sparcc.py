"""SPARCC SIJ inflammation score from lesion outlines and an SIJ quadrant map.

The published rule (Maksymowych et al., Arthritis Rheum 2005;53:703-709, doi:10.1002/art.21445):
on 6 consecutive semicoronal slices through the cartilaginous part of the joints, each joint
(right, left) is split into 4 quadrants (upper/lower iliac, upper/lower sacral); each quadrant
with BME scores 1; per joint per slice +1 if a lesion is *intense* (signal like presacral vessels
or CSF) and +1 if a lesion is *deep* (>= 1 cm from the articular surface). Maximum 6 x 2 x 6 = 72.

What bmeviz computes (stated so a paper can cite it):

- **BME in a quadrant**: at least one lesion voxel of that quadrant on that slice (area > ``min_area_mm2``,
  default 0, i.e. any voxel).
- **Lesion**: a 26-connected 3D component of the lesion mask; on a slice and joint, its voxels there.
- **Deep**: the lesion reaches ``deep_mm`` (default 10 mm) from the articular surface: the largest
  in-plane distance from one of its voxel centres to the nearest voxel centre of the other bone's
  quadrants of the same joint (the iliac-sacral interface) is >= ``deep_mm``.
- **Intense**: the ``intense_stat`` (default the 75th percentile) of the lesion's intensities on that
  slice is >= ``intense_fraction`` (default 0.8) times the median of the fluid reference (a mask of
  CSF / presacral vessels, or a ball of ``fluid_radius_mm`` around a point). Without a fluid reference
  the intense points are not assessed (0, said so in the reason).
- **The 6 slices**: ``slices`` if given, else the 6 consecutive slices with the greatest summed
  length of both joints' articular surface: the drawn (interpolated) joint lines for maps built
  from lines, else the length over which iliac and sacral quadrants touch (the cartilaginous joint
  is longest there); ties go to the most anterior window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import ParameterError, warn
from ..volume import Volume
from ._common import ScoreResult, lesion_labels, parse_overrides, parse_slices
from .anatomy import QUADRANTS, SIDES, Anatomy

__all__ = ["score_sparcc", "choose_slices", "interface_length_mm", "DEFAULTS"]

DEFAULTS: dict[str, Any] = {
    "n_slices": 6, "deep_mm": 10.0, "intense_fraction": 0.8, "intense_stat": "p75",
    "fluid_radius_mm": 3.0, "min_area_mm2": 0.0,
}
_STATS = {"mean": np.mean, "median": np.median, "p75": lambda v: np.percentile(v, 75),
          "p90": lambda v: np.percentile(v, 90), "max": np.max}


def _check_sij(anatomy: Anatomy) -> None:
    if not isinstance(anatomy, Anatomy):
        raise ParameterError(f"anatomy must be a bmeviz.scores.Anatomy; got {type(anatomy).__name__}")
    if anatomy.kind != "sij":
        raise ParameterError(f"SPARCC and Berlin need an SIJ quadrant map (labels 1-8); this anatomy is {anatomy.kind!r}")


def interface_length_mm(anatomy: Anatomy, spacing: tuple[float, float]) -> np.ndarray:
    """(S, 2) length in mm over which iliac and sacral quadrants of each joint touch, per slice."""
    lab = anatomy.labels
    px = float(np.sqrt(spacing[0] * spacing[1]))
    out = np.zeros((lab.shape[0], 2))
    for j in range(2):
        il = np.isin(lab, [4 * j + 1, 4 * j + 2])
        sa = np.isin(lab, [4 * j + 3, 4 * j + 4])
        touch = il & ndi.binary_dilation(sa, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))
        out[:, j] = touch.reshape(lab.shape[0], -1).sum(axis=1) * px
    return out


def choose_slices(anatomy: Anatomy, volume: Volume, *, n: int = 6) -> tuple[list[int], dict]:
    """The ``n`` consecutive slices with the longest iliac-sacral interface of both joints.

    Returns the slices and a JSON record of how they were chosen.
    """
    _check_sij(anatomy)
    if anatomy.lines:  # built from joint lines: their drawn/interpolated length is the articular surface
        sp = np.asarray(volume.spacing[1:])
        per_slice = np.zeros(volume.shape[0])
        for lines in anatomy.lines.values():
            for s, pts in lines.items():
                mm = np.asarray(pts) * sp
                per_slice[s] += float(np.sqrt((np.diff(mm, axis=0) ** 2).sum(axis=1)).sum())
        basis = "joint-line length"
    else:
        per_slice = interface_length_mm(anatomy, tuple(volume.spacing[1:])).sum(axis=1)
        basis = "length over which iliac and sacral quadrants touch"
    S = len(per_slice)
    if not np.any(per_slice > 0):
        raise ParameterError("the quadrant map has no slice where iliac and sacral quadrants meet: "
                             "no articular surface to score")
    n_eff = min(n, S)
    sums = np.array([per_slice[i:i + n_eff].sum() for i in range(S - n_eff + 1)])
    anterior = volume.affine[1, 0]  # RAS y per slice step: > 0 means later slices are more anterior
    best = np.flatnonzero(np.isclose(sums, sums.max()))
    start = int(best[-1] if anterior > 0 else best[0])
    slices = list(range(start, start + n_eff))
    if n_eff < n or np.any(per_slice[slices] == 0):
        warn(f"only {int(np.count_nonzero(per_slice[slices]))} of the {n} SPARCC slices show the joint "
             "(quadrant map too short): the score's maximum is lower than 72")
    return slices, {"how": f"auto: the {n} consecutive slices with the greatest {basis} of both joints",
                    "interface_mm_per_slice": {int(s): round(float(per_slice[s]), 1) for s in range(S) if per_slice[s] > 0}}


def _resolve_fluid(image: Volume, fluid: Any, fluid_point_mm: Any, radius_mm: float):
    from ..pipeline import resolve_reference

    if fluid is not None and fluid_point_mm is not None:
        raise ParameterError("give the fluid reference as a mask (fluid) or a point (fluid_point_mm), not both")
    if fluid is None and fluid_point_mm is None:
        return None, {"kind": "none"}
    ref = fluid if fluid is not None else {"point_mm": fluid_point_mm, "radius_mm": radius_mm}
    mask, info = resolve_reference(ref, image, radius_mm=radius_mm)
    vals = np.asarray(image.array[mask], float)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        raise ParameterError("the fluid reference has no finite intensities")
    if not np.median(vals) > 0:
        raise ParameterError(f"the fluid reference's median intensity is {np.median(vals):.4g}: that is not fluid "
                             "on a fluid-sensitive image; place it in CSF or a presacral vessel")
    info = dict(info, median=float(np.median(vals)), what="fluid (CSF / presacral vessels)")
    return float(np.median(vals)), info


def score_sparcc(image: Volume, lesions: Any, anatomy: Anatomy, *, slices: Any = None, fluid: Any = None,
                 fluid_point_mm: Any = None, fluid_radius_mm: float = DEFAULTS["fluid_radius_mm"],
                 deep_mm: float = DEFAULTS["deep_mm"], intense_fraction: float = DEFAULTS["intense_fraction"],
                 intense_stat: str = DEFAULTS["intense_stat"], min_area_mm2: float = DEFAULTS["min_area_mm2"],
                 overrides: Any = None) -> ScoreResult:
    """SPARCC SIJ score of ``lesions`` (mask or labels on ``image``'s grid) in an SIJ ``anatomy``.

    Parameters
    ----------
    image : Volume
        The STIR (intensities for 'intense').
    lesions : mask, label map, Volume or path
    anatomy : Anatomy
        SIJ quadrants (:func:`~bmeviz.scores.sij_quadrants` or :func:`~bmeviz.scores.load_anatomy`).
    slices : 'FIRST-LAST', (first, last) or list, optional
        The 6 slices; default :func:`choose_slices`.
    fluid, fluid_point_mm, fluid_radius_mm
        Fluid reference for 'intense': a mask, or a RAS point (mm) with a radius (default 3 mm).
    deep_mm, intense_fraction, intense_stat, min_area_mm2
        The rule's parameters (see the module docstring).
    overrides : dict or list of 'SLICE:JOINT:UNIT=POINTS'
        A reader's corrections; recorded in the rows (``auto_points``, ``overridden``) and params.

    Returns
    -------
    ScoreResult
        12 rows per slice (2 joints x 4 quadrants + intense + deep); ``rows.points.sum() == total``.
    """
    _check_sij(anatomy)
    if not isinstance(image, Volume):
        raise ParameterError(f"image must be a bmeviz.Volume; got {type(image).__name__}")
    if anatomy.labels.shape != image.shape:
        raise ParameterError(f"anatomy has shape {anatomy.labels.shape}; the image is {image.shape}")
    if intense_stat not in _STATS:
        raise ParameterError(f"intense_stat must be one of {sorted(_STATS)}; got {intense_stat!r}")
    for name, v in (("deep_mm", deep_mm), ("intense_fraction", intense_fraction)):
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise ParameterError(f"{name} must be a positive number; got {v!r}")
    lab3 = lesion_labels(lesions, image)
    chosen = parse_slices(slices, image.shape[0])
    if chosen is None:
        chosen, how = choose_slices(anatomy, image, n=DEFAULTS["n_slices"])
    else:
        if len(chosen) != DEFAULTS["n_slices"] or np.any(np.diff(chosen) != 1):
            warn(f"SPARCC is defined on 6 consecutive slices; scoring the {len(chosen)} given: {chosen}")
        how = {"how": "given (--slices)"}
    fluid_median, fluid_info = _resolve_fluid(image, fluid, fluid_point_mm, fluid_radius_mm)
    if fluid_median is None:
        warn("no fluid reference (--fluid-mask or --fluid-point-mm): the 'intense' points are not assessed")
    over = parse_overrides(overrides, scheme="sparcc")
    sr, sc = (float(v) for v in image.spacing[1:])
    px_area = sr * sc
    vox_mm3 = px_area * float(image.spacing[0])
    stat = _STATS[intense_stat]
    img = image.array
    rows: list[dict] = []
    markers: dict = {}
    for s in chosen:
        an = anatomy.labels[s]
        les = lab3[s]
        for j, side in enumerate(SIDES):
            base = 4 * j
            il = np.isin(an, [base + 1, base + 2])
            sa = np.isin(an, [base + 3, base + 4])
            joint = il | sa
            depth = np.full(an.shape, np.nan)
            if il.any() and sa.any():
                d_to_sa = ndi.distance_transform_edt(~sa, sampling=(sr, sc))
                d_to_il = ndi.distance_transform_edt(~il, sampling=(sr, sc))
                depth = np.where(il, d_to_sa, np.where(sa, d_to_il, np.nan))
            for q, qname in enumerate(QUADRANTS):
                value = base + q + 1
                quad = an == value
                hit = quad & (les > 0)
                n_hit = int(np.count_nonzero(hit))
                ids = sorted(int(v) for v in np.unique(les[hit]))
                pts = int(n_hit * px_area > min_area_mm2) if quad.any() else 0
                if not quad.any():
                    reason = "quadrant not on this slice"
                elif pts:
                    reason = f"BME {n_hit * px_area:.1f} mm2 (lesion {', '.join(map(str, ids))})"
                else:
                    reason = "no BME" if n_hit == 0 else f"BME {n_hit * px_area:.1f} mm2 <= {min_area_mm2} mm2"
                rows.append(dict(slice=s, joint=side, unit=qname, label=value, unit_voxels=int(quad.sum()),
                                 bme_voxels=n_hit, bme_volume_mm3=round(n_hit * vox_mm3, 3),
                                 bme_share=round(n_hit / quad.sum(), 4) if quad.any() else 0.0,
                                 points=pts, lesion=";".join(map(str, ids)), depth_mm=np.nan,
                                 intensity_ratio=np.nan, reason=reason))
                if pts:
                    rr, cc = np.nonzero(hit)
                    markers[(s, side, qname)] = (float(rr.mean()), float(cc.mean()))
            # lesions of this joint on this slice
            ids = [int(v) for v in np.unique(les[joint & (les > 0)])]
            best_depth, best_ratio = (None, -np.inf, None), (None, -np.inf, None)
            for i in ids:
                m = joint & (les == i)
                dm = depth[m]
                if np.any(np.isfinite(dm)):
                    k = int(np.nanargmax(dm))
                    if dm[k] > best_depth[1]:
                        rr, cc = np.nonzero(m)
                        best_depth = (i, float(dm[k]), (float(rr[k]), float(cc[k])))
                if fluid_median is not None:
                    vals = np.asarray(img[s][m], float)
                    vals = vals[np.isfinite(vals)]
                    if vals.size:
                        ratio = float(stat(vals)) / fluid_median if fluid_median else np.inf
                        if ratio > best_ratio[1]:
                            rr, cc = np.nonzero(m)
                            kk = int(np.argmax(np.asarray(img[s][m], float)))
                            best_ratio = (i, ratio, (float(rr[kk]), float(cc[kk])))
            # intense
            if fluid_median is None:
                pts, reason, ratio, lid = 0, "not assessed: no fluid reference", np.nan, ""
            elif best_ratio[0] is None:
                pts, reason, ratio, lid = 0, "no lesion in this joint", np.nan, ""
            else:
                ratio, lid = best_ratio[1], str(best_ratio[0])
                pts = int(ratio >= intense_fraction)
                cmp = ">=" if pts else "<"
                reason = (f"lesion {lid}: {intense_stat} = {ratio:.2f} x fluid median {fluid_median:.4g} "
                          f"({fluid_info['kind']}) {cmp} {intense_fraction}")
                if pts:
                    markers[(s, side, "intense")] = best_ratio[2]
            rows.append(dict(slice=s, joint=side, unit="intense", label=0, unit_voxels=0, bme_voxels=0,
                             bme_volume_mm3=0.0, bme_share=0.0, points=pts, lesion=lid if pts else "",
                             depth_mm=np.nan, intensity_ratio=round(ratio, 3) if np.isfinite(ratio) else np.nan,
                             reason=reason))
            # deep
            if best_depth[0] is None:
                pts, d, lid = 0, np.nan, ""
                reason = "no lesion in this joint" if not ids else "not assessed: only one bone of the joint on this slice"
            else:
                d, lid = best_depth[1], str(best_depth[0])
                pts = int(d >= deep_mm)
                reason = f"lesion {lid} reaches {d:.1f} mm from the iliac-sacral interface {'>=' if pts else '<'} {deep_mm:g} mm"
                if pts:
                    markers[(s, side, "deep")] = best_depth[2]
            rows.append(dict(slice=s, joint=side, unit="deep", label=0, unit_voxels=0, bme_voxels=0,
                             bme_volume_mm3=0.0, bme_share=0.0, points=pts, lesion=lid if pts else "",
                             depth_mm=round(d, 2) if np.isfinite(d) else np.nan, intensity_ratio=np.nan,
                             reason=reason))
    import pandas as pd

    df = pd.DataFrame(rows)
    df.insert(0, "scheme", "sparcc")
    df["auto_points"] = df["points"]
    df["overridden"] = False
    for key, val in over.items():
        sel = (df["slice"] == key[0]) & (df["joint"] == key[1]) & (df["unit"] == key[2])
        if not sel.any():
            raise ParameterError(f"override {key[0]}:{key[1]}:{key[2]}: slice {key[0]} is not among the scored slices {chosen}")
        i = df.index[sel][0]
        old = int(df.at[i, "points"])
        df.at[i, "points"] = val
        df.at[i, "overridden"] = True
        df.at[i, "reason"] = f"{df.at[i, 'reason']}; overridden by the reader: {old} -> {val}"
    total = int(df["points"].sum())
    params = {"rule": "SPARCC (Maksymowych et al. 2005)", "slices": how, "deep_mm": deep_mm,
              "deep_definition": "largest in-plane distance of a lesion voxel centre to the other bone's quadrants",
              "intense_fraction": intense_fraction, "intense_stat": intense_stat, "fluid_reference": fluid_info,
              "min_area_mm2": min_area_mm2, "anatomy": anatomy.source,
              "overrides": [{"slice": k[0], "joint": k[1], "unit": k[2], "points": v} for k, v in over.items()],
              "auto_total": int(df["auto_points"].sum()), "maximum": 12 * len(chosen)}
    return ScoreResult("sparcc", df, total, list(chosen), params,
                       {"lesions": lab3, "anatomy": anatomy, "markers": markers})
