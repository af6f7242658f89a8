"""Clicks: how a user's seeds become lesions whoever clicks.

:func:`climb_seeds` brings every click of a lesion to its top; :func:`snap_seeds` moves a
click that just misses a lesion's above-threshold voxels onto the brightest voxel near it; :func:`grow_without_leaks` grows each seed at the level
where its region stops leaking into large faint structures; :func:`ordinal` numbers
clicks as users count them. :func:`bmeviz.segment` uses all three (docs/reference.md).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .errors import ParameterError
from .grow import GrowResult, _ball, _bbox, _check_number, _in_range, _region_crop, _resolve, grow

__all__ = ["climb_seeds", "snap_seeds", "grow_without_leaks", "with_fragments", "join_seed_components", "ordinal", "LEAK_STEPS"]


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``11th``, ``22nd``: how a user counts clicks.

    >>> [ordinal(i) for i in (1, 2, 3, 4, 11, 12, 13, 21, 102)]
    ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '102nd']
    """
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def snap_seeds(
    image: Any,
    seeds: Any,
    *,
    low: float,
    high: float | None = None,
    region: Any = None,
    spacing: Any = (1.0, 1.0, 1.0),
    radius_mm: float = 3.0,
) -> tuple[np.ndarray, list[dict]]:
    """Move clicks that miss the lesion's above-threshold voxels by a little onto them.

    A user clicks "in the lesion", but which voxel the click lands on is chance: in a
    faint lesion its darker half is often just below the threshold, so one user's click
    grows the lesion and another's grows nothing. A seed whose voxel is below ``low``
    (or above ``high``, or outside ``region``) moves to the brightest in-range voxel of
    the region within ``radius_mm`` (ties: the nearest); it stays where it is when there
    is none.

    Parameters
    ----------
    image : (S, R, C) array_like
        The image.
    seeds : (n, 3) array_like
        Seed indices (slice, row, column).
    low, high : float
        The intensity range of lesion voxels (as in :func:`grow`).
    region : (S, R, C) array_like of bool, optional
        Seeds move only onto region voxels.
    spacing : 3 floats
        Voxel size in mm.
    radius_mm : float
        How far a seed may move (mm), > 0.

    Returns
    -------
    seeds : (n, 3) ndarray of int
        The seeds after moving.
    moves : list of dict
        One per seed that was not in range: ``{"seed": i (0-based), "from", "to" (or
        None: nowhere to go), "distance_mm", "value_from", "value_to"}``.

    Examples
    --------
    >>> img = np.zeros((3, 9, 9)); img[1, 4, 6] = 10; img[1, 4, 5] = 8
    >>> new, moves = snap_seeds(img, [(1, 4, 4)], low=5, radius_mm=2.5)
    >>> new.tolist(), moves[0]["to"], moves[0]["distance_mm"]
    ([[1, 4, 6]], [1, 4, 6], 2.0)
    """
    img, pts, low, high, reg, _, sp, _, _ = _resolve(image, seeds, low, high, region, 26, spacing, None, None)
    r = _check_number(radius_mm, "radius_mm")
    if r <= 0:
        raise ParameterError(f"radius_mm must be > 0 mm; got {radius_mm!r}")
    out = pts.copy()
    moves = []
    half = np.floor(r / np.asarray(sp) + 1e-9).astype(int)
    for i, p in enumerate(pts):
        v = float(img[tuple(p)])
        ok = bool(_in_range(np.array([v]), low, high)[0]) and (reg is None or bool(reg[tuple(p)]))
        if ok:
            continue
        lo = np.maximum(p - half, 0)
        hi = np.minimum(p + half + 1, img.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        crop = np.asarray(img[box], dtype=np.float64)
        cand = _ball(lo, hi, p, sp, r) & _in_range(np.nan_to_num(crop, nan=-np.inf), low, high)
        if reg is not None:
            cand &= _region_crop(reg, box)
        move = {"seed": i, "from": p.tolist(), "to": None, "distance_mm": None, "value_from": v, "value_to": None}
        if cand.any():
            idx = np.argwhere(cand)
            vals = crop[cand]
            d = np.sqrt((((idx + lo - p) * sp) ** 2).sum(axis=1))
            best = np.lexsort((d, -vals))[0]
            out[i] = idx[best] + lo
            move.update(to=out[i].tolist(), distance_mm=round(float(d[best]), 3), value_to=float(vals[best]))
        moves.append(move)
    return out, moves



def _component_above(img: np.ndarray, prev: tuple, seed: np.ndarray, level: float, connectivity: int) -> tuple:
    """The seed's component at ``level`` inside its component at a lower level ``prev``
    (box, mask): the same as growing again (any path at the higher level is one at the
    lower), for the cost of one labelling of the lower level's box."""
    from .lesions import label

    box, comp = prev
    cand = comp & (img[box] >= level)
    local = tuple(int(v) - b.start for v, b in zip(seed, box))
    lab = label(cand, connectivity=connectivity)
    k = lab[local]
    return box, (lab == k) if k else np.zeros_like(cand)


def _inside(point: np.ndarray, part: tuple) -> bool:
    box, comp = part
    local = tuple(int(v) - b.start for v, b in zip(point, box))
    return all(0 <= c < n for c, n in zip(local, comp.shape)) and bool(comp[local])


def _labels_of(mask: np.ndarray, box: tuple) -> np.ndarray:
    """One seed's ``seed_labels`` (1 on its region): zeros (pages untouched) filled on its box."""
    out = np.zeros(mask.shape, np.int32)
    out[box] = mask[box]
    return out


def _final(img: np.ndarray, seed: np.ndarray, lv: dict, parts: list, kw: dict, spacing, connectivity: int) -> GrowResult:
    """A seed's region at its chosen level: the component found while trying the levels when
    there is one (the same voxels as growing again), else :func:`grow`."""
    if lv.get("separated", True) is False:
        return _nothing(img.shape, seed, spacing, connectivity)
    j = int(lv["raised_by_steps"])
    part = parts[j] if "shared_from" not in lv and j < len(parts) else None
    if part is None or not part[1].any():
        return grow(img, seed, low=lv["level"], **kw)
    box, comp = part
    mask = np.zeros(img.shape, bool)
    mask[box] = comp
    return GrowResult(mask=mask, seed_labels=_labels_of(mask, box), seeds=np.asarray([seed]),
                      voxels=(int(np.count_nonzero(comp)),), leaked=(False,), below=(False,), low=float(lv["level"]),
                      high=kw.get("high"), spacing=tuple(spacing), connectivity=connectivity, bbox=_bbox(mask))


def _nothing(shape: tuple, seed: np.ndarray, spacing, connectivity: int) -> GrowResult:
    """The result of a seed that grows nothing because its region leaked."""
    return GrowResult(mask=np.zeros(shape, bool), seed_labels=np.zeros(shape, np.int32), seeds=np.asarray([seed]),
                      voxels=(0,), leaked=(True,), below=(False,), low=float("nan"), high=None,
                      spacing=tuple(spacing), connectivity=connectivity, bbox=None)


def _share_leaks(img: np.ndarray, pts: np.ndarray, levels: list[dict], first: list, low: float, step: float,
                 steps: int, connectivity: int) -> None:
    """A leak is a property of a component, not of a click. A seed that found no collapse
    of its own (its region shrinks gradually, or its value is just above ``low``) but sits
    in the same component at ``low`` as seeds whose lesions did separate from it is in
    that leaked region too: it is raised to the first level at which its own component no
    longer holds any of those seeds (in place; ``levels[i]["shared_from"]`` names them;
    ``"separated": False`` when its value ran out first: it is part of the leaked
    structure itself, and grows nothing)."""
    collapsed = [k for k, lv in enumerate(levels) if lv["raised_by_steps"]]  # before any is shared
    for i, lv in enumerate(levels):
        if lv["raised_by_steps"] or first[i] is None:
            continue
        mates = [k for k in collapsed if _inside(pts[k], first[i])]
        if not mates:
            continue
        value = float(img[tuple(pts[i])])
        part, chosen, separated = first[i], 0, False
        for j in range(1, int(steps) + 1):
            level = low + j * step
            if value < level:
                break
            part = _component_above(img, part, pts[i], level, connectivity)
            chosen = j
            if not any(_inside(pts[k], part) for k in mates):
                separated = True
                break
        lv.update(level=low + chosen * step, raised_by_steps=chosen, shared_from=[k + 1 for k in mates],
                  separated=separated)


def climb_seeds(
    image: Any,
    seeds: Any,
    *,
    region: Any = None,
    spacing: Any = (1.0, 1.0, 1.0),
    smooth_mm: float = 1.0,
    max_mm: float = 6.0,
) -> tuple[np.ndarray, list[dict]]:
    """Move each click uphill, within its slice, to the top of the lesion it is in.

    Two users click "in the lesion" on different voxels; in a faint lesion the voxels
    above the threshold are often a few separate specks, and each click would grow a
    different one. Climbing the in-plane smoothed image (Gaussian, ``smooth_mm``) by
    steepest ascent over the 8 in-plane neighbours, inside ``region`` and at most
    ``max_mm`` from the click, brings every click of one lesion to the same voxel: its
    brightest part. Seeds never change slice (the user clicked on that slice).

    Returns
    -------
    seeds : (n, 3) ndarray of int
        The seeds after climbing.
    moves : list of dict
        One per seed that moved: ``{"seed": i (0-based), "from", "to", "distance_mm"}``.

    Examples
    --------
    >>> yy, xx = np.mgrid[:21, :21]
    >>> img = np.exp(-((yy - 10) ** 2 + (xx - 12) ** 2) / 20.0)[None].repeat(3, 0)
    >>> new, moves = climb_seeds(img, [(1, 8, 8), (1, 13, 14)], max_mm=10)
    >>> new.tolist()
    [[1, 10, 12], [1, 10, 12]]
    """
    from scipy import ndimage as ndi

    img, pts, _, _, reg, _, sp, _, _ = _resolve(image, seeds, -np.inf, None, region, 26, spacing, None, None)
    smooth_mm = _check_number(smooth_mm, "smooth_mm")
    max_mm = _check_number(max_mm, "max_mm")
    out = pts.copy()
    moves = []
    reach = np.ceil((max_mm + 3 * smooth_mm) / np.asarray(sp[1:], float)).astype(int) + 1
    sigma = [smooth_mm / float(s) for s in sp[1:]]
    offsets = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
    for i, p in enumerate(pts):
        z, r0, c0 = (int(v) for v in p)
        rs = slice(max(0, r0 - reach[0]), min(img.shape[1], r0 + reach[0] + 1))
        cs = slice(max(0, c0 - reach[1]), min(img.shape[2], c0 + reach[1] + 1))
        plane = np.nan_to_num(np.asarray(img[z, rs, cs], dtype=np.float64), nan=-np.inf)
        sm = ndi.gaussian_filter(plane, sigma) if smooth_mm > 0 else plane
        ok = np.ones(sm.shape, bool) if reg is None else np.asarray(reg[z, rs, cs], bool)
        r, c = r0 - rs.start, c0 - cs.start
        if not ok[r, c]:
            continue
        while True:
            best, value = None, sm[r, c]
            for dr, dc in offsets:
                rr, cc = r + dr, c + dc
                if not (0 <= rr < sm.shape[0] and 0 <= cc < sm.shape[1]) or not ok[rr, cc]:
                    continue
                if math.hypot((rr + rs.start - r0) * sp[1], (cc + cs.start - c0) * sp[2]) > max_mm:
                    continue
                if sm[rr, cc] > value:
                    best, value = (rr, cc), sm[rr, cc]
            if best is None:
                break
            r, c = best
        to = np.array([z, r + rs.start, c + cs.start])
        if (to != p).any():
            out[i] = to
            moves.append({"seed": i, "from": p.tolist(), "to": to.tolist(),
                          "distance_mm": round(math.hypot((to[1] - r0) * sp[1], (to[2] - c0) * sp[2]), 3)})
    return out, moves


#: with_fragments: a fragment smaller than this (mm³) is noise of normal marrow, not lesion.
FRAGMENT_MIN_MM3 = 20.0
#: with_fragments: fragments are looked for this far (in-plane mm; one slice) around the region.
FRAGMENT_REACH_MM = 6.0
#: with_fragments: a region that would grow more than this factor keeps its own voxels only.
FRAGMENT_LIMIT = 6.0


def with_fragments(image: np.ndarray, grown: GrowResult, seed: np.ndarray, *, level: float, high: float | None,
                   region: np.ndarray | None, spacing, gap_mm: float,
                   taken: np.ndarray | None = None) -> GrowResult:
    """One seed's region with the fragments of its lesion that a small gap separates from it.

    A faint lesion is, at the threshold, a few pieces a voxel apart; which piece a click
    grows depends on where it lands, so two users' outlines of one lesion differ. The
    above-threshold voxels of the region around the seed's region (``FRAGMENT_REACH_MM``
    in-plane, one slice) that are joined to it once every piece is widened in-plane by
    ``gap_mm`` belong to the lesion, piece by piece, when the piece has at least
    ``FRAGMENT_MIN_MM3`` (specks of normal marrow's bright tail do not). When that would
    make the region more than ``FRAGMENT_LIMIT`` times larger (it reached another
    structure), the seed's own region is kept. Pieces of ``taken`` (the regions other
    seeds grew) are never fragments. Only with a ``region``: without one,
    joint fluid beside the bone is one gap away from a lesion. Measured on the SIJ development scans with
    10 simulated users (docs/reference.md): between-user Dice 0.84-0.87 -> 0.86-0.93 on the
    three scans with faint lesions.
    """
    from scipy import ndimage as ndi

    from .lesions import label

    if region is None or grown.bbox is None or grown.leaked[0] or grown.below[0]:
        return grown  # without a region, fluid next to bone is one gap away from a lesion
    sp = np.asarray(spacing, float)
    pad = np.ceil(FRAGMENT_REACH_MM / sp).astype(int)
    pad[0] = 1
    lo = np.maximum([b.start for b in grown.bbox] - pad, 0)
    hi = np.minimum([b.stop for b in grown.bbox] + pad, image.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    cand = _in_range(np.asarray(image[box]), level, high)
    if region is not None:
        cand &= _region_crop(region, box)
    own = grown.mask[box]
    r = np.maximum(1, np.rint(gap_mm / sp[1:]).astype(int))
    disk = np.zeros((1, 2 * r[0] + 1, 2 * r[1] + 1), bool)
    disk[0] = True
    # no piece of the fragment size outside the seed's own region: nothing to join (the usual case)
    outside = label(cand & ~own, connectivity=26)
    if not outside.any() or np.bincount(outside.ravel())[1:].max() * float(np.prod(sp)) < FRAGMENT_MIN_MM3:
        return grown
    joined = label(ndi.binary_dilation(cand, structure=disk), connectivity=26)
    k = joined[tuple(np.asarray(seed) - lo)]
    if not k:
        return grown
    pieces = label(cand & (joined == k), connectivity=26)
    sizes = np.bincount(pieces.ravel())
    keep = sizes * float(np.prod(sp)) >= FRAGMENT_MIN_MM3
    keep[0] = False
    keep[np.unique(pieces[own])] = False  # the seed's own region is there already
    if taken is not None:  # nor are the regions other seeds grew (their lesions, not fragments)
        keep[np.unique(pieces[taken[box] & ~own])] = False
    found = np.flatnonzero(keep)
    if not found.size:
        return grown
    n_own = int(np.count_nonzero(grown.mask))
    budget = FRAGMENT_LIMIT * n_own * float(np.prod(sp)) / 1000.0
    mask = grown.mask.copy()
    # a piece that does not reach a face of the box (where the box is not the image's edge) is
    # whole already; one that does may go on beyond it and is grown whole from one of its voxels
    inner = np.zeros(keep.shape, bool)
    inner[found] = True
    for ax in range(3):
        for side, at_edge in ((0, lo[ax] == 0), (-1, hi[ax] == image.shape[ax])):
            if not at_edge:
                inner[np.unique(np.take(pieces, [side], axis=ax))] = False
    mask[box] |= inner[pieces]
    outer = found[~inner[found]]
    firsts = ndi.minimum_position(np.arange(pieces.size).reshape(pieces.shape), pieces, outer) if outer.size else []
    starts = np.asarray(firsts, int).reshape(-1, 3) + lo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a piece past the guard is simply not taken
        if len(starts) > 1:  # usually no piece reaches another seed's lesion: all in one grow
            together = grow(image, starts, low=level, high=high, region=region, spacing=sp,
                            connectivity=grown.connectivity, max_volume_ml=budget)
            if any(together.leaked):
                return grown  # a piece that goes on past the budget: another structure
            b = together.bbox
            if b is not None and (taken is None or not (taken[b] & together.mask[b] & ~grown.mask[b]).any()):
                mask[b] |= together.mask[b]
                starts = starts[:0]
        for first in starts:
            if mask[tuple(first)]:
                continue
            piece = grow(image, first, low=level, high=high, region=region, spacing=sp,
                         connectivity=grown.connectivity, max_volume_ml=budget)
            if piece.leaked[0] or piece.bbox is None:
                return grown  # a piece that goes on past the budget: another structure
            if taken is not None and (taken[piece.bbox] & piece.mask[piece.bbox] & ~grown.mask[piece.bbox]).any():
                continue  # it reaches another seed's lesion
            mask[piece.bbox] |= piece.mask[piece.bbox]
    n = int(np.count_nonzero(mask))
    if n == n_own or n > FRAGMENT_LIMIT * n_own:
        return grown
    return GrowResult(mask=mask, seed_labels=_labels_of(mask, _bbox(mask)), seeds=grown.seeds, voxels=(n,),
                      leaked=grown.leaked, below=grown.below, low=grown.low, high=grown.high,
                      spacing=grown.spacing, connectivity=grown.connectivity, bbox=_bbox(mask))


def join_seed_components(mask: np.ndarray, seed_labels: np.ndarray | None, connectivity: int = 26) -> np.ndarray:
    """Lesions: the connected components of ``mask``, with the components one seed grew
    (its lesion and the fragments :func:`with_fragments` gave it; voxels
    ``seed_labels == i + 1``) joined into one lesion: one click, one lesion. Returns an
    int32 label image for :func:`bmeviz.lesions.clean`, or ``mask`` itself when no seed joins anything.

    >>> m = np.zeros((1, 1, 7), bool); m[0, 0, [0, 1, 3, 6]] = True
    >>> s = np.zeros(m.shape, np.int32); s[0, 0, [0, 1, 3]] = 1; s[0, 0, 6] = 2
    >>> join_seed_components(m, s)[0, 0].tolist()
    [1, 1, 0, 1, 0, 0, 3]
    """
    if seed_labels is None or not mask.any():
        return mask
    from .lesions import label

    lab = label(mask, connectivity=connectivity)
    on = mask & (seed_labels > 0)
    key = np.unique(seed_labels[on].astype(np.int64) * (1 << 32) + lab[on])  # (seed, component) pairs
    pairs = np.stack([key >> 32, key & ((1 << 32) - 1)], axis=1)
    if len(pairs) == len(np.unique(pairs[:, 0])):
        return mask  # every seed's voxels are one component: nothing to join
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # the pairs are sorted by seed: a seed links each of its components to the next one; the
    # components linked this way form one group, which takes its smallest label
    n = int(lab.max()) + 1
    same = pairs[1:, 0] == pairs[:-1, 0]
    rows, cols = pairs[:-1, 1][same], pairs[1:, 1][same]
    _, group = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False)
    smallest = np.full(n, n, np.int64)
    np.minimum.at(smallest, group, np.arange(n))
    parent = smallest[group]
    return parent[lab].astype(np.int32)


#: grow_without_leaks: levels tried above ``low`` (in units of ``step``).
LEAK_STEPS = 12


def grow_without_leaks(
    image: Any,
    seeds: Any,
    *,
    low: float,
    step: float,
    jump: float = 4.0,
    steps: int = LEAK_STEPS,
    min_drop_ml: float = 0.5,
    high: float | None = None,
    region: Any = None,
    connectivity: int = 26,
    spacing: Any = (1.0, 1.0, 1.0),
    max_volume_ml: float | None = None,
    max_radius_mm: float | None = None,
    fragment_gap_mm: float | None = None,
) -> tuple[GrowResult, list[dict]]:
    """:func:`grow`, with each seed's level raised past the point where its region leaked.

    A faint lesion next to a large, faintly bright structure (partial volume along the
    joint, a band of bright marrow, a vessel) joins it through a thin bridge when the
    threshold is a little low: the seed's region is then ten or fifty times the lesion.
    Raising the level by a fraction of the reference SD cuts the bridge, and the region
    collapses onto the lesion. For each seed the region is grown at ``low + j * step``
    (``j = 0..steps``, while the seed stays in range); where the region shrinks by a
    factor ``>= jump`` (and by at least ``min_drop_ml``) in one step, the level above
    the last such collapse is used. Without a collapse the seed grows at ``low`` (the
    plain :func:`grow`). It makes the result much less sensitive to the exact threshold,
    which is what differs between users who place the reference differently. With
    ``fragment_gap_mm`` each seed's region then takes the fragments of its lesion that
    a gap of that size separates from it (:func:`with_fragments`).

    Returns
    -------
    GrowResult
        As :func:`grow` (``low`` is the lowest level used; first seed wins overlaps).
    levels : list of dict
        Per seed: ``{"seed": i (1-based), "level", "raised_by_steps", "volume_ml_at_low"}``.
    """
    img, pts, low, high, reg, conn, sp, vmax, rmax = _resolve(
        image, seeds, low, high, region, connectivity, spacing, max_volume_ml, max_radius_mm)
    step = _check_number(step, "step", positive=True)
    jump = _check_number(jump, "jump", positive=True)
    voxel_ml = float(np.prod(sp)) / 1000.0
    kw = dict(high=high, region=reg, connectivity=conn, spacing=sp, max_volume_ml=vmax, max_radius_mm=rmax)
    levels = []
    parts: list = []  # per seed, per level tried: its (box, component): the final region without growing again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # leak-guard warnings of the trial levels: the final grow says it
        for i, p in enumerate(pts):
            value = float(img[tuple(p)])
            vols = []
            prev = None  # (box, component) of the last level whose region was complete (not leaked)
            parts.append([])  # per level tried: (box, component), or None where it leaked
            for j in range(int(steps) + 1):
                level = low + j * step
                if value < level or (high is not None and level > high):
                    break
                if prev is None:
                    g = grow(img, p, low=level, **kw)
                    vols.append(int(sum(g.voxels)) if not g.leaked[0] else np.inf)
                    if not g.leaked[0] and vols[-1]:
                        box = _bbox(g.mask)
                        prev = (box, g.mask[box])
                else:  # a higher level's region is a subset of the last one: relabel only that
                    prev = _component_above(img, prev, p, level, conn)
                    vols.append(int(np.count_nonzero(prev[1])))
                parts[-1].append(prev if np.isfinite(vols[-1]) else None)
                # a higher level grows a subset: once the region is under min_drop_ml no later
                # step can drop by min_drop_ml, so the levels above cannot change the choice
                if vols[-1] * voxel_ml < min_drop_ml:
                    break
            chosen = 0
            for j in range(len(vols) - 1):
                a, b = vols[j], vols[j + 1]
                if a >= jump * max(b, 1) and (a - b) * voxel_ml >= min_drop_ml:
                    chosen = j + 1
            levels.append({"seed": i + 1, "level": low + chosen * step, "raised_by_steps": chosen,
                           "volume_ml_at_low": None if not vols or not np.isfinite(vols[0]) else vols[0] * voxel_ml})
    first = [pp[0] if pp else None for pp in parts]  # each seed's region at ``low`` (None: leaked or empty)
    _share_leaks(img, pts, levels, first, low, step, steps, conn)
    # final grow, one seed at a time at its own level (first seed wins where regions overlap)
    grown = [_final(img, p, lv, pp, kw, sp, conn) for p, lv, pp in zip(pts, levels, parts)]
    if fragment_gap_mm:
        taken = np.zeros(img.shape, bool)  # every seed's region: never another seed's fragment
        for g in grown:
            if g.bbox is not None:
                taken[g.bbox] |= g.mask[g.bbox]
        for i, (g, p, lv) in enumerate(zip(grown, pts, levels)):  # in click order: the first seed wins
            grown[i] = with_fragments(img, g, p, level=lv["level"], high=high, region=reg, spacing=sp,
                                      gap_mm=fragment_gap_mm, taken=taken)
            if grown[i] is not g:  # its fragments are nobody else's
                taken[grown[i].bbox] |= grown[i].mask[grown[i].bbox]
    used = [g.bbox for g in grown if g.bbox is not None]
    union = None if not used else tuple(
        slice(min(b[a].start for b in used), max(b[a].stop for b in used)) for a in range(3))
    mask = np.zeros(img.shape, bool)
    seed_labels = np.zeros(img.shape, np.int32)
    voxels, leaked, below = [], [], []
    for i, g in enumerate(grown):  # combined inside the lesions' box only: the cost follows the lesions
        n = 0
        if g.bbox is not None:
            lab, gm = seed_labels[union], g.mask[union]
            new = gm & (lab == 0)
            np.copyto(lab, i + 1, where=new)
            mask[union] |= gm
            n = int(np.count_nonzero(new))
        voxels.append(n)
        leaked.append(bool(g.leaked[0]))
        below.append(bool(g.below[0]))
    result = GrowResult(mask=mask, seed_labels=seed_labels, seeds=pts, voxels=tuple(voxels), leaked=tuple(leaked),
                        below=tuple(below), low=min([lv["level"] for lv in levels], default=low), high=high,
                        spacing=tuple(sp), connectivity=conn, bbox=union)
    return result, levels
