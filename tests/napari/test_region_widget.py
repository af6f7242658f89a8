"""The "Bone region (bmeviz)" widget: clicks on a T1 layer -> a ``bone region`` Labels layer on
the fluid-sensitive layer's grid, matching the core, picked up by the BME widget; errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import bmeviz
from bmeviz.napari._layers import image_kwargs
from bmeviz.region import region_from_seeds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_region import _dice, _seed_mm, make_t1, moved_phantom_atlases  # noqa: E402


def _viewer_with_scans(make_napari_viewer_proxy, show=False):
    t1, marrow = make_t1()
    stir = bmeviz.Volume(np.where(marrow, 200.0, 400.0).astype(np.float32), t1.affine, {"sequence": "STIR"})
    viewer = make_napari_viewer_proxy(show=show)
    viewer.add_image(t1.array, **image_kwargs(t1, name="T1W"))
    viewer.add_image(stir.array, **image_kwargs(stir, name="STIR"))
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "Bone region (bmeviz)")
    return viewer, widget, t1, stir, marrow


def _click_deep_and_run(viewer, widget, qtbot, t1, marrow, running: str):
    """One click deep in the bright marrow (as the widget asks), run, wait; the seed and the region."""
    from bmeviz.region_atlas import atlas_clicks

    widget.add_clicks()
    seed = atlas_clicks(t1, marrow)[0]
    viewer.layers["region clicks"].add([list(seed)])
    widget.run()
    assert running in widget.status.text()
    qtbot.waitUntil(lambda: not widget.busy, timeout=180000)
    return seed, viewer.layers["bone region"].data > 0


def test_region_widget_clicks_to_labels_on_the_fluid_grid(make_napari_viewer_proxy, qtbot, error_notifications):
    viewer, widget, t1, stir, marrow = _viewer_with_scans(make_napari_viewer_proxy)
    assert widget.source_combo.currentText() == "T1W"  # the T1 by its sequence
    assert widget.target_combo.currentText() == "STIR"
    widget.add_clicks()
    pts = viewer.layers["region clicks"]
    assert pts.mode == "add"
    seed = t1.ras_to_index(_seed_mm()[0])
    pts.add([list(seed)])
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)
    assert not error_notifications
    region = viewer.layers["bone region"]
    assert region.data.shape == stir.shape
    assert np.allclose(region.scale, viewer.layers["STIR"].scale)
    expected = region_from_seeds(t1, seeds=[np.rint(seed).astype(int)], on=stir).mask.array
    assert np.array_equal(region.data > 0, expected)
    assert _dice(region.data > 0, marrow) >= 0.9
    assert "mL" in widget.status.text()
    # the BME widget recognises it as its search region
    _, bme = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    bme.image_combo.setCurrentIndex(bme.image_combo.findText("STIR"))
    assert bme.region_combo.currentText() == "bone region"
    # editable with the brush like any Labels layer: painting changes the data
    region.paint((5, 5, 5), 1, refresh=True)
    assert region.data[5, 5, 5] == 1


def test_region_widget_without_clicks_says_so(make_napari_viewer_proxy, error_notifications):
    viewer, widget, *_ = _viewer_with_scans(make_napari_viewer_proxy)
    widget.run()
    assert "no clicks" in widget.status.text()
    assert "bone region" not in viewer.layers


def test_region_widget_with_an_atlas_folder(make_napari_viewer_proxy, qtbot, error_notifications, tmp_path):
    """An atlas folder in the widget: the region comes from the atlas (registered in the worker
    thread, napari stays responsive) and equals the core's result from the same folder."""
    import pytest

    pytest.importorskip("SimpleITK")
    viewer, widget, t1, stir, marrow = _viewer_with_scans(make_napari_viewer_proxy)
    other, other_marrow = t1, marrow  # another "patient": the same anatomy, moved
    moved = other.affine.copy()
    moved[:3, 3] += (2.0, -1.5, 0.0)  # lying 2.5 mm elsewhere
    shifted = bmeviz.Volume(other.array, moved, other.metadata)
    bmeviz.io.save_volume(shifted, tmp_path / "p1_T1W.nii.gz")
    bmeviz.io.save_mask(other_marrow, shifted, tmp_path / "p1_disease_region.nii.gz")
    widget.atlas_edit.setText(str(tmp_path))
    seed, region = _click_deep_and_run(viewer, widget, qtbot, t1, marrow, "registering the atlases")
    assert not error_notifications
    assert widget.last_info["method"] == "atlas" and widget.last_info["atlases"] == ["p1"]
    expected = region_from_seeds(t1, seeds=[seed], on=stir, atlas=tmp_path).mask.array
    assert _dice(region, expected) >= 0.98  # the registration threads may differ by a few voxels
    assert _dice(region, marrow) >= 0.85
    assert "atlases p1" in widget.status.text()


def test_region_widget_with_an_atlas_folder_and_a_refiner(make_napari_viewer_proxy, qtbot, error_notifications,
                                                          tmp_path):
    """A refiner file beside the atlas folder: the widget's region equals the core's with the
    same refiner, and the status line says it was refined. (The refiner is trained here on 3
    moved copies of the phantom, a U-Net of a few steps; its Dice on real scans is tested in
    test_region_unet.)"""
    import pytest

    pytest.importorskip("SimpleITK")
    pytest.importorskip("sklearn")
    from bmeviz.region_refine import train_refiner

    viewer, widget, t1, stir, marrow = _viewer_with_scans(make_napari_viewer_proxy)
    atlases = tmp_path / "atlases"
    moved_phantom_atlases(atlases, t1, marrow)
    refiner = train_refiner(atlases, validate=False, params={"unet_iterations": 20, "unet_crop_mm": 32.0})
    refiner.save(tmp_path / "refiner.joblib")
    widget.atlas_edit.setText(str(atlases))
    widget.refine_edit.setText(str(tmp_path / "refiner.joblib"))
    seed, region = _click_deep_and_run(viewer, widget, qtbot, t1, marrow, "refining")
    assert not error_notifications
    assert widget.last_info["refiner"]["atlases"] == ["p0", "p1", "p2"]
    expected = region_from_seeds(t1, seeds=[seed], on=stir, atlas=atlases, refine=tmp_path / "refiner.joblib")
    assert _dice(region, expected.mask.array) >= 0.98
    assert _dice(region, marrow) >= 0.85
    assert "refined" in widget.status.text()
