"""Edge algorithms applied after growing: hysteresis and half-maximum edge refinement.

:func:`refine_half_max` re-thresholds each lesion at the half-maximum of its own edge;
:func:`_keep_components_reaching` keeps the components that reach a strong threshold
(hysteresis). :func:`bmeviz.segment` calls both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from .lesions import label

__all__ = ["refine_half_max"]


def _keep_components_reaching(mask: np.ndarray, strong: np.ndarray, connectivity: int) -> np.ndarray:
    """Hysteresis: the components of ``mask`` that hold at least one ``strong`` voxel."""
    labels = label(mask, connectivity=connectivity)
    hit = np.unique(labels[strong & mask])
    hit = hit[hit > 0]
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[hit] = True
    return keep[labels]


def refine_half_max(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    background: float,
    floor: float,
    spacing: Sequence[float],
    connectivity: int = 26,
    core_mm: float = 1.5,
) -> tuple[np.ndarray, list[dict]]:
    """Re-threshold each lesion of ``mask`` at the half-maximum of its own edge.

    For every connected component the plateau is the median intensity of its core (the
    component eroded in-plane by ``core_mm``; the whole component when the core is tiny):
    a median is not pulled up by noise nor down by the soft rim. The component keeps its
    voxels at or above ``(background + plateau) / 2`` (where a soft edge is 50% lesion),
    never using a level below ``floor`` (the reference threshold). This removes the
    partial-volume rim and the noise specks that a reference-relative threshold takes
    along a soft edge. On the phantom it takes volume errors from +16..+30% to within
    about ±3.5% (see tests/test_pipeline.py).
    """
    labels = label(mask, connectivity=connectivity)
    out = np.zeros(mask.shape, bool)
    info = []
    iterations = max(1, int(round(core_mm / float(min(spacing[1], spacing[2])))))
    plane = np.zeros((1, 3, 3), bool)
    plane[0] = ndi.generate_binary_structure(2, 1)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        comp = labels[box] == i
        core = ndi.binary_erosion(comp, plane, iterations=iterations)
        vals = image[box][core if core.sum() >= 10 else comp]
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            continue
        plateau = float(np.median(vals))
        level = max(float(floor), (float(background) + plateau) / 2.0)
        keep = comp & (image[box] >= level)
        out[box] |= keep
        info.append({"component": i, "plateau": plateau, "level": level, "voxels_before": int(comp.sum()),
                     "voxels_after": int(keep.sum())})
    return out, info
