"""Synthetic follow-ups with exact truth, made from a real baseline scan and its lesion mask.

What a real follow-up changes, applied in a known way (:func:`make_followup`):

1. **Lesions**, in the baseline's frame: the largest is shrunk (eroded in-plane to at most
   ``shrink_to`` of its volume), the third largest is removed (resolved), the second largest is
   grown (dilated in-plane inside the bone region to at least ``grow_to`` x its volume) and a new one
   is painted as an ellipsoid in marrow of the bone region, away from the others. Voxels that
   stop being lesion take values drawn from the scan's own normal marrow; voxels that become
   lesion take values drawn from its own lesions.
2. **Receiver gain**: intensities ``x -> gain * x + offset`` (default 0.7 and +40), so raw
   intensities cannot be compared across visits, only ratios to each visit's reference.
3. **Patient motion**: a rigid motion in the world (RAS) frame about the baseline's centre,
   then the image is resampled (linear) onto a new scanner grid: the baseline's shape,
   spacing and directions, centred on the moved anatomy off by ``grid_shift_mm`` (a slab
   planned on the patient as they now lie); noise is added back so that normal marrow has the
   baseline's spread again (x gain; interpolation had smoothed it), or ``noise`` x its median. Lesion truth outside
   the new slab is dropped (the follow-up does not see it; a lesion cut by more than 25 %
   is then truly shrunk, or resolved when nothing is left, and listed in ``params['cut_by_slab']``).

The truth: the follow-up labels on the baseline grid (``truth_on_baseline``), on the
follow-up grid (``followup_labels``: each lesion's indicator resampled linearly and its most covered
voxels kept up to its volume, so it keeps its volume to a voxel), the motion as a 4x4 RAS matrix from baseline to follow-up points (what
:attr:`bmeviz.followup.register.Registration.matrix_ras` estimates), and each lesion's status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..volume import Volume

__all__ = ["SyntheticFollowup", "make_followup", "rigid_matrix", "motion_error"]


def rigid_matrix(angles_deg, translation_mm, centre) -> np.ndarray:
    """4x4 RAS matrix ``x -> R (x - c) + c + t`` with R = Rz @ Ry @ Rx (degrees about x, y, z)."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    r = rz @ ry @ rx
    c = np.asarray(centre, float)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c + np.asarray(translation_mm, float) - r @ c
    return m


def motion_error(estimated: Any, truth: Any, points_mm: Any) -> dict:
    """How far an estimated rigid map is from the true one: residual rotation angle (degrees),
    mean and largest displacement over ``points_mm`` (RAS, e.g. the bone region's voxels)."""
    e, t = np.asarray(estimated, float), np.asarray(truth, float)
    resid = np.linalg.inv(t) @ e
    angle = float(np.degrees(np.arccos(np.clip((np.trace(resid[:3, :3]) - 1) / 2, -1, 1))))
    p = np.asarray(points_mm, float).reshape(-1, 3)
    d = np.linalg.norm((p @ e[:3, :3].T + e[:3, 3]) - (p @ t[:3, :3].T + t[:3, 3]), axis=1)
    return {"rotation_error_deg": angle, "mean_error_mm": float(d.mean()), "max_error_mm": float(d.max())}


@dataclass(frozen=True)
class SyntheticFollowup:
    baseline: Volume = field(repr=False)
    baseline_labels: np.ndarray = field(repr=False)
    followup: Volume = field(repr=False)
    followup_labels: np.ndarray = field(repr=False)
    truth_on_baseline: np.ndarray = field(repr=False)
    matrix_ras: np.ndarray = field(repr=False)
    status: dict = field(default_factory=dict)  # baseline id (or new follow-up id) -> status
    baseline_reference: np.ndarray | None = field(repr=False, default=None)
    followup_reference: np.ndarray | None = field(repr=False, default=None)
    region: np.ndarray | None = field(repr=False, default=None)
    followup_region: np.ndarray | None = field(repr=False, default=None)
    params: dict = field(default_factory=dict)

    def true_change_ml(self) -> float:
        """Follow-up total minus baseline total, in the baseline frame (mL)."""
        v = self.baseline.voxel_volume_mm3 / 1000.0
        return float((np.count_nonzero(self.truth_on_baseline) - np.count_nonzero(self.baseline_labels)) * v)


def _resample(volume: Volume, array: np.ndarray, grid: Volume, matrix_ras: np.ndarray, *, order: int) -> np.ndarray:
    """``array`` (on ``volume``'s grid) seen on ``grid`` when anatomy moved by ``matrix_ras``
    (baseline point x is at matrix_ras @ x in the follow-up): value at follow-up point y is
    the baseline's at inverse(matrix_ras) @ y."""
    # follow-up index -> follow-up RAS -> baseline RAS -> baseline index
    m = np.linalg.inv(volume.affine) @ np.linalg.inv(matrix_ras) @ grid.affine
    return ndi.affine_transform(np.asarray(array, np.float32), m[:3, :3], offset=m[:3, 3], output_shape=grid.shape,
                                order=order, mode="constant", cval=0.0)


def _inplane(iterations: int) -> np.ndarray:
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    return st


def make_followup(
    baseline: Volume,
    labels: Any,
    *,
    region: Any = None,
    reference: Any = None,
    angles_deg=(4.0, -3.0, 5.0),
    translation_mm=(5.0, -4.0, 3.0),
    grid_shift_mm=(1.7, -2.3, 2.9),
    gain: float = 0.7,
    offset: float = 40.0,
    shrink_to: float = 0.55,
    grow_to: float = 1.6,
    noise: float | None = None,
    new_radius_mm=(7.0, 7.0, 6.0),
    seed: int = 0,
) -> SyntheticFollowup:
    """A follow-up of ``baseline`` with known lesion changes, gain and motion (see the module doc).

    ``labels`` are the baseline lesions (ids, or a bool mask that is labelled here);
    ``region`` the bone region (where the new lesion is put, and the grown one stays);
    ``reference`` a normal-marrow mask (the values that replace resolved lesion voxels).
    """
    from ..lesions import label

    rng = np.random.default_rng(seed)
    img = np.nan_to_num(np.asarray(baseline.array, np.float32))
    lab = np.asarray(labels)
    if lab.dtype == bool or lab.max() <= 1:
        lab = label(lab > 0, connectivity=26)
    lab = lab.astype(np.int32)
    # tiny specks are no lesion to track: they stay as they are in the image, out of the truth
    sizes = np.bincount(lab.ravel())
    small = np.flatnonzero(sizes < 20)
    lab[np.isin(lab, small[small > 0])] = 0
    ids = [int(i) for i in np.argsort(sizes)[::-1] if i > 0 and sizes[i] >= 20]
    region_mask = None if region is None else np.asarray(region) > 0
    ref_mask = None if reference is None else np.asarray(reference) > 0
    marrow_values = (img[ref_mask] if ref_mask is not None
                     else img[(lab == 0) if region_mask is None else region_mask & (lab == 0)])
    lesion_values = img[lab > 0]
    new = lab.copy()
    status = {i: "persisting" for i in ids}
    # the largest shrinks, the third largest resolves, the second largest grows
    if len(ids) >= 1:
        i = ids[0]
        core = lab == i
        for _ in range(20):  # in-plane erosion until at most shrink_to of the volume is left
            core = ndi.binary_erosion(core, _inplane(1))
            if core.sum() <= shrink_to * sizes[i]:
                break
        new[(lab == i) & ~core] = 0
        status[i] = "shrunk"
    if len(ids) >= 3:
        i = ids[2]
        new[lab == i] = 0
        status[i] = "resolved"
    if len(ids) >= 2:
        i = ids[1]
        grown = lab == i
        for _ in range(20):  # in-plane dilation (inside the region) until grow_to x the volume
            grown = ndi.binary_dilation(grown, _inplane(1))
            if region_mask is not None:
                grown &= region_mask
            grown &= (new == 0) | (new == i)
            if grown.sum() >= grow_to * sizes[i]:
                break
        new[grown] = i
        status[i] = "grown"
    # a new lesion: an ellipsoid in the bone region, in marrow, at least 20 mm from any lesion
    new_id = (max(ids) + 1) if ids else 1
    if region_mask is not None:
        spacing = np.array(baseline.spacing)
        dist = ndi.distance_transform_edt(lab == 0, sampling=spacing)
        inside = ndi.distance_transform_edt(region_mask, sampling=spacing)
        ok = (dist > 20) & (inside > max(new_radius_mm)) & region_mask
        if ref_mask is not None:
            ok &= ~ref_mask
        cand = np.argwhere(ok)
        if len(cand):
            c = cand[rng.integers(len(cand))]
            grid = np.indices(img.shape).reshape(3, -1).T
            ras = baseline.index_to_ras(grid) - baseline.index_to_ras(c)
            # ellipsoid axes along the array axes' directions
            dirs = baseline.affine[:3, :3] / spacing
            local = ras @ dirs
            r = np.array(new_radius_mm)[[2, 1, 0]]  # (slice, row, col) radii from (x-ish, y-ish, z-ish)
            blob = ((local / r) ** 2).sum(1).reshape(img.shape) <= 1
            blob &= region_mask & (new == 0)
            new[blob] = new_id
            status[new_id] = "new"
    # the image in the baseline frame with the changes
    changed = img.copy()
    gone = (lab > 0) & (new == 0)
    changed[gone] = rng.choice(marrow_values, size=int(gone.sum()))
    came = (new > 0) & (lab == 0)
    changed[came] = rng.choice(lesion_values, size=int(came.sum()))
    changed = gain * changed + offset
    # motion and the new scanner grid
    centre = baseline.index_to_ras((np.array(baseline.shape) - 1) / 2.0)
    motion = rigid_matrix(angles_deg, translation_mm, centre)
    # the new slab is planned on the patient as they now lie (its centre follows the anatomy,
    # off by grid_shift_mm) but keeps the old directions: the anatomy is rotated in it
    grid_aff = baseline.affine.copy()
    grid_aff[:3, 3] += motion[:3, :3] @ centre + motion[:3, 3] - centre + np.asarray(grid_shift_mm, float)
    # what the new slab covers: lesion truth outside it is not seen at follow-up
    to_fu_all = np.linalg.inv(grid_aff) @ motion @ baseline.affine
    idx = np.indices(img.shape, dtype=np.float32).reshape(3, -1).T
    fidx = idx @ to_fu_all[:3, :3].T.astype(np.float32) + to_fu_all[:3, 3].astype(np.float32)
    covered = np.all((fidx >= -0.5) & (fidx <= np.array(baseline.shape) - 0.5), axis=1).reshape(img.shape)
    new[~covered] = 0
    # a lesion the new slab cuts is seen smaller (or not at all) at follow-up: its true status follows
    cut = []
    for i in list(status):
        before, after = int(np.count_nonzero(lab == i)), int(np.count_nonzero(new == i))
        if status[i] == "new":
            if after == 0:
                del status[i]
            continue
        if after == 0 and status[i] != "resolved":
            status[i] = "resolved"
            cut.append(i)
        elif status[i] == "persisting" and after < 0.75 * before:
            status[i] = "shrunk"
            cut.append(i)
    grid = Volume(np.zeros(baseline.shape, np.uint8), grid_aff)
    fu = _resample(baseline, changed, grid, motion, order=1)
    if noise is None:
        # linear resampling smooths the noise away; add back what the baseline's normal marrow had
        # (x gain), so each visit's reference statistics (and thresholds) behave as in a real scan
        quiet = ref_mask if ref_mask is not None else (region_mask if region_mask is not None else lab == 0)
        fu_ref = _resample(baseline, quiet.astype(np.float32), grid, motion, order=1) >= 0.99
        target = gain * float(np.std(marrow_values))
        now = float(np.std(fu[fu_ref])) if fu_ref.any() else 0.0
        sd = float(np.sqrt(max(target ** 2 - now ** 2, 0.0)))
    else:
        sd = float(noise) * float(np.median(marrow_values)) * gain
    fu = fu + rng.normal(0, sd, size=fu.shape).astype(np.float32)
    fu[fu < 0] = 0
    fu_labels = np.zeros(baseline.shape, np.int32)
    best = np.zeros(baseline.shape, np.float32)  # 1 where a lesion took the voxel
    to_fu = np.linalg.inv(grid_aff) @ motion @ baseline.affine  # baseline index -> follow-up index
    boxes = ndi.find_objects(new)
    for i, box in enumerate(boxes, start=1):
        if box is None:
            continue
        corners = np.array([[b.start - 1 if k else b.stop for b, k in zip(box, bits)]
                            for bits in np.ndindex(2, 2, 2)], float)
        mapped = corners @ to_fu[:3, :3].T + to_fu[:3, 3]
        lo = np.clip(np.floor(mapped.min(0)).astype(int) - 1, 0, np.array(baseline.shape))
        hi = np.clip(np.ceil(mapped.max(0)).astype(int) + 2, 0, np.array(baseline.shape))
        if np.any(hi <= lo):
            continue
        sub = tuple(slice(a, b) for a, b in zip(lo, hi))
        m = np.linalg.inv(to_fu)
        p = ndi.affine_transform((new == i).astype(np.float32), m[:3, :3], offset=m[:3, :3] @ lo + m[:3, 3],
                                 output_shape=tuple(hi - lo), order=1, mode="constant", cval=0.0)
        # the lesion's partial-volume map, discretised keeping its volume: its n most covered
        # voxels, n = its volume inside the slab in follow-up voxels (the same voxel size)
        n = int(round(float(p.sum())))
        free = best[sub] < 0.5
        cand = np.where(free, p, 0.0)
        if n > 0:
            flat = cand.ravel()
            keep = np.zeros(flat.size, bool)
            keep[np.argsort(flat)[::-1][:n]] = True
            keep &= flat > 0
            take = keep.reshape(cand.shape)
            fu_labels[sub][take] = i
            best[sub] = np.where(take, 1.0, best[sub])

    def nearest(mask):
        if mask is None:
            return None
        return _resample(baseline, mask.astype(np.float32), grid, motion, order=1) >= 0.5

    followup = Volume(fu.astype(np.float32), grid_aff, {"description": "synthetic follow-up"})
    params = {"angles_deg": list(angles_deg), "translation_mm": list(translation_mm),
              "grid_shift_mm": list(grid_shift_mm), "gain": gain, "offset": offset,
              "shrink_to": shrink_to, "grow_to": grow_to, "cut_by_slab": cut, "noise": noise, "noise_sd_added": sd, "seed": seed}
    return SyntheticFollowup(baseline=baseline, baseline_labels=lab, followup=followup, followup_labels=fu_labels,
                             truth_on_baseline=new, matrix_ras=motion, status=status, baseline_reference=ref_mask,
                             followup_reference=nearest(ref_mask), region=region_mask,
                             followup_region=nearest(region_mask), params=params)
