"""Agreement between masks: Dice, volumes, and per-lesion matching against a truth."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ParameterError

__all__ = ["dice", "volume_ml", "match_lesions", "pairwise_dice", "volume_difference"]


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a) > 0, np.asarray(b) > 0
    if x.shape != y.shape:
        raise ParameterError(f"masks have different shapes {x.shape} and {y.shape}; they must be on one grid")
    return x, y


def dice(a: Any, b: Any) -> float:
    """Dice coefficient 2|A∩B| / (|A|+|B|) of two masks (nonzero = inside); NaN when both are empty.

    >>> import numpy as np
    >>> a = np.zeros((2, 4, 4), bool); a[0, :2] = True
    >>> b = np.zeros_like(a); b[0, 1:3] = True
    >>> dice(a, b)
    0.5
    """
    x, y = _pair(a, b)
    total = np.count_nonzero(x) + np.count_nonzero(y)
    return float(2 * np.count_nonzero(x & y) / total) if total else float("nan")


def volume_ml(mask: Any, voxel_volume_mm3: float) -> float:
    """Volume of a mask in mL (voxel count x voxel volume / 1000).

    >>> volume_ml(np.ones((10, 10, 10), bool), 1.0)
    1.0
    """
    return float(np.count_nonzero(np.asarray(mask)) * float(voxel_volume_mm3) / 1000.0)


def match_lesions(labels: Any, truth: Any, *, voxel_volume_mm3: float) -> list[dict]:
    """For each truth lesion id, the result lesions that overlap it: volumes and Dice.

    Returns one dict per truth id: ``truth_id``, ``truth_ml``, ``found_ml`` (the union of
    overlapping result lesions), ``error_pct`` and ``dice``.

    >>> t = np.zeros((3, 8, 8), int); t[1, 2:6, 2:6] = 1
    >>> r = np.zeros_like(t); r[1, 2:6, 2:5] = 4
    >>> m = match_lesions(r, t, voxel_volume_mm3=1000.0)[0]
    >>> m["truth_ml"], m["found_ml"], round(m["dice"], 3)
    (16.0, 12.0, 0.857)
    """
    lab, tru = np.asarray(labels), np.asarray(truth)
    if lab.shape != tru.shape:
        raise ParameterError(f"labels {lab.shape} and truth {tru.shape} must be on one grid")
    out = []
    for i in np.unique(tru[tru > 0]):
        t = tru == i
        ids = np.unique(lab[t])
        found = np.isin(lab, ids[ids > 0])
        truth_ml, found_ml = volume_ml(t, voxel_volume_mm3), volume_ml(found, voxel_volume_mm3)
        out.append({"truth_id": int(i), "truth_ml": truth_ml, "found_ml": found_ml,
                    "error_pct": 100.0 * (found_ml / truth_ml - 1.0), "dice": dice(found, t)})
    return out


def pairwise_dice(masks: Any) -> list[float]:
    """Dice of every unordered pair of masks (e.g. the masks of several users of one scan).

    Pairs where both masks are empty give NaN (nothing to agree on), as :func:`dice`.

    >>> a = np.zeros((1, 4, 4), bool); a[0, :2] = True
    >>> b = np.zeros_like(a); b[0, 1:3] = True
    >>> pairwise_dice([a, a, b])
    [1.0, 0.5, 0.5]
    """
    ms = [np.asarray(m) > 0 for m in masks]
    for m in ms[1:]:
        if m.shape != ms[0].shape:
            raise ParameterError(f"masks have different shapes {ms[0].shape} and {m.shape}; they must be on one grid")
    counts = [int(np.count_nonzero(m)) for m in ms]
    out = []
    for i in range(len(ms)):
        for j in range(i + 1, len(ms)):
            total = counts[i] + counts[j]
            out.append(float(2 * np.count_nonzero(ms[i] & ms[j]) / total) if total else float("nan"))
    return out


def volume_difference(a_ml: float, b_ml: float) -> dict:
    """Volume difference of a measurement ``a`` against a reference ``b``: mL and % of ``b``.

    >>> volume_difference(4.5, 4.0)
    {'diff_ml': 0.5, 'diff_pct': 12.5}
    """
    a, b = float(a_ml), float(b_ml)
    return {"diff_ml": a - b, "diff_pct": 100.0 * (a - b) / b if b else float("nan")}
