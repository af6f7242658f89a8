"""The "BME segmentation" widget end to end on the phantom with real mouse clicks: reference,
preview, seeds, grow, undo/redo, refused clicks, table, lesion edits, hand edits, 3D, export."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import bmeviz
from bmeviz.data import sample_path
from bmeviz.pipeline import DEFAULTS


def test_widget_end_to_end_matches_segment_and_truth(phantom_viewer, phantom_sample, wait_idle, tmp_path,
                                                     error_notifications, qtbot, click):
    viewer, widget = phantom_viewer(show=True)
    vol, gt = phantom_sample
    image = viewer.layers["phantom STIR"]
    assert widget.image_combo.currentText() == "phantom STIR"
    assert widget.region_combo.currentText() == "bone (search region)"  # guessed from its name
    assert widget.edge_combo.currentText() == DEFAULTS["edge"]  # the CLI's defaults: same clicks, same mL
    assert widget.auto_k.isChecked() == (DEFAULTS["k"] == "adaptive")  # k=None is k=2 on the robust reference
    assert widget.scroll_area.widget() is not None

    # 1. reference: "Place point", then a click in normal marrow; statistics and threshold as the core's
    ref_point = tuple(int(v) for v in np.argwhere(gt["reference"]).mean(axis=0).round())
    assert "No reference yet" in widget.stats_label.text()
    widget.place_reference()
    click(viewer, image, ref_point)
    assert np.array_equal(np.rint(widget.reference_layer().data), [ref_point])
    widget.update_threshold()  # (the click scheduled it on a 0 ms timer)
    assert "No reference yet" not in widget.stats_label.text() and "mean" in widget.stats_label.text()
    from bmeviz.pipeline import reference_threshold

    _, _, expected_thr = reference_threshold(vol, reference=ref_point, region=gt["bone"], reference_radius_mm=8.0)
    assert widget.threshold.value == pytest.approx(expected_thr.value)
    assert f"{expected_thr.value:.1f}" in widget.threshold_label.text()

    # live preview: the current slice, above threshold inside the region, nothing elsewhere
    z = ref_point[0]
    viewer.dims.set_current_step(0, z)
    preview = np.asarray(widget.preview_layer.data)
    expected = (vol.array[z] >= widget.threshold.value) & gt["bone"][z]
    assert np.array_equal(preview[z].astype(bool), expected) and preview.sum() == expected.sum()

    # 2. seeds: "Add seeds", then one click per lesion; each click grows
    widget.add_seeds()
    for seed in gt["seeds"]:
        click(viewer, image, seed)
    assert np.array_equal(np.rint(widget.seeds()), gt["seeds"])
    labels_layer = viewer.layers["BME"]
    assert labels_layer.contour > 0
    res = bmeviz.segment(vol, reference=ref_point, reference_radius_mm=8.0, region=gt["bone"], seeds=gt["seeds"])
    assert np.array_equal(labels_layer.data, res.labels)  # exactly the core's answer
    assert widget.result.table["volume_ml"].tolist() == res.table["volume_ml"].tolist()
    truth_ml = [float((gt["truth"] == i).sum()) * vol.voxel_volume_mm3 / 1000 for i in range(1, 5)]
    assert res.total_volume_ml == pytest.approx(sum(truth_ml), rel=0.35)
    assert widget.table_widget.rowCount() == 4
    total = f"{res.total_volume_ml:.3f} mL"
    assert total in widget.total_label.text() and total in widget.status_label.text()  # one source, one number
    assert list(widget.seeds_layer().features["n"]) == [1, 2, 3, 4]  # numbered as the user counts
    assert not error_notifications
    qtbot.wait(300)
    assert "edited" not in widget.total_label.text()

    # 3. a click outside the image: refused at once, with the reason; nothing changes
    before = np.array(labels_layer.data, copy=True)
    click(viewer, image, (gt["seeds"][0][0], -40, vol.shape[2] // 2))
    assert len(widget.seeds_layer().data) == 4 and len(widget.session.seeds) == 4
    assert error_notifications and error_notifications[-1].startswith("The click is outside the image")
    assert np.array_equal(labels_layer.data, before)
    # ... and outside the bone region
    outside = tuple(int(v) for v in np.argwhere(~gt["bone"] & (vol.array > 0))[0])
    click(viewer, image, outside)
    assert "outside the search region" in error_notifications[-1] and len(widget.session.seeds) == 4
    widget.grow()  # the next grow is not spoiled by the refused clicks
    assert np.array_equal(labels_layer.data, res.labels)

    # 4. undo / redo of seeds (the widget's, also Ctrl+Z on the BME layers); remove the last seed
    three = bmeviz.segment(vol, reference=ref_point, reference_radius_mm=8.0, region=gt["bone"],
                           seeds=gt["seeds"][:3])
    widget.undo()  # the "grow" step
    widget.undo()  # the 4th seed
    assert np.array_equal(labels_layer.data, three.labels) and len(widget.seeds_layer().data) == 3
    widget.redo()
    assert np.array_equal(labels_layer.data, res.labels) and len(widget.seeds_layer().data) == 4
    widget.remove_seed()
    assert np.array_equal(labels_layer.data, three.labels) and widget.table_widget.rowCount() == 3
    widget.undo()

    # the table: selecting a row shows that lesion
    widget.table_widget.selectRow(2)
    row = res.table.iloc[2]
    assert viewer.dims.current_step[0] == int(round(row["centroid_slice"]))
    assert labels_layer.selected_label == int(row["lesion_id"])

    # 5. export: like `bmeviz segment`, on the source grid, plus the report and the session
    out = tmp_path / "export"
    widget.study_edit.setText("Phantom study A")
    widget.export(out)
    wait_idle(widget)
    names = {p.name for p in out.iterdir()}
    assert names >= {"bme_mask.nii.gz", "lesions.csv", "provenance.json", "overlay.png", "report.html",
                     "session.bmeviz-session.json"}
    assert "bme_seg.dcm" not in names  # a NIfTI source: no DICOM SEG
    assert "<title>BME report: Phantom study A</title>" in (out / "report.html").read_text()
    mask_img = nib.load(out / "bme_mask.nii.gz")
    assert np.allclose(mask_img.affine, nib.load(sample_path("phantom_stir.nii.gz")).affine, atol=1e-5)
    assert np.array_equal(bmeviz.load(out / "bme_mask.nii.gz").array, res.labels)
    assert len(pd.read_csv(out / "lesions.csv")) == 4
    # the autosave file holds this session
    auto = widget.session.autosave_path
    assert auto is not None and auto.exists()
    assert np.array_equal(bmeviz.session.Session.load(auto, volume=vol).labels, res.labels)


def test_find_all_hand_edits_lesion_edits_and_3d(viewer_with_widget, phantom_sample, wait_idle, qtbot,
                                                 error_notifications):
    viewer, widget = viewer_with_widget
    vol, gt = phantom_sample
    widget.find_all()  # no reference yet: an error that says what to do, nothing else
    assert error_notifications[-1].startswith("No reference yet") and "BME" not in viewer.layers
    viewer.add_labels(gt["reference"].astype(np.uint8), name="normal marrow",
                      scale=viewer.layers["phantom STIR"].scale)
    assert widget.ref_combo.currentText() == "normal marrow"  # offered as the reference when it appears
    widget.rule_combo.setCurrentText("mean-sd")
    widget.k_spin.setValue(3.0)
    widget.update_threshold()
    widget.find_all()
    wait_idle(widget)
    res = bmeviz.segment(vol, reference=gt["reference"], region=gt["bone"], rule="mean-sd", k=3.0)
    layer = viewer.layers["BME"]
    assert np.array_equal(layer.data, res.labels)
    assert widget.result.params["mode"] == "all-in-region" and res.n_lesions >= 4
    # a brush edit (erase lesion 1) is measured again and marked as edited ...
    idx = np.nonzero(layer.data == 1)
    layer.data_setitem(idx, 0)
    qtbot.waitUntil(lambda: widget.table is not None and 1 not in set(widget.table["lesion_id"]), timeout=5000)
    assert "edited" in widget.total_label.text()
    edited = widget.result
    assert not (edited.labels == 1).any() and any("edited by hand" in m for m in edited.messages)
    # ... and napari's own undo of the stroke brings the grown labels back: no longer "edited"
    layer.undo()
    qtbot.waitUntil(lambda: 1 in set(widget.table["lesion_id"]), timeout=5000)
    assert "edited" not in widget.total_label.text() and np.array_equal(layer.data, res.labels)
    # lesion editing by id from the table: merge two, then delete one
    n = widget.table_widget.rowCount()
    widget.table_widget.selectRow(0)
    from qtpy.QtCore import QItemSelectionModel

    sel = widget.table_widget.selectionModel()
    sel.select(widget.table_widget.model().index(1, 0),
               QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
    ids = widget._selected_ids()
    assert len(ids) == 2
    widget.merge_selected()
    assert widget.table_widget.rowCount() == n - 1 and max(ids) not in set(np.unique(layer.data))
    widget.table_widget.selectRow(0)
    widget.delete_selected()
    assert widget.table_widget.rowCount() == n - 2 and "edited" in widget.total_label.text()
    widget.undo()
    widget.undo()
    assert np.array_equal(layer.data, res.labels) and "edited" not in widget.total_label.text()

    # 3D view: filled labels, no slice preview, no warning; back in 2D the outlines return
    with warnings.catch_warnings(record=True) as caught:
        viewer.dims.ndisplay = 3
        qtbot.wait(50)
        assert layer.contour == 0 and not widget.preview_layer.visible
        viewer.dims.ndisplay = 2
    assert not [w for w in caught if "Contours" in str(w.message)]
    assert layer.contour == 2 and widget.preview_layer.visible


def test_reference_drawn_or_from_shapes(viewer_with_widget, phantom_sample):
    from bmeviz.pipeline import reference_threshold

    viewer, widget = viewer_with_widget
    vol, gt = phantom_sample
    image = viewer.layers["phantom STIR"]
    z, r, c = (int(v) for v in np.argwhere(gt["reference"]).mean(axis=0).round())
    widget.draw_reference()
    drawn = viewer.layers.selection.active
    assert widget.ref_combo.currentText() == drawn.name and drawn.mode == "paint"
    idx = tuple(np.array(a) for a in np.nonzero(np.ones((1, 9, 9), bool)))
    drawn.data_setitem((idx[0] + z, idx[1] + r - 4, idx[2] + c - 4), 1)  # what a brush stroke does
    widget.update_threshold()
    _, _, expected = reference_threshold(vol, reference=np.asarray(drawn.data) > 0, region=gt["bone"])
    assert widget.threshold.value == pytest.approx(expected.value)
    assert "No reference yet" not in widget.stats_label.text()  # not stale after drawing one
    corners = [image.data_to_world((z, r + dr, c + dc)) for dr, dc in ((-4, -4), (-4, 4), (4, 4), (4, -4))]
    shapes = viewer.add_shapes([np.asarray(corners)], shape_type="polygon", name="ref box")
    widget.ref_combo.setCurrentIndex(widget.ref_combo.findText("ref box"))
    widget.update_threshold()
    mask = widget._layer_mask(shapes, "reference")
    zz, rr, cc = np.nonzero(mask)
    assert set(zz) == {z} and rr.min() >= r - 4 and rr.max() <= r + 4 and cc.min() >= c - 4 and cc.max() <= c + 4
    _, _, expected = reference_threshold(vol, reference=mask, region=gt["bone"])
    assert widget.threshold.value == pytest.approx(expected.value)


def test_automatic_reference_and_the_marrow_a_point_stands_for_are_shown(viewer_with_widget, phantom_sample):
    """Issue 11: the automatic reference is offered in the widget with no click, and the marrow
    bmeviz used (automatic, or what a point stands for) is shown as a layer the user can judge;
    with a drawn mask nothing extra is shown."""
    from bmeviz.pipeline import reference_threshold

    viewer, widget = viewer_with_widget
    vol, gt = phantom_sample
    widget.ref_combo.setCurrentIndex(widget.ref_combo.findData("auto"))
    assert widget.ref_combo.currentText().startswith("automatic")
    assert not widget.radius_spin.isEnabled()
    widget.update_threshold()
    used_mask, _, expected = reference_threshold(vol, reference="auto", region=gt["bone"])
    assert widget.threshold.value == pytest.approx(expected.value)
    assert "automatic reference" in widget.stats_label.text()
    shown = viewer.layers["BME reference (used)"]
    assert shown.visible and np.array_equal(np.asarray(shown.data) > 0, used_mask)
    assert not (np.asarray(shown.data) > 0)[gt["truth"] > 0].any()  # no lesion in it
    assert widget.region_combo.findText("BME reference (used)") == -1  # never offered as a region
    # a point with a region: the marrow near it, shown the same way
    point = tuple(int(v) for v in np.argwhere(gt["reference"]).mean(axis=0).round())
    widget.ref_combo.setCurrentIndex(0)
    widget.reference_layer(create=True).data = [list(point)]
    widget.update_threshold()
    near, info, thr = reference_threshold(vol, reference=point, region=gt["bone"], reference_radius_mm=8.0)
    assert widget.threshold.value == pytest.approx(thr.value)
    assert "within 40 mm" in widget.stats_label.text()
    assert np.array_equal(np.asarray(shown.data) > 0, near) and near.sum() > info["voxels_given"]
    # the session remembers "automatic" across save / load
    widget.ref_combo.setCurrentIndex(widget.ref_combo.findData("auto"))
    widget.update_threshold()
    assert widget.session.to_dict()["reference"]["auto"] is True


def test_removing_the_image_clears_stats_and_table(viewer_with_widget, phantom_sample):
    viewer, widget = viewer_with_widget
    vol, gt = phantom_sample
    widget.reference_layer(create=True).data = [list(map(float, np.argwhere(gt["reference"]).mean(0).round()))]
    widget.update_threshold()
    widget.seeds_layer(create=True).add([list(map(float, gt["seeds"][0]))])
    assert widget.table_widget.rowCount() == 1
    viewer.layers.remove("phantom STIR")
    assert widget.table_widget.rowCount() == 0 and widget.total_label.text() == "total: –"
    assert widget.threshold_label.text() == "threshold: –" and "No scan" in widget.stats_label.text()


def test_series_switch_from_a_multi_series_folder(make_napari_viewer_proxy, tmp_path, small_volume, wait_idle):
    from bmeviz.io.dicom_write import write_dicom_series

    study = tmp_path / "study"
    write_dicom_series(small_volume, study / "stir", sequence="STIR", description="STIR cor", series_number=5)
    write_dicom_series(small_volume.with_array(small_volume.array[:, :, ::-1].copy()), study / "t2",
                       sequence="T2", description="T2 FS cor", series_number=6)
    viewer = make_napari_viewer_proxy()
    with pytest.warns(bmeviz.BmevizWarning, match="^2 series in this folder; the fluid-sensitive STIR"):
        viewer.open(str(study), plugin="bmeviz")
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    assert widget.series_combo.count() == 2
    current = viewer.layers[0].metadata["bmeviz"]["series_key"]
    other = next(widget.series_combo.itemData(i) for i in range(2) if widget.series_combo.itemData(i) != current)
    widget.open_series(other)
    wait_idle(widget)
    assert len(viewer.layers) == 2
    assert widget.image_combo.currentText() == viewer.layers[-1].name != viewer.layers[0].name


def test_export_from_a_dicom_scan_writes_a_seg_and_no_identifiers(make_napari_viewer_proxy, tmp_path, wait_idle):
    """A DICOM source: Export adds bme_seg.dcm on the source images; the session copy names no path."""
    import json

    from bmeviz.data import make_phantom
    from bmeviz.io.dicom_write import write_dicom_series
    from bmeviz.io.seg import read_seg

    ph = make_phantom(shape=(16, 96, 96), spacing=(3.0, 1.4, 1.4), seed=3)
    folder = write_dicom_series(ph.volume, tmp_path / "Doe_Jane" / "stir", sequence="STIR", description="STIR sag")
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    (image,) = widget.open_path(str(folder))
    vol = bmeviz.load(folder)
    here = lambda idx: [float(v) for v in vol.ras_to_index(ph.volume.index_to_ras(idx), round=True)]  # noqa: E731
    widget.reference_layer(create=True).data = [here(ph.reference_point)]
    widget.update_threshold()
    layer = widget.seeds_layer(create=True)
    for s in ph.seeds:
        layer.add([here(s)])
    labels = np.asarray(viewer.layers["BME"].data)
    assert labels.max() >= 1  # (no bone region here: seeds whose growth leaks are dropped by the core)
    out = tmp_path / "out"
    widget.export(out)
    wait_idle(widget)
    assert (out / "bme_seg.dcm").exists() and (out / "report.html").exists()
    assert np.array_equal(read_seg(out / "bme_seg.dcm", vol), labels)
    record = json.loads((out / "session.bmeviz-session.json").read_text())
    assert record["image"]["source"] is None and "Doe_Jane" not in json.dumps(record)
    assert "Doe_Jane" not in (out / "report.html").read_text()


def test_ctrl_z_on_the_canvas_undoes_seeds(viewer_with_widget, phantom_sample):
    """Ctrl+Z with the seeds or the BME layer active is the session's undo (seeds included)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    viewer, widget = viewer_with_widget
    vol, gt = phantom_sample
    widget.reference_layer(create=True).data = [list(map(float, np.argwhere(gt["reference"]).mean(0).round()))]
    widget.update_threshold()
    seeds = widget.seeds_layer(create=True)
    for s in gt["seeds"][:2]:
        seeds.add([list(map(float, s))])
    one = bmeviz.segment(vol, reference=widget.session.reference_point, region=gt["bone"], seeds=gt["seeds"][:1])
    canvas = viewer.window._qt_viewer.canvas.native
    for name in ("BME seeds", "BME"):
        viewer.layers.selection.active = viewer.layers[name]
        canvas.setFocus()
        QApplication.processEvents()
        QTest.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        QApplication.processEvents()
        if name == "BME seeds":
            assert len(widget.session.seeds) == 1 and len(seeds.data) == 1
            assert np.array_equal(viewer.layers["BME"].data, one.labels)
    assert not widget.session.seeds and not np.asarray(viewer.layers["BME"].data).any()
