"""The bmeviz helpers the follow-up uses (plotting primitives, provenance naming), in one place."""

from __future__ import annotations

from .._version import __version__
from ..plot._draw import _new_figure, _set_limits
from ..plot.view import display_range, outline_mask, view_of
from ..result import _input_name


def version() -> str:
    """bmeviz's version, without importing the package root."""
    return __version__


__all__ = ["_new_figure", "_set_limits", "display_range", "outline_mask", "view_of", "_input_name", "version"]
