"""Synthetic STIR-like knee phantoms with exact ground truth, and the shipped sample.

:func:`make_phantom` draws a fat-suppressed fluid-sensitive (STIR-like) sagittal knee:
femur, tibia and patella with a thin dark cortex and dark (fat-suppressed) marrow,
articular cartilage, joint fluid with a suprapatellar effusion and a chondral defect,
muscle, fat pads and tendons, and bone marrow edema lesions with soft edges. Every
structure is an analytic shape in millimetres, sampled with partial volume (three
sub-samples across each slice, a one-voxel ramp in plane), then scaled like a scanner
image and given Rician noise. The ground truth is exact: each lesion is the 50 %
iso-surface of its soft-edged profile, clipped to marrow, and its volume is its voxel
count times the voxel volume of the affine.

:func:`load_sample` and :func:`sample_path` give the small phantom shipped in
``sample_data/`` (regenerated into a cache folder when bmeviz runs from a wheel).

Signal model, in relative units (fluid ~ 1) before scaling by :data:`SCALE`:

============  =======  ===========================================================
tissue        signal   note
============  =======  ===========================================================
air           0.00     outside the skin (Rician noise floor only)
tendon        0.03     quadriceps and patellar tendons
cortex        0.05     cortical rim, 1.4 mm
fat           0.08     fat-suppressed: subcutaneous fat, Hoffa's and popliteal fat
marrow        0.15     fatty marrow, fat-suppressed, mild texture
muscle        0.30     muscle and other soft tissue
cartilage     0.40     articular cartilage, 2.2 mm
lesion        0.60     BME (default; per lesion ``intensity``)
fluid         0.95     joint fluid and effusion
============  =======  ===========================================================

The whole image is multiplied by a smooth bias field (within +-10 %).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParameterError
from .volume import Volume

__all__ = [
    "Phantom",
    "make_phantom",
    "load_sample",
    "sample_path",
    "write_sample",
    "SIGNAL",
    "SCALE",
    "TISSUE",
    "SAMPLE_PARAMS",
    "SAMPLE_FILES",
]

#: Tissue signals in relative units (fluid ~ 1), before scaling by :data:`SCALE`.
SIGNAL: Mapping[str, float] = {
    "air": 0.0,
    "tendon": 0.03,
    "cortex": 0.05,
    "fat": 0.08,
    "marrow": 0.15,
    "muscle": 0.30,
    "cartilage": 0.40,
    "lesion": 0.60,
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

#: Parameters of the shipped sample (smaller than the default so it stays < 1.5 MB).
SAMPLE_PARAMS: Mapping[str, Any] = {
    "shape": (28, 160, 160),
    "spacing": (3.0, 0.8, 0.8),
    "noise": 0.04,
    "seed": 0,
}

#: Files of the shipped sample, in ``sample_data/``.
SAMPLE_FILES = (
    "phantom_stir.nii.gz",
    "phantom_truth.nii.gz",
    "phantom_bone.nii.gz",
    "phantom_reference.nii.gz",
    "phantom_seeds.csv",
)

_CORTEX_MM = 1.4  # cortical thickness
_CARTILAGE_MM = 2.2  # articular cartilage thickness
_REFERENCE_RADIUS_MM = 7.0  # radius of the normal-marrow reference ball
_REFERENCE_CLEARANCE_MM = 10.0  # no lesion voxel this close to the reference ball
_BIAS_AMPLITUDE = 0.10  # bias field within 1 +- this
_TEXTURE_AMPLITUDE = 0.05  # marrow / lesion texture, relative sd
_SUBSAMPLES = (-1.0 / 3.0, 0.0, 1.0 / 3.0)  # across-slice sub-samples, in slices
_EDGE_TO_SCALE = 1.0 / (2.0 * math.log(9.0))  # 10-90 % width of a sigmoid -> its scale

# Anatomy in millimetres, in a frame centred on the field of view whose axes follow the
# array: u along slices (towards the patient's left), v along rows (inferior), w along
# columns (posterior). A right knee: the lateral compartment lies at u < 0.
_JOINT_V = 4.0  # joint line
_FEMUR_BOTTOM = _JOINT_V - 3.0
_TIBIA_TOP = _JOINT_V + 3.0  # at w = _TIBIA_W; the plateau slopes down posteriorly
_TIBIA_W = 6.0
_TIBIA_SLOPE = math.tan(math.radians(7.0))
_CONDYLE_R = (17.0, 24.0, 28.0)
_CONDYLE_V = _FEMUR_BOTTOM - _CONDYLE_R[1]
_CONDYLE_W = 5.0
_DEFECT_W = 5.0
_PATELLA_R = (21.0, 19.0, 9.5)
_PATELLA_C = (0.0, _CONDYLE_V - 8.0, _CONDYLE_W - _CONDYLE_R[2] - 5.5 - _PATELLA_R[2])

#: The default lesions, centres in the anatomical frame above (mm from the FOV centre).
_DEFAULT_LESIONS = (
    # ~10 mL, deep in the lateral femoral condyle and metaphysis
    {"center_local": (-19.0, _CONDYLE_V - 5.0, 2.0), "radii_mm": (12.0, 15.5, 12.0),
     "intensity": 0.58, "edge_mm": 2.0, "irregularity": 0.2},
    # ~4 mL, subchondral, medial femoral condyle under a chondral defect (the hard case)
    {"center_local": (20.0, _FEMUR_BOTTOM - 6.0, _DEFECT_W + 2.0), "radii_mm": (12.0, 9.0, 12.5),
     "intensity": 0.65, "edge_mm": 1.5, "irregularity": 0.2},
    # ~1.5 mL, subchondral, posterolateral tibial plateau (a "kissing" contusion)
    {"center_local": (-20.0, _TIBIA_TOP + 5.0 + 1.5, 20.0), "radii_mm": (9.5, 6.2, 7.2),
     "intensity": 0.62, "edge_mm": 1.5, "irregularity": 0.2},
    # ~0.5 mL, small and deep in the medial tibial metaphysis
    {"center_local": (14.0, _TIBIA_TOP + 24.0, 4.0), "radii_mm": (5.5, 4.5, 5.0),
     "intensity": 0.55, "edge_mm": 1.0, "irregularity": 0.15},
)


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


# ---------------------------------------------------------------------------------------
# shapes: approximate signed distances in mm (negative inside)
# ---------------------------------------------------------------------------------------
def _ellipsoid(u, v, w, c, r):
    """Signed distance to an axis-aligned ellipsoid, first-order (exact for a sphere)."""
    x = (u - c[0]) / r[0]
    y = (v - c[1]) / r[1]
    z = (w - c[2]) / r[2]
    q2 = x * x + y * y + z * z
    g2 = (x / r[0]) ** 2 + (y / r[1]) ** 2 + (z / r[2]) ** 2
    eps = np.float32(1e-6)
    return (np.sqrt(q2) - 1.0) * np.sqrt((q2 + eps) / (g2 + eps / min(r) ** 2))


def _ellipse(a, b, ca, cb, ra, rb):
    """Signed distance to an ellipse in two coordinates (an infinite elliptic cylinder)."""
    x = (a - ca) / ra
    y = (b - cb) / rb
    q2 = x * x + y * y
    g2 = (x / ra) ** 2 + (y / rb) ** 2
    eps = np.float32(1e-6)
    return (np.sqrt(q2) - 1.0) * np.sqrt((q2 + eps) / (g2 + eps / min(ra, rb) ** 2))


def _smin(a, b, k):
    """Smooth union of two distances (polynomial smooth minimum, blend width ``k`` mm)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * (k * 0.25)


def _smax(a, b, k):
    """Smooth intersection of two distances."""
    return -_smin(-a, -b, k)


def _segment(a, b, p0, p1):
    """Distance from points (a, b) to the segment p0-p1 in the plane."""
    da, db = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((a - p0[0]) * da + (b - p0[1]) * db) / (da * da + db * db), 0.0, 1.0)
    return np.hypot(a - p0[0] - t * da, b - p0[1] - t * db)


def _inside(d, h):
    """Fraction of a voxel inside a surface at signed distance ``d`` (ramp of width h)."""
    return np.clip(0.5 - d * (1.0 / h), 0.0, 1.0)


def _superellipse(a, b, ca, cb, ra, rb, p):
    """Signed distance to a superellipse ``|x|^p + |y|^p = 1`` in two coordinates.

    ``ca, cb, ra, rb`` may be arrays (a cross-section that changes along the third axis).
    """
    x = np.abs(a - ca) / ra
    y = np.abs(b - cb) / rb
    xp = x ** (p - 1.0)
    yp = y ** (p - 1.0)
    sp = xp * x + yp * y
    q = sp ** (1.0 / p)
    # |grad q| = sqrt((x^(p-1)/ra)^2 + (y^(p-1)/rb)^2) * q^(1-p)
    g = np.sqrt((xp / ra) ** 2 + (yp / rb) ** 2) + np.float32(1e-6)
    return (q - 1.0) * (sp / np.maximum(q, np.float32(1e-6))) / g


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _taper(v, v0, v1, start, end):
    """Per-row values going smoothly from ``start`` (v <= v0) to ``end`` (v >= v1)."""
    t = _smoothstep((v - np.float32(v0)) / np.float32(v1 - v0))
    return [np.float32(a) + np.float32(b - a) * t for a, b in zip(start, end)]


def _anatomy(u, v, w):
    """Signed distances of every structure at points (u, v, w) in mm (broadcastable)."""
    f32 = np.float32
    # femur: the shaft widens through the metaphysis into a boxy section above the
    # condyles; below it the two condyles (ellipsoids) with the notch between them
    cw, ru, rw, p = _taper(v, _CONDYLE_V - 42.0, _CONDYLE_V - 2.0,
                           (-6.0, 16.0, 12.5, 2.0), (_CONDYLE_W, 37.0, _CONDYLE_R[2], 3.0))
    # the roof of the intercondylar notch (Blumensaat's line) rises posteriorly
    roof = (v - f32(_CONDYLE_V + 8.0) + f32(0.5) * (w + f32(15.0))) * f32(1.0 / math.hypot(1.0, 0.5))
    meta = _smax(_superellipse(u, w, 0.0, cw, ru, rw, p), roof, 4.0)
    cond_l = _ellipsoid(u, v, w, (-20.0, _CONDYLE_V, _CONDYLE_W), _CONDYLE_R)
    cond_m = _ellipsoid(u, v, w, (20.0, _CONDYLE_V, _CONDYLE_W), _CONDYLE_R)
    femur = _smin(meta, _smin(cond_l, cond_m, 4.0), 5.0)
    # tibia: a boxy plateau under a plane sloping 7 degrees down posteriorly, narrowing
    # into the shaft, with the tubercle in front
    cw, ru, rw, p = _taper(v, _TIBIA_TOP + 10.0, _TIBIA_TOP + 45.0,
                           (_TIBIA_W, 38.0, 25.0, 3.0), (3.0, 15.5, 13.0, 2.0))
    top = (_TIBIA_TOP + _TIBIA_SLOPE * (w - _TIBIA_W) - v) * f32(math.cos(math.atan(_TIBIA_SLOPE)))
    tibia = _smax(_superellipse(u, w, 0.0, cw, ru, rw, p), top, 3.0)
    tubercle = _ellipsoid(u, v, w, (0.0, _TIBIA_TOP + 27.0, -13.0), (11.0, 10.0, 6.0))
    tibia = _smin(tibia, tubercle, 4.0)
    patella = _ellipsoid(u, v, w, _PATELLA_C, _PATELLA_R)

    # soft tissue envelope (anterior skin at w = -50; posterior skin outside the FOV)
    skin = _ellipse(u, w, 0.0, 12.0, 64.0, 62.0)
    hoffa = _ellipsoid(u, v, w, (0.0, _JOINT_V - 3.0, -27.0), (24.0, 15.0, 9.0))
    popliteal = _ellipsoid(u, v, w, (0.0, _JOINT_V - 8.0, 46.0), (18.0, 36.0, 9.0))
    prefemoral = _ellipsoid(u, v, w, (0.0, _PATELLA_C[1] - 40.0, -22.0), (22.0, 24.0, 7.0))
    quad = np.maximum(
        np.maximum(np.abs(u) - f32(16.0), np.abs(w - f32(_PATELLA_C[2] - 3.0)) - f32(2.5)),
        v - f32(_PATELLA_C[1] - _PATELLA_R[1] + 6.0),
    )
    pat_tendon = np.maximum(
        _segment(v, w, (_PATELLA_C[1] + _PATELLA_R[1] - 5.0, _PATELLA_C[2] - 3.0),
                 (_TIBIA_TOP + 29.0, -18.0)) - f32(2.4),
        np.abs(u) - f32(14.0),
    )
    # cruciate ligaments in the notch (dark)
    pcl = np.maximum(_segment(v, w, (_JOINT_V - 16.0, 10.0), (_JOINT_V + 9.0, 26.0)) - f32(3.0),
                     np.abs(u - f32(2.5)) - f32(4.0))
    acl = np.maximum(_segment(v, w, (_JOINT_V - 14.0, 22.0), (_JOINT_V + 3.0, -2.0)) - f32(2.8),
                     np.abs(u + f32(3.0)) - f32(4.0))
    tendon = np.minimum(np.minimum(quad, pat_tendon), np.minimum(pcl, acl))
    # joint fluid: within reach of two articulating bones, plus a suprapatellar pouch
    joint = np.minimum(np.maximum(femur, tibia) - f32(6.5), np.maximum(femur, patella) - f32(5.0))
    pouch = np.maximum(
        np.maximum(femur - f32(4.0), patella - f32(22.0)),
        _ellipsoid(u, v, w, (0.0, _PATELLA_C[1] - 26.0, -24.0), (24.0, 20.0, 10.0)),
    )
    fluid = np.minimum(joint, pouch)
    # a full-thickness chondral defect over the medial femoral condyle's weight-bearing zone
    defect = _ellipsoid(u, v, w, (20.0, _FEMUR_BOTTOM + 1.0, _DEFECT_W), (5.0, 4.0, 5.0))
    return {
        "femur": femur,
        "tibia": tibia,
        "patella": patella,
        "skin": skin,
        "fat_pads": np.minimum(np.minimum(hoffa, popliteal), prefemoral),
        "tendon": tendon,
        "fluid": fluid,
        "defect": defect,
    }


# ---------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------
def _triple(value, name, *, integer=False, low=None):
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be 3 numbers; got {value!r}") from None
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be 3 finite numbers; got {value!r}")
    if integer:
        if not np.all(arr == np.round(arr)):
            raise ParameterError(f"{name} must be 3 integers; got {value!r}")
    if low is not None and not np.all(arr >= low):
        raise ParameterError(f"{name} must be >= {low} on each axis; got {value!r}")
    return tuple(int(x) for x in arr) if integer else tuple(float(x) for x in arr)


def _affine(shape, spacing):
    """Oblique sagittal geometry: slices towards L, rows towards I, columns towards P,
    tilted 6 degrees about S and rotated 12 degrees in plane, off isocentre."""
    a, b = math.radians(6.0), math.radians(12.0)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    base = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]]).T  # columns: L, I, P
    m = rz @ rx @ base @ np.diag(spacing)
    centre_ras = np.array([-12.5, 18.0, -41.0])
    centre_idx = (np.array(shape, dtype=float) - 1.0) / 2.0
    aff = np.eye(4)
    aff[:3, :3] = m
    aff[:3, 3] = centre_ras - m @ centre_idx
    # exactly representable in float32, so a NIfTI sform round-trips without change
    return aff.astype(np.float32).astype(np.float64)


def _resolve_lesions(lesions, affine, shape, spacing):
    """Lesion dicts -> list of dicts with the centre in local mm and index, checked."""
    centre_idx = (np.array(shape, dtype=float) - 1.0) / 2.0
    sp = np.array(spacing)
    inv = np.linalg.inv(affine)
    out = []
    if lesions is None:
        for spec in _DEFAULT_LESIONS:
            c_local = np.array(spec["center_local"])
            idx = c_local / sp + centre_idx
            out.append({**{k: v for k, v in spec.items() if k != "center_local"},
                        "center_local": c_local, "center_index": idx})
        return out
    if isinstance(lesions, Mapping) or not isinstance(lesions, Sequence):
        raise ParameterError(
            "lesions must be None or a list of dicts such as "
            "{'center_index': (s, r, c), 'radii_mm': (a, b, c), 'intensity': 0.6}"
        )
    allowed = {"center_mm", "center_index", "radii_mm", "intensity", "edge_mm", "irregularity"}
    for i, spec in enumerate(lesions, start=1):
        if not isinstance(spec, Mapping):
            raise ParameterError(f"lesion {i} must be a dict; got {type(spec).__name__}")
        unknown = set(spec) - allowed
        if unknown:
            raise ParameterError(
                f"lesion {i} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if ("center_mm" in spec) == ("center_index" in spec):
            raise ParameterError(f"lesion {i} needs exactly one of 'center_mm' (RAS) or 'center_index'")
        if "center_mm" in spec:
            ras = np.array(_triple(spec["center_mm"], f"lesion {i} center_mm"))
            idx = inv[:3, :3] @ ras + inv[:3, 3]
        else:
            idx = np.array(_triple(spec["center_index"], f"lesion {i} center_index"))
        if "radii_mm" not in spec:
            raise ParameterError(f"lesion {i} needs 'radii_mm' (3 radii in mm along slice, row, column)")
        radii = _triple(spec["radii_mm"], f"lesion {i} radii_mm")
        if min(radii) <= 0:
            raise ParameterError(f"lesion {i} radii_mm must be > 0; got {radii}")
        intensity = float(spec.get("intensity", SIGNAL["lesion"]))
        edge = float(spec.get("edge_mm", 1.5))
        irregularity = float(spec.get("irregularity", 0.0))
        if not (math.isfinite(irregularity) and 0.0 <= irregularity <= 0.5):
            raise ParameterError(f"lesion {i} irregularity must be in [0, 0.5]; got {irregularity}")
        if not (math.isfinite(intensity) and 0.0 < intensity <= 2.0):
            raise ParameterError(
                f"lesion {i} intensity must be in (0, 2] (relative units, fluid 0.95); got {intensity}"
            )
        if not (math.isfinite(edge) and 0.0 < edge <= 20.0):
            raise ParameterError(f"lesion {i} edge_mm must be in (0, 20]; got {edge}")
        out.append({"radii_mm": radii, "intensity": intensity, "edge_mm": edge,
                    "irregularity": irregularity,
                    "center_local": (idx - centre_idx) * sp, "center_index": idx})
    return out


# ---------------------------------------------------------------------------------------
# the phantom
# ---------------------------------------------------------------------------------------
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
    fluid = bool(fluid)

    affine = _affine(shape, spacing)
    specs = _resolve_lesions(lesions, affine, shape, spacing)
    rng = np.random.default_rng(int(seed))
    S, R, C = shape
    ds, dr, dc = spacing
    f32 = np.float32
    h = f32(max(min(dr, dc), 0.5))  # width of the partial-volume ramp, mm

    # voxel-centre coordinates in mm, centred on the FOV
    v_all = ((np.arange(R, dtype=f32) - f32((R - 1) / 2)) * f32(dr))[None, :, None]
    w_all = ((np.arange(C, dtype=f32) - f32((C - 1) / 2)) * f32(dc))[None, None, :]
    u_centres = (np.arange(S, dtype=np.float64) - (S - 1) / 2) * ds

    # random draws, in a fixed order: lesion surfaces, bias field, marrow texture, noise
    for spec in specs:  # a wavy surface for each lesion (drawn even when irregularity is 0)
        dirs = rng.normal(size=(3, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        lengths = rng.uniform(0.8, 1.6, size=3) * float(np.mean(spec["radii_mm"]))
        spec["waves"] = (2 * np.pi / lengths[:, None] * dirs, rng.uniform(0, 2 * np.pi, size=3))
    bias = _bias_field(rng, u_centres, v_all, w_all)
    texture = _texture(rng, shape)

    lesion_boxes = [_lesion_box(sp, shape, spacing) for sp in specs]
    image = np.empty(shape, dtype=f32)
    tissue = np.empty(shape, dtype=np.uint8)
    truth = np.zeros(shape, dtype=np.int32)
    best = [(-1.0, None)] * len(specs)  # highest centre profile of each lesion and its index

    sig = {k: f32(v) for k, v in SIGNAL.items()}
    nsub = len(_SUBSAMPLES)
    chunk = max(1, 300_000 // (nsub * R * C))
    for s0 in range(0, S, chunk):
        s1 = min(S, s0 + chunk)
        n = s1 - s0
        u = ((np.arange(s0, s1)[:, None] + np.array(_SUBSAMPLES)[None, :]).ravel() - (S - 1) / 2) * ds
        u = u.astype(f32)[:, None, None]
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
        img = np.zeros(a_bone.shape, dtype=f32)
        lab = np.zeros((n, R, C), dtype=np.uint8)
        for alpha, value, code in layers:
            img += (value - img) * alpha
            lab[np.broadcast_to(alpha[1::nsub] >= 0.5, lab.shape)] = code
        tex = np.repeat(texture[s0:s1], nsub, axis=0)
        marrow_val = sig["marrow"] * (1.0 + tex)
        img += (marrow_val - img) * a_marrow
        marrow_c = np.broadcast_to(a_marrow[1::nsub] >= 0.5, lab.shape)
        lab[marrow_c] = TISSUE["marrow"]

        # lesions, each inside its bounding box
        for i, (spec, box) in enumerate(zip(specs, lesion_boxes)):
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
        image[s0:s1] = img.reshape(n, nsub, R, C).mean(axis=1)
        tissue[s0:s1] = lab

    for i, (value, idx) in enumerate(best):
        if idx is None:
            raise ParameterError(
                f"lesion {i + 1} has no voxel inside marrow in this field of view "
                f"(centre index {np.round(specs[i]['center_index'], 1).tolist()}); "
                "move it into the femur or tibia"
            )
    _check_touching(truth, len(specs))

    # bias field, scale, Rician noise
    image *= bias
    image *= f32(SCALE)
    sd = noise * (SIGNAL["fluid"] - SIGNAL["marrow"]) * SCALE
    if sd > 0:
        re = rng.standard_normal(shape, dtype=f32)
        re *= f32(sd)
        re += image
        im = rng.standard_normal(shape, dtype=f32)
        im *= f32(sd)
        image = np.hypot(re, im)
        del re, im

    bone = tissue >= TISSUE["cortex"]
    fluid_mask = tissue == TISSUE["fluid"]
    marrow = tissue >= TISSUE["marrow"]
    ref_point, reference = _reference(marrow, truth, spacing)
    # the fluid seed: deepest in the tibiofemoral joint fluid (else in any fluid)
    rows = np.abs(v_all[0, :, 0] - np.float32(_JOINT_V)) <= 8.0
    in_joint = fluid_mask & rows[None, :, None]
    if in_joint.any():
        fluid_seed = _deepest(in_joint, spacing)
    elif fluid_mask.any():
        fluid_seed = _deepest(fluid_mask, spacing)
    else:
        fluid_seed = np.full(3, -1, dtype=np.int64)
    vox_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    counts = np.bincount(truth.ravel(), minlength=len(specs) + 1)[1:]
    volumes = tuple(float(c) * vox_ml for c in counts)
    seeds = np.array([b[1] for b in best], dtype=np.int64).reshape(-1, 3)

    metadata = {
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


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _waves(u, v, w, spec):
    """Smooth bumps (mm) that make a lesion's surface irregular, within +-irregularity*min radius."""
    k, phase = spec["waves"]
    c = spec["center_local"]
    amp = np.float32(spec["irregularity"] * min(spec["radii_mm"]) / 3.0)
    f32 = np.float32
    du, dv, dw = u - f32(c[0]), v - f32(c[1]), w - f32(c[2])
    out = 0.0
    for kk, ph in zip(k, phase):
        out = out + np.cos(f32(kk[0]) * du + f32(kk[1]) * dv + f32(kk[2]) * dw + f32(ph))
    return amp * out


def _lesion_box(spec, shape, spacing):
    """Index bounds (start, stop) per axis of a lesion's profile, with its soft edge."""
    centre_idx = (np.array(shape, dtype=float) - 1.0) / 2.0
    # the soft edge reaches ~1e-4 at 9 sigmoid scales
    margin = 9.0 * spec["edge_mm"] * _EDGE_TO_SCALE + 1.0 + spec["irregularity"] * min(spec["radii_mm"])
    out = []
    for ax in range(3):
        c = spec["center_local"][ax] / spacing[ax] + centre_idx[ax]
        half = (spec["radii_mm"][ax] * 1.5 + margin) / spacing[ax]
        lo = max(0, int(math.floor(c - half)))
        hi = min(shape[ax], int(math.ceil(c + half)) + 1)
        out.append((lo, max(lo, hi)))
    return tuple(out)


def _bias_field(rng, u, v, w):
    """A smooth multiplicative field within 1 +- _BIAS_AMPLITUDE (two long waves)."""
    dirs = rng.normal(size=(2, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    lengths = rng.uniform(220.0, 320.0, size=2)
    phases = rng.uniform(0.0, 2 * np.pi, size=2)
    weights = (0.6, 0.4)
    f32 = np.float32
    field = np.zeros((len(u), v.shape[1], w.shape[2]), dtype=f32)
    uu = np.asarray(u, dtype=f32)[:, None, None]
    for dvec, length, phase, wt in zip(dirs, lengths, phases, weights):
        k = 2 * np.pi / length * dvec
        field += f32(wt) * np.cos(f32(k[0]) * uu + f32(k[1]) * v + f32(k[2]) * w + f32(phase))
    field *= f32(_BIAS_AMPLITUDE)
    field += f32(1.0)
    return field


def _texture(rng, shape):
    """Smooth zero-mean marrow texture (relative sd ~ _TEXTURE_AMPLITUDE), ~15 mm blobs."""
    from scipy import ndimage

    coarse = rng.standard_normal((max(2, shape[0] // 3 + 2), shape[1] // 16 + 2, shape[2] // 16 + 2))
    coarse = ndimage.gaussian_filter(coarse, 0.7, mode="wrap")
    coarse *= _TEXTURE_AMPLITUDE / max(float(coarse.std()), 1e-12)
    np.clip(coarse, -2.5 * _TEXTURE_AMPLITUDE, 2.5 * _TEXTURE_AMPLITUDE, out=coarse)
    zoom = [n / m for n, m in zip(shape, coarse.shape)]
    return ndimage.zoom(coarse.astype(np.float32), zoom, order=1, mode="nearest", grid_mode=True)[
        : shape[0], : shape[1], : shape[2]
    ]


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
    ball = _ball(marrow.shape, centre, r, spacing)
    ref = ball & marrow & (truth == 0)
    return centre, ref


def _ball(shape, centre, radius, spacing):
    """Boolean ball of ``radius`` mm around an index on an anisotropic grid."""
    out = np.zeros(shape, dtype=bool)
    lo = [max(0, int(c - math.ceil(radius / s))) for c, s in zip(centre, spacing)]
    hi = [min(n, int(c + math.ceil(radius / s)) + 1) for c, n, s in zip(centre, shape, spacing)]
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = d2 <= radius * radius
    return out


def _deepest(mask, spacing):
    """The voxel of ``mask`` farthest from its boundary (computed on its bounding box)."""
    from scipy import ndimage

    sl = ndimage.find_objects(mask.astype(np.uint8))[0]
    crop = np.pad(mask[sl], 1)  # the edge of the array counts as outside
    depth = ndimage.distance_transform_edt(crop, sampling=spacing)
    j = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return np.array([jj - 1 + s.start for jj, s in zip(j, sl)], dtype=np.int64)


# ---------------------------------------------------------------------------------------
# the shipped sample
# ---------------------------------------------------------------------------------------
def _tmp_name(path: Path) -> Path:
    """A fresh temporary name next to ``path`` (same folder, so renaming is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{''.join(path.suffixes)}")


def _atomic_nifti(img, path: Path) -> None:
    import nibabel as nib

    tmp = _tmp_name(path)
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _image_int16(array: np.ndarray) -> np.ndarray:
    """Scanner-like float image -> int16 (rounded, clipped), as the sample stores it."""
    return np.clip(np.rint(array), -32768, 32767).astype(np.int16)


def write_sample(directory: str | os.PathLike, **params: Any) -> dict[str, Path]:
    """Write a phantom as the sample files into ``directory`` (created if missing).

    The image is written as int16, the masks as uint8 NIfTI on the same grid, and the
    seeds as CSV (``lesion_id, slice, row, col, x_mm, y_mm, z_mm``). Each file is written
    to a temporary name and renamed, so a reader never sees half a file.

    Parameters
    ----------
    directory : path
        Where to write.
    **params
        Passed to :func:`make_phantom`; default :data:`SAMPLE_PARAMS`.

    Returns
    -------
    dict
        File name -> path, for each of :data:`SAMPLE_FILES`.

    Examples
    --------
    >>> import tempfile
    >>> from bmeviz.data import write_sample
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_sample(tmp, shape=(12, 96, 96), spacing=(3.0, 1.4, 1.4))
    ...     sorted(p.name for p in paths.values())  # doctest: +NORMALIZE_WHITESPACE
    ['phantom_bone.nii.gz', 'phantom_reference.nii.gz', 'phantom_seeds.csv',
     'phantom_stir.nii.gz', 'phantom_truth.nii.gz']
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ph = make_phantom(**{**SAMPLE_PARAMS, **params})
    vol = ph.volume
    paths = {name: directory / name for name in SAMPLE_FILES}
    img = vol.to_nifti(_image_int16(vol.array))
    img.header["descrip"] = b"bmeviz synthetic STIR phantom"
    _atomic_nifti(img, paths["phantom_stir.nii.gz"])
    for name, mask in (("truth", ph.truth), ("bone", ph.bone), ("reference", ph.reference)):
        _atomic_nifti(vol.to_nifti(mask.astype(np.uint8)), paths[f"phantom_{name}.nii.gz"])
    ras = vol.index_to_ras(ph.seeds) if len(ph.seeds) else np.zeros((0, 3))
    tmp = _tmp_name(paths["phantom_seeds.csv"])
    try:
        with open(tmp, "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["lesion_id", "slice", "row", "col", "x_mm", "y_mm", "z_mm"])
            for i, (idx, xyz) in enumerate(zip(ph.seeds, ras), start=1):
                wr.writerow([i, *(int(x) for x in idx), *(f"{x:.3f}" for x in xyz)])
        os.replace(tmp, paths["phantom_seeds.csv"])
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return paths


def _repo_sample_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "sample_data"


def _cache_sample_dir() -> Path:
    from . import __version__

    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "bmeviz" / f"sample_data-{__version__}"


def sample_path(name: str = "phantom_stir.nii.gz") -> Path:
    """Path of a file of the shipped sample.

    Looks in the repository's ``sample_data/`` first; an installed wheel has none, so
    the sample is then generated once into ``~/.cache/bmeviz/`` (``$XDG_CACHE_HOME``
    when set) and reused.

    Parameters
    ----------
    name : str
        One of :data:`SAMPLE_FILES`.

    Examples
    --------
    >>> from bmeviz.data import sample_path
    >>> sample_path("phantom_seeds.csv").name
    'phantom_seeds.csv'
    """
    if name not in SAMPLE_FILES:
        raise ParameterError(f"unknown sample file {name!r}; choose one of {list(SAMPLE_FILES)}")
    repo = _repo_sample_dir()
    if all((repo / n).is_file() for n in SAMPLE_FILES):
        return repo / name
    cache = _cache_sample_dir()
    if not all((cache / n).is_file() for n in SAMPLE_FILES):
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-sample-", dir=cache.parent))
        try:
            write_sample(tmp)
            try:
                os.replace(tmp, cache)  # atomic; fails if another process won the race
            except OSError:
                if not all((cache / n).is_file() for n in SAMPLE_FILES):
                    shutil.rmtree(cache, ignore_errors=True)
                    os.replace(tmp, cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return cache / name


def load_sample() -> tuple[Volume, dict]:
    """The shipped sample: the STIR-like image and its ground truth.

    Returns
    -------
    volume : Volume
        The int16 image, axes ``(slice, row, column)`` and the affine of the file.
    truth : dict
        ``'truth'`` (int32 lesion labels), ``'bone'`` and ``'reference'`` (bool), on the
        image grid, and ``'seeds'`` ((N, 3) int indices, one per lesion).

    Examples
    --------
    >>> from bmeviz.data import load_sample
    >>> vol, gt = load_sample()
    >>> vol.plane, vol.shape == gt["truth"].shape, gt["seeds"].shape
    ('sagittal', True, (4, 3))
    >>> [int(gt["truth"][tuple(s)]) for s in gt["seeds"]]
    [1, 2, 3, 4]
    """
    import nibabel as nib

    def read(name, dtype):
        path = sample_path(name)
        img = nib.load(str(path))
        return img, np.asarray(img.dataobj).astype(dtype, copy=False)

    img, data = read("phantom_stir.nii.gz", np.int16)
    meta = {
        "description": "Synthetic STIR phantom",
        "sequence": "STIR",
        "manufacturer": "bmeviz phantom",
        "modality": "MR",
        "source": str(sample_path("phantom_stir.nii.gz")),
        "phantom": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in SAMPLE_PARAMS.items()}},
    }
    vol = Volume.from_nifti(img, metadata=meta, array=data)
    masks: dict[str, np.ndarray] = {}
    for key, dtype in (("truth", np.int32), ("bone", bool), ("reference", bool)):
        mimg, mdata = read(f"phantom_{key}.nii.gz", np.uint8)
        if mdata.shape != data.shape or not np.allclose(mimg.affine, img.affine, atol=1e-5):
            raise ParameterError(
                f"sample file phantom_{key}.nii.gz is not on the image grid; "
                "regenerate it with sample_data/make_sample.py"
            )
        masks[key] = Volume.from_nifti(mimg, array=mdata.astype(dtype)).array
    with open(sample_path("phantom_seeds.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    masks["seeds"] = np.array([[int(r["slice"]), int(r["row"]), int(r["col"])] for r in rows],
                              dtype=np.int64).reshape(-1, 3)
    return vol, masks
