"""The radiological view and the colours shared by every figure and by napari.

:func:`view_of` says how a plane of a Volume goes on screen (flips/transposes from the
affine); :func:`lesion_colors` gives one colour per lesion id; :func:`display_range`
the grey window; :func:`outline_mask` the boundary pixels of a 2D label image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from ..volume import Volume

__all__ = ["View", "view_of", "axis_label", "panel_size", "lesion_colors", "display_range", "outline_mask",
           "edge_segments"]

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


@dataclass(frozen=True)
class View:
    """How a 2D image of two array axes is put on screen (:func:`view_of`).

    ``v``/``h``: the array axes shown vertically/horizontally; ``transpose``: the 2D
    array (axes in increasing order) is transposed for display; ``flip_v``: the index
    grows upwards; ``flip_h``: it grows leftwards. :meth:`image` gives the array as shown.
    """

    v: int  # array axis shown vertically
    h: int  # array axis shown horizontally
    transpose: bool  # the 2D array (axes in increasing order) is transposed for display
    flip_v: bool  # index grows upwards
    flip_h: bool  # index grows leftwards

    def image(self, arr2d: np.ndarray) -> np.ndarray:
        return arr2d.T if self.transpose else arr2d


def view_of(volume: Volume, axes2d: tuple[int, int] = (1, 2), orientation: str = "radiological") -> View:
    """How to show the plane of array axes ``axes2d`` of ``volume``: radiological
    (superior or anterior up; the patient's left on the right of the screen, posterior on
    the right in sagittal) from the affine, or ``orientation='array'`` as stored.

    The image is only flipped (or, rarely, transposed), never resampled; matplotlib
    figures and napari's camera use the same :class:`View`.

    Examples
    --------
    >>> import numpy as np
    >>> from bmeviz import Volume
    >>> a = np.eye(4); a[:3, 0] = (1, 0, 0); a[:3, 1] = (0, 0, -1); a[:3, 2] = (0, -1, 0)
    >>> v = view_of(Volume(np.zeros((2, 3, 3)), a))  # sagittal: rows inferior, columns posterior
    >>> v.transpose, v.flip_v, v.flip_h
    (False, False, False)
    """
    a, b = sorted(axes2d)
    if orientation == "array":
        return View(a, b, False, False, False)
    if orientation != "radiological":
        raise ParameterError(f"orientation must be 'radiological' or 'array'; got {orientation!r}")
    m = volume.affine[:3, :3]
    dom = {ax: int(np.argmax(np.abs(m[:, ax]))) for ax in (a, b)}  # 0 R/L, 1 A/P, 2 S/I
    # vertical: the axis closest to S/I, else to A/P (axial); each index should grow
    # towards the negative RAS direction: down = inferior/posterior, right = left/posterior
    transpose = dom[b] > dom[a]
    v, h = (b, a) if transpose else (a, b)
    return View(v, h, transpose, bool(m[dom[v], v] > 0), bool(m[dom[h], h] > 0))


def axis_label(volume: Volume, axis: int) -> str:
    """The anatomical axis an array axis runs along, e.g. ``'S–I'``, from the affine."""
    code = volume.orientation[axis]
    pair = {"R": "R–L", "L": "R–L", "A": "A–P", "P": "A–P", "S": "S–I", "I": "S–I"}
    return f"{pair.get(code, code)} ({_AXIS_NAMES[axis]})"


def panel_size(volume: Volume, view: View, shape2d: tuple[int, int]) -> tuple[float, float]:
    """Width and height in mm of a 2D image of ``shape2d`` (array order) on screen."""
    sp = volume.spacing
    n = dict(zip(sorted((view.v, view.h)), shape2d))
    return n[view.h] * sp[view.h], n[view.v] * sp[view.v]


def edge_segments(mask: np.ndarray) -> np.ndarray:
    """Unit segments along the voxel edges between ``mask`` and the rest, in image (x, y)."""
    m = np.pad(np.asarray(mask, bool), 1)
    horiz = m[1:, 1:-1] != m[:-1, 1:-1]  # edge above padded row i, i.e. at y = i - 0.5
    vert = m[1:-1, 1:] != m[1:-1, :-1]   # edge left of column j, i.e. at x = j - 0.5
    i, j = np.nonzero(horiz)
    h = np.stack([np.stack([j - 0.5, i - 0.5], 1), np.stack([j + 0.5, i - 0.5], 1)], 1)
    i, j = np.nonzero(vert)
    v = np.stack([np.stack([j - 0.5, i - 0.5], 1), np.stack([j - 0.5, i + 0.5], 1)], 1)
    return np.concatenate([h, v]).astype(float)


_View = View  # the former private names (bmeviz.plot._view)
_view = view_of
_axis_label = axis_label
_panel_size = panel_size
_edge_segments = edge_segments
