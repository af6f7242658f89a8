"""bmeviz validate: synthetic readers with known agreement give the known numbers; the
simulated-user harness; manifest, outputs, the docs page and the command; one real SIJ scan."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

import bmeviz
from bmeviz._jsonable import jsonable
from bmeviz.cli import main
from bmeviz.errors import ParameterError, UnreadableFileError
from bmeviz.options import Q3_IQR_K
from bmeviz.validate import Case, read_manifest, sij_cases, validate
from bmeviz.validate.cli import parse_set
from bmeviz.validate.report import BEGIN, END
from bmeviz.validate.study import auto_reference_supported, bright_halves, simulate_users
from helpers import shared

LENGTHS = (4, 6, 10)  # lesion length (rows) of the 3 synthetic cases
SHAPE = (20, 40, 40)


def synthetic_case(cid: str, length: int) -> Case:
    """A noiseless scan (1 mm voxels): checkerboard marrow 90/110, one lesion of 1000 in a box of
    6 x length x 10 voxels. Readers: R11 = the lesion, R12 = R11 plus one row (another session of
    reader 1), R21 = R11 moved 2 columns (reader 2). Every Dice and volume is known in closed form."""
    img = np.where(np.indices(SHAPE).sum(axis=0) % 2 == 0, 90.0, 110.0)
    r11 = np.zeros(SHAPE, bool)
    r11[8:14, 25:25 + length, 25:35] = True
    r12 = np.zeros(SHAPE, bool)
    r12[8:14, 25:26 + length, 25:35] = True
    r21 = np.zeros(SHAPE, bool)
    r21[8:14, 25:25 + length, 27:37] = True
    img[r11] = 1000.0
    normal = np.zeros(SHAPE, bool)
    normal[2:8, 2:10, 2:10] = True  # far (> 10 mm) from the lesion: every reference ball sees marrow only
    region = np.zeros(SHAPE, bool)
    region[1:19, 1:39, 1:39] = True
    vol = bmeviz.Volume(img, np.eye(4))
    return Case(cid, vol, {"R11": r11, "R12": r12, "R21": r21}, normal, region)


@pytest.fixture(scope="module")
def synthetic():
    cases = [synthetic_case(f"c{i}", n) for i, n in enumerate(LENGTHS)]
    # the modes named: with a bmeviz that has reference='auto', the default adds two more
    return validate(cases, n_users=5, seed=1, modes="clicks/point,region/point,clicks/mask,region/mask")


def test_synthetic_readers_known_dice_and_volumes(synthetic):
    s = synthetic.summary
    assert s["readers"]["groups"] == {"R1": ["R11", "R12"], "R21": ["R21"]}
    for cid, L in zip(s["cases"], LENGTHS):
        rd = s["per_case"][cid]["readers"]
        assert rd["volume_ml"] == pytest.approx({"R11": 0.060 * L, "R12": 0.060 * (L + 1), "R21": 0.060 * L})
        assert rd["dice"]["R11/R21"] == pytest.approx(0.8)
        assert rd["dice"]["R11/R12"] == pytest.approx(2 * L / (2 * L + 1))
        assert rd["dice"]["R12/R21"] == pytest.approx(96 * L / (120 * L + 60))
        assert rd["inter_mean"] == pytest.approx((0.8 + 96 * L / (120 * L + 60)) / 2)
        assert rd["intra"]["R1"] == pytest.approx(2 * L / (2 * L + 1))
        # the method finds exactly R11 in every mode (noiseless, threshold 110 + 2 * 20 = 150)
        for key, m in s["per_case"][cid]["modes"].items():
            assert m["dice_vs"] == pytest.approx({"R11": 1.0, "R12": 2 * L / (2 * L + 1), "R21": 0.8}), key
            assert m["volume_ml"]["mean"] == pytest.approx(0.060 * L)
            want = 110 + Q3_IQR_K * 20  # Q3 + k * IQR of the noiseless reference, k the default
            assert m["threshold"] == {"min": pytest.approx(want), "max": pytest.approx(want)}
            if m["n_runs"] > 1:
                assert m["between_user_dice"]["mean"] == 1.0 and m["volume_ml"]["cv"] == 0.0


def test_synthetic_readers_known_volume_agreement(synthetic):
    s = synthetic.summary
    x = 0.060 * np.asarray(LENGTHS, float)  # R11 volumes, mL; R12 = R11 + c, with c = 0.060 mL
    c = 0.060
    intra = s["readers"]["intra_volume"]["R1"]
    ba = intra["bland_altman"]
    assert ba["bias"] == pytest.approx(-c) and ba["sd"] == pytest.approx(0.0, abs=1e-12)
    assert ba["loa"] == pytest.approx((-c, -c))
    # two raters differing by a constant: ICC(3,1) = 1, ICC(2,1) = MSR / (MSR + c^2),
    # MSR = 2 * sum((x - mean)^2) / (n - 1); SDC (agreement) = 1.96 * sqrt(2) * c / sqrt(2)
    msr = 2 * ((x - x.mean()) ** 2).sum() / (len(x) - 1)
    assert intra["icc"]["icc3"] == pytest.approx(1.0)
    assert intra["icc"]["icc2"] == pytest.approx(msr / (msr + c ** 2))
    assert intra["icc"]["sdc_agreement"] == pytest.approx(1.96 * c)
    # R11 vs R21 (first session of each reader): same volumes, perfect volume agreement
    inter = s["readers"]["inter_volume"]
    assert inter["pair"] == "R11/R21"
    assert inter["bland_altman"]["bias"] == pytest.approx(0.0, abs=1e-12)
    assert inter["icc"]["icc2"] == pytest.approx(1.0)
    # the method vs the reader mean (R11 + R12 + R21)/3 = x + c/3: bias -c/3 on every scan
    o = s["overall"]["manual|clicks/point"]
    assert o["vs_reader_mean"]["bland_altman"]["bias"] == pytest.approx(-c / 3)
    assert o["vs_reader"]["R12"]["bias"] == pytest.approx(-c)
    assert o["vs_reader"]["R11"]["bias"] == pytest.approx(0.0, abs=1e-12)
    assert o["between_users"]["icc2"] == pytest.approx(1.0) and o["between_users"]["sdc_agreement"] == pytest.approx(0.0)
    assert o["dice_mean"] == pytest.approx(np.mean([(1 + 2 * L / (2 * L + 1) + 0.8) / 3 for L in LENGTHS]))
    crit = {a["criterion"].split(",")[0]: a for a in s["acceptance"]}
    assert crit["between-user Dice"]["pass"] is True and crit["between-user Dice"]["value"] == 1.0


def test_outputs_written_without_paths(synthetic, tmp_path):
    paths = synthetic.write(tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["bland_altman.png", "per_case.png", "summary.json", "validation.csv", "validation.html",
                     "validation.md"]
    summary = json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert summary["cases"] == ["c0", "c1", "c2"]
    table = synthetic.table
    # 3 cases x 4 modes x 5 users (region/mask: 1 run) x 3 readers + 3 reader pairs per case
    assert len(table) == 3 * (5 + 5 + 5 + 1) * 3 + 3 * 3
    assert len(paths["csv"].read_text().splitlines()) == len(table) + 1
    for p in (tmp_path / "out").iterdir():
        assert str(tmp_path) not in p.read_bytes().decode("latin-1")
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html


def test_doc_page_keeps_prose(synthetic, tmp_path):
    from bmeviz.validate.report import update_doc

    doc = tmp_path / "docs" / "validation.md"
    doc.parent.mkdir()
    doc.write_text(f"# Title\n\nProse before.\n\n{BEGIN}\nold numbers\n{END}\n\nProse after.\n")
    update_doc(doc, synthetic.summary)
    text = doc.read_text()
    assert text.startswith("# Title\n\nProse before.\n\n" + BEGIN) and text.endswith(END + "\n\nProse after.\n")
    assert "old numbers" not in text and "| c2 |" in text
    assert (doc.parent / "images" / "validation_bland_altman.png").stat().st_size < 300_000
    assert "(images/validation_per_case.png)" in text


@pytest.fixture(scope="module")
def phantom_case():
    from bmeviz.data import make_phantom

    ph = make_phantom(shape=(16, 96, 96), spacing=(3.0, 1.4, 1.4), seed=2,
                      lesions=[{"center_index": (7, 30, 44), "radii_mm": (9, 8, 8)}])
    truth = ph.truth > 0
    from scipy import ndimage as ndi

    return Case("ph", ph.volume, {"A": truth, "B": ndi.binary_dilation(truth)}, ph.reference, ph.bone)


def test_harness_identical_users_agree_perfectly_and_perturbed_users_do_not(phantom_case):
    same = validate([phantom_case], n_users=5, seed=0, modes="clicks/point", perturb=False)
    m = same.summary["per_case"]["ph"]["modes"]["manual|clicks/point"]
    assert m["between_user_dice"] == {"mean": 1.0, "min": 1.0, "n_pairs": 10}
    assert m["volume_ml"]["cv"] == 0.0 and m["dice_vs"]["A"] > 0.8
    # the plain reference ball with the published adaptive k (the maximum sets k): the users'
    # different references give different outlines, and the harness must see it
    plain = {"robust_reference": False, "k": "adaptive", "adaptive_top": 100.0}
    moved = validate([phantom_case], n_users=5, seed=0, modes="clicks/point", options=plain)
    m2 = moved.summary["per_case"]["ph"]["modes"]["manual|clicks/point"]
    assert m2["between_user_dice"]["min"] < 1.0
    assert m2["threshold"]["min"] < m2["threshold"]["max"]  # the users' references differ
    # the default (robust) reference: the same users' thresholds differ less and their outlines agree
    robust = validate([phantom_case], n_users=5, seed=0, modes="clicks/point")
    m3 = robust.summary["per_case"]["ph"]["modes"]["manual|clicks/point"]
    assert m3["threshold"]["min"] < m3["threshold"]["max"]
    assert m3["between_user_dice"]["min"] >= m2["between_user_dice"]["min"]
    again = validate([phantom_case], n_users=5, seed=0, modes="clicks/point", options=plain)  # fixed seed: the same
    assert json.dumps(jsonable(again.summary["per_case"])) == json.dumps(jsonable(moved.summary["per_case"]))


def test_simulated_users_click_the_bright_half_inside_the_roi(phantom_case):
    vol = phantom_case.image
    img = np.asarray(vol.array, float)
    lesions = bright_halves(img, phantom_case.readers["A"])
    assert len(lesions) == 1
    truth_vals = img[phantom_case.readers["A"]]
    assert img[tuple(lesions[0].T)].min() > np.median(truth_vals)
    users = simulate_users(vol, phantom_case.normal_marrow, lesions, n_users=8, seed=4, case_id="ph")
    assert len({u.reference_index for u in users}) > 1 and len({tuple(u.clicks[0]) for u in users}) > 1
    for u in users:
        assert phantom_case.normal_marrow[u.reference_index] and 6.0 <= u.radius_mm <= 10.0
        assert img[tuple(u.clicks[0])] > np.median(truth_vals)
        assert np.allclose(vol.ras_to_index(u.reference_mm), u.reference_index)


def test_options_are_passed_and_checked(phantom_case):
    v = validate([phantom_case], n_users=2, modes="clicks/mask", options={"edge": "half-max"})
    assert v.summary["run"]["options"] == {"edge": "half-max"}
    plain = validate([phantom_case], n_users=2, modes="clicks/mask")
    assert (v.summary["per_case"]["ph"]["modes"]["manual|clicks/mask"]["volume_ml"]["mean"]
            != plain.summary["per_case"]["ph"]["modes"]["manual|clicks/mask"]["volume_ml"]["mean"])
    with pytest.raises(ParameterError, match="unknown segment option 'edgy'"):
        validate([phantom_case], options={"edgy": 1})
    with pytest.raises(ParameterError, match="set by the study"):
        validate([phantom_case], options={"seeds": [[1, 2, 3]]})
    with pytest.raises(ParameterError, match="mode 'clicks/ball'"):
        validate([phantom_case], modes="clicks/ball")
    assert parse_set(["min-slices=2", "upper=none"]) == {"min_slices": 2, "upper": None}


def _write_manifest_case(tmp_path, case: Case):
    d = tmp_path / case.case_id
    d.mkdir()
    vol = case.image
    paths = {}
    import nibabel as nib

    nib.save(vol.to_nifti(np.asarray(vol.array, np.float32)), d / "img.nii.gz")
    for name, m in {**case.readers, "nm": case.normal_marrow, "rg": case.region}.items():
        bmeviz.save_mask(m, vol, d / f"{name}.nii.gz")
        paths[name] = f"{case.case_id}/{name}.nii.gz"
    return paths


def test_manifest_both_reader_forms_and_the_command(tmp_path, capsys):
    a, b = synthetic_case("a1", 4), synthetic_case("b2", 6)
    pa, pb = _write_manifest_case(tmp_path, a), _write_manifest_case(tmp_path, b)
    man = tmp_path / "cases.csv"
    man.write_text(
        "case_id,image,reader:R11,reader:R21,readers,normal_marrow,region\n"
        f"a1,a1/img.nii.gz,{pa['R11']},{pa['R21']},R12={pa['R12']},{pa['nm']},{pa['rg']}\n"
        f"b2,b2/img.nii.gz,{pb['R11']},{pb['R21']},R12={pb['R12']},{pb['nm']},{pb['rg']}\n")
    cases = read_manifest(man)
    assert [c.case_id for c in cases] == ["a1", "b2"] and set(cases[0].readers) == {"R11", "R21", "R12"}
    rc = main(["validate", str(man), "--out", str(tmp_path / "out"), "--users", "3", "--modes",
               "clicks/point,region/mask", "--set", "edge=threshold"])
    out = capsys.readouterr().out
    assert rc == 0 and "between-user Dice 1.00" in out
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["per_case"]["a1"]["readers"]["dice"]["R11/R21"] == pytest.approx(0.8)
    assert s["run"]["command"].startswith("bmeviz validate .../cases.csv --out .../out --users 3")
    # bad input: one line, exit 2
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,image\na1,a1/img.nii.gz\na1,a1/img.nii.gz\n")
    assert main(["validate", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "appears twice" in capsys.readouterr().err
    assert main(["validate", "--out", str(tmp_path / "o3")]) == 2
    assert "MANIFEST.csv or --sij-dir" in capsys.readouterr().err


def test_alternative_region_is_reported_next_to_the_manual_one(tmp_path, capsys):
    a, b = synthetic_case("a1", 4), synthetic_case("b2", 6)
    pa, pb = _write_manifest_case(tmp_path, a), _write_manifest_case(tmp_path, b)
    man = tmp_path / "cases.csv"
    man.write_text("case_id,image,readers,normal_marrow,region\n"
                   f"a1,a1/img.nii.gz,R11={pa['R11']};R21={pa['R21']},{pa['nm']},{pa['rg']}\n"
                   f"b2,b2/img.nii.gz,R11={pb['R11']};R21={pb['R21']},{pb['nm']},{pb['rg']}\n")
    alt = tmp_path / "assist"
    alt.mkdir()
    half = a.region.copy()
    half[:, :, 30:] = False  # the assisted region misses half of a1's lesion (columns 30-34 of 25-34)
    bmeviz.save_mask(half, a.image, alt / "a1_region.nii.gz")  # no file for b2: noted, manual only
    rc = main(["validate", str(man), "--out", str(tmp_path / "out"), "--users", "2", "--modes", "clicks/mask",
               "--region-dir", str(alt)])
    assert rc == 0
    assert "case b2: no assisted region" in capsys.readouterr().err
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    modes = s["per_case"]["a1"]["modes"]
    assert modes["manual|clicks/mask"]["dice_vs"]["R11"] == pytest.approx(1.0)
    assert modes["assisted|clicks/mask"]["dice_vs"]["R11"] == pytest.approx(2 * 240 / (240 + 480))
    assert "assisted|clicks/mask" not in s["per_case"]["b2"]["modes"]
    assert "clicks/mask (assisted region)" in (tmp_path / "out" / "validation.md").read_text()


@pytest.mark.parametrize("text, what", [
    ("image\nx.nii.gz\n", "no 'case_id' column"),
    ("case_id,image,readers\nc 1,x.nii.gz,\n", "must be letters"),
    ("case_id,image,readers\nc1,x.nii.gz,R11\n", "name=path"),
])
def test_manifest_errors_name_the_problem(tmp_path, text, what):
    p = tmp_path / "m.csv"
    p.write_text(text)
    with pytest.raises(ParameterError, match=what):
        read_manifest(p)
    with pytest.raises(UnreadableFileError, match="does not exist"):
        read_manifest(tmp_path / "none.csv")


@pytest.mark.shared_data
def test_real_sij_scan_smoke(tmp_path):
    sij = shared("sij-stir-dev")
    cases, skipped = sij_cases(sij)
    assert {"case_id": "2014", "reason": "no reader masks"} in skipped
    case = next(c for c in cases if c.case_id == "1007")
    t = time.perf_counter()
    v = validate([case], n_users=5, seed=0, modes="clicks/point,clicks/mask,region/mask", out=tmp_path)
    s = v.summary
    rd = s["per_case"]["1007"]["readers"]
    assert rd["dice"]["R11/R21"] == pytest.approx(0.62, abs=0.005)  # the published reader agreement
    assert rd["volume_ml"]["R11"] == pytest.approx(3.7, abs=0.05)  # the published R11 volume
    mk = s["per_case"]["1007"]["modes"]["manual|clicks/mask"]
    assert mk["n_runs"] == 5 and mk["clicks"] == 20  # one click per R11 lesion
    assert 0.3 < mk["dice_mean"] <= 1.0
    pt = s["per_case"]["1007"]["modes"]["manual|clicks/point"]
    assert 0.0 <= pt["between_user_dice"]["mean"] <= 1.0 and pt["between_user_dice"]["n_pairs"] == 10
    assert math.isfinite(pt["volume_ml"]["cv"])
    assert (tmp_path / "validation.md").read_text().count("| 1007 |") >= 2
    assert time.perf_counter() - t < 120  # generous: a shared machine; the run takes ~5 s


def test_errors_name_the_case_and_auto_reference_without_support(phantom_case):
    from dataclasses import replace

    empty = replace(phantom_case, region=np.zeros(phantom_case.image.shape, bool))
    with pytest.raises(ParameterError, match=r"^case ph: region has no voxels"):
        validate([empty], n_users=1, modes="clicks/mask")
    with pytest.raises(ParameterError, match="'point' in 'ph'|normal-marrow ROI"):
        validate([replace(phantom_case, normal_marrow=None)], n_users=1, modes="clicks/point")
    try:  # where segment() has an automatic reference (issue 11), the mode runs
        v = validate([phantom_case], n_users=2, modes="clicks/auto,region/auto")
    except ParameterError as e:
        assert "reference mode 'auto' needs a bmeviz whose segment() accepts reference='auto'" in str(e)
        assert not auto_reference_supported()
    else:
        assert v.summary["per_case"]["ph"]["modes"]["manual|region/auto"]["n_runs"] == 1
        assert auto_reference_supported() and "clicks/auto" in v.summary["run"]["modes"]


def test_sessions_given_by_hand_change_what_is_intra_reader(synthetic):
    from bmeviz.validate import summarize
    from bmeviz.validate.cli import parse_sessions

    # declare R11 and R21 sessions of one reader: now R11/R21 (Dice 0.8) is intra-reader
    s = summarize(synthetic.results, sessions=parse_sessions("X=R11+R21"))
    assert s["readers"]["groups"] == {"X": ["R11", "R21"], "R12": ["R12"]}
    for cid, L in zip(s["cases"], LENGTHS):
        assert s["per_case"][cid]["readers"]["intra"]["X"] == pytest.approx(0.8)
        assert s["per_case"][cid]["readers"]["inter_mean"] == pytest.approx(
            (2 * L / (2 * L + 1) + 96 * L / (120 * L + 60)) / 2)
    with pytest.raises(ParameterError, match="no case has: R99"):
        summarize(synthetic.results, sessions={"X": ["R11", "R99"]})


def test_no_lesion_to_click_finds_nothing_in_click_modes():
    # a scan where the click reader drew nothing: users click nothing, so the seeded modes find
    # nothing (not "everything in the region"); region-only still finds the lesion
    case = synthetic_case("e", 4)
    readers = dict(case.readers)
    readers["R11"] = np.zeros(SHAPE, bool)
    from dataclasses import replace

    v = validate([replace(case, readers=readers)], n_users=2, modes="clicks/mask,region/mask")
    m = v.summary["per_case"]["e"]["modes"]
    assert m["manual|clicks/mask"]["volume_ml"]["mean"] == 0.0 and m["manual|clicks/mask"]["clicks"] == 0
    assert m["manual|region/mask"]["volume_ml"]["mean"] == pytest.approx(0.240)
    assert math.isnan(m["manual|clicks/mask"]["dice_vs"]["R11"])  # both empty: undefined, not 0 or 1
    assert m["manual|region/mask"]["dice_vs"]["R11"] == 0.0


def test_dice_against_readers_independent_of_the_clicks(synthetic):
    # clicks come from R11; R12 is R11's other session, so only R21 is independent (Dice 0.8)
    s = synthetic.summary
    for cid in s["cases"]:
        m = s["per_case"][cid]["modes"]["manual|clicks/point"]
        assert m["other_readers"] == ["R21"] and m["dice_other_readers"] == pytest.approx(0.8)
    assert s["overall"]["manual|clicks/mask"]["dice_other_readers"] == pytest.approx(0.8)
    assert "did not come from** (R21;" in synthetic.markdown()
