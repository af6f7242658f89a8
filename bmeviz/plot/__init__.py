"""Matplotlib figures for notebooks and papers: outlined slices, montages, MIPs, histograms.

No pyplot and no Qt: every figure is built on :class:`matplotlib.figure.Figure`, so it
works headless, in threads (napari workers, Dask) and in notebooks, where a Figure made
here displays itself (it has a ``_repr_png_``; no ``%matplotlib`` magic needed).

Conventions shared by every function:

- **Physical aspect.** Pixels keep their shape in mm: the aspect ratio of each panel
  comes from the voxel spacing of the axes shown (an anisotropic 3 x 0.5 x 0.7 mm
  volume is not squashed), and scale bars are in mm.
- **Radiological orientation** (``orientation='radiological'``, the default): from the
  affine, an image is shown with superior up (coronal, sagittal) or anterior up (axial),
  the patient's left on the right of the screen (coronal, axial) and posterior on the
  right (sagittal). The image is only flipped (or, rarely, transposed), never resampled.
  ``orientation='array'`` shows it as stored.
- **Voxel coordinates.** The data coordinates of an image Axes are voxel indices: ``x``
  along the array axis shown horizontally and ``y`` along the one shown vertically (for
  a slice: ``x`` = column, ``y`` = row unless transposed), so ``ax.plot(col, row, '+')``
  marks a voxel whatever the flips.
- **One colour per lesion id**, the same in outlines, montages, MIPs and bar charts:
  :func:`lesion_colors`.

The package: :mod:`~bmeviz.plot.view` (public: the radiological view, lesion colours,
display range; napari uses the same), :mod:`~bmeviz.plot.slices` (overlay, montage,
summary, overlay.png), :mod:`~bmeviz.plot.projection` (MIP), :mod:`~bmeviz.plot.charts`
(histogram, volumes, Bland-Altman); internals in ``_draw``.

Functions that draw one panel take ``ax=`` and return the Axes (``ax.figure`` is its
Figure); :func:`montage` and :func:`summary` return a Figure. Any of them accepts a
:class:`~bmeviz.pipeline.Result` in place of ``volume, labels``.
"""

from __future__ import annotations

from . import view
from ._draw import figure
from .charts import bland_altman, histogram, volumes
from .projection import mip
from .slices import montage, overlay, save_overlay, summary
from .view import View, _view, display_range, lesion_colors, outline_mask, view_of  # noqa: F401  (_view: former name)

__all__ = [
    "overlay",
    "montage",
    "mip",
    "histogram",
    "volumes",
    "bland_altman",
    "summary",
    "figure",
    "save_overlay",
    "lesion_colors",
    "outline_mask",
    "display_range",
    "view_of",
    "View",
    "view",
]
