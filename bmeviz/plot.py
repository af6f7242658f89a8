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

Functions that draw one panel take ``ax=`` and return the Axes (``ax.figure`` is its
Figure); :func:`montage` and :func:`summary` return a Figure. Any of them accepts a
:class:`~bmeviz.pipeline.Result` in place of ``volume, labels``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParameterError
from .volume import Volume

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
]

#: Names of the array axes ``(slice, row, column)``, for titles.
_AXIS_NAMES = ("slices", "rows", "columns")

#: Lesion colours: bright and distinct on a grey MR image (Okabe-Ito-like first, then tab10).
_PALETTE = np.array(
    [
        (1.00, 0.20, 0.20),  # red
        (0.00, 0.80, 1.00),  # sky blue
        (1.00, 0.80, 0.00),  # yellow
        (0.20, 0.90, 0.30),  # green
        (1.00, 0.40, 0.90),  # magenta
        (1.00, 0.55, 0.00),  # orange
        (0.60, 0.50, 1.00),  # violet
        (0.55, 1.00, 0.85),  # mint
        (0.85, 0.65, 0.45),  # tan
        (0.30, 0.50, 1.00),  # blue
    ]
)


# ---------------------------------------------------------------------------------------
# small public helpers
# ---------------------------------------------------------------------------------------
def lesion_colors(n: int) -> np.ndarray:
    """The RGB colours of lesion ids ``1..n``: row ``i - 1`` is the colour of lesion ``i``.

    The colour of an id does not depend on ``n`` (the palette repeats after 10), so
    outlines, bars and legends agree however many lesions a figure shows.

    Parameters
    ----------
    n : int
        Number of colours (at least one is returned).

    Returns
    -------
    (max(n, 1), 3) ndarray of float
        RGB in 0..1.

    Examples
    --------
    >>> from bmeviz.plot import lesion_colors
    >>> lesion_colors(3).shape
    (3, 3)
    >>> bool((lesion_colors(12)[:3] == lesion_colors(3)).all())
    True
    """
    n = max(int(n), 1)
    reps = int(np.ceil(n / len(_PALETTE)))
    return np.tile(_PALETTE, (reps, 1))[:n].copy()


def display_range(array: np.ndarray, *, low: float = 1.0, high: float = 99.5) -> tuple[float, float]:
    """A robust grey-level window: percentiles of the finite, non-background voxels.

    Parameters
    ----------
    array : ndarray
        Image values (any shape).
    low, high : float
        Percentiles of the window's ends.

    Returns
    -------
    (float, float)
        ``(vmin, vmax)`` with ``vmax > vmin``.

    Examples
    --------
    >>> import numpy as np
    >>> from bmeviz.plot import display_range
    >>> display_range(np.arange(1000.0), low=0, high=100)
    (1.0, 999.0)
    """
    vals = np.asarray(array, dtype=float)
    vals = vals[np.isfinite(vals)]
    if vals.size > 2_000_000:
        vals = vals[:: vals.size // 1_000_000]
    nz = vals[vals > vals.min()] if vals.size else vals
    src = nz if nz.size > 100 else vals
    if src.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(src, [low, high])
    return float(lo), float(hi if hi > lo else lo + 1)


def outline_mask(labels2d: np.ndarray) -> np.ndarray:
    """The inner boundary pixels of each label of a 2D label image: what is drawn.

    A pixel is on the outline when it belongs to a lesion and one of its 4-neighbours
    does not belong to the same lesion (image edges count as outside).

    Parameters
    ----------
    labels2d : (R, C) ndarray of int or bool

    Returns
    -------
    (R, C) ndarray of bool

    Examples
    --------
    >>> import numpy as np
    >>> from bmeviz.plot import outline_mask
    >>> lab = np.zeros((5, 5), int); lab[1:4, 1:4] = 1
    >>> outline_mask(lab).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 0, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    lab = np.asarray(labels2d)
    if lab.dtype == bool:
        lab = lab.astype(np.int32)
    if lab.ndim != 2:
        raise ParameterError(f"outline_mask needs a 2D label image; got shape {lab.shape}")
    padded = np.pad(lab, 1, mode="constant", constant_values=0)
    centre = padded[1:-1, 1:-1]
    edge = np.zeros(lab.shape, bool)
    for sl in ((slice(None, -2), slice(1, -1)), (slice(2, None), slice(1, -1)),
               (slice(1, -1), slice(None, -2)), (slice(1, -1), slice(2, None))):
        edge |= padded[sl] != centre
    return edge & (lab > 0)


# ---------------------------------------------------------------------------------------
# internals: figures, views, drawing
# ---------------------------------------------------------------------------------------
def _figure_class():
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        """A Figure that shows itself in Jupyter without pyplot or ``%matplotlib``."""

        def _repr_png_(self) -> bytes:
            from io import BytesIO

            buf = BytesIO()
            self.savefig(buf, format="png", dpi=100)  # bmeviz lays its figures out: no "tight" pass
            return buf.getvalue()

    return NotebookFigure


_FIGURE = None


def _new_figure(figsize: tuple[float, float], **kw: Any):
    global _FIGURE
    if _FIGURE is None:
        _FIGURE = _figure_class()
    return _FIGURE(figsize=figsize, **kw)


def figure(figsize: tuple[float, float] = (6.0, 4.0), **kwargs: Any):
    """A new, empty matplotlib Figure that displays itself in Jupyter (no pyplot needed).

    For panels of your own next to bmeviz's: ``fig.subplots(...)`` gives Axes that the
    plotting functions take as ``ax=``. Save with ``fig.savefig('figure.pdf')`` (vector)
    or ``.png`` with ``dpi=300`` for a paper.

    Parameters
    ----------
    figsize : (float, float)
        Width and height in inches.
    **kwargs
        Passed to :class:`matplotlib.figure.Figure` (e.g. ``layout='constrained'``, the
        default here).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from bmeviz import plot
    >>> fig = plot.figure((8, 3))
    >>> axes = fig.subplots(1, 2)
    >>> ax = plot.volumes({"lesion_id": [1], "volume_ml": [2.0]}, ax=axes[1])
    >>> fig._repr_png_()[:4]
    b'\\x89PNG'
    """
    kwargs.setdefault("layout", "constrained")
    return _new_figure(tuple(figsize), **kwargs)


@dataclass(frozen=True)
class _View:
    """How a 2D image of two array axes is put on screen."""

    v: int  # array axis shown vertically
    h: int  # array axis shown horizontally
    transpose: bool  # the 2D array (axes in increasing order) is transposed for display
    flip_v: bool  # index grows upwards
    flip_h: bool  # index grows leftwards

    def image(self, arr2d: np.ndarray) -> np.ndarray:
        return arr2d.T if self.transpose else arr2d


def _view(volume: Volume, axes2d: tuple[int, int], orientation: str) -> _View:
    a, b = sorted(axes2d)
    if orientation == "array":
        return _View(a, b, False, False, False)
    if orientation != "radiological":
        raise ParameterError(f"orientation must be 'radiological' or 'array'; got {orientation!r}")
    m = volume.affine[:3, :3]
    dom = {ax: int(np.argmax(np.abs(m[:, ax]))) for ax in (a, b)}  # 0 R/L, 1 A/P, 2 S/I
    # vertical: the axis closest to S/I, else to A/P (axial); each index should grow
    # towards the negative RAS direction: down = inferior/posterior, right = left/posterior
    transpose = dom[b] > dom[a]
    v, h = (b, a) if transpose else (a, b)
    return _View(v, h, transpose, bool(m[dom[v], v] > 0), bool(m[dom[h], h] > 0))


def _axis_label(volume: Volume, axis: int) -> str:
    """The anatomical axis an array axis runs along, e.g. ``'S–I'``, from the affine."""
    code = volume.orientation[axis]
    pair = {"R": "R–L", "L": "R–L", "A": "A–P", "P": "A–P", "S": "S–I", "I": "S–I"}
    return f"{pair.get(code, code)} ({_AXIS_NAMES[axis]})"


def _unpack(volume: Any, labels: Any) -> tuple[Volume, np.ndarray | None]:
    """``(volume, labels)`` from a Volume and labels, or from a Result."""
    if not isinstance(volume, Volume) and hasattr(volume, "volume") and hasattr(volume, "labels"):
        if labels is None:
            labels = volume.labels
        volume = volume.volume
    if not isinstance(volume, Volume):
        raise ParameterError(
            f"expected a bmeviz.Volume (or a Result from bmeviz.segment); got {type(volume).__name__}"
        )
    if labels is None:
        return volume, None
    lab = np.asarray(labels)
    if lab.shape != volume.shape:
        raise ParameterError(f"labels shape {lab.shape} differs from the volume's {volume.shape}")
    if lab.dtype == bool:
        lab = lab.astype(np.int32)
    elif not np.issubdtype(lab.dtype, np.integer):
        if not np.issubdtype(lab.dtype, np.number) or not np.all(np.equal(np.mod(lab, 1), 0)):
            raise ParameterError(f"labels must be integer lesion ids or a bool mask, not {lab.dtype}")
        lab = lab.astype(np.int64)
    if lab.size and lab.min() < 0:
        raise ParameterError("labels must be >= 0 (0 = background)")
    return volume, lab


def _panel_size(volume: Volume, view: _View, shape2d: tuple[int, int]) -> tuple[float, float]:
    """Width and height in mm of a 2D image of ``shape2d`` (array order) on screen."""
    sp = volume.spacing
    n = dict(zip(sorted((view.v, view.h)), shape2d))
    return n[view.h] * sp[view.h], n[view.v] * sp[view.v]


def _figsize(width_mm: float, height_mm: float, width_in: float = 6.0, extra_h: float = 0.35):
    ratio = height_mm / max(width_mm, 1e-9)
    h = width_in * ratio
    if h > 9.0:  # very tall: keep the height, narrow the figure
        width_in, h = 9.0 / ratio, 9.0
    return (width_in, h + extra_h)


def _show_image(ax: Any, img2d: np.ndarray, volume: Volume, view: _View, window, cmap: str = "gray"):
    """Draw a 2D array (axes in increasing array order) at its physical aspect."""
    sp = volume.spacing
    img = view.image(img2d)
    lo, hi = window
    im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest",
                   aspect=sp[view.v] / sp[view.h])
    _set_limits(ax, img.shape, view)
    return im


def _set_limits(ax: Any, shape: tuple[int, int], view: _View, box: tuple[int, int, int, int] | None = None) -> None:
    """Show the whole image, or ``box`` = (row0, row1, col0, col1) of the displayed image."""
    v0, v1, h0, h1 = (0, shape[0], 0, shape[1]) if box is None else box
    ax.set_ylim((v0 - 0.5, v1 - 0.5) if view.flip_v else (v1 - 0.5, v0 - 0.5))
    ax.set_xlim((h1 - 0.5, h0 - 0.5) if view.flip_h else (h0 - 0.5, h1 - 0.5))


def _draw_outlines(ax: Any, lab2d: np.ndarray, view: _View, volume: Volume, *, style: str,
                   linewidth: float, per_id_masks: dict | None = None) -> None:
    """Outlines of the lesions of a 2D label image (array order), one colour per id.

    ``per_id_masks`` (id -> 2D bool, array order) draws each id's own mask, which may
    overlap others (projections).
    """
    if per_id_masks is None:
        ids = np.unique(lab2d)
        ids = ids[ids > 0]
        masks = {int(i): lab2d == i for i in ids}
    else:
        masks = per_id_masks
    if not masks:
        return
    colors = lesion_colors(max(masks))
    shape = view.image(lab2d).shape
    if style == "auto":
        aspect = volume.spacing[view.v] / volume.spacing[view.h]
        style = "voxel" if _pixels_per_voxel(ax, shape, aspect) >= _MIN_PX_PER_VOXEL else "edges"
    if style == "voxel":
        rgba = np.zeros(shape + (4,))
        for i, m in masks.items():
            edge = outline_mask(view.image(m))
            rgba[edge, :3] = colors[i - 1]
            rgba[edge, 3] = 1.0
        ax.imshow(rgba, interpolation="nearest", aspect=volume.spacing[view.v] / volume.spacing[view.h])
    elif style == "edges":
        from matplotlib.collections import LineCollection

        segs, cols = [], []
        for i, m in masks.items():
            s = _edge_segments(view.image(m))
            segs.append(s)
            cols.append(np.repeat(colors[i - 1][None], len(s), axis=0))
        lc = LineCollection(np.concatenate(segs), colors=np.concatenate(cols), linewidths=linewidth,
                            capstyle="projecting", joinstyle="miter")
        ax.add_collection(lc, autolim=False)
    elif style == "contour":
        for i, m in masks.items():
            ax.contour(view.image(m).astype(float), levels=[0.5], colors=[colors[i - 1]],
                       linewidths=linewidth)
    else:
        raise ParameterError(f"outline must be 'auto', 'voxel', 'edges' or 'contour'; got {style!r}")


#: Below this many screen pixels per voxel, painted boundary voxels alias away: 'auto'
#: then draws the voxel edges as lines instead.
_MIN_PX_PER_VOXEL = 2.5


def _pixels_per_voxel(ax: Any, shape: tuple[int, int], aspect: float) -> float:
    """Fewest screen pixels per voxel side of an image of ``shape`` (rows, columns) shown
    with ``aspect`` (row height / column width) on ``ax``, at the figure's dpi (a layout
    engine may still shrink the Axes a little)."""
    fig = ax.figure
    pos = ax.get_position()
    w_px = pos.width * fig.get_figwidth() * fig.dpi
    h_px = pos.height * fig.get_figheight() * fig.dpi
    per_col = min(w_px / shape[1], h_px / (shape[0] * aspect))  # the image fits the box, aspect kept
    return float(min(per_col, per_col * aspect))


def _edge_segments(mask: np.ndarray) -> np.ndarray:
    """Unit segments along the voxel edges between ``mask`` and the rest, in image (x, y)."""
    m = np.pad(np.asarray(mask, bool), 1)
    horiz = m[1:, 1:-1] != m[:-1, 1:-1]  # edge above padded row i, i.e. at y = i - 0.5
    vert = m[1:-1, 1:] != m[1:-1, :-1]   # edge left of column j, i.e. at x = j - 0.5
    i, j = np.nonzero(horiz)
    h = np.stack([np.stack([j - 0.5, i - 0.5], 1), np.stack([j + 0.5, i - 0.5], 1)], 1)
    i, j = np.nonzero(vert)
    v = np.stack([np.stack([j - 0.5, i - 0.5], 1), np.stack([j - 0.5, i + 0.5], 1)], 1)
    return np.concatenate([h, v]).astype(float)


def _ml(value: float) -> str:
    """A volume in mL with 2 decimals, or 3 below 0.01 mL."""
    return f"{value:.3f} mL" if 0 < value < 0.01 else f"{value:.2f} mL"


def _hide_axes(ax: Any) -> None:
    """No frame, ticks or labels on an image panel (empty tick lists: cheap to lay out)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_axis_off()


def _nice_length(mm: float) -> float:
    """The largest of 1, 2, 5 x 10^n not above ``mm``."""
    if mm <= 0:
        return 1.0
    exp = np.floor(np.log10(mm))
    for f in (5.0, 2.0, 1.0):
        if f * 10**exp <= mm:
            return float(f * 10**exp)
    return float(10 ** (exp - 1) * 5)


def _scale_bar(ax: Any, length_mm: float, span_mm: float, *, fontsize: float = 8.0) -> None:
    """A white bar with a dark halo at the bottom left, ``length_mm`` long (shrunk to fit).

    ``span_mm`` is the physical width of the image; the bar is placed in Axes
    coordinates, so flipped axes do not matter.
    """
    from matplotlib import patheffects as pe

    if length_mm > 0.4 * span_mm:
        length_mm = _nice_length(0.3 * span_mm)
    frac = length_mm / span_mm
    x0, y0 = 0.05, 0.05
    halo = [pe.Stroke(linewidth=5, foreground="black"), pe.Normal()]
    ax.plot([x0, x0 + frac], [y0, y0], transform=ax.transAxes, color="white", lw=3,
            solid_capstyle="butt", path_effects=halo, clip_on=False)
    ax.text(x0 + frac / 2, y0 + 0.02, f"{length_mm:g} mm", transform=ax.transAxes, color="white",
            ha="center", va="bottom", fontsize=fontsize,
            path_effects=[pe.withStroke(linewidth=2.5, foreground="black")])


# ---------------------------------------------------------------------------------------
# one slice, a montage of slices
# ---------------------------------------------------------------------------------------
def overlay(
    volume: Any,
    labels: Any = None,
    *,
    slice: int | None = None,
    ax: Any = None,
    window: tuple[float, float] | None = None,
    scale_bar_mm: float | None = 20.0,
    title: str | None = None,
    linewidth: float = 1.0,
    outline: str = "auto",
    orientation: str = "radiological",
):
    """One slice with the lesion outlines coloured by lesion id and a scale bar in mm.

    Parameters
    ----------
    volume : Volume or Result
        The image; a :class:`~bmeviz.pipeline.Result` gives its volume and labels.
    labels : (S, R, C) array of int or bool, optional
        Lesion ids (0 = background) on the volume's grid.
    slice : int, optional
        Slice index (array axis 0). Default: the slice with the most lesion voxels, or
        the middle slice without lesions.
    ax : matplotlib Axes, optional
        Draw here; otherwise a new Figure sized to the slice's physical shape.
    window : (float, float), optional
        Grey-level window; default :func:`display_range` of the whole volume, so that
        every slice of a volume is shown alike.
    scale_bar_mm : float or None
        Length of the scale bar (shortened to fit a small field of view); None: no bar.
    title : str, optional
        Default ``'slice N'``; ``''`` for none.
    linewidth : float
        Line width in points of ``outline='edges'`` and ``'contour'``.
    outline : {'auto', 'voxel', 'edges', 'contour'}
        ``'voxel'`` paints each lesion's boundary voxels (:func:`outline_mask`): exactly
        what was measured, when the figure has a few screen pixels per voxel.
        ``'edges'`` draws lines along the voxel edges between lesion and background (the
        same boundary, but vector lines that stay visible at any size). ``'contour'``
        draws smooth lines (marching squares at the half level). ``'auto'`` (default):
        ``'voxel'`` when the panel has at least 2.5 pixels per voxel at the figure's
        dpi, ``'edges'`` otherwise (small montage panels, 512-pixel matrices).
    orientation : {'radiological', 'array'}
        See the module notes.

    Returns
    -------
    matplotlib.axes.Axes
        Data coordinates are voxel indices (``x`` column, ``y`` row).

    Examples
    --------
    >>> import numpy as np, bmeviz
    >>> from bmeviz import plot
    >>> # an axial stack: 3 mm slices going up, 0.5 mm rows to posterior, 0.7 mm columns to the left
    >>> axial = np.array([[0, 0, -0.7, 0], [0, -0.5, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    >>> vol = bmeviz.Volume(np.random.default_rng(0).normal(200, 20, (6, 40, 50)), axial)
    >>> labels = np.zeros(vol.shape, int); labels[2:4, 10:20, 15:30] = 1
    >>> ax = plot.overlay(vol, labels)
    >>> ax.get_title(), round(ax.get_aspect(), 3)    # row / column spacing
    ('slice 2', 0.714)
    """
    volume, lab = _unpack(volume, labels)
    if slice is None:
        if lab is not None and lab.any():
            slice = int(np.argmax((lab > 0).sum(axis=(1, 2))))
        else:
            slice = volume.shape[0] // 2
    slice = int(slice)
    if not 0 <= slice < volume.shape[0]:
        raise ParameterError(f"slice {slice} is outside 0..{volume.shape[0] - 1}")
    view = _view(volume, (1, 2), orientation)
    if ax is None:
        w, h = _panel_size(volume, view, volume.shape[1:])
        fig = _new_figure(_figsize(w, h))
        ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - 0.35 / fig.get_figheight()))
    window = window or display_range(volume.array)
    _show_image(ax, volume.array[slice], volume, view, window)
    if lab is not None and lab[slice].any():
        _draw_outlines(ax, lab[slice], view, volume, style=outline, linewidth=linewidth)
        _set_limits(ax, view.image(lab[slice]).shape, view)
    if scale_bar_mm:
        w, _ = _panel_size(volume, view, volume.shape[1:])
        _scale_bar(ax, scale_bar_mm, w)
    _hide_axes(ax)
    ax.set_title(f"slice {slice}" if title is None else title, fontsize=9)
    return ax


def montage(
    volume: Any,
    labels: Any = None,
    *,
    slices: Any = None,
    columns: int = 4,
    max_slices: int = 16,
    window: tuple[float, float] | None = None,
    fig: Any = None,
    title: str | None = None,
    outline: str = "auto",
    orientation: str = "radiological",
):
    """Every slice that holds BME (or the given ``slices``), outlined, in a grid.

    Each panel is titled with its slice index and the lesion volume on it; the first
    panel has a 20 mm scale bar. All panels share one grey-level window.

    Parameters
    ----------
    volume : Volume or Result
    labels : (S, R, C) array of int or bool
        Lesion ids on the volume's grid (taken from a Result when one is passed).
    slices : sequence of int, optional
        Which slices; default every slice with a lesion voxel, thinned evenly to
        ``max_slices``.
    columns : int
        Panels per row.
    max_slices : int
        Most panels shown when ``slices`` is not given.
    window : (float, float), optional
        Grey-level window; default :func:`display_range` of the volume.
    fig : matplotlib Figure, optional
        Draw into this (empty) figure.
    title : str, optional
        Figure title.
    outline, orientation
        As in :func:`overlay`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, bmeviz
    >>> from bmeviz import plot
    >>> vol = bmeviz.Volume(np.ones((6, 20, 20)), np.diag([3.0, 0.5, 0.5, 1.0]))
    >>> labels = np.zeros(vol.shape, int); labels[1:4, 5:10, 5:10] = 1
    >>> fig = plot.montage(vol, labels)
    >>> [ax.get_title() for ax in fig.axes]
    ['slice 1 · 0.02 mL', 'slice 2 · 0.02 mL', 'slice 3 · 0.02 mL']
    """
    volume, lab = _unpack(volume, labels)
    if lab is None:
        raise ParameterError("montage needs labels (or a Result)")
    if slices is None:
        slices = np.flatnonzero((lab > 0).any(axis=(1, 2)))
        if slices.size == 0:
            slices = np.array([volume.shape[0] // 2])
        if slices.size > max_slices:
            slices = slices[np.linspace(0, slices.size - 1, max_slices).round().astype(int)]
    slices = [int(s) for s in slices]
    if not slices:
        raise ParameterError("montage needs at least one slice")
    ncol = max(1, min(int(columns), len(slices)))
    nrow = int(np.ceil(len(slices) / ncol))
    view = _view(volume, (1, 2), orientation)
    w_mm, h_mm = _panel_size(volume, view, volume.shape[1:])
    cell_w = 3.0
    cell_h = cell_w * h_mm / w_mm + 0.25
    if fig is None:
        fig = _new_figure((cell_w * ncol, cell_h * nrow + (0.4 if title else 0)), layout="constrained")
    window = window or display_range(volume.array)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, s in zip(axes.flat, slices):
        n_vox = int((lab[s] > 0).sum())
        overlay(volume, lab, slice=s, ax=ax, window=window, scale_bar_mm=20 if s == slices[0] else None,
                title=f"slice {s}" + (f" · {_ml(n_vox * volume.voxel_volume_mm3 / 1000)}" if n_vox else ""),
                outline=outline, orientation=orientation)
    for ax in list(axes.flat)[len(slices):]:
        ax.remove()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------
# projection
# ---------------------------------------------------------------------------------------
def mip(
    volume: Any,
    labels: Any = None,
    *,
    axis: int = 0,
    region: Any = None,
    ax: Any = None,
    window: tuple[float, float] | None = None,
    scale_bar_mm: float | None = 20.0,
    title: str | None = None,
    linewidth: float = 1.5,
    outline: str = "contour",
    orientation: str = "radiological",
    crop: bool = True,
):
    """Maximum intensity projection with the projected outline of each lesion.

    Each lesion is projected on its own (its "shadow" along ``axis``) and outlined in
    its colour, so lesions behind one another stay visible. The panel has the physical
    aspect of the two remaining axes (e.g. 3 mm slices x 0.7 mm columns for ``axis=1``).

    Parameters
    ----------
    volume : Volume or Result
    labels : (S, R, C) array of int or bool, optional
        Lesion ids (taken from a Result when one is passed).
    axis : {0, 1, 2}
        Array axis projected along: 0 slices, 1 rows, 2 columns.
    region : (S, R, C) bool array, optional
        Project only inside this mask (e.g. the bone searched for BME): bright joint
        fluid or fat elsewhere then does not hide the marrow.
    ax, window, scale_bar_mm, title, linewidth, outline, orientation
        As in :func:`overlay`, except that outlines are smooth contours by default (a
        projection is not what was measured, and thick slices make voxel outlines
        blocky); ``window`` defaults to :func:`display_range` of the projection.
    crop : bool
        With a ``region``, show only the region's extent (and a small margin).

    Returns
    -------
    matplotlib.axes.Axes
        Data coordinates are indices along the two axes shown.

    Examples
    --------
    >>> import numpy as np, bmeviz
    >>> from bmeviz import plot
    >>> axial = np.array([[0, 0, -0.7, 0], [0, -0.5, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    >>> vol = bmeviz.Volume(np.ones((10, 40, 50)), axial)
    >>> labels = np.zeros(vol.shape, int); labels[2:5, 10:20, 15:30] = 1
    >>> ax = plot.mip(vol, labels, axis=1)    # a coronal view: slices x columns
    >>> round(ax.get_aspect(), 3)              # 3.0 mm / 0.7 mm
    4.286
    """
    volume, lab = _unpack(volume, labels)
    if axis not in (0, 1, 2):
        raise ParameterError(f"axis must be 0 (slices), 1 (rows) or 2 (columns); got {axis!r}")
    arr = np.asarray(volume.array, dtype=np.float32)
    if region is not None:
        reg = np.asarray(region)
        if reg.shape != volume.shape:
            raise ParameterError(f"region shape {reg.shape} differs from the volume's {volume.shape}")
        reg = reg.astype(bool)
        if not reg.any():
            raise ParameterError("region is empty")
        floor = float(np.nanmin(arr[reg]))
        arr = np.where(reg, arr, floor)
    proj = np.nanmax(arr, axis=axis)
    shown = tuple(a for a in range(3) if a != axis)
    view = _view(volume, shown, orientation)
    shape2d = proj.shape
    shown_shape = view.image(proj).shape
    crop_box = None
    if region is not None and crop:
        shadow = view.image(reg.any(axis=axis))
        rows, cols = np.flatnonzero(shadow.any(axis=1)), np.flatnonzero(shadow.any(axis=0))
        mv, mh = max(1, int(0.04 * shown_shape[0])), max(1, int(0.04 * shown_shape[1]))
        crop_box = (max(0, int(rows[0]) - mv), min(shown_shape[0], int(rows[-1]) + 1 + mv),
               max(0, int(cols[0]) - mh), min(shown_shape[1], int(cols[-1]) + 1 + mh))
    sp = volume.spacing
    if crop_box is None:
        w_mm, h_mm = _panel_size(volume, view, shape2d)
    else:
        w_mm, h_mm = (crop_box[3] - crop_box[2]) * sp[view.h], (crop_box[1] - crop_box[0]) * sp[view.v]
    if ax is None:
        fig = _new_figure(_figsize(w_mm, h_mm))
        ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - 0.35 / fig.get_figheight()))
    _show_image(ax, proj, volume, view, window or display_range(proj, low=1.0, high=99.8))
    _set_limits(ax, shown_shape, view, crop_box)
    if lab is not None and lab.any():
        from scipy import ndimage as ndi

        masks = {}
        for i, box in enumerate(ndi.find_objects(lab), start=1):
            if box is None:
                continue
            shadow = np.zeros(shape2d, bool)
            sub = (lab[box] == i).any(axis=axis)
            box2 = tuple(b for a, b in enumerate(box) if a != axis)
            shadow[box2] = sub
            masks[i] = shadow
        _draw_outlines(ax, np.zeros(shape2d, np.int32), view, volume, style=outline, linewidth=linewidth,
                       per_id_masks=masks)
        _set_limits(ax, shown_shape, view, crop_box)
    if scale_bar_mm:
        _scale_bar(ax, scale_bar_mm, w_mm)
    _hide_axes(ax)
    if title is None:
        title = f"MIP along {_axis_label(volume, axis)}" + (", inside region" if region is not None else "")
    ax.set_title(title, fontsize=9)
    return ax


# ---------------------------------------------------------------------------------------
# numbers: intensities and volumes
# ---------------------------------------------------------------------------------------
def histogram(
    volume: Any,
    reference: Any = None,
    result: Any = None,
    *,
    ax: Any = None,
    bins: int = 80,
    max_lesions: int = 8,
    title: str | None = None,
):
    """Intensities of normal marrow (the reference) and of each lesion, with the threshold.

    Both distributions are normalised (each integrates to 1), so a small reference and
    large lesions compare; lesions are stacked in their outline colours. The threshold
    of the result is a dashed line, the strong (hysteresis) threshold a dotted one.

    Parameters
    ----------
    volume : Volume
        The image that was segmented (``result.volume`` when None).
    reference : (S, R, C) bool array, optional
        The normal-marrow reference mask (``result.reference`` when None).
    result : Result
        From :func:`bmeviz.segment`: its labels and threshold are drawn.
    ax : matplotlib Axes, optional
    bins : int
        Number of bins over the range shown.
    max_lesions : int
        Lesions beyond this many are pooled as "other lesions" (grey).
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import bmeviz
    >>> from bmeviz import plot
    >>> from bmeviz.data import make_phantom
    >>> ph = make_phantom(shape=(12, 64, 64), spacing=(3.0, 1.6, 1.6), seed=2)
    >>> res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    >>> ax = plot.histogram(ph.volume, ph.reference, res)
    >>> ax.get_xlabel()
    'intensity'
    """
    if result is None:
        raise ParameterError("histogram needs the result of bmeviz.segment (result=)")
    volume = result.volume if volume is None else volume
    volume, _ = _unpack(volume, None)
    ref = result.reference if reference is None else reference
    ref = np.asarray(ref)
    if ref.shape != volume.shape:
        raise ParameterError(f"reference shape {ref.shape} differs from the volume's {volume.shape}")
    ref = ref.astype(bool)
    labels = np.asarray(result.labels)
    if labels.shape != volume.shape:
        raise ParameterError(f"result is on another grid {labels.shape} than the volume {volume.shape}")
    img = volume.array
    ref_vals = np.asarray(img[ref], float)
    ref_vals = ref_vals[np.isfinite(ref_vals)]
    nz = np.flatnonzero(labels)
    ids = labels.ravel()[nz]
    les_vals = np.asarray(img.ravel()[nz], float)
    ok = np.isfinite(les_vals)
    ids, les_vals = ids[ok], les_vals[ok]
    thr = result.threshold
    pool = np.concatenate([ref_vals, les_vals, [thr.value]])
    lo, hi = np.percentile(pool, [0.05, 99.95]) if pool.size > 1 else (pool.min() - 1, pool.max() + 1)
    lo, hi = min(lo, thr.value), max(hi, thr.value, lo + 1e-6)
    pad = 0.03 * (hi - lo)
    edges = np.linspace(lo - pad, hi + pad, int(bins) + 1)
    width = edges[1] - edges[0]
    if ax is None:
        fig = _new_figure((6.0, 3.6), layout="constrained")
        ax = fig.add_subplot()
    if ref_vals.size:
        ax.hist(np.clip(ref_vals, edges[0], edges[-1]), bins=edges,
                weights=np.full(ref_vals.size, 1.0 / (ref_vals.size * width)),
                color="0.55", alpha=0.6, histtype="stepfilled",
                label=f"normal marrow (reference, {ref_vals.size} voxels)")
    if les_vals.size:
        uniq = np.unique(ids)
        colors = lesion_colors(int(uniq.max()))
        shown = uniq[:max_lesions]
        data, cols, names = [], [], []
        for i in shown:
            data.append(np.clip(les_vals[ids == i], edges[0], edges[-1]))
            cols.append(colors[i - 1])
            names.append(f"lesion {i}")
        rest = ~np.isin(ids, shown)
        if rest.any():
            data.append(np.clip(les_vals[rest], edges[0], edges[-1]))
            cols.append((0.3, 0.3, 0.3))
            names.append(f"other lesions ({len(uniq) - len(shown)})")
        w = 1.0 / (les_vals.size * width)
        ax.hist(data, bins=edges, weights=[np.full(d.size, w) for d in data], color=cols,
                histtype="stepfilled", stacked=True, alpha=0.85, label=names)
    ax.axvline(thr.value, color="black", ls="--", lw=1.2,
               label=f"threshold {thr.value:.4g} ({thr.rule}" + (f", k={thr.k:.3g}" if thr.k is not None else "") + ")")
    if thr.high is not None:
        ax.axvline(thr.high, color="black", ls=":", lw=1.2, label=f"strong threshold {thr.high:.4g}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("intensity")
    ax.set_ylabel("density (each group sums to 1)")
    handles, names = ax.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda j: (not names[j].startswith("normal"),
                                                     "threshold" in names[j], _lesion_key(names[j])))
    ax.legend([handles[j] for j in order], [names[j] for j in order], fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("reference vs lesion intensities" if title is None else title, fontsize=9)
    return ax


def _lesion_key(name: str) -> float:
    parts = name.split()
    return float(parts[1]) if len(parts) == 2 and parts[0] == "lesion" and parts[1].isdigit() else np.inf


def volumes(
    table: Any,
    *,
    ax: Any = None,
    title: str | None = None,
    annotate: bool = True,
):
    """Per-lesion volumes in mL as bars coloured like the lesions' outlines.

    Parameters
    ----------
    table : pandas.DataFrame, dict or Result
        A lesion table (``Result.table``; columns ``lesion_id`` and ``volume_ml``).
    ax : matplotlib Axes, optional
    title : str, optional
        Default: the total volume and number of lesions.
    annotate : bool
        Write each bar's volume above it.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import pandas as pd
    >>> from bmeviz import plot
    >>> ax = plot.volumes(pd.DataFrame({"lesion_id": [1, 2, 3], "volume_ml": [9.9, 3.7, 0.5]}))
    >>> ax.get_title()
    'BME: 3 lesions, 14.10 mL'
    >>> [round(float(b.get_height()), 1) for b in ax.patches]
    [9.9, 3.7, 0.5]
    """
    if hasattr(table, "table") and not hasattr(table, "columns"):
        table = table.table
    if isinstance(table, dict) and {"lesion_id", "volume_ml"} <= set(table):
        import pandas as pd

        table = pd.DataFrame({k: table[k] for k in ("lesion_id", "volume_ml")})
    if not hasattr(table, "columns") or not {"lesion_id", "volume_ml"} <= set(table.columns):
        raise ParameterError("volumes needs a lesion table with columns 'lesion_id' and 'volume_ml' (Result.table)")
    ids = np.asarray(table["lesion_id"], dtype=int)
    ml = np.asarray(table["volume_ml"], dtype=float)
    if ax is None:
        fig = _new_figure((max(3.5, 0.45 * len(ids) + 2.0), 3.2), layout="constrained")
        ax = fig.add_subplot()
    total = float(np.nansum(ml))
    if ids.size:
        colors = lesion_colors(int(ids.max()))[ids - 1]
        x = np.arange(ids.size)
        bars = ax.bar(x, ml, color=colors, edgecolor="black", linewidth=0.5)
        ax.set_xticks(x, [str(i) for i in ids], fontsize=8 if ids.size < 25 else 6)
        if annotate:
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in ml], fontsize=7, padding=2)
        ax.set_xlim(-0.6, ids.size - 0.4)
        ax.set_ylim(0, ml.max() * 1.15 if ml.max() > 0 else 1)
    else:
        ax.text(0.5, 0.5, "no lesions", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks([])
    ax.set_xlabel("lesion")
    ax.set_ylabel("volume (mL)")
    ax.spines[["top", "right"]].set_visible(False)
    n = int(ids.size)
    ax.set_title(f"BME: {n} lesion{'s' if n != 1 else ''}, {total:.2f} mL" if title is None else title, fontsize=9)
    return ax


def bland_altman(
    a: Any,
    b: Any,
    *,
    ax: Any = None,
    groups: Any = None,
    labels: Any = None,
    log_x: bool = False,
    units: str = "mL",
    names: tuple[str, str] = ("bmeviz", "reader"),
    title: str | None = None,
):
    """Bland–Altman plot: the difference ``a - b`` of paired measurements against their mean.

    The bias (mean difference) is a solid line and the 95 % limits of agreement
    (bias ± 1.96 SD of the differences, sample SD) are dashed, each labelled with its
    value. Non-finite pairs are left out.

    Parameters
    ----------
    a, b : array_like
        Paired measurements of the same things (e.g. lesion volume by bmeviz and by a
        reader, one pair per scan).
    ax : matplotlib Axes, optional
    groups : sequence, optional
        A group per pair (e.g. the reader): each group has its own colour and legend entry.
    labels : sequence of str, optional
        A short text beside each point (e.g. the scan id).
    log_x : bool
        Logarithmic mean axis, for volumes spanning decades.
    units : str
        Unit of the measurements, for the axis labels.
    names : (str, str)
        What ``a`` and ``b`` are, for the axis label.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from bmeviz import plot
    >>> ax = plot.bland_altman([1.0, 2.2, 2.9, 4.3], [1.1, 2.0, 3.0, 4.0])
    >>> [t.get_text() for t in ax.texts]
    ['bias +0.075', '+1.96 SD +0.48', '-1.96 SD -0.33']
    """
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ParameterError(f"a and b must be paired: {x.size} and {y.size} values")
    grp = None if groups is None else np.asarray(list(groups), dtype=object)
    if grp is not None and grp.size != x.size:
        raise ParameterError(f"groups has {grp.size} entries for {x.size} pairs")
    txt = None if labels is None else [str(t) for t in labels]
    if txt is not None and len(txt) != x.size:
        raise ParameterError(f"labels has {len(txt)} entries for {x.size} pairs")
    ok = np.isfinite(x) & np.isfinite(y)
    mean, diff = (x + y) / 2.0, x - y
    if ax is None:
        fig = _new_figure((6.0, 4.0), layout="constrained")
        ax = fig.add_subplot()
    if grp is None:
        ax.scatter(mean[ok], diff[ok], s=28, color="tab:blue", edgecolor="black", linewidth=0.4, zorder=3)
    else:
        palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
                   "tab:olive", "tab:cyan"]
        markers = "osD^v<>p"
        for j, g in enumerate(dict.fromkeys(grp[ok].tolist())):
            sel = ok & (grp == g)
            ax.scatter(mean[sel], diff[sel], s=28, color=palette[j % len(palette)], marker=markers[j % len(markers)],
                       edgecolor="black", linewidth=0.4, zorder=3, label=str(g))
        ax.legend(fontsize=7, frameon=False, loc="best")
    if txt is not None:
        for xm, d, t, good in zip(mean, diff, txt, ok):
            if good:
                ax.annotate(t, (xm, d), xytext=(4, 3), textcoords="offset points", fontsize=6, color="0.3")
    if log_x:
        ax.set_xscale("log")
    ax.axhline(0.0, color="0.7", lw=0.8, zorder=1)
    if ok.sum() >= 2:
        bias = float(diff[ok].mean())
        sd = float(diff[ok].std(ddof=1))
        for val, ls, name in ((bias, "-", "bias"), (bias + 1.96 * sd, "--", "+1.96 SD"),
                              (bias - 1.96 * sd, "--", "-1.96 SD")):
            ax.axhline(val, color="black", ls=ls, lw=1.0, zorder=2)
            ax.text(1.0, val, f"{name} {val:+.2g}", transform=ax.get_yaxis_transform(), ha="right",
                    va="bottom", fontsize=7)
    elif ok.sum() == 1:
        ax.axhline(float(diff[ok][0]), color="black", lw=1.0)
    ax.set_xlabel(f"mean of {names[0]} and {names[1]} ({units})" + (", log scale" if log_x else ""))
    ax.set_ylabel(f"{names[0]} − {names[1]} ({units})")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Bland–Altman" if title is None else title, fontsize=9)
    return ax


# ---------------------------------------------------------------------------------------
# all at once
# ---------------------------------------------------------------------------------------
def summary(result: Any, *, slice: int | None = None, mip_axis: int | None = None, title: str | None = None):
    """One figure of a result: outlined slice, MIP inside the region, histogram, volumes.

    Parameters
    ----------
    result : Result
        From :func:`bmeviz.segment`.
    slice : int, optional
        Slice of the overlay panel (default: the one with the most BME).
    mip_axis : int, optional
        Axis of the MIP panel; default the finest in-plane axis across the slices
        (the row axis), which shows the lesions' extent through the slices.
    title : str, optional
        Figure title; default the totals and the threshold.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import bmeviz
    >>> from bmeviz import plot
    >>> from bmeviz.data import make_phantom
    >>> ph = make_phantom(shape=(12, 64, 64), spacing=(3.0, 1.6, 1.6), seed=2)
    >>> res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    >>> len(plot.summary(res).axes)
    4
    """
    volume = result.volume
    fig = _new_figure((10.0, 8.0), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(1.4, 1.0))
    overlay(result, slice=slice, ax=fig.add_subplot(grid[0, 0]))
    axis = 1 if mip_axis is None else mip_axis
    mip(result, axis=axis, region=result.region, ax=fig.add_subplot(grid[0, 1]))
    histogram(volume, result.reference, result, ax=fig.add_subplot(grid[1, 0]))
    volumes(result.table, ax=fig.add_subplot(grid[1, 1]))
    if title is None:
        t = result.threshold
        desc = volume.metadata.get("description")
        n = result.n_lesions
        title = ((f"{desc} · " if desc else "") + f"BME: {n} lesion{'' if n == 1 else 's'}, {result.total_volume_ml:.2f} mL · threshold "
                 f"{t.value:.4g} ({t.rule}" + (f", k={t.k:.3g}" if t.k is not None else "") + ")")
    fig.suptitle(title, fontsize=10)
    return fig


def save_overlay(result: Any, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Write the ``overlay.png`` of a :class:`~bmeviz.pipeline.Result`: slices with BME, outlined.

    A :func:`montage` of the slices with lesions, titled with the totals and the
    threshold, written atomically (temporary file, then rename).

    Parameters
    ----------
    result : Result
    path : path-like
        Output PNG.
    dpi : int

    Returns
    -------
    pathlib.Path
    """
    from .io._atomic import atomic_path

    totals = result.totals
    title = (f"BME: {totals['n_lesions']} lesion(s), {totals['total_volume_ml']:.2f} mL · threshold "
             f"{result.threshold.value:.4g} ({result.threshold.rule}"
             + (f", k={result.threshold.k:g}" if result.threshold.k is not None else "") + ")")
    fig = montage(result.volume, result.labels, title=title)
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return out
