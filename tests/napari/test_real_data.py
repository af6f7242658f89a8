"""The widget on real scans from ../shared/data, driven by real mouse clicks: a reader's masks
of an SIJ STIR become Labels and are used; an echo of a multi-echo knee series is chosen and
another picked; an off-image click changes nothing; a session reloads to identical labels;
the autosave of a killed viewer loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bmeviz
from bmeviz.session import Session


def _seed_in(mask):
    from scipy import ndimage as ndi

    lab, _ = ndi.label(mask)
    big = np.bincount(lab.ravel())[1:].argmax() + 1
    pts = np.argwhere(lab == big)
    return tuple(int(v) for v in pts[np.argmin(((pts - pts.mean(0)) ** 2).sum(1))])


@pytest.fixture
def sij_files(shared_data):
    root = shared_data("sij-stir-dev")
    return {"image": root / "images" / "1013_STIR.nii.gz",
            "reference": root / "normal_marrow" / "1013_normal_marrow.nii.gz",
            "region": root / "disease_region" / "1013_disease_region.nii.gz",
            "reader": root / "inflammation" / "1013_inflammation_R11.nii.gz"}


def test_reader_masks_become_labels_and_are_used(make_napari_viewer_proxy, sij_files, click, error_notifications,
                                                 tmp_path):
    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1366, 768)
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    (image,) = widget.open_path(str(sij_files["image"]))
    assert image.name == "1013_STIR" and widget.image_combo.currentText() == "1013_STIR"
    # the reader's masks open after the scan: Labels on the scan's grid, picked up as they appear
    (ref_layer,) = viewer.open(str(sij_files["reference"]), plugin="bmeviz")
    (region_layer,) = viewer.open(str(sij_files["region"]), plugin="bmeviz")
    from napari.layers import Labels

    assert isinstance(ref_layer, Labels) and isinstance(region_layer, Labels)
    assert np.allclose(region_layer.scale, image.scale) and np.allclose(region_layer.translate, image.translate)
    assert widget.ref_combo.currentText() == "1013_normal_marrow"
    assert widget.region_combo.currentText() == "1013_disease_region"
    # readable, distinct colours: region and reference differ
    c_ref = np.asarray(ref_layer.colormap.map(1))[:3]
    c_reg = np.asarray(region_layer.colormap.map(1))[:3]
    assert np.abs(c_ref - c_reg).max() > 0.3
    widget.update_threshold()
    vol = bmeviz.load(sij_files["image"])
    ref = bmeviz.load(sij_files["reference"]).array > 0
    region = bmeviz.load(sij_files["region"]).array > 0
    reader = bmeviz.load(sij_files["reader"]).array > 0
    from bmeviz.pipeline import reference_threshold  # what segment() computes: the preview agrees with the outline

    assert widget.threshold.value == pytest.approx(reference_threshold(vol, reference=ref, region=region)[2].value)
    # a real click in the reader's largest lesion: the same answer as bmeviz segment
    seed = _seed_in(reader & region)
    widget.add_seeds()
    click(viewer, image, seed)
    assert len(widget.session.seeds) == 1
    res = bmeviz.segment(vol, reference=ref, region=region, seeds=np.rint(widget.seeds()))
    assert np.array_equal(viewer.layers["BME"].data, res.labels)
    assert f"{res.total_volume_ml:.3f} mL" in widget.total_label.text()
    # an off-image click: nothing changes, and the message says why first
    before = np.array(viewer.layers["BME"].data, copy=True)
    click(viewer, image, (seed[0], seed[1], vol.shape[2] + 60))
    assert len(widget.session.seeds) == 1 and len(widget.seeds_layer().data) == 1
    assert error_notifications[-1].startswith("The click is outside the image")
    assert np.array_equal(viewer.layers["BME"].data, before)

    # save the session, open the scan in a fresh viewer, reload: identical labels
    path = widget.save_session(tmp_path / "sij.bmeviz-session.json")
    viewer2 = make_napari_viewer_proxy()
    _, w2 = viewer2.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    w2.open_path(str(sij_files["image"]))
    w2.load_session(path)
    assert np.array_equal(viewer2.layers["BME"].data, viewer.layers["BME"].data)
    assert w2.region_combo.currentText() == "1013_disease_region" and w2.ref_combo.currentText() == "1013_normal_marrow"
    assert w2.total_label.text() == widget.total_label.text()


def test_multi_echo_knee_opens_one_echo_and_lists_the_rest(make_napari_viewer_proxy, shared_data, wait_idle):
    folder = shared_data("knee-dicom", "mese-t2-multiecho")
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    with pytest.warns(bmeviz.BmevizWarning, match=r"^echo 8 of 8 \(TE 50\.5 ms\) opened: the longest echo time"):
        (layer,) = widget.open_path(str(folder))
    assert layer.name == "ANONYMIZED · T2 · echo 8 (TE 50.5 ms) · series 8"
    assert widget.series_combo.isVisible() or widget.series_combo.count() == 8
    labels = [widget.series_combo.itemText(i) for i in range(widget.series_combo.count())]
    assert len(labels) == 8 and all(f"echo {i}/8" in t for i, t in enumerate(labels, start=1))
    assert widget.series_combo.currentText() == labels[-1]
    assert "longest echo time" in widget.image_info.text()  # the widget says which and why
    # pick echo 3 from the widget: it opens beside the first and becomes the image
    widget.series_combo.setCurrentIndex(2)
    widget.series_combo.activated.emit(2)
    wait_idle(widget)
    assert len(viewer.layers) == 2
    new = viewer.layers[-1]
    assert new.name == "ANONYMIZED · PD · echo 3 (TE 18.9 ms) · series 8"
    assert widget.image_combo.currentText() == new.name
    direct = bmeviz.load(folder, echo=3)
    assert np.array_equal(np.asarray(new.data), direct.array) and np.allclose(new.scale, direct.spacing)


def test_folder_bmeviz_cannot_read_says_why(make_napari_viewer_proxy, tmp_path, error_notifications):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a scan")
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    assert widget.open_path(str(tmp_path / "notes")) == []
    assert error_notifications[-1].startswith("No DICOM images in the folder 'notes'")


def test_autosave_survives_a_killed_viewer(sij_files, tmp_path, make_napari_viewer_proxy):
    """A napari viewer in its own process clicks a seed and is killed with SIGKILL: its autosave
    file reloads to the labels it showed, and a new viewer of the same scan offers it back."""
    seed = _seed_in((bmeviz.load(sij_files["reader"]).array > 0) & (bmeviz.load(sij_files["region"]).array > 0))
    code = textwrap.dedent(f"""
        import os, sys, time
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        import numpy as np, napari
        viewer = napari.Viewer(show=False)
        _, w = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
        w.open_path({str(sij_files["image"])!r})
        viewer.open({str(sij_files["reference"])!r}, plugin="bmeviz")
        viewer.open({str(sij_files["region"])!r}, plugin="bmeviz")
        w.update_threshold()
        w.seeds_layer(create=True).add([list(map(float, {seed!r}))])
        np.save({str(tmp_path / "shown.npy")!r}, np.asarray(viewer.layers["BME"].data))
        print("ready", w.session.autosave_path, flush=True)
        time.sleep(600)
    """)
    env = dict(os.environ, BMEVIZ_AUTOSAVE_DIR=os.environ["BMEVIZ_AUTOSAVE_DIR"],
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert line.startswith("ready"), line
    assert proc.returncode == -signal.SIGKILL
    auto = line.split(" ", 1)[1].strip()
    back = Session.load(auto)
    shown = np.load(tmp_path / "shown.npy")
    assert shown.any() and np.array_equal(back.labels, shown)
    assert len(back.seeds) == 1 and back.region_name == "1013_disease_region"
    # a new viewer of the same scan keeps that autosave aside and restores it on request
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    widget.open_path(str(sij_files["image"]))
    assert not widget.restore_button.isHidden()
    widget.restore_autosave()
    assert np.array_equal(viewer.layers["BME"].data, shown)
    assert widget.region_combo.currentText() == "1013_disease_region"
