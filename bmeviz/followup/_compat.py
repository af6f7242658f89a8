"""bmeviz helpers the follow-up uses, wherever this version of bmeviz keeps them.

The plotting helpers moved into the ``bmeviz.plot`` package and the provenance naming into
``bmeviz.result`` while this feature was written; this module is the one place that knows.
"""

from __future__ import annotations

from typing import Any

try:  # bmeviz.plot as a package
    from ..plot._draw import _new_figure, _set_limits
    from ..plot.view import display_range, outline_mask, view_of
except ImportError:  # bmeviz/plot.py as one module
    from ..plot import _new_figure, _set_limits, display_range, outline_mask  # type: ignore[no-redef]
    from ..plot import _view as _old_view

    def view_of(volume: Any, axes2d: tuple[int, int] = (1, 2), orientation: str = "radiological"):  # type: ignore[no-redef]
        return _old_view(volume, axes2d, orientation)

from .. import pipeline as _pipeline

# where the pipeline still has them, it is this bmeviz's own (look there first: an editable
# install of another checkout can make a missing submodule importable from elsewhere)
if hasattr(_pipeline, "_input_name"):
    _input_name = _pipeline._input_name
else:
    from ..result import _input_name  # type: ignore[no-redef]


def version() -> str:
    """bmeviz's version, without importing the package root."""
    if hasattr(_pipeline, "_version"):
        return _pipeline._version()
    from .._version import __version__

    return __version__


__all__ = ["_new_figure", "_set_limits", "display_range", "outline_mask", "view_of", "_input_name", "version"]
