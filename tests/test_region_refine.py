"""The region refiner (bmeviz.region_refine): trained by ``bmeviz region-refiner`` on 3 real SIJ
atlases that do not include the test scan, then used on 1013 (outlined from 4 other atlases):
it must beat the atlas region it refines, move little with a second user's clicks, and read
back from its file unchanged. Bad refiner files and misuse get a clear ParameterError.

The real-data tests skip without ../shared/data; about 2.5 minutes in all (the training
outlines each of its 3 atlases from the other two).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import bmeviz
from bmeviz.cli import main
from bmeviz.errors import ParameterError
from bmeviz.region import region_from_seeds
from bmeviz.region_refine import load_refiner, train_refiner

from helpers import shared

pytest.importorskip("SimpleITK")
pytest.importorskip("sklearn")

TARGET = "1013"
ATLASES = ("1007", "4386", "2014", "1234")  # the atlas folder used on 1013 (as in test_region_atlas)
TRAIN = ("1001", "2016", "1007")  # the refiner's training atlases: 1013 is not among them


def _dice(a, b) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def _paths(sid: str) -> tuple[Path, Path]:
    if sid in ("1001", "2016"):
        return shared("sij-t1-extra", f"{sid}_T1W.nii.gz"), shared("sij-t1-extra", f"{sid}_disease_region.nii.gz")
    return (shared("sij-stir-dev", "images", f"{sid}_T1W.nii.gz"),
            shared("sij-stir-dev", "disease_region", f"{sid}_disease_region.nii.gz"))


def _clicks(t1, manual, perturb=None):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from region_sij import clicks_from_region

    return clicks_from_region(t1, manual, perturb=perturb)


def _manifest(path: Path, ids) -> Path:
    """A CSV manifest pointing at the shared files (nothing copied)."""
    rows = ["image,region"] + [",".join(str(p.resolve()) for p in _paths(s)) for s in ids]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``bmeviz region-refiner`` on 3 atlases, with its leave-one-out check."""
    d = tmp_path_factory.mktemp("refiner")
    out = d / "refiner.joblib"
    code = main(["region-refiner", "--atlas", str(_manifest(d / "train.csv", TRAIN)), "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def target():
    img, reg = _paths(TARGET)
    return bmeviz.load(img), bmeviz.load(reg).array > 0, bmeviz.load(shared("sij-stir-dev", "images",
                                                                            f"{TARGET}_STIR.nii.gz"))


@pytest.fixture(scope="module")
def outlined(trained, target, tmp_path_factory):
    t1, manual, stir = target
    atlas = _manifest(tmp_path_factory.mktemp("atlas") / "atlas.csv", ATLASES)
    seeds = _clicks(t1, manual)
    plain = region_from_seeds(t1, seeds=seeds, on=stir, atlas=atlas)
    refined = region_from_seeds(t1, seeds=seeds, on=stir, atlas=atlas, refine=trained)
    return atlas, plain, refined


def test_the_refiner_file_records_its_training_and_its_check(trained):
    """Measured (3 atlases, each outlined from the other two): leave-one-out Dice in the
    folder 0.71 (atlas region) -> 0.75 (refined)."""
    ref = load_refiner(trained)
    assert ref.atlases == list(TRAIN)
    v = ref.validation
    assert [r["atlas"] for r in v["per_atlas"]] == list(TRAIN)
    assert v["refined_dice_mean"] > v["atlas_dice_mean"] + 0.01
    assert ref.versions["scikit-learn"]
    assert load_refiner(trained) is ref  # read once per file version


def test_refined_region_beats_the_atlas_region_on_an_unseen_scan(target, outlined):
    """1013 is in neither the atlas folder nor the refiner's training. Measured: atlas region
    0.70, refined 0.76 (the refiner trained on 3 atlases only; on 6: see docs/region.md).
    Floors: +0.03 over the atlas region it refines, and 0.72."""
    _, manual, stir = target
    _, plain, refined = outlined
    assert refined.mask.shape == stir.shape and np.allclose(refined.mask.affine, stir.affine)
    assert refined.info["refiner"]["atlases"] == list(TRAIN)
    assert refined.info["atlases"] == plain.info["atlases"]
    d_plain, d_refined = _dice(plain.mask.array, manual), _dice(refined.mask.array, manual)
    assert d_refined >= 0.72
    assert d_refined >= d_plain + 0.03
    assert 0.8 < refined.mask.array.sum() / manual.sum() < 1.25


def test_second_user_clicks_barely_move_the_refined_region(target, outlined, trained):
    t1, manual, stir = target
    atlas, _, refined = outlined
    res2 = region_from_seeds(t1, seeds=_clicks(t1, manual, perturb=int(TARGET)), on=stir, atlas=atlas,
                             refine=load_refiner(trained))
    assert _dice(res2.mask.array, refined.mask.array) >= 0.80
    assert _dice(res2.mask.array, manual) >= 0.68


def test_cli_region_with_the_refiner(trained, target, tmp_path, capsys):
    t1, manual, stir = target
    atlas = _manifest(tmp_path / "atlas.csv", ATLASES[:3])
    out = tmp_path / "region.nii.gz"
    mm = t1.index_to_ras(_clicks(t1, manual))
    args = ["region", str(_paths(TARGET)[0]), "--atlas", str(atlas), "--refine", str(trained), "--on",
            str(shared("sij-stir-dev", "images", f"{TARGET}_STIR.nii.gz")), "--out", str(out)]
    args += [f"--seed-mm={x:.2f},{y:.2f},{z:.2f}" for x, y, z in mm]
    assert main(args) == 0
    assert "refined" in capsys.readouterr().out
    m = bmeviz.load(out)
    assert m.shape == stir.shape and np.allclose(m.affine, stir.affine)
    assert _dice(m.array > 0, manual) >= 0.70


def test_bad_refiner_files_and_misuse_name_the_problem(tmp_path, target):
    t1 = target[0]
    bad = tmp_path / "refiner.joblib"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(ParameterError, match="refiner.joblib cannot be read"):
        load_refiner(bad)
    with pytest.raises(ParameterError, match="does not exist"):
        load_refiner(tmp_path / "missing.joblib")
    with pytest.raises(ParameterError, match="refine needs atlas"):
        region_from_seeds(t1, seeds=[(12, 168, 168)], contrast="t1", refine=bad)
    with pytest.raises(ParameterError, match="STIR"):
        region_from_seeds(target[2], seeds=[(12, 168, 168)], contrast="stir", atlas=tmp_path, refine=bad)
    with pytest.raises(ParameterError, match="at least 3 atlases"):
        train_refiner([(t1, target[1])] * 2)
    with pytest.raises(ParameterError, match="unknown refiner parameter"):
        train_refiner(tmp_path, params={"band": 3})
    assert main(["region", str(_paths(TARGET)[0]), "--seed=12,168,168", "--refine", str(bad),
                 "--out", str(tmp_path / "r.nii.gz")]) != 0
