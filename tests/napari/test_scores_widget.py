"""The "BME scores" widget: joint lines drawn as Shapes paths -> quadrants Labels layer (the same
map as the API), SPARCC in the table, an override by editing a cell (recorded), the output folder;
on a real SIJ scan the widget gives the API's score."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_scores import LEFT_COL, RIGHT_COL, _sparcc_case  # noqa: E402

from bmeviz.napari._layers import image_kwargs, labels_kwargs  # noqa: E402


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME scores")
    return widget


def test_scores_widget_lines_quadrants_score_override_save(make_napari_viewer_proxy, tmp_path):
    vol, les, an, fluid = _sparcc_case()
    viewer = make_napari_viewer_proxy()
    img = viewer.add_image(vol.array, **image_kwargs(vol, name="stir"))
    region = np.zeros(vol.shape, np.uint8)
    region[:, 10:71, 5:116] = 1
    viewer.add_labels(region, **labels_kwargs(img.metadata, name="bone"))
    viewer.add_labels(les.astype(np.uint8), **labels_kwargs(img.metadata, name="lesions"))
    w = _dock(viewer)
    w.image_combo.setCurrentText("stir")
    w.region_combo.setCurrentText("bone")
    w.lesion_combo.setCurrentText("lesions")
    shapes = w.lines_layer()
    assert shapes.mode == "add_path"
    for s in (1, 6):
        for c in (RIGHT_COL, LEFT_COL):
            pts = [[s, 10, c], [s, 40.5, c], [s, 71, c]] if (s, c) == (6, LEFT_COL) else [[s, 10, c], [s, 71, c]]
            shapes.add(np.array(pts, float), shape_type="path")
    built = w.build_quadrants()
    assert built is not None and "SIJ quadrants" in viewer.layers
    assert np.array_equal(np.asarray(viewer.layers["SIJ quadrants"].data), an.labels)
    assert w.anatomy_combo.currentText() == "SIJ quadrants"
    w.fluid_layer().add(np.array([[3, 2, 2]], float))
    w.fluid_radius.setValue(1.0)
    res = w.score()
    assert res is not None and res.total == 10 and w.table.rowCount() == 72
    assert "SPARCC total 10" in w.total_label.text()
    row = res.rows.index[(res.rows.slice == 2) & (res.rows.joint == "right") & (res.rows.unit == "deep")][0]
    w.set_value(int(row), 0)  # the reader disagrees: not deep
    assert w.session.result.total == 9 and "1 overridden" in w.total_label.text()
    assert w.session.result.params["overrides"] == [{"slice": 2, "joint": "right", "unit": "deep", "points": 0}]
    w.set_value(int(row), 5)  # refused, the table shows the last valid result
    assert w.session.result.total == 9 and "refused" in w.status.text()
    saved = w.save(str(tmp_path / "out"))
    df = pd.read_csv(saved["csv"])
    assert df["points"].sum() == 9 and bool(df.loc[row, "overridden"]) and len(saved["figures"]) == 6


def test_scores_widget_errors_are_messages(make_napari_viewer_proxy):
    vol, les, an, fluid = _sparcc_case()
    viewer = make_napari_viewer_proxy()
    viewer.add_image(vol.array, **image_kwargs(vol, name="stir"))
    w = _dock(viewer)
    assert w.build_quadrants() is None and "joint lines" in w.status.text()
    assert w.score() is None and "lesions" in w.status.text()


def test_scores_widget_real_sij_equals_api(make_napari_viewer_proxy):
    from helpers import ROOT, shared

    import bmeviz
    from bmeviz.scores import lines_from_paths, score_sparcc, sij_quadrants

    d = shared("sij-stir-dev")
    sid = "1007"
    vol = bmeviz.load(d / "images" / f"{sid}_STIR.nii.gz")
    t1 = bmeviz.load(d / "images" / f"{sid}_T1W.nii.gz")
    region = bmeviz.load(d / "disease_region" / f"{sid}_disease_region.nii.gz").array > 0
    r11 = bmeviz.load(d / "inflammation" / f"{sid}_inflammation_R11.nii.gz").array > 0
    paths = json.loads((ROOT / "benchmarks" / "data" / "sij_joint_lines.json").read_text())["scans"][sid]["paths"]
    api_an = sij_quadrants(region, lines_from_paths(paths, volume=vol, region=region), volume=vol, snap_to=t1)
    api = score_sparcc(vol, r11, api_an)
    viewer = make_napari_viewer_proxy()
    img = viewer.add_image(vol.array, **image_kwargs(vol, name="stir"))
    viewer.add_image(t1.array, **image_kwargs(t1, name="t1"))
    viewer.add_labels(region.astype(np.uint8), **labels_kwargs(img.metadata, name="region"))
    viewer.add_labels(r11.astype(np.uint8), **labels_kwargs(img.metadata, name="R11"))
    w = _dock(viewer)
    w.image_combo.setCurrentText("stir")
    w.snap_combo.setCurrentText("t1")
    w.region_combo.setCurrentText("region")
    w.lesion_combo.setCurrentText("R11")
    shapes = w.lines_layer()
    for p in paths:
        shapes.add(np.asarray(p, float), shape_type="path")
    w.build_quadrants()
    assert np.array_equal(np.asarray(viewer.layers["SIJ quadrants"].data), api_an.labels)
    with pytest.warns(UserWarning, match="intense"):
        res = w.score()
    assert res.total == api.total and res.slices == api.slices
