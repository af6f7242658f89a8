"""Manifest, reader, writer and sample data of the napari plugin."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import bmeviz
from bmeviz.io import save_volume
from bmeviz.io.dicom_write import write_dicom_series
from bmeviz.napari._reader import napari_get_reader, read
from bmeviz.napari._writer import write_labels


def test_manifest_is_valid_and_complete():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("bmeviz")
    pm.validate_imports()  # every python_name resolves (imports napari/Qt for the widget)
    c = pm.contributions
    assert [r.accepts_directories for r in c.readers] == [True]
    assert {"*.nii", "*.nii.gz", "*.dcm"} <= set(c.readers[0].filename_patterns)
    assert c.writers[0].layer_types == ["labels"] and ".nii.gz" in c.writers[0].filename_extensions
    assert [s.key for s in c.sample_data] == ["phantom"]
    assert [w.display_name for w in c.widgets] == ["BME segmentation", "BME scores"]


def test_core_and_cli_do_not_import_napari_or_qt():
    code = (
        "import sys, bmeviz, bmeviz.cli, bmeviz.session, bmeviz.napari, bmeviz.napari.cli, bmeviz.napari._reader, "
        "bmeviz.napari._writer, bmeviz.napari._sample\n"
        "import argparse\n"
        "p = argparse.ArgumentParser(); sub = p.add_subparsers(dest='command')\n"
        "bmeviz.napari.cli.add_cli(sub, bmeviz.cli.command)\n"
        "a = p.parse_args(['view', 'x.nii.gz', '--seed', '1,2,3', '--screenshot', 'x.png'])\n"
        "assert bmeviz.cli._COMMANDS['view'] is not None and a.seed == ['1,2,3']\n"
        "heavy = ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide6', 'vispy')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("make", ["missing", "text", "png", "two_paths", "none"])
def test_get_reader_declines_what_it_cannot_read(tmp_path, make):
    if make == "missing":
        path = tmp_path / "nope.nii.gz"
    elif make == "text":
        path = tmp_path / "notes.dcm"
        path.write_text("not dicom")
    elif make == "png":
        path = tmp_path / "a.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    elif make == "empty_dir":
        path = tmp_path / "empty"
        path.mkdir()
    elif make == "dir_of_text":
        path = tmp_path / "docs"
        path.mkdir()
        (path / "readme.txt").write_text("hello")
    elif make == "two_paths":
        path = [str(tmp_path / "a.nii"), str(tmp_path / "b.nii")]
    else:
        path = None
    assert napari_get_reader(path) is None


@pytest.mark.parametrize("make", ["empty_dir", "dir_of_text"])
def test_folders_bmeviz_cannot_read_get_a_reason(tmp_path, make):
    """Any folder gets the bmeviz reader, which says why it cannot open it (not napari's 'refused')."""
    path = tmp_path / "docs"
    path.mkdir()
    if make == "dir_of_text":
        (path / "readme.txt").write_text("hello")
    reader = napari_get_reader(str(path))
    assert reader is not None
    with pytest.raises(bmeviz.UnreadableFileError, match="^No DICOM images in the folder 'docs'"):
        reader(str(path))


def test_reader_masks_open_as_labels_on_their_grid(shared_data):
    from bmeviz.napari._reader import is_mask

    root = shared_data("sij-stir-dev")
    scan = root / "images" / "1013_STIR.nii.gz"
    (img, img_kw, kind), = read(str(scan))
    assert kind == "image" and not is_mask(img)
    for folder, name in (("disease_region", "1013_disease_region"), ("normal_marrow", "1013_normal_marrow"),
                         ("inflammation", "1013_inflammation_R11")):
        path = root / folder / f"{name}.nii.gz"
        (data, kw, kind), = napari_get_reader(str(path))(str(path))
        assert kind == "labels" and kw["name"] == name
        assert np.array_equal(data > 0, bmeviz.load(path).array > 0) and data.dtype == np.uint8
        assert np.allclose(kw["scale"], img_kw["scale"]) and np.allclose(kw["translate"], img_kw["translate"])
        assert np.allclose(kw["metadata"]["bmeviz"]["affine"], img_kw["metadata"]["bmeviz"]["affine"], atol=1e-3)


def test_reader_picks_the_longest_echo_and_says_why(shared_data):
    folder = shared_data("knee-dicom", "mese-t2-multiecho")
    with pytest.warns(bmeviz.BmevizWarning, match=r"^echo 8 of 8 \(TE 50\.5 ms\) opened: the longest echo time"):
        (data, kw, kind), = read(str(folder))
    assert kind == "image" and data.shape == (24, 256, 256)
    assert kw["name"] == "ANONYMIZED · T2 · echo 8 (TE 50.5 ms) · series 8"
    assert len(kw["metadata"]["bmeviz"]["series"]) == 8
    assert np.array_equal(data, bmeviz.load(folder, echo=8).array)
    # one file of the series opens the echo it holds
    first = sorted(folder.iterdir())[0]
    with pytest.warns(bmeviz.BmevizWarning, match="holds echo"):
        (d1, kw1, _), = read(str(first))
    echo = kw1["metadata"]["bmeviz"]["volume_metadata"]["echo"]
    assert np.array_equal(d1, bmeviz.load(folder, echo=echo).array)


def _check_image_layer(layer_data, vol):
    (data, kwargs, kind), = layer_data
    assert kind == "image"
    assert data.shape == vol.shape
    assert np.allclose(kwargs["scale"], vol.spacing)
    assert kwargs["units"] == ("mm", "mm", "mm")
    record = kwargs["metadata"]["bmeviz"]
    assert np.allclose(record["affine"], vol.affine, atol=1e-4)
    lo, hi = kwargs["contrast_limits"]
    assert np.percentile(data, 1) <= hi and lo < hi <= data.max()
    return kwargs


def test_reader_opens_nifti(tmp_path, phantom_sample):
    vol, _ = phantom_sample
    path = save_volume(vol, tmp_path / "knee_stir.nii.gz")
    reader = napari_get_reader(str(path))
    assert reader is not None
    kwargs = _check_image_layer(reader(str(path)), bmeviz.load(path))
    assert kwargs["name"] == "knee_stir"
    assert kwargs["metadata"]["bmeviz"]["path"] == str(path)


def test_reader_opens_synthetic_dicom_folder_and_lists_series(tmp_path, small_volume):
    study = tmp_path / "study"
    write_dicom_series(small_volume, study / "stir", sequence="STIR", description="STIR cor obl", series_number=5)
    t1 = small_volume.with_array(small_volume.array * 0.5)
    write_dicom_series(t1, study / "t1", sequence="T1", description="T1 cor", series_number=3)
    one = napari_get_reader(str(study / "stir"))
    assert one is not None
    kwargs = _check_image_layer(one(str(study / "stir")), small_volume)
    assert kwargs["name"] == "STIR cor obl · series 5"
    assert len(kwargs["metadata"]["bmeviz"]["series"]) == 1
    # a study folder with two series: the fluid-sensitive one opens, both are listed
    with pytest.warns(bmeviz.BmevizWarning, match="fluid-sensitive"):
        (data, kw, _), = napari_get_reader(str(study))(str(study))
    assert kw["name"] == "STIR cor obl · series 5"
    labels = [s["label"] for s in kw["metadata"]["bmeviz"]["series"]]
    assert len(labels) == 2 and any("T1" in s for s in labels)
    # and a single DICOM file opens its series
    first = sorted((study / "stir").iterdir())[0]
    assert napari_get_reader(str(first)) is not None
    (d1, _, _), = read(str(first))
    assert d1.shape == small_volume.shape


def test_reader_opens_real_knee_dicom(shared_data):
    folder = shared_data("knee-dicom", "cubequant-fs-sagittal")
    reader = napari_get_reader(str(folder))
    assert reader is not None
    (data, kwargs, _), = reader(str(folder))
    assert data.shape == (80, 512, 512)
    assert np.allclose(kwargs["scale"], (1.5, 0.3125, 0.3125), atol=1e-3)
    assert kwargs["name"].startswith("cubequant")


def test_writer_lands_on_the_source_grid(tmp_path, small_volume):
    src = save_volume(small_volume, tmp_path / "src.nii.gz")
    vol = bmeviz.load(src)
    (_, kwargs, _), = read(str(src))
    labels = np.zeros(vol.shape, np.int32)
    labels[3:6, 10:20, 5:9] = 2
    out = write_labels(str(tmp_path / "mask"), labels, {"metadata": kwargs["metadata"], "scale": kwargs["scale"],
                                                       "translate": kwargs["translate"]})
    assert out == [str(tmp_path / "mask.nii.gz")]
    img, ref = nib.load(out[0]), nib.load(src)
    assert np.allclose(img.affine, ref.affine, atol=1e-5)
    assert np.array_equal(bmeviz.load(out[0]).array, labels)


def test_sample_data_and_open_in_viewer(make_napari_viewer_proxy, tmp_path, phantom_sample):
    viewer = make_napari_viewer_proxy()
    viewer.open_sample("bmeviz", "phantom")
    vol, gt = phantom_sample
    names = [ly.name for ly in viewer.layers]
    assert names == ["phantom STIR", "bone (search region)", "phantom truth"]
    assert np.allclose(viewer.layers["phantom STIR"].scale, vol.spacing)
    assert np.array_equal(viewer.layers["bone (search region)"].data > 0, gt["bone"])
    # napari's own open() dispatches to the bmeviz reader
    path = save_volume(vol, tmp_path / "scan.nii.gz")
    layers = viewer.open(str(path), plugin="bmeviz")
    assert len(layers) == 1 and np.allclose(layers[0].scale, vol.spacing)
    assert tuple(layers[0].units) == ("mm", "mm", "mm") or str(layers[0].units[0]) in ("mm", "millimeter")
    # the writer through napari's save: labels back on the source grid
    lab = viewer.add_labels(gt["truth"].astype(np.int32), name="truth copy", metadata=layers[0].metadata,
                            scale=layers[0].scale, translate=layers[0].translate)
    written = lab.save(str(tmp_path / "truth_out.nii.gz"), plugin="bmeviz")
    assert written and np.allclose(nib.load(written[0]).affine, nib.load(path).affine, atol=1e-5)
    assert np.array_equal(bmeviz.load(written[0]).array, gt["truth"])


def test_dicom_seg_opens_as_labels_on_its_series_grid(tmp_path, dicom_series):
    """A DICOM SEG written by bmeviz opens as Labels on the grid of the series it segments."""
    vol = bmeviz.load(dicom_series)
    labels = np.zeros(vol.shape, np.int32)
    labels[4:7, 10:20, 8:16] = 1
    labels[8:10, 25:30, 20:26] = 2
    from bmeviz.pipeline import segment

    point = tuple(int(v) for v in np.asarray(vol.shape) // 2)
    with pytest.warns(bmeviz.BmevizWarning, match="no seeds and no region"):
        res = segment(vol, reference=point, reference_radius_mm=6, rule="mean-sd", k=2.0)
    import dataclasses

    from bmeviz.lesions import lesion_table

    res = dataclasses.replace(res, labels=labels, mask=labels > 0,
                              table=lesion_table(labels, vol.array, affine=vol.affine))
    out = tmp_path / "study" / "seg"
    seg_path = res.save(out, seg=True, overlay=False)["seg"]
    reader = napari_get_reader(str(seg_path))
    assert reader is not None
    (data, kw, kind), = reader(str(seg_path))
    assert kind == "labels" and kw["name"].endswith("(SEG)")
    assert np.array_equal(data, labels)
    assert np.allclose(kw["metadata"]["bmeviz"]["affine"], vol.affine, atol=1e-3)
