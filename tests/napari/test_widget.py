"""The "BME segmentation" widget end to end on the phantom: reference, preview, seeds, grow,
undo, table, jump, export, errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import bmeviz
from bmeviz.data import sample_path


def _click(viewer, image, index):
    """A real mouse click on the canvas at voxel ``index`` (slice, row, column) of ``image``:
    go to its slice, centre the camera on it, click the canvas centre."""
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    raw = getattr(viewer, "__wrapped__", viewer)  # the viewer behind the plugin proxy (canvas access)
    world = image.data_to_world(np.asarray(index, float))
    raw.dims.set_point(0, world[0])
    raw.scene.camera.center = tuple(world[1:])
    canvas = raw.window._qt_viewer.canvas.native
    QApplication.processEvents()
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(canvas.width() // 2, canvas.height() // 2))
    QApplication.processEvents()


def _set_reference(widget, point):
    widget.reference_layer(create=True).data = [list(map(float, point))]
    widget.update_threshold()


def _add_seeds(widget, seeds, wait=None):
    """One click per seed, as a user would: each click grows (clicks that come while a
    segmentation runs are merged into the next one); ``wait`` waits for each to finish."""
    layer = widget.seeds_layer(create=True)
    for s in seeds:
        layer.add([list(map(float, s))])
        if wait is not None:
            wait(widget)


def test_widget_end_to_end_matches_segment_and_truth(phantom_viewer, phantom_sample, wait_idle, tmp_path,
                                                     error_notifications, qtbot):
    viewer, widget = phantom_viewer(show=True)
    vol, gt = phantom_sample
    image = viewer.layers["phantom STIR"]
    assert widget.image_combo.currentText() == "phantom STIR"
    assert widget.region_combo.currentText() == "bone (search region)"  # guessed from its name
    assert widget.edge_combo.currentText() == "half-max"

    # 1. reference: "Place point", then a click in normal marrow; statistics and threshold as the core's
    ref_point = tuple(int(v) for v in np.argwhere(gt["reference"]).mean(axis=0).round())
    widget.place_reference()
    _click(viewer, image, ref_point)
    assert np.array_equal(np.rint(widget.reference_layer().data), [ref_point])
    widget.update_threshold()  # (the click scheduled it on a 0 ms timer)
    from bmeviz.pipeline import resolve_reference
    from bmeviz.threshold import compute_threshold

    mask, _ = resolve_reference(ref_point, vol, radius_mm=8.0)
    expected_thr = compute_threshold(vol.array, reference=mask, region=gt["bone"])
    assert widget.threshold.value == pytest.approx(expected_thr.value)
    assert f"{expected_thr.value:.4g}" in widget.threshold_label.text()
    assert "mean" in widget.stats_label.text()

    # live preview: the current slice, above threshold inside the region, nothing elsewhere
    z = ref_point[0]
    viewer.dims.set_current_step(0, z)
    preview = np.asarray(widget.preview_layer.data)
    expected = (vol.array[z] >= widget.threshold.value) & gt["bone"][z]
    assert np.array_equal(preview[z].astype(bool), expected)
    assert preview.sum() == expected.sum()
    viewer.dims.set_current_step(0, z + 1)
    preview = np.asarray(widget.preview_layer.data)
    assert not preview[z].any() and preview[z + 1].any() == bool(((vol.array[z + 1] >= widget.threshold.value) &
                                                                    gt["bone"][z + 1]).any())

    # 2. seeds: "Add seeds", then one click per lesion; each click grows (in a worker)
    widget.add_seeds()
    for seed in gt["seeds"]:
        _click(viewer, image, seed)
        wait_idle(widget)
    assert np.array_equal(np.rint(widget.seeds()), gt["seeds"])
    labels_layer = viewer.layers["BME"]
    assert labels_layer.contour > 0
    res = bmeviz.segment(vol, reference=ref_point, reference_radius_mm=8.0, region=gt["bone"],
                         seeds=gt["seeds"], edge="half-max")
    assert np.array_equal(labels_layer.data, res.labels)  # exactly the core's answer
    assert widget.result.table["volume_ml"].tolist() == res.table["volume_ml"].tolist()
    truth_ml = [float((gt["truth"] == i).sum()) * vol.voxel_volume_mm3 / 1000 for i in range(1, 5)]
    got = sorted(res.table["volume_ml"], reverse=True)
    assert np.allclose(got, sorted(truth_ml, reverse=True), rtol=0.06)
    assert widget.table_widget.rowCount() == 4
    assert f"{res.total_volume_ml:.3f} mL" in widget.total_label.text()
    assert not error_notifications
    qtbot.wait(300)  # the hand-edit check (250 ms after a layer change) must not re-measure our own result
    assert not widget.busy and "edited" not in widget.total_label.text()

    # the table: selecting a row shows that lesion
    widget.table_widget.selectRow(2)
    row = res.table.iloc[2]
    assert viewer.dims.current_step[0] == int(round(row["centroid_slice"]))
    assert labels_layer.selected_label == int(row["lesion_id"])

    # 3. export: like `bmeviz segment`, on the source grid
    out = tmp_path / "export"
    widget.export(out)
    wait_idle(widget)
    assert {p.name for p in out.iterdir()} >= {"bme_mask.nii.gz", "lesions.csv", "provenance.json", "overlay.png"}
    mask_img = nib.load(out / "bme_mask.nii.gz")
    assert np.allclose(mask_img.affine, nib.load(sample_path("phantom_stir.nii.gz")).affine, atol=1e-5)
    assert np.array_equal(bmeviz.load(out / "bme_mask.nii.gz").array, res.labels)
    assert len(pd.read_csv(out / "lesions.csv")) == 4
    assert image.metadata["bmeviz"]["path"] == "phantom_stir.nii.gz"

    # 4. undo with napari's own history: the last grow (the 4th seed) is taken back
    before_last = bmeviz.segment(vol, reference=ref_point, reference_radius_mm=8.0, region=gt["bone"],
                                 seeds=gt["seeds"][:3], edge="half-max")
    labels_layer.undo()
    assert np.array_equal(labels_layer.data, before_last.labels)
    labels_layer.redo()
    assert np.array_equal(labels_layer.data, res.labels)

    # 5. a bad seed (outside the volume): an error notification with bmeviz's message; nothing changes
    result = widget.result
    _add_seeds(widget, [(vol.shape[0] + 5, 10, 10)], wait=wait_idle)
    assert len(error_notifications) == 1 and "outside the image" in error_notifications[0]
    assert np.array_equal(labels_layer.data, res.labels)
    assert widget.result is result and widget.table_widget.rowCount() == 4
    assert "error" in widget.status_label.text()


def test_find_all_in_region_and_hand_edits(viewer_with_widget, phantom_sample, wait_idle, qtbot,
                                           error_notifications):
    viewer, widget = viewer_with_widget
    vol, gt = phantom_sample
    widget.find_all()  # no reference yet: an error that says what to do, nothing else
    assert "reference" in error_notifications[-1] and "BME" not in viewer.layers
    ref = viewer.add_labels(gt["reference"].astype(np.uint8), name="normal marrow",
                            scale=viewer.layers["phantom STIR"].scale)
    widget.ref_combo.setCurrentIndex(widget.ref_combo.findText("normal marrow"))
    widget.rule_combo.setCurrentText("mean-sd")
    widget.k_spin.setValue(3.0)
    widget.update_threshold()
    widget.find_all()
    wait_idle(widget)
    res = bmeviz.segment(vol, reference=gt["reference"], region=gt["bone"], rule="mean-sd", k=3.0, edge="half-max")
    assert np.array_equal(viewer.layers["BME"].data, res.labels)
    assert widget.result.params["mode"] == "all-in-region" and res.n_lesions >= 4
    assert ref.name == "normal marrow"
    # a hand edit (erase lesion 1) is measured again and exported as edited
    layer = viewer.layers["BME"]
    idx = np.nonzero(layer.data == 1)
    layer.data_setitem(idx, 0)
    qtbot.waitUntil(lambda: widget.table is not None and 1 not in set(widget.table["lesion_id"]), timeout=5000)
    wait_idle(widget)
    assert "edited" in widget.total_label.text()
    edited = widget._current_result()
    assert not (edited.labels == 1).any() and any("edited by hand" in m for m in edited.messages)

    # quick clicks while a grow runs are merged: the last result has every seed
    _add_seeds(widget, gt["seeds"][:3])
    wait_idle(widget)
    quick = bmeviz.segment(vol, reference=gt["reference"], region=gt["bone"], rule="mean-sd", k=3.0,
                           edge="half-max", seeds=gt["seeds"][:3])
    assert np.array_equal(layer.data, quick.labels) and widget.result.params["mode"] == "seeded"

    # 3D view: no contours (napari draws them in 2D only), no slice preview; back in 2D both return
    with pytest.warns(UserWarning, match="Contours are not displayed"):  # napari's, before ours switch them off
        viewer.dims.ndisplay = 3
    assert layer.contour == 0 and not widget.preview_layer.visible
    viewer.dims.ndisplay = 2
    assert layer.contour == 2 and widget.preview_layer.visible


def test_reference_drawn_or_from_shapes(viewer_with_widget, phantom_sample):
    from bmeviz.threshold import compute_threshold

    viewer, widget = viewer_with_widget
    vol, gt = phantom_sample
    image = viewer.layers["phantom STIR"]
    z, r, c = (int(v) for v in np.argwhere(gt["reference"]).mean(axis=0).round())
    # "Draw": a Labels layer on the image grid, painted by hand
    widget.draw_reference()
    drawn = viewer.layers.selection.active
    assert widget.ref_combo.currentText() == drawn.name and drawn.mode == "paint"
    idx = tuple(np.array(a) for a in np.nonzero(np.ones((1, 9, 9), bool)))
    drawn.data_setitem((idx[0] + z, idx[1] + r - 4, idx[2] + c - 4), 1)  # what a brush stroke does
    widget.update_threshold()
    expected = compute_threshold(vol.array, reference=np.asarray(drawn.data) > 0, region=gt["bone"])
    assert widget.threshold.value == pytest.approx(expected.value)
    # a Shapes layer in world mm (napari's default frame), converted to the image's voxels
    corners = [image.data_to_world((z, r + dr, c + dc)) for dr, dc in ((-4, -4), (-4, 4), (4, 4), (4, -4))]
    shapes = viewer.add_shapes([np.asarray(corners)], shape_type="polygon", name="ref box")
    widget.ref_combo.setCurrentIndex(widget.ref_combo.findText("ref box"))
    widget.update_threshold()
    mask = widget._layer_mask(shapes, "reference")
    zz, rr, cc = np.nonzero(mask)
    assert set(zz) == {z} and rr.min() >= r - 4 and rr.max() <= r + 4 and cc.min() >= c - 4 and cc.max() <= c + 4
    assert mask.sum() >= 49
    expected = compute_threshold(vol.array, reference=mask, region=gt["bone"])
    assert widget.threshold.value == pytest.approx(expected.value)


def test_series_switch_from_a_multi_series_folder(make_napari_viewer_proxy, tmp_path, small_volume, wait_idle):
    from bmeviz.io.dicom_write import write_dicom_series

    study = tmp_path / "study"
    write_dicom_series(small_volume, study / "stir", sequence="STIR", description="STIR cor", series_number=5)
    write_dicom_series(small_volume.with_array(small_volume.array[:, :, ::-1].copy()), study / "t2",
                       sequence="T2", description="T2 FS cor", series_number=6)
    viewer = make_napari_viewer_proxy()
    with pytest.warns(bmeviz.BmevizWarning):
        viewer.open(str(study), plugin="bmeviz")
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    assert widget.series_combo.count() == 2
    current = viewer.layers[0].metadata["bmeviz"]["series_key"]
    other = next(widget.series_combo.itemData(i) for i in range(2) if widget.series_combo.itemData(i) != current)
    widget.open_series(other)
    wait_idle(widget)
    assert len(viewer.layers) == 2
    assert widget.image_combo.currentText() == viewer.layers[-1].name != viewer.layers[0].name
