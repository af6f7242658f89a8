"""Acceptance: the same inputs give the same labels and mL through every door.

The Python API (``bmeviz.segment``), the command line (``bmeviz segment`` via
``bmeviz.cli.main``) and a one-row ``bmeviz batch`` manifest (in this process,
``workers=0``) and the napari session model (``bmeviz.session.Session``, the widget's
model, clicked seed by seed) read the same files with the same options; their label images (read back
from ``bme_mask.nii.gz`` with nibabel, an independent reader) and their totals must be
identical. A second case sets options that only the options model exposes on every door
(``upper``, ``max_radius_mm``) and the half-maximum edge, so a drift in any door's
defaults or flags shows here.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import bmeviz
from bmeviz.batch import run
from bmeviz.cli import main
from bmeviz.data import make_phantom
from bmeviz.io import save_mask, save_volume

SHAPE, SPACING = (20, 112, 112), (3.0, 1.2, 1.2)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("consistency")
    ph = make_phantom(shape=SHAPE, spacing=SPACING, seed=7)
    save_volume(ph.volume, root / "stir.nii.gz")
    save_mask(ph.bone, ph.volume, root / "bone.nii.gz")
    return root, ph


CASES = {
    "defaults, reference point": ({}, []),
    "half-max edge, hysteresis-free bounds": (
        {"edge": "half-max", "upper": 5000.0, "max_radius_mm": 40.0, "min_volume_mm3": 5.0},
        ["--edge", "half-max", "--upper", "5000", "--max-radius-mm", "40", "--min-volume-mm3", "5"]),
}


def _nifti_labels(folder, like):
    """bme_mask.nii.gz read back on the image's grid (its affine must be the image's)."""
    mask = bmeviz.load(folder / "bme_mask.nii.gz")
    np.testing.assert_allclose(nib.load(str(folder / "bme_mask.nii.gz")).affine,
                               nib.load(str(like)).affine, atol=1e-5)
    return np.asarray(mask.array).astype(np.int32)


@pytest.mark.parametrize("case", list(CASES))
def test_api_cli_and_batch_give_identical_labels_and_ml(study, tmp_path, case):
    root, ph = study
    options, flags = CASES[case]
    ref_point = [int(v) for v in ph.reference_point]
    seeds = ph.seeds.tolist()
    image = root / "stir.nii.gz"

    # 1. the Python API, on the file as a user loads it
    vol = bmeviz.load(image)
    api = bmeviz.segment(vol, reference=tuple(ref_point), reference_radius_mm=7, region=root / "bone.nii.gz",
                         seeds=seeds, **options)
    assert api.n_lesions >= 3
    api_out = tmp_path / "api"
    api.save(api_out, overlay=False)

    # 2. the command line
    cli_out = tmp_path / "cli"
    argv = ["segment", str(image), "--reference-point", ",".join(map(str, ref_point)), "--reference-radius-mm", "7",
            "--region", str(root / "bone.nii.gz"), "--out", str(cli_out), "--no-overlay"]
    for s in seeds:
        argv += ["--seed", ",".join(map(str, s))]
    assert main(argv + flags) == 0

    # 3. a one-row batch manifest, run in this process
    cols = {"study_id": "S1", "image": str(image), "reference_point": ",".join(map(str, ref_point)),
            "reference_radius_mm": 7, "region_mask": str(root / "bone.nii.gz"),
            "seeds": ";".join(",".join(map(str, s)) for s in seeds), **options}
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame([cols]).to_csv(manifest, index=False)
    cohort = run(manifest, tmp_path / "batch", workers=0, overlay=False, progress=False)
    assert list(cohort["status"]) == ["ok"]
    batch_out = tmp_path / "batch" / "S1"

    # 4. the napari session model (Qt-free: what the widget drives), clicks one by one
    from bmeviz.session import Session

    session = Session(vol, options=options)
    session.set_reference(point=ref_point, radius_mm=7)
    session.set_region(root / "bone.nii.gz", name="bone")
    for s in seeds:
        session.add_seed(s, grow=True)
    np.testing.assert_array_equal(session.labels, api.labels)
    assert session.current_result().total_volume_ml == pytest.approx(api.total_volume_ml, rel=0, abs=1e-12)
    session_out = tmp_path / "session"
    session.current_result().save(session_out, overlay=False)

    expected = api.labels
    for folder in (api_out, cli_out, batch_out, session_out):
        np.testing.assert_array_equal(_nifti_labels(folder, image), expected, err_msg=str(folder))
        prov = json.loads((folder / "provenance.json").read_text())
        assert prov["totals"]["total_volume_ml"] == pytest.approx(api.total_volume_ml, rel=0, abs=1e-12)
        assert prov["totals"]["n_lesions"] == api.n_lesions
        assert prov["threshold"]["value"] == api.threshold.value
        for name, value in options.items():
            assert prov["params"][name] == value, (folder, name)
        table = pd.read_csv(folder / "lesions.csv")
        np.testing.assert_allclose(table["volume_ml"], api.table["volume_ml"], rtol=1e-5)  # CSV: 6 digits
    assert float(cohort.loc[0, "total_volume_ml"]) == pytest.approx(api.total_volume_ml, rel=1e-12)


def test_a_click_moved_by_a_voxel_barely_moves_the_result(study):
    """A second user clicks one voxel off in every lesion and places the reference 2 voxels
    away: the lesions found are the same and the total moves by less than 3 %."""
    root, ph = study
    vol = bmeviz.load(root / "stir.nii.gz")
    a = bmeviz.segment(vol, reference=tuple(int(v) for v in ph.reference_point), reference_radius_mm=7,
                       region=ph.bone, seeds=ph.seeds)
    moved = ph.seeds + np.array([0, 1, -1])
    b = bmeviz.segment(vol, reference=tuple(int(v) for v in ph.reference_point + np.array([0, 2, 0])),
                       reference_radius_mm=7, region=ph.bone, seeds=moved)
    assert a.n_lesions == b.n_lesions
    assert b.total_volume_ml == pytest.approx(a.total_volume_ml, rel=0.03)
