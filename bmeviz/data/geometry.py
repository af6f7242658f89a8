"""The phantom's grid (an oblique sagittal affine) and its lesions (defaults, custom specs checked)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .._arrays import parse_triple
from ..errors import ParameterError
from .anatomy import _CONDYLE_V, _DEFECT_W, _FEMUR_BOTTOM, _TIBIA_TOP

#: Default lesion intensity (relative units), as :data:`bmeviz.data.SIGNAL` ``['lesion']``.
_LESION_SIGNAL = 0.60

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


def _triple(value, name, *, integer=False, low=None):
    vals = parse_triple(value, name)
    if integer and not all(v == round(v) for v in vals):
        raise ParameterError(f"{name} must be 3 integers; got {value!r}")
    if low is not None and not all(v >= low for v in vals):
        raise ParameterError(f"{name} must be >= {low} on each axis; got {value!r}")
    return tuple(int(x) for x in vals) if integer else vals


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
        intensity = float(spec.get("intensity", _LESION_SIGNAL))
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
