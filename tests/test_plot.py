"""bmeviz.plot: physical aspect, outlines on the lesion voxels, orientation, colours, no pyplot."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bmeviz
from bmeviz import plot
from bmeviz.plot import lesion_colors, outline_mask
from helpers import axial_affine, oblique_affine


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def render(fig, dpi=None):
    """RGBA pixels of a Figure, drawn by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if dpi is not None:
        fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def image_extent_px(ax):
    """Width and height in display pixels of the (first) image drawn on ``ax``."""
    bbox = ax.images[0].get_window_extent()
    return abs(bbox.width), abs(bbox.height)


def coloured_pixels(rgba, color, tol=0.08):
    """Buffer (row, col) of the pixels of ``color`` (RGB in 0..1)."""
    rgb = rgba[..., :3].astype(float) / 255.0
    hit = np.all(np.abs(rgb - np.asarray(color)[None, None, :]) < tol, axis=-1)
    return np.argwhere(hit)


def pixels_to_voxels(ax, rgba, pix):
    """Map buffer pixel centres to the (y, x) voxel indices of ``ax``'s data coordinates."""
    height = rgba.shape[0]
    disp = np.column_stack([pix[:, 1] + 0.5, height - (pix[:, 0] + 0.5)])
    data = ax.transData.inverted().transform(disp)
    return np.rint(data[:, ::-1]).astype(int)  # (y, x)


def outline_agreement(ax, rgba, lab2d_shown, lesion_id, color):
    """(precision, recall) of the coloured pixels against the outline voxels of one lesion."""
    truth = outline_mask(lab2d_shown == lesion_id)
    pix = coloured_pixels(rgba, color)
    assert pix.size, "no outline pixel of that colour was drawn"
    vox = pixels_to_voxels(ax, rgba, pix)
    inside = (vox[:, 0] >= 0) & (vox[:, 0] < truth.shape[0]) & (vox[:, 1] >= 0) & (vox[:, 1] < truth.shape[1])
    on = np.zeros(len(vox), bool)
    on[inside] = truth[vox[inside, 0], vox[inside, 1]]
    precision = on.mean()
    hit = np.zeros(truth.shape, bool)
    hit[vox[inside, 0], vox[inside, 1]] = True
    recall = (hit & truth).sum() / truth.sum()
    return precision, recall


def noisy_volume(shape=(10, 60, 80), affine=None, seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.normal(200, 30, size=shape).astype(np.float32)
    return bmeviz.Volume(arr, np.diag([3.0, 0.5, 0.7, 1.0]) if affine is None else affine)


def two_lesions(shape):
    lab = np.zeros(shape, np.int32)
    lab[3:7, 10:30, 12:40] = 1
    lab[4:6, 38:52, 45:70] = 2
    lab[5, 40:44, 50:55] = 0  # a hole: an inner outline too
    return lab


# ---------------------------------------------------------------------------------------
# aspect ratio follows the spacing
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", ["array", "radiological"])
def test_overlay_aspect_follows_spacing(orientation):
    # axial affine: nothing to flip or transpose, so 'array' and 'radiological' agree
    vol = noisy_volume(affine=axial_affine(spacing=(3.0, 0.5, 0.7)))
    ax = plot.overlay(vol, two_lesions(vol.shape), slice=5, orientation=orientation)
    render(ax.figure, dpi=80)
    w, h = image_extent_px(ax)
    assert w / h == pytest.approx((80 * 0.7) / (60 * 0.5), rel=0.02)
    assert ax.get_aspect() == pytest.approx(0.5 / 0.7)


@pytest.mark.parametrize("axis, expected", [
    (0, (80 * 0.7) / (60 * 0.5)),  # rows x columns
    (1, (80 * 0.7) / (10 * 3.0)),  # slices x columns
    (2, (60 * 0.5) / (10 * 3.0)),  # slices x rows
])
def test_mip_aspect_follows_projected_axes(axis, expected):
    vol = noisy_volume(affine=axial_affine(spacing=(3.0, 0.5, 0.7)))
    ax = plot.mip(vol, two_lesions(vol.shape), axis=axis)
    render(ax.figure, dpi=80)
    w, h = image_extent_px(ax)
    assert w / h == pytest.approx(expected, rel=0.03)


def test_new_figure_has_the_physical_shape():
    vol = noisy_volume(affine=axial_affine(spacing=(3.0, 0.5, 0.7)))
    fig = plot.overlay(vol, slice=2, title="").figure
    w, h = fig.get_size_inches()
    # the axes fill the figure apart from the title band: the figure is as wide as the image
    assert w / (h - 0.35) == pytest.approx((80 * 0.7) / (60 * 0.5), rel=0.05)


def test_montage_panels_keep_the_aspect():
    vol = noisy_volume(affine=axial_affine(spacing=(3.0, 0.5, 0.7)))
    fig = plot.montage(vol, two_lesions(vol.shape))
    render(fig, dpi=60)
    for ax in fig.axes:
        w, h = image_extent_px(ax)
        assert w / h == pytest.approx((80 * 0.7) / (60 * 0.5), rel=0.03)


# ---------------------------------------------------------------------------------------
# outlines land on the lesion voxels
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("affine", [
    axial_affine(spacing=(3.0, 0.5, 0.7)),
    oblique_affine(spacing=(3.3, 0.6, 0.6)),  # rows run inferior: shown as stored
    # rows towards superior (as SIJ NIfTI files are stored): shown flipped upside down
    np.array([[0, 0, -0.7, 0], [-3.0, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0, 1.0]]),
], ids=["axial", "oblique", "rows-superior"])
def test_overlay_outlines_land_on_the_boundary_voxels(affine):
    vol = noisy_volume(affine=affine)
    lab = two_lesions(vol.shape)
    ax = plot.overlay(vol, lab, slice=5, scale_bar_mm=None, title="")
    rgba = render(ax.figure, dpi=150)  # several pixels per voxel
    colors = lesion_colors(2)
    for i in (1, 2):
        precision, recall = outline_agreement(ax, rgba, lab[5], i, colors[i - 1])
        assert precision >= 0.95, f"lesion {i}: {precision:.1%} of its outline pixels are on its boundary voxels"
        assert recall >= 0.95, f"lesion {i}: {recall:.1%} of its boundary voxels are drawn"


def test_overlay_flips_rows_that_point_superior():
    up = np.array([[0, 0, -0.7, 0], [-3.0, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0, 1.0]])
    vol = noisy_volume(affine=up)
    ax = plot.overlay(vol, slice=5)
    lo, hi = ax.get_ylim()
    assert lo < hi  # row index grows upwards: superior at the top
    ax = plot.overlay(vol, slice=5, orientation="array")
    lo, hi = ax.get_ylim()
    assert lo > hi  # as stored: row 0 at the top


def test_radiological_view_of_the_sample_geometry():
    from bmeviz.plot import _view

    from bmeviz.data import load_sample

    vol, _ = load_sample()
    v = _view(vol, (1, 2), "radiological")  # sagittal: rows inferior, columns posterior
    assert (v.v, v.h, v.transpose, v.flip_v, v.flip_h) == (1, 2, False, False, False)
    v = _view(vol, (0, 2), "radiological")  # MIP along rows: an axial view, anterior up
    assert (v.v, v.h, v.transpose) == (2, 0, True)
    assert not v.flip_v and not v.flip_h  # columns run posterior (down), slices to the left (right)


def test_mip_outlines_are_each_lesions_projection():
    vol = noisy_volume(affine=axial_affine(spacing=(3.0, 0.5, 0.7)))
    lab = two_lesions(vol.shape)
    ax = plot.mip(vol, lab, axis=0, outline="voxel", scale_bar_mm=None, title="")
    rgba = render(ax.figure, dpi=150)
    colors = lesion_colors(2)
    for i in (1, 2):
        shadow = (lab == i).any(axis=0).astype(int)
        precision, recall = outline_agreement(ax, rgba, shadow, 1, colors[i - 1])
        assert precision >= 0.95 and recall >= 0.95


def test_mip_contours_by_default_and_region_hides_the_outside():
    vol = noisy_volume(affine=axial_affine())
    arr = vol.array.copy()
    arr[:, :5, :] = 5000  # bright "fluid" outside the region
    vol = vol.with_array(arr)
    lab = two_lesions(vol.shape)
    region = np.zeros(vol.shape, bool)
    region[:, 8:, :] = True
    ax = plot.mip(vol, lab, region=region)
    assert len(ax.collections) >= 2  # one contour set per lesion
    assert ax.images[0].get_array().max() < 1000
    assert "inside region" in ax.get_title()


# ---------------------------------------------------------------------------------------
# scale bar, colours, numbers
# ---------------------------------------------------------------------------------------
def test_scale_bar_has_its_length_in_mm():
    vol = noisy_volume(affine=axial_affine(spacing=(3.0, 0.5, 0.7)))
    ax = plot.overlay(vol, slice=1, scale_bar_mm=20)
    render(ax.figure, dpi=100)
    (bar,) = [ln for ln in ax.lines if ln.get_transform() == ax.transAxes]
    x = bar.get_xdata()
    bar_px = (x[1] - x[0]) * ax.get_window_extent().width
    w_px, _ = image_extent_px(ax)
    assert bar_px == pytest.approx(w_px * 20 / (80 * 0.7), rel=0.02)
    assert "20 mm" in [t.get_text() for t in ax.texts]


def test_scale_bar_shrinks_to_fit_a_small_field_of_view():
    vol = bmeviz.Volume(np.ones((3, 20, 20)), axial_affine(spacing=(3.0, 0.5, 0.5)))  # 10 mm wide
    ax = plot.overlay(vol, slice=1, scale_bar_mm=20)
    assert [t.get_text() for t in ax.texts] == ["2 mm"]


def test_colours_are_the_same_in_outlines_bars_and_histogram():
    vol = noisy_volume(affine=axial_affine())
    lab = np.zeros(vol.shape, np.int32)
    lab[3:6, 10:20, 10:20] = 2
    lab[3:6, 30:40, 40:50] = 5  # ids need not be consecutive
    import pandas as pd

    table = pd.DataFrame({"lesion_id": [2, 5], "volume_ml": [0.3, 0.3]})
    ax = plot.volumes(table)
    bar_colours = [tuple(np.round(p.get_facecolor()[:3], 3)) for p in ax.patches]
    expected = [tuple(np.round(lesion_colors(5)[i - 1], 3)) for i in (2, 5)]
    assert bar_colours == expected
    ax = plot.overlay(vol, lab, slice=4, scale_bar_mm=None)
    rgba = render(ax.figure, dpi=120)
    for i in (2, 5):
        assert len(coloured_pixels(rgba, lesion_colors(5)[i - 1])) > 20


def test_lesion_colours_do_not_depend_on_n():
    assert np.array_equal(lesion_colors(25)[:4], lesion_colors(4))
    assert np.array_equal(lesion_colors(25)[10], lesion_colors(25)[0])  # the palette repeats


def test_volumes_bars_and_title():
    import pandas as pd

    ax = plot.volumes(pd.DataFrame({"lesion_id": [1, 2], "volume_ml": [2.5, 0.25]}))
    assert [float(p.get_height()) for p in ax.patches] == [2.5, 0.25]
    assert ax.get_title() == "BME: 2 lesions, 2.75 mL"
    empty = plot.volumes(pd.DataFrame({"lesion_id": [], "volume_ml": []}))
    assert empty.get_title() == "BME: 0 lesions, 0.00 mL"


@pytest.fixture(scope="module")
def phantom_result():
    from bmeviz.data import make_phantom

    ph = make_phantom(shape=(14, 80, 80), spacing=(3.0, 1.4, 1.4), seed=4)
    res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds, edge="half-max")
    assert res.n_lesions >= 2
    return ph, res


def test_histogram_draws_the_threshold_and_both_groups(phantom_result):
    ph, res = phantom_result
    ax = plot.histogram(ph.volume, ph.reference, res)
    xs = [ln.get_xdata()[0] for ln in ax.lines]
    assert res.threshold.value in xs
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names[0].startswith("normal marrow")
    assert names[1:1 + res.n_lesions] == [f"lesion {i}" for i in range(1, res.n_lesions + 1)]
    assert names[-1].startswith("threshold")
    # each group integrates to 1: the reference's filled area, and the stacked lesions' bands
    def area(patch):
        x, y = patch.get_xy().T
        return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))

    assert area(ax.patches[0]) == pytest.approx(1.0, rel=1e-3)
    assert sum(area(p) for p in ax.patches[1:1 + res.n_lesions]) == pytest.approx(1.0, rel=1e-3)


def test_histogram_lesions_beyond_max_are_pooled(phantom_result):
    ph, res = phantom_result
    ax = plot.histogram(None, None, res, max_lesions=1)
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "lesion 1" in names and any(n.startswith("other lesions") for n in names)


def test_result_accepted_in_place_of_volume_and_labels(phantom_result):
    ph, res = phantom_result
    ax = plot.overlay(res)
    biggest = int(np.argmax((res.labels > 0).sum(axis=(1, 2))))
    assert ax.get_title() == f"slice {biggest}"
    fig = plot.montage(res)
    assert len(fig.axes) == min(16, int((res.labels > 0).any(axis=(1, 2)).sum()))
    fig = plot.summary(res)
    assert len(fig.axes) == 4
    ax = plot.volumes(res)
    assert len(ax.patches) == res.n_lesions


def test_save_overlay_writes_a_png(phantom_result, tmp_path):
    _, res = phantom_result
    out = plot.save_overlay(res, tmp_path / "overlay.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.png"]


def test_figures_display_themselves_in_a_notebook():
    vol = noisy_volume(affine=axial_affine())
    png = plot.overlay(vol).figure._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_axes_are_used(phantom_result):
    from matplotlib.figure import Figure

    ph, res = phantom_result
    fig = Figure()
    axes = fig.subplots(1, 3)
    assert plot.overlay(res, ax=axes[0]) is axes[0]
    assert plot.mip(res, ax=axes[1]) is axes[1]
    assert plot.volumes(res.table, ax=axes[2]) is axes[2]
    assert len(fig.axes) == 3


# ---------------------------------------------------------------------------------------
# errors, and no pyplot
# ---------------------------------------------------------------------------------------
def test_errors_say_what_is_wrong():
    vol = noisy_volume()
    with pytest.raises(bmeviz.ParameterError, match="labels shape"):
        plot.overlay(vol, np.zeros((2, 2, 2), int))
    with pytest.raises(bmeviz.ParameterError, match="slice 99"):
        plot.overlay(vol, slice=99)
    with pytest.raises(bmeviz.ParameterError, match="orientation"):
        plot.overlay(vol, orientation="neurological")
    with pytest.raises(bmeviz.ParameterError, match="axis"):
        plot.mip(vol, axis=3)
    with pytest.raises(bmeviz.ParameterError, match="outline"):
        plot.overlay(vol, two_lesions(vol.shape), slice=5, outline="dots")
    with pytest.raises(bmeviz.ParameterError, match="lesion table"):
        plot.volumes({"a": 1})
    with pytest.raises(bmeviz.ParameterError, match="result"):
        plot.histogram(vol, np.ones(vol.shape, bool), None)


def test_outline_mask_is_the_inner_boundary():
    lab = np.zeros((7, 7), int)
    lab[1:6, 1:6] = 1
    lab[3, 3] = 0
    edge = outline_mask(lab)
    assert edge.sum() == 16 + 4  # the square's rim and the hole's four neighbours
    assert not edge[0].any() and not edge[3, 3]


def test_no_pyplot_and_no_qt():
    code = (
        "import sys, numpy as np, bmeviz\n"
        "from bmeviz import plot\n"
        "v = bmeviz.Volume(np.ones((4, 10, 10)), np.eye(4))\n"
        "lab = np.zeros(v.shape, int); lab[1:3, 2:5, 2:5] = 1\n"
        "plot.overlay(v, lab); plot.mip(v, lab); plot.montage(v, lab)\n"
        "bad = [m for m in sys.modules if m == 'matplotlib.pyplot' or m.startswith(('PyQt', 'PySide', 'qtpy'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------
# outline styles
# ---------------------------------------------------------------------------------------
def _segments(ax):
    from matplotlib.collections import LineCollection

    (lc,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    return np.asarray(lc.get_segments())


def test_edges_outline_runs_exactly_between_lesion_and_background_voxels():
    vol = noisy_volume(affine=axial_affine(spacing=(3.0, 0.5, 0.7)))
    lab = two_lesions(vol.shape)
    ax = plot.overlay(vol, lab, slice=5, outline="edges")
    segs = _segments(ax)
    inside = np.pad(lab[5] > 0, 1)
    for (x0, y0), (x1, y1) in segs:
        if y0 == y1:  # horizontal edge at y = i - 0.5: between rows i - 1 and i of column x
            j, i = int(round((x0 + x1) / 2)), int(round(y0 + 0.5))
            a, b = inside[i, j + 1], inside[i + 1, j + 1]
        else:  # vertical edge at x = j - 0.5: between columns j - 1 and j of row y
            j, i = int(round(x0 + 0.5)), int(round((y0 + y1) / 2))
            a, b = inside[i + 1, j], inside[i + 1, j + 1]
        assert a != b
    # every boundary edge is drawn once: the perimeter of the lesions in voxel edges
    m = inside.astype(int)
    perimeter = np.abs(np.diff(m, axis=0)).sum() + np.abs(np.diff(m, axis=1)).sum()
    assert len(segs) == perimeter


def test_auto_outline_draws_edges_when_voxels_are_smaller_than_pixels():
    vol = noisy_volume(shape=(6, 336, 336), affine=axial_affine(spacing=(3.3, 0.6, 0.6)))
    lab = np.zeros(vol.shape, np.int32)
    lab[2:4, 100:180, 120:200] = 1
    fig = plot.montage(vol, lab)  # 3-inch panels: under one pixel per voxel
    for ax in fig.axes:
        assert len(ax.images) == 1 and len(_segments(ax)) > 0
    ax = plot.overlay(noisy_volume(affine=axial_affine()), two_lesions((10, 60, 80)), slice=5)
    assert len(ax.images) == 2  # a large panel: boundary voxels painted


def test_contour_outline():
    vol = noisy_volume(affine=axial_affine())
    ax = plot.overlay(vol, two_lesions(vol.shape), slice=5, outline="contour")
    assert len(ax.collections) == 2


def test_mip_with_region_is_cropped_to_the_region():
    vol = noisy_volume(affine=axial_affine(spacing=(3.0, 0.5, 0.7)))
    region = np.zeros(vol.shape, bool)
    region[:, 20:40, 10:50] = True
    ax = plot.mip(vol, two_lesions(vol.shape), axis=0, region=region)
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    assert 8 - 1 <= x0 + 0.5 <= 10 and 50 <= x1 + 0.5 <= 53  # columns 10..49 and a margin of 3
    assert 18 <= y0 + 0.5 <= 20 and 40 <= y1 + 0.5 <= 43
    full = plot.mip(vol, axis=0, region=region, crop=False)
    assert sorted(full.get_xlim()) == [-0.5, 79.5]
