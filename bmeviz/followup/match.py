"""Lesion tracks across two visits: matched by overlap after registration, then by distance.

Rules (``docs/followup.md`` says why):

1. On the baseline grid, a baseline lesion and a (registered) follow-up lesion are linked
   when they share at least ``min_overlap`` (default 10 %) of the smaller one's voxels.
2. Lesions left without a link are paired by centroid distance (baseline RAS mm, nearest
   first) when closer than ``max_distance_mm`` (default 10 mm): a lesion that moved or
   shrank off its old place without overlapping it.
3. The links form tracks (connected groups): a lesion that split or merged is one track
   (its ids joined by ``;`` in ``baseline_ids`` / ``followup_ids``, noted as split/merged).
4. Status: only at baseline -> ``resolved``; only at follow-up -> ``new``; on both, the
   relative change ``change_pct = 100 (followup_ml - baseline_ml) / baseline_ml`` beyond
   ``+threshold`` -> ``grown``, below ``-threshold`` -> ``shrunk``, else ``persisting``, where
   ``threshold = max(change_pct_threshold, 100 * sdc_ml / baseline_ml)`` (25 % by default;
   ``sdc_ml`` is the smallest detectable change in mL when known, e.g. from repeat readings).

Volumes are measured on each visit's own grid (never on resampled masks); intensities are
each visit's ratio to its own normal-marrow reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = ["match_lesions", "CHANGE_COLUMNS", "MATCH_DEFAULTS"]

MATCH_DEFAULTS = {"min_overlap": 0.1, "max_distance_mm": 10.0, "change_pct_threshold": 25.0, "sdc_ml": None}

#: Columns of the change table, in order.
CHANGE_COLUMNS = (
    "track", "status", "baseline_id", "followup_id", "baseline_ids", "followup_ids", "baseline_ml", "followup_ml",
    "change_ml", "change_pct", "threshold_pct", "baseline_ratio", "followup_ratio", "baseline_z", "followup_z",
    "overlap_dice", "matched_by", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "shift_mm", "note",
)


def _weighted(values: np.ndarray, weights: np.ndarray) -> float:
    ok = np.isfinite(values) & (weights > 0)
    if not ok.any():
        return float("nan")
    return float(np.sum(values[ok] * weights[ok]) / np.sum(weights[ok]))


def match_lesions(
    baseline_labels: np.ndarray,
    followup_labels_on_baseline: np.ndarray,
    baseline_table,
    followup_table,
    *,
    followup_centroids_on_baseline: Any = None,
    min_overlap: float = MATCH_DEFAULTS["min_overlap"],
    max_distance_mm: float = MATCH_DEFAULTS["max_distance_mm"],
    change_pct_threshold: float = MATCH_DEFAULTS["change_pct_threshold"],
    sdc_ml: float | None = MATCH_DEFAULTS["sdc_ml"],
):
    """The change table: one row per lesion track (see the module doc for the rules).

    Parameters
    ----------
    baseline_labels, followup_labels_on_baseline : (S, R, C) int arrays
        Baseline lesion ids and the follow-up's ids brought onto the baseline grid.
    baseline_table, followup_table : pandas.DataFrame
        :func:`bmeviz.lesions.lesion_table` of each visit on its own grid (``lesion_id``,
        ``volume_ml``, ``ratio_to_reference``, ``z_score``, ``centroid_*_mm``).
    followup_centroids_on_baseline : (n, 3) array, optional
        The follow-up table's centroids mapped into baseline RAS (row order of the table).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from bmeviz.lesions import lesion_table
    >>> b = np.zeros((3, 20, 20), int); b[1, 2:8, 2:8] = 1; b[1, 12:15, 12:15] = 2
    >>> f = np.zeros_like(b); f[1, 2:6, 2:8] = 1; f[1, 15:19, 2:6] = 2
    >>> img = np.ones(b.shape); aff = np.eye(4)
    >>> t = match_lesions(b, f, lesion_table(b, img, affine=aff), lesion_table(f, img, affine=aff))
    >>> t[["status", "baseline_id", "followup_id", "change_pct"]].values.tolist()
    [['shrunk', 1, 1, -33.33333333333333], ['resolved', 2, <NA>, -100.0], ['new', <NA>, 2, nan]]
    """
    import pandas as pd

    b = np.asarray(baseline_labels)
    f = np.asarray(followup_labels_on_baseline)
    if b.shape != f.shape:
        raise ParameterError(f"baseline labels {b.shape} and follow-up labels on the baseline grid {f.shape} "
                             "must be on one grid")
    for name, v in (("min_overlap", min_overlap), ("max_distance_mm", max_distance_mm),
                    ("change_pct_threshold", change_pct_threshold)):
        if not np.isfinite(float(v)) or float(v) < 0:
            raise ParameterError(f"{name} must be a non-negative number; got {v!r}")
    if sdc_ml is not None and (not np.isfinite(float(sdc_ml)) or float(sdc_ml) < 0):
        raise ParameterError(f"sdc_ml (smallest detectable change, mL) must be a non-negative number; got {sdc_ml!r}")
    bt = baseline_table.set_index("lesion_id")
    ft = followup_table.set_index("lesion_id")
    b_ids = [int(i) for i in bt.index]
    f_ids = [int(i) for i in ft.index]
    f_cent = (np.asarray(followup_centroids_on_baseline, float).reshape(-1, 3) if followup_centroids_on_baseline
              is not None else ft[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float))
    f_cent_by_id = {i: f_cent[k] for k, i in enumerate(f_ids)}
    b_cent_by_id = {i: bt.loc[i, ["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float) for i in b_ids}

    # voxel counts on the baseline grid (the follow-up's as resampled there)
    both = (b > 0) & (f > 0)
    pairs, counts = np.unique(np.stack([b[both], f[both]]), axis=1, return_counts=True)
    b_vox = dict(zip(*np.unique(b[b > 0], return_counts=True)))
    f_vox = dict(zip(*np.unique(f[f > 0], return_counts=True)))
    links: list[tuple[int, int, str]] = []
    for (bi, fi), n in zip(pairs.T, counts):
        bi, fi = int(bi), int(fi)
        if bi not in bt.index or fi not in ft.index:
            continue
        smaller = min(b_vox.get(bi, 0), f_vox.get(fi, 0))
        if smaller and n / smaller >= float(min_overlap):
            links.append((bi, fi, "overlap"))
    linked_b = {bi for bi, _, _ in links}
    linked_f = {fi for _, fi, _ in links}
    # then distance, nearest first, one to one
    cand = []
    for bi in b_ids:
        if bi in linked_b:
            continue
        for fi in f_ids:
            if fi in linked_f:
                continue
            d = float(np.linalg.norm(b_cent_by_id[bi] - f_cent_by_id[fi]))
            if d <= float(max_distance_mm):
                cand.append((d, bi, fi))
    for d, bi, fi in sorted(cand):
        if bi in linked_b or fi in linked_f:
            continue
        links.append((bi, fi, "distance"))
        linked_b.add(bi)
        linked_f.add(fi)

    # tracks: connected groups of links (union-find over ("b", id) / ("f", id))
    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for bi in b_ids:
        find(("b", bi))
    for fi in f_ids:
        find(("f", fi))
    how: dict = {}
    for bi, fi, by in links:
        ra, rb = find(("b", bi)), find(("f", fi))
        if ra != rb:
            parent[ra] = rb
    for bi, fi, by in links:
        how.setdefault(find(("b", bi)), set()).add(by)
    groups: dict = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)

    rows = []
    for root, nodes in groups.items():
        bs = sorted(i for k, i in nodes if k == "b")
        fs = sorted(i for k, i in nodes if k == "f")
        b_ml = float(bt.loc[bs, "volume_ml"].sum()) if bs else 0.0
        f_ml = float(ft.loc[fs, "volume_ml"].sum()) if fs else 0.0
        threshold = float(change_pct_threshold)
        if sdc_ml is not None and b_ml > 0:
            threshold = max(threshold, 100.0 * float(sdc_ml) / b_ml)
        change = f_ml - b_ml
        pct = 100.0 * change / b_ml if bs else float("nan")
        if not fs:
            status = "resolved"
        elif not bs:
            status = "new"
        elif pct > threshold:
            status = "grown"
        elif pct < -threshold:
            status = "shrunk"
        else:
            status = "persisting"
        bw = bt.loc[bs, "volume_ml"].to_numpy(float) if bs else np.zeros(0)
        fw = ft.loc[fs, "volume_ml"].to_numpy(float) if fs else np.zeros(0)
        bc = (np.average(np.array([b_cent_by_id[i] for i in bs]), axis=0, weights=np.maximum(bw, 1e-12))
              if bs else None)
        fc = (np.average(np.array([f_cent_by_id[i] for i in fs]), axis=0, weights=np.maximum(fw, 1e-12))
              if fs else None)
        centre = bc if bc is not None else fc
        bmask = np.isin(b, bs) if bs else None
        fmask = np.isin(f, fs) if fs else None
        dice = float("nan")
        if bmask is not None and fmask is not None:
            tot = np.count_nonzero(bmask) + np.count_nonzero(fmask)
            dice = 2.0 * np.count_nonzero(bmask & fmask) / tot if tot else float("nan")
        notes = []
        if len(bs) > 1:
            notes.append(f"{len(bs)} baseline lesions merged")
        if len(fs) > 1:
            notes.append(f"split into {len(fs)} follow-up lesions")
        rows.append({
            "status": status,
            "baseline_id": max(bs, key=lambda i: bt.loc[i, "volume_ml"]) if bs else pd.NA,
            "followup_id": max(fs, key=lambda i: ft.loc[i, "volume_ml"]) if fs else pd.NA,
            "baseline_ids": ";".join(str(i) for i in bs), "followup_ids": ";".join(str(i) for i in fs),
            "baseline_ml": b_ml, "followup_ml": f_ml, "change_ml": change, "change_pct": pct,
            "threshold_pct": threshold if bs and fs else float("nan"),
            "baseline_ratio": _weighted(bt.loc[bs, "ratio_to_reference"].to_numpy(float), bw) if bs else float("nan"),
            "followup_ratio": _weighted(ft.loc[fs, "ratio_to_reference"].to_numpy(float), fw) if fs else float("nan"),
            "baseline_z": _weighted(bt.loc[bs, "z_score"].to_numpy(float), bw) if bs else float("nan"),
            "followup_z": _weighted(ft.loc[fs, "z_score"].to_numpy(float), fw) if fs else float("nan"),
            "overlap_dice": dice,
            "matched_by": ("+".join(sorted(how.get(root, set()))) or None) if bs and fs else None,
            "centroid_x_mm": centre[0], "centroid_y_mm": centre[1], "centroid_z_mm": centre[2],
            "shift_mm": float(np.linalg.norm(fc - bc)) if bc is not None and fc is not None else float("nan"),
            "note": "; ".join(notes) or None,
        })
    order = {"persisting": 0, "shrunk": 0, "grown": 0, "resolved": 1, "new": 2}
    rows.sort(key=lambda r: (order[r["status"]], -max(r["baseline_ml"], r["followup_ml"])))
    for k, r in enumerate(rows, start=1):
        r["track"] = k
    df = pd.DataFrame(rows, columns=list(CHANGE_COLUMNS))
    for c in ("baseline_id", "followup_id"):
        df[c] = df[c].astype("Int64")
    df["track"] = df["track"].astype("int64")
    return df
