"""Seeded 3D region growing: connected threshold, adaptive (confidence) growing, leak guards.

(About 760 lines because the three growers share one expanding-crop engine, its argument
checks and its leak reports; split apart, each would need all of them.)

On a fat-suppressed fluid-sensitive image (STIR) normal marrow is dark and edema bright,
so a lesion is a connected set of voxels above a threshold. :func:`grow` collects, from
each seed, the voxels with ``low <= image (<= high)`` connected to it (6, 18 or 26
neighbours), optionally inside a ``region`` mask (the bone), which keeps out the bright
joint fluid that often touches the bone.

Cost follows the lesion, not the volume: each seed is grown inside a small crop around
it (about 32³ voxels, the same physical size along every axis), the connected component
of the seed is found in that crop, and only if the component touches a face of the crop
(that is not the volume's border) the crop is enlarged on that side and the step
repeated. A component that touches no inner face is closed: it is exactly the component
the whole volume would give. A seed in a 1000-voxel lesion therefore costs a few
milliseconds whatever the size of the scan (``benchmarks/bench_grow.py`` measures it
against a whole-volume flood and SimpleITK).

Two leak guards stop a seed that escapes into fluid: ``max_volume_ml`` stops growing as
soon as the component found so far exceeds the limit (the partial component is a subset
of the true one) and discards it; ``max_radius_mm`` confines growth to a ball around the
seed and flags the seed when the region would have grown beyond it.

Hysteresis (strong core, weak rim) is the pipeline's job: it calls :func:`grow` with the
strong-core voxels as seeds. Seeds that fall in a region grown from an earlier seed cost
almost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._arrays import ball as _ball
from ._arrays import bbox as _bbox
from ._arrays import check_spacing as _check_spacing
from .errors import ParameterError, warn

__all__ = ["GrowResult", "grow", "grow_all", "confidence_grow"]

#: Connectivity (neighbours of a voxel) -> squared-distance rank for
#: :func:`scipy.ndimage.generate_binary_structure`.
_RANK = {6: 1, 18: 2, 26: 3}

#: Voxel count of the first crop around a seed (its edge is the same in mm on every axis).
_INITIAL_CROP_VOXELS = 32**3

#: When a component touches a face of its crop, that side moves out by this fraction of
#: the component's extent (one voxel on closed sides): small steps keep the last crop
#: close to the lesion's box, large steps need fewer rounds; 0.25 measured best.
_GROWTH = 0.25

#: Once the crops of a call have labelled this many times the volume's voxel count (many
#: seeds in many components), the remaining seeds are served by one whole-volume labelling.
_WHOLE_VOLUME_AFTER = 1.0


@dataclass(frozen=True, eq=False)
class GrowResult:
    """What :func:`grow` (or :func:`confidence_grow`) found.

    Attributes
    ----------
    mask : (S, R, C) ndarray of bool
        Union of the regions of the accepted seeds.
    seed_labels : (S, R, C) ndarray of int32
        ``i + 1`` where seed ``i`` grew the voxel, 0 elsewhere. Where regions overlap the
        first seed wins; a seed that lies in an earlier seed's region gets no voxels.
    seeds : (n, 3) ndarray of int
        The seed indices ``(slice, row, column)`` used, after rounding.
    voxels : tuple of int
        Voxels labelled with each seed (``seed_labels == i + 1``), so
        ``sum(voxels) == mask.sum()``; 0 for leaked, below-threshold and merged seeds.
    leaked : tuple of bool
        Per seed: stopped by a leak guard (``max_volume_ml``: region discarded;
        ``max_radius_mm``: region kept, confined to the ball).
    below : tuple of bool
        Per seed: the seed voxel itself is not in ``[low, high]`` or not in the region
        (nothing grown).
    low : float
        Lower end of the intensity range used (inclusive).
    high : float or None
        Upper end (inclusive); None: no upper bound.
    spacing : tuple of float
        Voxel size in mm along (slice, row, column), for volumes in mL.
    connectivity : int
        6, 18 or 26.
    """

    mask: np.ndarray
    seed_labels: np.ndarray
    seeds: np.ndarray
    voxels: tuple[int, ...]
    leaked: tuple[bool, ...]
    below: tuple[bool, ...]
    low: float = float("nan")
    high: float | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    connectivity: int = 26
    #: Bounding box (slices) of ``mask``, or None when nothing grew: lets callers work on
    #: the lesions only, without scanning the volume.
    bbox: tuple[slice, slice, slice] | None = None

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL."""
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def volumes_ml(self) -> tuple[float, ...]:
        """Per seed: volume of its labelled voxels in mL."""
        return tuple(n * self.voxel_volume_ml for n in self.voxels)

    @property
    def volume_ml(self) -> float:
        """Volume of ``mask`` in mL."""
        return sum(self.voxels) * self.voxel_volume_ml

    def merged_into(self) -> tuple[int, ...]:
        """Per seed: the 1-based seed whose region holds this seed voxel, 0 if none.

        A seed ``i`` that grew its own region gives ``i + 1``; one that fell into an
        earlier seed's region gives that seed's number.
        """
        return tuple(int(self.seed_labels[tuple(s)]) for s in self.seeds)

    def to_dict(self) -> dict:
        """A JSON-serialisable summary (no arrays).

        Examples
        --------
        >>> import json
        >>> import numpy as np
        >>> img = np.zeros((3, 4, 4), np.float32)
        >>> img[1, 1:3, 1:3] = 10
        >>> d = grow(img, (1, 1, 1), low=5).to_dict()
        >>> d["voxels"], d["total_voxels"], d["leaked"]
        ([4], 4, [False])
        >>> _ = json.dumps(d)
        """
        return {
            "n_seeds": int(len(self.seeds)),
            "seeds": [[int(v) for v in s] for s in self.seeds],
            "low": None if np.isnan(self.low) else float(self.low),
            "high": None if self.high is None else float(self.high),
            "connectivity": int(self.connectivity),
            "spacing": [float(s) for s in self.spacing],
            "shape": [int(n) for n in self.mask.shape],
            "voxels": [int(n) for n in self.voxels],
            "volumes_ml": [float(v) for v in self.volumes_ml],
            "total_voxels": int(sum(self.voxels)),
            "total_volume_ml": float(self.volume_ml),
            "leaked": [bool(b) for b in self.leaked],
            "below": [bool(b) for b in self.below],
            "merged_into": list(self.merged_into()),
        }


# -- validation ---------------------------------------------------------------------------


def _check_image(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3:
        raise ParameterError(
            f"image must be 3D (slice, row, column); got an array of shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise ParameterError(f"image is empty; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise ParameterError(f"image must hold real numbers; got dtype {arr.dtype}")
    return arr


def _check_number(value: Any, name: str, *, allow_none: bool = False,
                  positive: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number; got {value!r}") from None
    if np.isnan(out):
        raise ParameterError(f"{name} must be a number, not NaN")
    if positive and not (np.isfinite(out) and out > 0):
        raise ParameterError(f"{name} must be a positive finite number; got {value!r}")
    return out


def _check_range(low: Any, high: Any) -> tuple[float, float | None]:
    lo = _check_number(low, "low")
    hi = _check_number(high, "high", allow_none=True)
    if hi is not None and hi < lo:
        raise ParameterError(f"high ({hi:g}) must not be below low ({lo:g})")
    return lo, hi  # type: ignore[return-value]


def _check_connectivity(connectivity: Any) -> int:
    if isinstance(connectivity, bool) or connectivity not in _RANK:
        raise ParameterError(
            f"connectivity must be 6, 18 or 26 (3D neighbours); got {connectivity!r}"
        )
    return int(connectivity)


def _check_region(region: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if region is None:
        return None
    reg = np.asarray(region)
    if reg.shape != shape:
        raise ParameterError(f"region shape {reg.shape} differs from the image's {shape}")
    if not (reg.dtype == bool or np.issubdtype(reg.dtype, np.integer)
            or np.issubdtype(reg.dtype, np.floating)):
        raise ParameterError(f"region must be a bool mask; got dtype {reg.dtype}")
    return reg


def _region_empty_error() -> ParameterError:
    return ParameterError(
        "region is empty (no True voxel): nothing can grow; pass region=None or a bone mask"
    )


def _check_seeds(seeds: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        pts = np.asarray(seeds, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(
            f"seeds must be (slice, row, column) indices, one or an (n, 3) array; got {seeds!r}"
        ) from None
    if pts.ndim == 1 and pts.shape == (3,):
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ParameterError(
            "seeds must be one (slice, row, column) index or an (n, 3) array; "
            f"got shape {pts.shape}"
        )
    bad = ~np.all(np.isfinite(pts), axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ParameterError(f"seed {i + 1} has a NaN or infinite coordinate: {pts[i].tolist()}")
    idx = np.rint(pts).astype(np.intp)
    out = np.any((idx < 0) | (idx >= np.asarray(shape)), axis=1)
    if out.any():
        i = int(np.argmax(out))
        raise ParameterError(
            f"seed {i + 1} at {tuple(int(v) for v in idx[i])} is outside the volume of shape "
            f"{tuple(shape)} (indices are (slice, row, column), from 0)"
        )
    return idx


# -- core ---------------------------------------------------------------------------------


def _in_range(values: np.ndarray, low: float, high: float | None) -> np.ndarray:
    out = values >= low
    if high is not None:
        out &= values <= high
    return out


def _region_crop(region: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    crop = region[box]
    return crop if crop.dtype == bool else crop != 0


class _Grower:
    """Grows one seed at a time inside expanding crops (all options resolved)."""

    def __init__(self, image, *, low, high, region, connectivity, spacing,
                 max_voxels, max_radius_mm):
        self.image = image
        self.shape = np.asarray(image.shape, dtype=np.intp)
        self.low, self.high, self.region = low, high, region
        self.structure = ndi.generate_binary_structure(3, _RANK[connectivity])
        self.spacing = spacing
        self.max_voxels = max_voxels
        self.radius = max_radius_mm
        self.work = 0  # voxels labelled so far, over all seeds and rounds
        # First crop: ~32³ voxels, the same edge in mm on each axis, at least 5 voxels.
        edge_mm = (_INITIAL_CROP_VOXELS * float(np.prod(spacing))) ** (1 / 3)
        self.half0 = np.maximum(2, np.ceil(edge_mm / 2 / np.asarray(spacing))).astype(np.intp)
        if max_radius_mm is not None:
            self.ball_half = np.floor(max_radius_mm / np.asarray(spacing)).astype(np.intp)

    def grow(self, seed: np.ndarray):
        """Return ``(box, component, status)``; status 'ok', 'volume' or 'radius'.

        ``box`` is the component's bounding box (volume indices), ``component`` a bool
        array of that box's shape.
        """
        if self.radius is not None:  # the ball's bounding box plus one voxel for the check
            lim_lo = np.maximum(seed - self.ball_half - 1, 0)
            lim_hi = np.minimum(seed + self.ball_half + 2, self.shape)
        else:
            lim_lo, lim_hi = np.zeros(3, np.intp), self.shape
        lo = np.maximum(seed - self.half0, lim_lo)
        hi = np.minimum(seed + self.half0 + 1, lim_hi)
        while True:
            crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
            cand = _in_range(self.image[crop], self.low, self.high)
            if self.region is not None:
                cand &= _region_crop(self.region, crop)
            inside = cand
            if self.radius is not None:
                ball = _ball(lo, hi, seed, self.spacing, self.radius)
                inside = cand & ball
            labels, _ = ndi.label(inside, structure=self.structure)
            self.work += inside.size
            del inside
            comp = labels == labels[tuple(seed - lo)]
            del labels
            sub = _bbox(comp)  # the component's box in the crop
            c_lo = lo + np.array([s.start for s in sub])
            c_hi = lo + np.array([s.stop for s in sub])
            box = tuple(slice(int(a), int(b)) for a, b in zip(c_lo, c_hi))
            if self.max_voxels is not None and np.count_nonzero(comp) > self.max_voxels:
                return box, comp[sub], "volume"
            grow_lo = (c_lo == lo) & (lo > lim_lo)
            grow_hi = (c_hi == hi) & (hi < lim_hi)
            if not (grow_lo.any() or grow_hi.any()):
                break
            # Next crop: the component's box, one voxel of margin where it is closed, and
            # a step of _GROWTH times its extent where it touched the face.
            step = np.maximum(np.ceil((c_hi - c_lo) * _GROWTH).astype(np.intp), 2)
            lo = np.maximum(np.where(grow_lo, c_lo - step, c_lo - 1), lim_lo)
            hi = np.minimum(np.where(grow_hi, c_hi + step, c_hi + 1), lim_hi)
        if self.radius is not None:
            outside = cand & ~ball
            if outside.any() and (ndi.binary_dilation(comp, self.structure) & outside).any():
                return box, comp[sub], "radius"
        return box, comp[sub], "ok"


class _WholeVolume:
    """Components from one labelling of the whole volume, for when crops would cost more."""

    def __init__(self, image, *, low, high, region, structure, max_voxels):
        cand = _in_range(image, low, high)
        if region is not None:
            cand &= region if region.dtype == bool else region != 0
        self.labels, n = ndi.label(cand, structure=structure)
        del cand
        self.objects = ndi.find_objects(self.labels)
        self.max_voxels = max_voxels
        if max_voxels is not None:
            self.sizes = np.bincount(self.labels.ravel(), minlength=n + 1)

    def grow(self, seed: np.ndarray):
        lab = int(self.labels[tuple(seed)])
        box = self.objects[lab - 1]
        if self.max_voxels is not None and self.sizes[lab] > self.max_voxels:
            return box, None, "volume"
        return box, self.labels[box] == lab, "ok"


def _run(image, seeds, *, low, high, region, connectivity, spacing, max_voxels, max_radius_mm):
    """Grow every seed; return the result, each seed's box, and the leaking seeds."""
    shape = image.shape
    mask = np.zeros(shape, dtype=bool)  # calloc: pages are touched only where we write
    labels = np.zeros(shape, dtype=np.int32)
    n = len(seeds)
    voxels, leaked = [0] * n, [False] * n
    boxes: list[tuple[slice, ...] | None] = [None] * n
    leaks: list[tuple[int, str]] = []  # (seed, "volume" or "radius")

    # Seeds whose own voxel is out of range or out of the region grow nothing.
    at = tuple(seeds.T)
    values = image[at]
    ok = values >= low  # NaN fails
    if high is not None:
        ok &= values <= high
    if region is not None:
        in_region = region[at] != 0
        if not in_region.any() and not region.any():
            raise _region_empty_error()
        ok &= in_region
    below = [not v for v in ok.tolist()]

    grower: _Grower | _WholeVolume = _Grower(
        image, low=low, high=high, region=region, connectivity=connectivity,
        spacing=spacing, max_voxels=max_voxels, max_radius_mm=max_radius_mm)
    lost: list[tuple[tuple[slice, ...], np.ndarray]] = []  # partial components that leaked
    for i in np.flatnonzero(ok).tolist():
        seed = seeds[i]
        if max_radius_mm is None:
            # Without a ball, a seed's region is the whole component holding it: a seed in
            # an earlier region adds nothing, a seed in a leaked component leaks too.
            if mask[tuple(seed)]:
                continue
            if any(_in_box(box, seed) and comp[_local(box, seed)] for box, comp in lost):
                leaked[i] = True
                leaks.append((i, "volume"))
                continue
            if isinstance(grower, _Grower) and grower.work > _WHOLE_VOLUME_AFTER * image.size:
                # Many seeds in many components: one labelling of the whole volume is now
                # cheaper than more crops (it caps the cost at about twice a full pass).
                grower = _WholeVolume(image, low=low, high=high, region=region,
                                      structure=grower.structure, max_voxels=max_voxels)
        box, comp, status = grower.grow(seed)
        if status != "ok":
            leaked[i] = True
            leaks.append((i, status))
        if status == "volume":
            if comp is not None and max_radius_mm is None:
                lost.append((box, comp.copy()))
            continue
        lab = labels[box]
        # Without a ball the component is disjoint from every earlier one.
        new = comp if max_radius_mm is None else comp & (lab == 0)
        np.copyto(lab, i + 1, where=new)
        mask[box] |= comp
        voxels[i] = int(np.count_nonzero(new))
        boxes[i] = box
    used = [b for b in boxes if b is not None]
    bbox = None if not used else tuple(
        slice(min(b[a].start for b in used), max(b[a].stop for b in used)) for a in range(3))
    result = GrowResult(mask=mask, seed_labels=labels, seeds=seeds, voxels=tuple(voxels),
                        leaked=tuple(leaked), below=tuple(below), low=float(low),
                        high=None if high is None else float(high), spacing=spacing,
                        connectivity=connectivity, bbox=bbox)
    return result, boxes, leaks


def _in_box(box, seed) -> bool:
    return all(b.start <= int(v) < b.stop for b, v in zip(box, seed))


def _local(box, seed) -> tuple[int, ...]:
    return tuple(int(v) - b.start for b, v in zip(box, seed))


def _leak_message(result: GrowResult, leaks: list[tuple[int, str]], *, max_volume_ml,
                  max_radius_mm, has_region: bool = False) -> str:
    n = len(result.seeds)
    parts = []
    for kind in ("volume", "radius"):
        which = [i for i, k in leaks if k == kind]
        if not which:
            continue
        if kind == "volume":
            reason = f"grew past max_volume_ml={max_volume_ml:g} mL, region discarded"
        else:
            reason = (f"reached the edge of max_radius_mm={max_radius_mm:g} mm, region kept "
                      "but confined to that ball")
        # numbered as the user sees them: the 1st click is seed 1
        shown = ", ".join(f"{i + 1} at {tuple(int(v) for v in result.seeds[i])}" for i in which[:5])
        more = f" and {len(which) - 5} more" if len(which) > 5 else ""
        noun = "seed" if len(which) == 1 else "seeds"
        parts.append(f"{noun} {shown}{more} (of {n}) {reason}")
    volume_leak = any(k == "volume" for _, k in leaks)
    raise_it = "max_volume_ml (CLI --max-volume-ml)" if volume_leak else "max_radius_mm"
    if has_region:
        advice = (f"If this is a real, large lesion raise {raise_it}; if it ran into bright tissue "
                  "inside the region, tighten the region or raise the threshold")
    else:
        advice = ("The region probably ran into joint fluid or other bright tissue: pass region= "
                  f"(a bone mask), a higher low= or an upper high=; for a real, large lesion raise {raise_it}")
    return f"region growing leaked: {'; '.join(parts)}. {advice}"


def _resolve(image, seeds, low, high, region, connectivity, spacing, max_volume_ml,
             max_radius_mm):
    img = _check_image(image)
    low, high = _check_range(low, high)
    connectivity = _check_connectivity(connectivity)
    spacing = _check_spacing(spacing)
    reg = _check_region(region, img.shape)
    max_volume_ml = _check_number(max_volume_ml, "max_volume_ml", allow_none=True, positive=True)
    max_radius_mm = _check_number(max_radius_mm, "max_radius_mm", allow_none=True, positive=True)
    if max_radius_mm is not None:
        if not np.isfinite(max_radius_mm) or max_radius_mm > 1e4:
            raise ParameterError(f"max_radius_mm={max_radius_mm!r} is not a size in a body (at most 10,000 mm); "
                                 "leave it None for no limit")
        # a ball larger than the whole volume confines nothing
        extent = float(np.sqrt(np.sum((np.asarray(img.shape) * np.asarray(spacing, float)) ** 2)))
        if max_radius_mm > extent:
            max_radius_mm = None
    pts = _check_seeds(seeds, img.shape)
    return img, pts, low, high, reg, connectivity, spacing, max_volume_ml, max_radius_mm


def _max_voxels(max_volume_ml, spacing):
    if max_volume_ml is None:
        return None
    return max_volume_ml * 1000.0 / float(np.prod(spacing))


# -- public -------------------------------------------------------------------------------


def grow(
    image: Any,
    seeds: Any,
    *,
    low: float,
    high: float | None = None,
    region: Any = None,
    connectivity: int = 26,
    spacing: Any = (1.0, 1.0, 1.0),
    max_volume_ml: float | None = None,
    max_radius_mm: float | None = None,
) -> GrowResult:
    """Grow a region from each seed: voxels in ``[low, high]`` connected to it.

    Parameters
    ----------
    image : (S, R, C) array_like
        Fluid-sensitive image (STIR), axes ``(slice, row, column)``. Not modified or copied.
    seeds : (3,) or (n, 3) array_like
        Seed indices ``(slice, row, column)``; floats are rounded to the nearest voxel.
    low : float
        Lowest intensity that belongs to a lesion (inclusive).
    high : float, optional
        Highest intensity (inclusive), e.g. to keep very bright fluid out. None: no bound.
    region : (S, R, C) array_like of bool, optional
        Growing stays inside this mask (e.g. the bone). Must not be empty.
    connectivity : {6, 18, 26}
        Neighbours of a voxel: faces, faces and edges, or faces, edges and corners.
    spacing : 3 floats
        Voxel size in mm along (slice, row, column); used by the crop sizes,
        ``max_volume_ml`` and ``max_radius_mm``.
    max_volume_ml : float, optional
        Leak guard: a seed whose region exceeds this volume stops growing at once, its
        region is discarded and it is marked ``leaked``.
    max_radius_mm : float, optional
        Leak guard: growth is confined to a ball of this radius around each seed; a seed
        whose region would grow past the ball keeps the confined region and is marked
        ``leaked``.

    Returns
    -------
    GrowResult
        ``mask``, ``seed_labels`` and per-seed ``voxels``, ``leaked``, ``below``.

    Raises
    ------
    ParameterError
        Image not 3D; seeds of the wrong shape or outside the volume; ``low`` or ``high``
        NaN or ``high < low``; ``region`` of another shape or empty; connectivity not
        6/18/26; non-positive spacing or limits.

    Warns
    -----
    BmevizWarning
        When a leak guard stopped a seed (naming the seeds and the limit).

    Notes
    -----
    Each seed is grown in a crop of about 32³ voxels (same size in mm on every axis); if
    the seed's component touches a face of the crop that is not the volume's border, that
    side is doubled and the crop redone. The component then equals the one a whole-volume
    flood would give, at a cost that follows the lesion's size, not the scan's. Seeds are
    grown in order (the first wins where regions overlap) and the union ``mask`` does
    not depend on the order of the seeds.

    Without ``max_radius_mm`` a seed that lies in an earlier seed's region is skipped at
    once (it would give the same region), so passing every voxel of a strong core as a
    seed (hysteresis) is cheap; when the crops of one call have labelled as many voxels
    as the volume holds, the remaining seeds are served by one whole-volume labelling,
    which caps the cost near that of a full pass. With ``max_radius_mm`` every seed grows
    its own ball-confined region.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((5, 8, 8), 100.0, np.float32)
    >>> img[1:4, 2:5, 2:5] = 300      # a lesion of 27 voxels
    >>> img[2, 6, 6] = 300            # a separate bright voxel
    >>> res = grow(img, [(2, 3, 3), (0, 0, 0)], low=200)
    >>> int(res.mask.sum()), res.voxels, res.below
    (27, (27, 0), (False, True))

    A leak guard (10 voxels of 1 mm³) stops the seed, discards its region and warns:

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     res = grow(img, (2, 3, 3), low=200, max_volume_ml=0.01)
    >>> res.leaked, int(res.mask.sum()), len(caught)
    ((True,), 0, 1)
    """
    img, pts, low, high, reg, conn, sp, vmax, rmax = _resolve(
        image, seeds, low, high, region, connectivity, spacing, max_volume_ml, max_radius_mm
    )
    result, _, leaks = _run(img, pts, low=low, high=high, region=reg, connectivity=conn,
                            spacing=sp, max_voxels=_max_voxels(vmax, sp), max_radius_mm=rmax)
    if leaks:
        warn(_leak_message(result, leaks, max_volume_ml=vmax, max_radius_mm=rmax, has_region=region is not None))
    return result




def grow_all(
    image: Any,
    *,
    low: float,
    high: float | None = None,
    region: Any = None,
    connectivity: int = 26,
) -> np.ndarray:
    """Every voxel in ``[low, high]`` inside ``region``: "find all", no seeds.

    Parameters
    ----------
    image : (S, R, C) array_like
        Fluid-sensitive image, axes ``(slice, row, column)``.
    low, high : float
        Inclusive intensity range (``high`` None: no upper bound).
    region : (S, R, C) array_like of bool, optional
        Keep only voxels in this mask (must not be empty).
    connectivity : {6, 18, 26}
        Validated for symmetry with :func:`grow`; every voxel is kept, connected or not.

    Returns
    -------
    (S, R, C) ndarray of bool

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(8, dtype=float).reshape(2, 2, 2)
    >>> int(grow_all(img, low=3, high=6).sum())
    4
    >>> region = np.zeros((2, 2, 2), bool); region[1] = True
    >>> int(grow_all(img, low=3, region=region).sum())
    4
    """
    img = _check_image(image)
    low, high = _check_range(low, high)
    _check_connectivity(connectivity)
    reg = _check_region(region, img.shape)
    out = _in_range(img, low, high)
    if reg is not None:
        if not reg.any():
            raise _region_empty_error()
        out &= reg if reg.dtype == bool else reg != 0
    return out


def confidence_grow(
    image: Any,
    seeds: Any,
    *,
    k: float = 2.5,
    iterations: int = 4,
    initial_radius_mm: float = 2.0,
    region: Any = None,
    connectivity: int = 26,
    spacing: Any = (1.0, 1.0, 1.0),
    max_volume_ml: float | None = None,
    max_radius_mm: float | None = None,
) -> GrowResult:
    """Adaptive (confidence-connected) growing: the range follows the region's statistics.

    Like ITK's ConfidenceConnected: the mean and standard deviation of the voxels within
    ``initial_radius_mm`` of the seeds (pooled over all seeds, inside ``region``) give the
    range ``mean ± k·sd``; :func:`grow` grows the seeds with it; the mean and sd are
    re-estimated from the grown region and the seeds grown again, ``iterations`` times
    (or until the range stops changing).

    Parameters
    ----------
    image : (S, R, C) array_like
        Fluid-sensitive image, axes ``(slice, row, column)``.
    seeds : (3,) or (n, 3) array_like
        Seed indices ``(slice, row, column)``; floats are rounded.
    k : float
        Half-width of the range in standard deviations.
    iterations : int
        Re-estimations after the first grow (0: grow once with the initial statistics).
    initial_radius_mm : float
        Radius of the ball around each seed for the initial statistics (spacing-aware;
        the seed voxel itself always counts).
    region, connectivity, spacing, max_volume_ml, max_radius_mm
        As for :func:`grow`.

    Returns
    -------
    GrowResult
        Of the last pass; ``low`` and ``high`` hold the final range. If no seed lies in
        the region, every seed is ``below`` and ``low``/``high`` are NaN/None.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100, 10, (9, 24, 24)).astype(np.float32)
    >>> img[2:7, 6:18, 6:18] += 200                 # lesion: 5 x 12 x 12 = 720 voxels
    >>> res = confidence_grow(img, (4, 12, 12), k=4)
    >>> int(res.mask.sum()), 200 < res.low < 300 < res.high < 400
    (720, True)
    """
    img, pts, _, _, reg, conn, sp, vmax, rmax = _resolve(
        image, seeds, 0.0, None, region, connectivity, spacing, max_volume_ml, max_radius_mm
    )
    k = _check_number(k, "k", positive=True)
    r0 = _check_number(initial_radius_mm, "initial_radius_mm", positive=True)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or iterations < 0:
        raise ParameterError(f"iterations must be a non-negative integer; got {iterations!r}")
    if reg is not None and not any(reg[tuple(s)] for s in pts) and not reg.any():
        raise _region_empty_error()

    values = _seed_ball_values(img, pts, reg, sp, r0)
    max_voxels = _max_voxels(vmax, sp)
    result = None
    leaks: list[tuple[int, str]] = []
    for _ in range(int(iterations) + 1):
        values = values[np.isfinite(values)]
        if values.size == 0:
            break
        mean, sd = float(values.mean()), float(values.std())
        low, high = mean - k * sd, mean + k * sd
        if result is not None and low == result.low and high == result.high:
            break
        current = _run(img, pts, low=low, high=high, region=reg, connectivity=conn,
                       spacing=sp, max_voxels=max_voxels, max_radius_mm=rmax)
        if result is not None and not any(current[0].voxels):
            break  # the range drifted off every seed: keep the last region that grew
        result, boxes, leaks = current
        values = _region_values(img, result, boxes)
    if result is None:  # no seed with a usable value: nothing to estimate from
        n = len(pts)
        return GrowResult(mask=np.zeros(img.shape, bool),
                          seed_labels=np.zeros(img.shape, np.int32), seeds=pts,
                          voxels=(0,) * n, leaked=(False,) * n, below=(True,) * n,
                          low=float("nan"), high=None, spacing=sp, connectivity=conn)
    if leaks:
        warn(_leak_message(result, leaks, max_volume_ml=vmax, max_radius_mm=rmax, has_region=region is not None))
    return result


def _seed_ball_values(image, seeds, region, spacing, radius) -> np.ndarray:
    """Intensities within ``radius`` mm of each seed, inside ``region`` (pooled)."""
    half = np.floor(radius / np.asarray(spacing)).astype(np.intp)
    shape = np.asarray(image.shape)
    out = []
    for seed in seeds:
        lo, hi = np.maximum(seed - half, 0), np.minimum(seed + half + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        keep = _ball(lo, hi, seed, spacing, radius)
        if region is not None:
            keep &= _region_crop(region, box)
        out.append(np.asarray(image[box][keep], dtype=np.float64))
    return np.concatenate(out) if out else np.empty(0)


def _region_values(image, result: GrowResult, boxes) -> np.ndarray:
    """Intensities of the grown region, each voxel once, read only inside the seeds' boxes."""
    out = [np.empty(0)]
    for i, box in enumerate(boxes):
        if box is not None and result.voxels[i]:
            out.append(np.asarray(image[box][result.seed_labels[box] == i + 1], np.float64))
    return np.concatenate(out)
