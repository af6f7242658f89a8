"""One converter to plain, strict-JSON Python for everything bmeviz writes to JSON."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["jsonable"]


def jsonable(obj: Any) -> Any:
    """numpy scalars/arrays (also nested in dicts, lists, tuples) to plain Python;
    NaN and infinities become None, so ``json.dumps`` writes valid JSON.

    >>> jsonable({"a": np.float32(1.5), "b": np.arange(2), "c": float("nan"), 3: (np.bool_(True),)})
    {'a': 1.5, 'b': [0, 1], 'c': None, '3': [True]}
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
