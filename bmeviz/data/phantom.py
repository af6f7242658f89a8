"""The synthetic STIR-like knee: :func:`make_phantom` and :class:`Phantom`.

See :mod:`bmeviz.data` for the signal model. ``make_phantom`` checks its parameters,
draws the random parts in a fixed order, renders the tissues and lesions slab by slab
(:func:`_render`), adds Rician noise and records every parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .._arrays import ball
from ..errors import ParameterError
from ..volume import Volume
from .anatomy import (_BIAS_AMPLITUDE, _CARTILAGE_MM, _CORTEX_MM, _EDGE_TO_SCALE, _JOINT_V,
                      _REFERENCE_CLEARANCE_MM, _REFERENCE_RADIUS_MM, _SUBSAMPLES, _anatomy, _bias_field, _ellipsoid,
                      _inside, _lesion_box, _sigmoid, _texture, _waves)
from .geometry import _LESION_SIGNAL, _affine, _resolve_lesions, _triple

#: Tissue signals in relative units (fluid ~ 1), before scaling by :data:`SCALE`.
SIGNAL: Mapping[str, float] = {
    "air": 0.0,
    "tendon": 0.03,
    "cortex": 0.05,
    "fat": 0.08,
    "marrow": 0.15,
    "muscle": 0.30,
    "cartilage": 0.40,
    "lesion": _LESION_SIGNAL,
    "fluid": 0.95,
}


#: Relative units to scanner-like units: marrow ~ 195, lesion ~ 780, fluid ~ 1235.
SCALE = 1300.0


#: Codes of :attr:`Phantom.tissue`, the tissue of each voxel centre.
TISSUE: Mapping[str, int] = {
    "air": 0,
    "muscle": 1,
    "fat": 2,
    "tendon": 3,
    "cartilage": 4,
    "fluid": 5,
    "cortex": 6,
    "marrow": 7,
    "lesion": 8,
}


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic STIR-like volume and its exact ground truth.

    All masks are on the grid of :attr:`volume`, axes ``(slice, row, column)``.

    Attributes
    ----------
    volume : Volume
        The image, float32, scanner-like units (marrow ~ 195, fluid ~ 1235).
        ``metadata['phantom']`` holds every parameter, resolved.
    truth : ndarray of int32
        Lesion labels ``1..N`` (0 elsewhere): where each lesion's soft profile is at
        least 0.5, inside marrow.
    bone : ndarray of bool
        Bone including cortex (femur, tibia, patella): the search region a user outlines.
    reference : ndarray of bool
        A normal-marrow ball, no lesion or fluid voxel in it.
    fluid : ndarray of bool
        Joint fluid and effusion.
    lesion_volumes_ml : tuple of float
        Volume of each lesion of :attr:`truth`, voxel count times voxel volume / 1000.
    seeds : (N, 3) ndarray of int
        The central (highest-profile) voxel of each lesion, as a user would click.
    fluid_seed : (3,) ndarray of int
        The voxel deepest inside the tibiofemoral joint fluid (``(-1, -1, -1)`` when the
        phantom has no fluid).
    reference_point : (3,) ndarray of int
        Centre of :attr:`reference`, a ball of radius 7 mm inside marrow whose edge is at
        least 10 mm from any lesion voxel.
    tissue : ndarray of uint8
        The tissue of each voxel centre, coded by :data:`TISSUE`.
    """

    volume: Volume
    truth: np.ndarray
    bone: np.ndarray
    reference: np.ndarray
    fluid: np.ndarray
    lesion_volumes_ml: tuple[float, ...]
    seeds: np.ndarray
    fluid_seed: np.ndarray
    reference_point: np.ndarray
    tissue: np.ndarray

    @property
    def marrow(self) -> np.ndarray:
        """Marrow (lesions included): bone without its cortex."""
        return (self.tissue == TISSUE["marrow"]) | (self.tissue == TISSUE["lesion"])

    @property
    def cortex(self) -> np.ndarray:
        """The cortical rim of the bones."""
        return self.tissue == TISSUE["cortex"]



def make_phantom(
    *,
    shape: Sequence[int] = (32, 192, 192),
    spacing: Sequence[float] = (3.0, 0.7, 0.7),
    lesions: Sequence[Mapping] | None = None,
    noise: float = 0.04,
    seed: int = 0,
    fluid: bool = True,
    joint: str = "knee",
) -> Phantom:
    """A synthetic STIR-like sagittal knee with bone marrow edema and its exact truth.

    Parameters
    ----------
    shape : 3 ints
        Array shape ``(slices, rows, columns)``. The anatomy is fixed in millimetres
        around the centre of the field of view, so a smaller shape crops it.
    spacing : 3 floats
        Voxel size in mm along ``(slice, row, column)``.
    lesions : list of dict, optional
        Custom lesions; ``None`` gives four: ~10 mL deep in the lateral femoral condyle,
        ~4 mL subchondral in the medial femoral condyle under a chondral defect (it
        touches the cortex next to joint fluid), ~1.5 mL subchondral in the posterior
        tibial plateau and ~0.5 mL deep in the tibia. Each dict has exactly one of
        ``center_mm`` (RAS mm) or ``center_index`` (``(slice, row, column)``, may be
        fractional), ``radii_mm`` (3 semi-axes along slice, row and column), and
        optionally ``intensity`` (relative units, default 0.6; marrow is 0.15 and fluid
        0.95), ``edge_mm`` (10-90 % width of the soft edge, default 1.5) and
        ``irregularity`` (waviness of the surface as a fraction of the smallest radius,
        0 to 0.5, default 0: an exact ellipsoid).
    noise : float
        Standard deviation of the Gaussian noise in each of the real and imaginary
        channels, as a fraction of the marrow-to-fluid contrast
        ``(SIGNAL['fluid'] - SIGNAL['marrow']) * SCALE``; the image is their magnitude
        (Rician). 0 gives a noiseless image.
    seed : int
        Seed of ``numpy.random.default_rng`` (noise, bias field, marrow texture, the
        waviness of irregular lesions); the same seed and parameters give an identical
        phantom.
    fluid : bool
        Include joint fluid and effusion (otherwise the joint holds cartilage only).
    joint : {'knee'}
        The anatomy; only the knee for now.

    Returns
    -------
    Phantom

    Raises
    ------
    ParameterError
        For a bad parameter, a lesion with no voxel inside marrow, lesions that overlap
        or touch, or a field of view with no room for the reference ball.

    Examples
    --------
    >>> from bmeviz.data import make_phantom
    >>> ph = make_phantom(shape=(16, 96, 96), spacing=(3.0, 1.4, 1.4), lesions=[
    ...     {"center_index": (6, 30, 44), "radii_mm": (8, 8, 8)}])
    >>> ph.volume.plane, ph.volume.spacing
    ('sagittal', (3.0, 1.4, 1.4))
    >>> int(ph.truth.max()), ph.seeds.tolist()
    (1, [[6, 30, 44]])
    >>> vox = (ph.truth == 1).sum() * ph.volume.voxel_volume_mm3 / 1000
    >>> bool(abs(ph.lesion_volumes_ml[0] - vox) < 1e-9)
    True
    >>> bool((ph.truth > 0)[ph.reference].any()), bool(ph.bone[ph.truth > 0].all())
    (False, True)
    """
    shape, spacing, noise = _check_params(shape, spacing, noise, seed, joint)
    fluid = bool(fluid)
    affine = _affine(shape, spacing)
    specs = _resolve_lesions(lesions, affine, shape, spacing)
    rng = np.random.default_rng(int(seed))
    grid = _Grid(shape, spacing)
    # random draws, in a fixed order: lesion surfaces, bias field, marrow texture, noise
    _draw_waves(rng, specs)
    bias = _bias_field(rng, grid.u_centres, grid.v, grid.w)
    texture = _texture(rng, shape)
    image, tissue, truth, best = _render(grid, specs, texture, fluid)
    for i, (value, idx) in enumerate(best):
        if idx is None:
            raise ParameterError(
                f"lesion {i + 1} has no voxel inside marrow in this field of view "
                f"(centre index {np.round(specs[i]['center_index'], 1).tolist()}); "
                "move it into the femur or tibia"
            )
    _check_touching(truth, len(specs))
    image *= bias
    image *= np.float32(SCALE)
    image, sd = _add_noise(rng, image, noise)

    bone = tissue >= TISSUE["cortex"]
    fluid_mask = tissue == TISSUE["fluid"]
    marrow = tissue >= TISSUE["marrow"]
    ref_point, reference = _reference(marrow, truth, spacing)
    fluid_seed = _fluid_seed(fluid_mask, grid, spacing)
    vox_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    counts = np.bincount(truth.ravel(), minlength=len(specs) + 1)[1:]
    volumes = tuple(float(c) * vox_ml for c in counts)
    seeds = np.array([b[1] for b in best], dtype=np.int64).reshape(-1, 3)
    metadata = _metadata(joint=joint, shape=shape, spacing=spacing, noise=noise, sd=sd, seed=seed, fluid=fluid,
                         specs=specs, affine=affine, volumes=volumes, seeds=seeds, ref_point=ref_point,
                         fluid_seed=fluid_seed)
    return Phantom(
        volume=Volume(image, affine, metadata),
        truth=truth,
        bone=bone,
        reference=reference,
        fluid=fluid_mask,
        lesion_volumes_ml=volumes,
        seeds=seeds,
        fluid_seed=np.asarray(fluid_seed, dtype=np.int64),
        reference_point=np.asarray(ref_point, dtype=np.int64),
        tissue=tissue,
    )


def _check_params(shape, spacing, noise, seed, joint):
    shape = _triple(shape, "shape", integer=True, low=1)
    if min(shape[1:]) < 16 or shape[0] < 2:
        raise ParameterError(f"shape must be at least (2, 16, 16); got {shape}")
    if int(np.prod(shape, dtype=np.int64)) > 64_000_000:
        raise ParameterError(f"shape {shape} is too large for a phantom (> 64 M voxels)")
    spacing = _triple(spacing, "spacing")
    if not all(0.05 <= s <= 20.0 for s in spacing):
        raise ParameterError(f"spacing must be between 0.05 and 20 mm on each axis; got {spacing}")
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        raise ParameterError(f"noise must be a number; got {noise!r}") from None
    if not (math.isfinite(noise) and 0.0 <= noise <= 1.0):
        raise ParameterError(f"noise must be in [0, 1]; got {noise}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be a non-negative int; got {seed!r}")
    if joint != "knee":
        raise ParameterError(f"joint must be 'knee' (the only anatomy so far); got {joint!r}")
    return shape, spacing, noise


class _Grid:
    """Voxel-centre coordinates in mm, centred on the field of view (float32 in plane)."""

    def __init__(self, shape, spacing) -> None:
        f32 = np.float32
        S, R, C = shape
        ds, dr, dc = spacing
        self.shape, self.spacing = shape, spacing
        self.h = f32(max(min(dr, dc), 0.5))  # width of the partial-volume ramp, mm
        self.v = ((np.arange(R, dtype=f32) - f32((R - 1) / 2)) * f32(dr))[None, :, None]
        self.w = ((np.arange(C, dtype=f32) - f32((C - 1) / 2)) * f32(dc))[None, None, :]
        self.u_centres = (np.arange(S, dtype=np.float64) - (S - 1) / 2) * ds

    def u(self, s0: int, s1: int) -> np.ndarray:
        """Across-slice sub-sample coordinates of slices ``s0:s1``."""
        S, ds = self.shape[0], self.spacing[0]
        u = ((np.arange(s0, s1)[:, None] + np.array(_SUBSAMPLES)[None, :]).ravel() - (S - 1) / 2) * ds
        return u.astype(np.float32)[:, None, None]


def _draw_waves(rng, specs) -> None:
    """A wavy surface for each lesion (drawn even when irregularity is 0: fixed draw order)."""
    for spec in specs:
        dirs = rng.normal(size=(3, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        lengths = rng.uniform(0.8, 1.6, size=3) * float(np.mean(spec["radii_mm"]))
        spec["waves"] = (2 * np.pi / lengths[:, None] * dirs, rng.uniform(0, 2 * np.pi, size=3))


def _render(grid: _Grid, specs, texture, fluid: bool):
    """Image (before bias and scale), tissue codes, truth labels and each lesion's best
    (highest-profile) voxel, rendered slab by slab with across-slice sub-samples."""
    shape = grid.shape
    S, R, C = shape
    image = np.empty(shape, dtype=np.float32)
    tissue = np.empty(shape, dtype=np.uint8)
    truth = np.zeros(shape, dtype=np.int32)
    best = [(-1.0, None)] * len(specs)
    boxes = [_lesion_box(sp, shape, grid.spacing) for sp in specs]
    nsub = len(_SUBSAMPLES)
    chunk = max(1, 300_000 // (nsub * R * C))
    for s0 in range(0, S, chunk):
        s1 = min(S, s0 + chunk)
        u = grid.u(s0, s1)
        img, lab, a_marrow, marrow_c, tex = _tissues(grid, u, texture[s0:s1], fluid)
        _paint_lesions(grid, u, s0, s1, specs, boxes, img, lab, a_marrow, marrow_c, tex, truth, best)
        image[s0:s1] = img.reshape(s1 - s0, nsub, R, C).mean(axis=1)
        tissue[s0:s1] = lab
    return image, tissue, truth, best


def _tissues(grid: _Grid, u, texture, fluid: bool):
    """One slab's tissues: partial-volume layers painted in order, then marrow with texture."""
    f32, h, nsub = np.float32, grid.h, len(_SUBSAMPLES)
    v_all, w_all = grid.v, grid.w
    sig = {k: f32(v) for k, v in SIGNAL.items()}
    d = _anatomy(u, v_all, w_all)
    bone_d = np.minimum(np.minimum(d["femur"], d["tibia"]), d["patella"])
    a_body = _inside(d["skin"], h)
    a_subcut = np.clip(_inside(d["skin"] + f32(1.0), h) - _inside(d["skin"] + f32(7.0), h), 0, 1)
    a_fat = _inside(d["fat_pads"], h)
    a_tendon = _inside(d["tendon"], h)
    a_fluid = _inside(d["fluid"], h) if fluid else np.zeros_like(bone_d)
    no_defect = 1.0 - _inside(d["defect"], h) if fluid else f32(1.0)
    near_tib = _inside(d["tibia"] - f32(9.0), f32(3.0))
    near_fem = _inside(d["femur"] - f32(9.0), f32(3.0))
    near_pat = _inside(d["patella"] - f32(9.0), f32(3.0))

    def shell(dist, t):
        return np.clip(_inside(dist - f32(t), h) - _inside(dist, h), 0, 1)

    a_cart = np.maximum(
        np.maximum(shell(d["femur"], _CARTILAGE_MM) * np.maximum(near_tib, near_pat) * no_defect,
                   shell(d["tibia"], _CARTILAGE_MM) * near_fem),
        shell(d["patella"], _CARTILAGE_MM + 0.8) * near_fem,
    )
    a_bone = _inside(bone_d, h)
    a_marrow = _inside(bone_d + f32(_CORTEX_MM), h)
    layers = [
        (a_body, sig["muscle"], TISSUE["muscle"]),
        (a_subcut, sig["fat"], TISSUE["fat"]),
        (a_fat * a_body, sig["fat"], TISSUE["fat"]),
        (a_tendon * a_body, sig["tendon"], TISSUE["tendon"]),
        (a_fluid, sig["fluid"], TISSUE["fluid"]),
        (a_cart, sig["cartilage"], TISSUE["cartilage"]),
        (a_bone, sig["cortex"], TISSUE["cortex"]),
    ]
    del d
    n = texture.shape[0]
    img = np.zeros(a_bone.shape, dtype=f32)
    lab = np.zeros((n,) + texture.shape[1:], dtype=np.uint8)
    for alpha, value, code in layers:
        img += (value - img) * alpha
        lab[np.broadcast_to(alpha[1::nsub] >= 0.5, lab.shape)] = code
    tex = np.repeat(texture, nsub, axis=0)
    marrow_val = sig["marrow"] * (1.0 + tex)
    img += (marrow_val - img) * a_marrow
    marrow_c = np.broadcast_to(a_marrow[1::nsub] >= 0.5, lab.shape)
    lab[marrow_c] = TISSUE["marrow"]
    return img, lab, a_marrow, marrow_c, tex


def _paint_lesions(grid: _Grid, u, s0, s1, specs, boxes, img, lab, a_marrow, marrow_c, tex, truth, best) -> None:
    """The lesions of one slab, each inside its bounding box (truth and best updated in place)."""
    f32, nsub = np.float32, len(_SUBSAMPLES)
    v_all, w_all = grid.v, grid.w
    for i, (spec, box) in enumerate(zip(specs, boxes)):
        (b0, b1), (r0, r1), (c0, c1) = box
        lo, hi = max(b0, s0), min(b1, s1)
        if lo >= hi or r0 >= r1 or c0 >= c1:
            continue
        k = slice((lo - s0) * nsub, (hi - s0) * nsub)
        sub = (k, slice(r0, r1), slice(c0, c1))
        uu, vv, ww = u[k], v_all[:, r0:r1], w_all[:, :, c0:c1]
        dist = _ellipsoid(uu, vv, ww, spec["center_local"], spec["radii_mm"])
        if spec["irregularity"] > 0:
            dist += _waves(uu, vv, ww, spec)
        prof = _sigmoid(-dist / f32(spec["edge_mm"] * _EDGE_TO_SCALE))
        value = f32(spec["intensity"]) * (1.0 + 2.0 * tex[k, r0:r1, c0:c1])
        img[sub] += (value - img[sub]) * (prof * a_marrow[sub])
        pc = prof[1::nsub]
        inside = (pc >= 0.5) & marrow_c[lo - s0:hi - s0, r0:r1, c0:c1]
        tsub = truth[lo:hi, r0:r1, c0:c1]
        if np.any(tsub[inside] != 0):
            other = int(tsub[inside][tsub[inside] != 0][0])
            raise ParameterError(f"lesions {other} and {i + 1} overlap; move them apart")
        tsub[inside] = i + 1
        lab[lo - s0:hi - s0, r0:r1, c0:c1][inside] = TISSUE["lesion"]
        masked = np.where(inside, pc, -1.0)
        j = int(np.argmax(masked))
        if masked.flat[j] > best[i][0]:
            jj = np.unravel_index(j, masked.shape)
            best[i] = (float(masked.flat[j]), (lo + jj[0], r0 + jj[1], c0 + jj[2]))


def _add_noise(rng, image, noise: float):
    """Rician noise: the magnitude of the image plus Gaussian noise in two channels."""
    f32 = np.float32
    sd = noise * (SIGNAL["fluid"] - SIGNAL["marrow"]) * SCALE
    if sd > 0:
        re = rng.standard_normal(image.shape, dtype=f32)
        re *= f32(sd)
        re += image
        im = rng.standard_normal(image.shape, dtype=f32)
        im *= f32(sd)
        image = np.hypot(re, im)
        del re, im
    return image, sd


def _fluid_seed(fluid_mask, grid: _Grid, spacing):
    """The fluid seed: deepest in the tibiofemoral joint fluid (else in any fluid)."""
    rows = np.abs(grid.v[0, :, 0] - np.float32(_JOINT_V)) <= 8.0
    in_joint = fluid_mask & rows[None, :, None]
    if in_joint.any():
        return _deepest(in_joint, spacing)
    if fluid_mask.any():
        return _deepest(fluid_mask, spacing)
    return np.full(3, -1, dtype=np.int64)


def _metadata(*, joint, shape, spacing, noise, sd, seed, fluid, specs, affine, volumes, seeds, ref_point,
              fluid_seed) -> dict:
    return {
        "description": "Synthetic STIR phantom",
        "sequence": "STIR",
        "manufacturer": "bmeviz phantom",
        "modality": "MR",
        "phantom": {
            "joint": joint,
            "shape": list(shape),
            "spacing": list(spacing),
            "noise": noise,
            "noise_sd": sd,
            "seed": int(seed),
            "fluid": fluid,
            "scale": SCALE,
            "signal": dict(SIGNAL),
            "bias_amplitude": _BIAS_AMPLITUDE,
            "cortex_mm": _CORTEX_MM,
            "lesions": [
                {
                    "label": i + 1,
                    "center_index": [round(float(x), 4) for x in sp["center_index"]],
                    "center_mm": [round(float(x), 4) for x in
                                  (affine[:3, :3] @ sp["center_index"] + affine[:3, 3])],
                    "radii_mm": list(sp["radii_mm"]),
                    "intensity": sp["intensity"],
                    "edge_mm": sp["edge_mm"],
                    "irregularity": sp["irregularity"],
                    "truth_volume_ml": volumes[i],
                    "seed": [int(x) for x in seeds[i]],
                }
                for i, sp in enumerate(specs)
            ],
            "reference_point": [int(x) for x in ref_point],
            "reference_radius_mm": _REFERENCE_RADIUS_MM,
            "fluid_seed": [int(x) for x in fluid_seed],
        },
    }


def _check_touching(truth, n):
    """Refuse lesions whose truth regions are 26-adjacent (they would merge)."""
    if n < 2:
        return
    from scipy import ndimage

    for i, sl in enumerate(ndimage.find_objects(truth), start=1):
        if sl is None:
            continue
        grown = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        t = truth[grown]
        ring = ndimage.binary_dilation(t == i, structure=np.ones((3, 3, 3), bool))
        others = np.unique(t[ring & (t != i) & (t != 0)])
        if others.size:
            raise ParameterError(
                f"lesions {i} and {int(others[0])} touch; move them apart or make them smaller"
            )



def _reference(marrow, truth, spacing):
    """Centre and mask of a normal-marrow ball away from every lesion."""
    from scipy import ndimage

    r = _REFERENCE_RADIUS_MM
    # search on a coarser in-plane grid (a user draws roughly, and it is 4x cheaper)
    step = (1, 2, 2) if min(spacing[1:]) < 1.0 else (1, 1, 1)
    sub = tuple(slice(None, None, st) for st in step)
    sp = tuple(s * st for s, st in zip(spacing, step))
    m = marrow[sub]
    slack = max(sp)  # coarse-grid error allowance
    depth = ndimage.distance_transform_edt(m, sampling=sp)
    if truth.any():
        far = ndimage.distance_transform_edt(truth[sub] == 0, sampling=sp)
    else:
        far = np.full(m.shape, np.inf)
    need_depth = r + slack
    ok = depth > need_depth
    strict = ok & (far >= r + _REFERENCE_CLEARANCE_MM + slack)
    cand = strict if strict.any() else ok & (far >= _REFERENCE_CLEARANCE_MM + slack)
    if not cand.any():
        raise ParameterError(
            f"no room for a {r:g} mm normal-marrow reference ball at least "
            f"{_REFERENCE_CLEARANCE_MM:g} mm from the lesions; enlarge the field of view or "
            "move the lesions"
        )
    score = np.where(cand, np.minimum(depth - need_depth, far - r - _REFERENCE_CLEARANCE_MM), -np.inf)
    j = np.unravel_index(int(np.argmax(score)), score.shape)
    centre = np.array([jj * st for jj, st in zip(j, step)], dtype=np.int64)
    ref = _ball(marrow.shape, centre, r, spacing) & marrow & (truth == 0)
    return centre, ref



def _deepest(mask, spacing):
    """The voxel of ``mask`` farthest from its boundary (computed on its bounding box)."""
    from scipy import ndimage

    sl = ndimage.find_objects(mask.astype(np.uint8))[0]
    crop = np.pad(mask[sl], 1)  # the edge of the array counts as outside
    depth = ndimage.distance_transform_edt(crop, sampling=spacing)
    j = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return np.array([jj - 1 + s.start for jj, s in zip(j, sl)], dtype=np.int64)



def _ball(shape, centre, radius, spacing):
    """Boolean ball of ``radius`` mm around an index on an anisotropic grid."""
    out = np.zeros(shape, dtype=bool)
    lo = [max(0, int(c - math.ceil(radius / s))) for c, s in zip(centre, spacing)]
    hi = [min(n, int(c + math.ceil(radius / s)) + 1) for c, n, s in zip(centre, shape, spacing)]
    out[tuple(slice(a, z) for a, z in zip(lo, hi))] = ball(lo, hi, centre, spacing, radius)
    return out
