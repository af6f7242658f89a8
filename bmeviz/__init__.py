"""bmeviz: show and measure bone marrow edema (BME) on fat-suppressed fluid-sensitive MRI.

The public API. ``import bmeviz`` never imports napari or Qt.

>>> import bmeviz
>>> bmeviz.Volume.__name__
'Volume'
"""

from __future__ import annotations

from .errors import (
    BmevizError,
    BmevizWarning,
    InconsistentGeometryError,
    NotAVolumeError,
    ParameterError,
    ResourceLimitError,
    SeriesSelectionError,
    UnreadableFileError,
)
from .volume import Volume
from .io import SeriesInfo, list_series, load, save_mask
from .pipeline import Result, segment
from ._version import __version__

__all__ = [
    "__version__",
    "Volume",
    "load",
    "list_series",
    "save_mask",
    "SeriesInfo",
    "segment",
    "Result",
    "BmevizError",
    "BmevizWarning",
    "UnreadableFileError",
    "NotAVolumeError",
    "InconsistentGeometryError",
    "SeriesSelectionError",
    "ParameterError",
    "ResourceLimitError",
]
