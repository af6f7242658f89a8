"""The bmeviz exception family.

Every public entry point (``load``, ``list_series``, ``segment``, the CLI, the napari
reader and widget, batch) raises only these for bad input. Messages say what was
wrong, where (file or parameter), and what to do about it.
"""

from __future__ import annotations

import warnings

__all__ = [
    "BmevizError",
    "UnreadableFileError",
    "NotAVolumeError",
    "InconsistentGeometryError",
    "SeriesSelectionError",
    "ParameterError",
    "ResourceLimitError",
    "BmevizWarning",
    "warn",
]


class BmevizError(Exception):
    """Base class of every error bmeviz raises for bad input or bad parameters."""


class UnreadableFileError(BmevizError, OSError):
    """A file or folder is missing, unreadable, truncated or of an unknown format."""


class NotAVolumeError(BmevizError):
    """The input can be read but does not form a 3D volume (too few slices, duplicates...)."""


class InconsistentGeometryError(BmevizError):
    """Slices disagree about geometry: mixed orientations, gantry tilt, uneven spacing."""


class SeriesSelectionError(BmevizError, LookupError):
    """The requested series or echo does not exist, or the choice is ambiguous."""


class ParameterError(BmevizError, ValueError):
    """A parameter has a bad value (wrong shape, out of range, out of the volume...)."""


class ResourceLimitError(BmevizError, MemoryError):
    """An operation would need more memory (or volume) than bmeviz allows."""


class BmevizWarning(UserWarning):
    """Something was skipped or guessed; the message says what and why."""


def warn(message: str, *, stacklevel: int = 3) -> None:
    """Emit a :class:`BmevizWarning` (also what the CLI prints)."""
    warnings.warn(message, BmevizWarning, stacklevel=stacklevel)
