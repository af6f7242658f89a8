"""``bmeviz view``: the scan, the widget and the segmentation in napari; ``--screenshot`` saves and exits."""

from __future__ import annotations

import numpy as np
import pytest

import bmeviz
from bmeviz.cli import main
from bmeviz.data import sample_path


@pytest.fixture
def view_viewer(make_napari_viewer, monkeypatch):
    """Let ``bmeviz view`` use the test's (shown) viewer; the fixture closes it."""
    import bmeviz.napari.cli as view_cli

    made = []

    def make(title):
        made.append(make_napari_viewer(show=True, title=title))
        return made[-1]

    monkeypatch.setattr(view_cli, "_make_viewer", make)
    monkeypatch.setattr(view_cli, "_close_viewer", lambda viewer: None)
    return made


def test_view_segments_and_saves_a_screenshot(view_viewer, tmp_path, phantom_sample, non_black_share, capsys):
    from matplotlib.image import imread

    vol, gt = phantom_sample
    ref = ",".join(str(int(round(float(a.mean())))) for a in gt["reference"].nonzero())
    out = tmp_path / "shot.png"
    args = ["view", str(sample_path("phantom_stir.nii.gz")), "--reference-point", ref,
            "--region", str(sample_path("phantom_bone.nii.gz")), "--screenshot", str(out)]
    for s in gt["seeds"][:2]:
        args += ["--seed", ",".join(str(int(v)) for v in s)]
    assert main(args) == 0
    assert f"wrote: {out}" in capsys.readouterr().out
    viewer = view_viewer[0]
    labels = viewer.layers["BME"].data
    res = bmeviz.segment(vol, reference=tuple(int(v) for v in ref.split(",")), region=gt["bone"],
                         seeds=gt["seeds"][:2])  # the widget uses bmeviz segment's defaults
    assert np.array_equal(labels, res.labels)
    shot = imread(str(out))
    assert shot.shape[0] > 600 and shot.shape[1] > 1000  # the whole window, widget included
    assert non_black_share((shot[..., :3] * 255).astype(np.uint8)) > 0.5
    # on the canvas: the scan (many grey levels) and the outline colour of a lesion on this slice
    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    assert non_black_share(canvas) > 0.3 and len(np.unique(canvas[..., 0])) > 50
    z = viewer.dims.current_step[0]
    lesion = int(np.bincount(labels[z][labels[z] > 0]).argmax())
    color = np.asarray(viewer.layers["BME"].colormap.map(lesion))[:3] * 255
    assert (np.abs(canvas - color).max(axis=-1) < 40).sum() > 20


def test_view_reports_bad_input_without_opening_napari(capsys, tmp_path):
    assert main(["view", str(tmp_path / "missing.nii.gz")]) == 2
    assert "no such file" in capsys.readouterr().err
