"""Figure internals shared by the plotting modules: Figures without pyplot, panels, outlines, scale bars."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError
from ..volume import Volume
from .view import View, edge_segments, lesion_colors, outline_mask

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


def _figsize(width_mm: float, height_mm: float, width_in: float = 6.0, extra_h: float = 0.35):
    ratio = height_mm / max(width_mm, 1e-9)
    h = width_in * ratio
    if h > 9.0:  # very tall: keep the height, narrow the figure
        width_in, h = 9.0 / ratio, 9.0
    return (width_in, h + extra_h)


def _show_image(ax: Any, img2d: np.ndarray, volume: Volume, view: View, window, cmap: str = "gray"):
    """Draw a 2D array (axes in increasing array order) at its physical aspect."""
    sp = volume.spacing
    img = view.image(img2d)
    lo, hi = window
    im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest",
                   aspect=sp[view.v] / sp[view.h])
    _set_limits(ax, img.shape, view)
    return im


def _set_limits(ax: Any, shape: tuple[int, int], view: View, box: tuple[int, int, int, int] | None = None) -> None:
    """Show the whole image, or ``box`` = (row0, row1, col0, col1) of the displayed image."""
    v0, v1, h0, h1 = (0, shape[0], 0, shape[1]) if box is None else box
    ax.set_ylim((v0 - 0.5, v1 - 0.5) if view.flip_v else (v1 - 0.5, v0 - 0.5))
    ax.set_xlim((h1 - 0.5, h0 - 0.5) if view.flip_h else (h0 - 0.5, h1 - 0.5))


def _draw_outlines(ax: Any, lab2d: np.ndarray, view: View, volume: Volume, *, style: str,
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
            s = edge_segments(view.image(m))
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
