"""The phantom's anatomy (a right knee as analytic shapes in millimetres, signed distances),
soft lesion profiles, the bias field and the marrow texture."""

from __future__ import annotations

import math

import numpy as np

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


# shapes: approximate signed distances in mm (negative inside)
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


# soft profiles and smooth fields
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
