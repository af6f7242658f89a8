"""segment() end to end on the phantom, the CLI on files, and bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import bmeviz
from bmeviz import BmevizWarning, ParameterError
from bmeviz.cli import main
from bmeviz.data import make_phantom
from bmeviz.pipeline import segment


@pytest.fixture(scope="module")
def phantoms():
    return [make_phantom(seed=s) for s in range(3)]


def _per_lesion(result, ph):
    rows = []
    for i, v in enumerate(ph.lesion_volumes_ml, start=1):
        t = ph.truth == i
        ids = np.unique(result.labels[t])
        m = np.isin(result.labels, ids[ids > 0])
        got = m.sum() * ph.volume.voxel_volume_mm3 / 1000
        rows.append((v, got, 2 * (m & t).sum() / max(1, m.sum() + t.sum())))
    return np.array(rows)


def test_phantom_lesions_found_with_accurate_volume_and_dice(phantoms):
    """Lesions >= 0.5 mL: Dice >= 0.90 and volume within 3% on average, 4% for any one."""
    errors, dices = [], []
    for ph in phantoms:
        res = segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds, edge="half-max")
        assert res.n_lesions == len(ph.lesion_volumes_ml)
        rows = _per_lesion(res, ph)
        assert np.all(rows[:, 0] >= 0.45)  # ~0.5 mL and up (the smallest varies with the seed)
        errors += list(100 * (rows[:, 1] / rows[:, 0] - 1))
        dices += list(rows[:, 2])
    errors = np.array(errors)
    assert min(dices) >= 0.90
    assert np.mean(np.abs(errors)) <= 3.0
    assert np.max(np.abs(errors)) <= 4.0, errors


def test_plain_threshold_edge_overestimates_soft_lesions(phantoms):
    """The reason half-max exists: the reference threshold takes the soft rim along."""
    ph = phantoms[0]
    plain = segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds, edge="threshold")
    rows = _per_lesion(plain, ph)
    assert np.all(rows[:, 1] > rows[:, 0] * 1.05)


def test_joint_fluid_next_to_bone_is_not_counted_with_a_region(phantoms):
    ph = phantoms[0]
    res = segment(ph.volume, reference=ph.reference, region=ph.bone, edge="half-max")  # all in region, no seeds
    assert not (res.mask & ph.fluid).any()
    assert not (res.mask & ~ph.bone).any()
    rows = _per_lesion(res, ph)
    assert np.all(rows[:, 2] >= 0.85)


def test_leak_guard_stops_a_seed_in_fluid_and_says_so(phantoms):
    ph = phantoms[0]
    with pytest.warns(BmevizWarning, match="seed 1"):
        res = segment(ph.volume, reference=ph.reference, seeds=[ph.fluid_seed, ph.seeds[0]], max_volume_ml=15)
    assert res.grow.leaked[0] and not res.grow.leaked[1]
    assert any("leak guard" in m for m in res.messages)
    assert not (res.mask & ph.fluid).any()
    assert res.n_lesions >= 1


def test_deterministic_and_seed_order_invariant(phantoms):
    ph = phantoms[1]
    a = segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds, edge="half-max")
    b = segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds[::-1], edge="half-max")
    assert np.array_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(a.table, b.table)


def test_table_volumes_are_voxel_counts_times_voxel_volume(phantoms):
    ph = phantoms[2]
    res = segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    counts = np.bincount(res.labels.ravel())[1:]
    assert np.allclose(res.table["volume_mm3"], counts * ph.volume.voxel_volume_mm3)
    assert res.total_volume_ml == pytest.approx(counts.sum() * ph.volume.voxel_volume_mm3 / 1000)
    assert json.dumps(res.params)  # JSON-serialisable


def test_reference_as_point_and_radius(phantoms):
    ph = phantoms[0]
    res = segment(ph.volume, reference=ph.reference_point, reference_radius_mm=6, region=ph.bone, seeds=ph.seeds,
                  edge="half-max")
    assert res.params["reference"]["kind"] == "sphere" and res.params["reference"]["radius_mm"] == 6
    assert res.n_lesions == 4


@pytest.mark.parametrize("kwargs, words", [
    ({"seeds": [[999, 0, 0]]}, "outside the image"),
    ({"seeds_mm": [[1e4, 0, 0]]}, "outside the image"),
    ({"k": -1.0}, "negative"),
    ({"rule": "magic"}, "rule"),
    ({"edge": "soft"}, "edge"),
])
def test_bad_parameters_give_clear_errors(phantoms, kwargs, words):
    ph = phantoms[0]
    with pytest.raises(ParameterError, match=words):
        segment(ph.volume, reference=ph.reference, region=ph.bone, **kwargs)


def test_bad_reference_and_region(phantoms):
    ph = phantoms[0]
    with pytest.raises(ParameterError, match="same grid"):
        segment(ph.volume, reference=ph.reference[:-1])
    with pytest.raises(ParameterError, match="no voxels"):
        segment(ph.volume, reference=np.zeros_like(ph.reference))
    with pytest.raises(ParameterError, match="region has no voxels"):
        segment(ph.volume, reference=ph.reference, region=np.zeros_like(ph.bone))
    with pytest.raises(ParameterError, match="reference is required"):
        segment(ph.volume, reference=None)


# ---------------------------------------------------------------------------- files and CLI
@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory, phantoms):
    ph = phantoms[0]
    d = tmp_path_factory.mktemp("inputs")
    bmeviz.io.save_volume(ph.volume, d / "stir.nii.gz")
    bmeviz.save_mask(ph.reference, ph.volume, d / "ref.nii.gz")
    bmeviz.save_mask(ph.bone, ph.volume, d / "bone.nii.gz")
    return d, ph


def test_cli_segment_writes_outputs_on_the_source_grid(tmp_path, phantom_files, capsys):
    d, ph = phantom_files
    vol = bmeviz.load(d / "stir.nii.gz")
    seed_mm = vol.index_to_ras(ph.seeds[0])
    out = tmp_path / "out"
    args = ["segment", str(d / "stir.nii.gz"), "--reference", str(d / "ref.nii.gz"), "--region", str(d / "bone.nii.gz"),
            "--seed", ",".join(map(str, ph.seeds[1])), f"--seed-mm={seed_mm[0]:.3f},{seed_mm[1]:.3f},{seed_mm[2]:.3f}",
            "--edge", "half-max", "--out", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bme_mask.nii.gz", "lesions.csv", "overlay.png", "provenance.json"]
    src, mask = nib.load(str(d / "stir.nii.gz")), nib.load(str(out / "bme_mask.nii.gz"))
    assert mask.shape == src.shape and np.allclose(mask.affine, src.affine, atol=1e-6)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["params"]["seeds"][0] == ph.seeds[1].tolist()
    assert prov["params"]["seeds"][1] == ph.seeds[0].tolist()  # the mm seed landed on the intended voxel
    table = pd.read_csv(out / "lesions.csv")
    assert len(table) == 2
    # the mask overlays the lesions voxel for voxel (read independently with nibabel)
    labels = np.asarray(mask.dataobj).transpose(2, 1, 0)
    for s in ph.seeds[:2]:
        assert labels[tuple(s)] > 0


def test_negative_seed_mm_with_equals_form(tmp_path, phantom_files):
    d, ph = phantom_files
    vol = bmeviz.load(d / "stir.nii.gz")
    ras = vol.index_to_ras(ph.seeds[3])
    assert (ras < 0).any()  # the phantom's lesion 4 has negative RAS coordinates
    out = tmp_path / "neg"
    assert main(["segment", str(d / "stir.nii.gz"), "--reference", str(d / "ref.nii.gz"),
                 f"--seed-mm={ras[0]:.2f},{ras[1]:.2f},{ras[2]:.2f}", "--out", str(out), "--no-overlay"]) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["params"]["seeds"] == [ph.seeds[3].tolist()]


def test_cli_refuses_to_write_into_inputs_or_foreign_folders(tmp_path, phantom_files, capsys):
    d, _ = phantom_files
    assert main(["segment", str(d / "stir.nii.gz"), "--reference", str(d / "ref.nii.gz"), "--out", str(d)]) == 2
    assert "input folder" in capsys.readouterr().err
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("x")
    assert main(["segment", str(d / "stir.nii.gz"), "--reference", str(d / "ref.nii.gz"), "--out", str(foreign)]) == 2
    assert (foreign / "thesis.docx").read_text() == "x" and len(list(foreign.iterdir())) == 1


def test_cli_bad_seed_is_one_line(tmp_path, phantom_files, capsys):
    d, _ = phantom_files
    assert main(["segment", str(d / "stir.nii.gz"), "--reference", str(d / "ref.nii.gz"),
                 "--seed", "1,2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmeviz: error:") and "three comma-separated numbers" in err


def test_demo_runs_and_matches_truth(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "4 lesion(s)" in out and out.count("Dice 0.9") == 4
    assert (tmp_path / "demo" / "result" / "overlay.png").stat().st_size > 20_000


def test_provenance_has_no_identifiers(tmp_path, dicom_series):
    vol = bmeviz.load(dicom_series)
    ref = np.zeros(vol.shape, bool)
    ref[4:7, 10:20, 10:20] = True
    res = segment(vol, reference=ref)
    res.save(tmp_path / "o", overlay=False)
    text = "".join(p.read_text() for p in (tmp_path / "o").iterdir() if p.suffix in {".json", ".csv"})
    for phi in ("Doe", "PID-778899", "ACC-445566", "Hospital Zeta", "19700101", str(dicom_series.parent)):
        assert phi not in text


def test_seeds_that_grow_nothing_give_an_empty_result_and_say_why(phantoms):
    ph = phantoms[0]
    marrow_point = ph.reference_point  # normal marrow: below the threshold
    with pytest.warns(BmevizWarning, match="below the threshold"):
        res = segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=[marrow_point])
    assert res.n_lesions == 0 and res.total_volume_ml == 0
    assert res.totals["bme_fraction_of_region"] == 0
    assert any("nothing grown" in m for m in res.messages)


def test_a_scan_without_bme_measures_zero_not_an_error(phantoms):
    """A healthy control in a cohort: nothing above threshold inside the region."""
    ph = phantoms[0]
    res = segment(ph.volume, reference=ph.reference, region=ph.bone, k=1000)
    assert res.n_lesions == 0 and res.totals["bme_fraction_of_region"] == 0
    assert res.totals["region_volume_ml"] == pytest.approx(ph.bone.sum() * ph.volume.voxel_volume_mm3 / 1000)


def test_provenance_does_not_name_the_input_unless_asked(tmp_path, phantom_files):
    d, ph = phantom_files
    named = tmp_path / "DOE_JANE_1970"
    named.mkdir()
    bmeviz.io.save_volume(ph.volume, named / "DOE_JANE_stir.nii.gz")
    res = segment(bmeviz.load(named / "DOE_JANE_stir.nii.gz"), reference=ph.reference)
    assert "DOE" not in json.dumps(res.provenance())
    assert res.provenance()["input"]["name"].startswith("sha256:")
    assert "DOE_JANE" in json.dumps(res.provenance(include_phi=True))


@pytest.mark.parametrize("kwargs, words", [({"k": 1e308}, "smaller k"), ({"upper": [1, 2]}, "upper"),
                                           ({"reference_radius_mm": 1e308}, "radius")])
def test_absurd_numbers_are_refused_by_name(phantoms, kwargs, words):
    ph = phantoms[0]
    ref = ph.reference_point if "reference_radius_mm" in kwargs else ph.reference
    with pytest.raises(ParameterError, match=words):
        segment(ph.volume, reference=ref, region=ph.bone, **kwargs)
