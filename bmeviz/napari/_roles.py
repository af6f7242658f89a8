"""Names shared by the widget's modules: layer roles, layer identity, number formatting."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._layers import KEY

_ROLE_REF, _ROLE_SEEDS, _ROLE_PREVIEW, _ROLE_RESULT, _ROLE_DRAWN, _ROLE_REF_USED = (
    "reference", "seeds", "preview", "result", "reference-drawn", "reference-used")


def autosave_dir() -> Path:
    """Where sessions are autosaved: ``$BMEVIZ_AUTOSAVE_DIR``, else ``~/.cache/bmeviz/sessions``."""
    env = os.environ.get("BMEVIZ_AUTOSAVE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "bmeviz" / "sessions"


def _role(layer) -> str | None:
    return (getattr(layer, "metadata", None) or {}).get(KEY, {}).get("role")


def _uid(layer) -> str:
    """A layer's identity (the plugin gets proxies of layers: ``id()`` differs between them)."""
    return str(layer.unique_id)


def _same(a, b) -> bool:
    """The same napari layer (or both None), whether raw layers or the plugin's proxies."""
    if a is None or b is None:
        return a is b
    if isinstance(a, str) or isinstance(b, str):  # a combo's non-layer choice, e.g. "auto"
        return a == b
    return _uid(a) == _uid(b)


def _owner(layer) -> str | None:
    return (getattr(layer, "metadata", None) or {}).get(KEY, {}).get("image")


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"
