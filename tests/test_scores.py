"""Scores on synthetic cases with exactly known answers: SIJ quadrants from joint lines, SPARCC
(quadrants, intense, deep), Berlin shares, MOAKS / WORMS boundaries on both sides of each cut-off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bmeviz import ParameterError, Volume
from bmeviz.scores import (SIJ_LABELS, grade, knee_subregions, lines_from_paths, load_anatomy, score_graded,
                           score_sparcc, sij_quadrants)
from helpers import oblique_affine

SP = (3.3, 0.6, 0.6)
S, R, C = 8, 80, 120
RIGHT_COL, LEFT_COL = 30.5, 90.5  # between pixel columns, midway 60.5: no voxel lies on a line or midway


def _case():
    """Oblique-coronal geometry (rows run inferior, columns to the patient's left): the right joint
    is at the low columns. Region: rows 10-70, columns 5-115 on every slice; lines on slices 1 and 6."""
    aff = oblique_affine(spacing=SP)
    img = np.full((S, R, C), 100.0, np.float32)
    vol = Volume(img, aff)
    region = np.zeros((S, R, C), bool)
    region[:, 10:71, 5:116] = True
    lines = {"right": {1: [(10, RIGHT_COL), (71, RIGHT_COL)], 6: [(71, RIGHT_COL), (10, RIGHT_COL)]},
             "left": {1: [(10, LEFT_COL), (71, LEFT_COL)], 6: [(10, LEFT_COL), (40.5, LEFT_COL), (71, LEFT_COL)]}}
    return vol, region, lines


def test_quadrants_from_lines_have_the_fixed_values_in_the_right_places():
    vol, region, lines = _case()
    an = sij_quadrants(region, lines, volume=vol)
    lab = an.labels
    assert an.kind == "sij" and an.names == SIJ_LABELS
    assert not lab[0].any() and not lab[7].any()  # outside the drawn range: no quadrants
    for s in range(1, 7):
        # right joint at low columns: iliac lateral (columns <= 30), sacral medial; superior = low rows
        assert np.all(lab[s, 10:40, 5:31] == 1) and np.all(lab[s, 41:71, 5:31] == 2)
        assert np.all(lab[s, 10:40, 31:60] == 3) and np.all(lab[s, 41:71, 31:60] == 4)
        assert np.all(lab[s, 10:40, 91:116] == 5) and np.all(lab[s, 41:71, 91:116] == 6)
        assert np.all(lab[s, 10:40, 61:91] == 7) and np.all(lab[s, 41:71, 61:91] == 8)
        assert not lab[s][~region[s]].any()


def test_lines_from_napari_paths_sort_sides_by_patient_right():
    vol, region, _ = _case()
    paths = [np.array([[1, 10, LEFT_COL], [1, 70, LEFT_COL]]), np.array([[1, 10, RIGHT_COL], [1, 70, RIGHT_COL]]),
             np.array([[6, 10, RIGHT_COL], [6, 70, RIGHT_COL]])]
    lines = lines_from_paths(paths, volume=vol, region=region)
    assert sorted(lines["right"]) == [1, 6] and sorted(lines["left"]) == [1]
    assert np.allclose(np.asarray(lines["right"][1])[:, 1], RIGHT_COL)
    with pytest.raises(ParameterError, match="one slice"):
        lines_from_paths([np.array([[1, 10, 30], [2, 70, 30]])], volume=vol)


def _sparcc_case():
    vol, region, lines = _case()
    an = sij_quadrants(region, lines, volume=vol)
    img = vol.array.copy()
    les = np.zeros(vol.shape, bool)
    fluid = np.zeros(vol.shape, bool)
    fluid[:, 0:6, 0:6] = True
    img[fluid] = 1000.0

    def put(s, rows, cols, value):
        les[s, rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
        img[s, rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = value

    put(2, (15, 20), (14, 30), 900)  # right upper iliac; deepest column 14: (31-14)*0.6 = 10.2 mm -> deep; 0.9 -> intense
    put(3, (50, 55), (85, 89), 300)  # left lower sacral, shallow, dim: 1
    put(4, (45, 50), (25, 34), 300)  # right lower iliac + lower sacral across the line, 3.6 mm deep: 2
    put(5, (15, 18), (31, 46), 850)  # right upper sacral: (46-30)*0.6 = 9.6 mm -> not deep; 0.85 -> intense: 2
    put(6, (60, 62), (91, 107), 500)  # left lower iliac; (107-90)*0.6 = 10.2 mm -> deep; 0.5 dim: 2
    put(0, (15, 20), (10, 20), 900)  # outside the quadrant map: no points
    return Volume(img, vol.affine), les, an, fluid


def test_sparcc_exact_points_intense_and_deep():
    vol, les, an, fluid = _sparcc_case()
    res = score_sparcc(vol, les, an, fluid=fluid)
    df = res.rows
    assert res.slices == [1, 2, 3, 4, 5, 6]
    assert len(df) == 6 * 12
    assert res.total == int(df["points"].sum()) == 3 + 1 + 2 + 2 + 2
    got = {(r.slice, r.joint, r.unit) for r in df.itertuples() if r.points}
    assert got == {(2, "right", "upper_iliac"), (2, "right", "intense"), (2, "right", "deep"),
                   (3, "left", "lower_sacral"),
                   (4, "right", "lower_iliac"), (4, "right", "lower_sacral"),
                   (5, "right", "upper_sacral"), (5, "right", "intense"),
                   (6, "left", "lower_iliac"), (6, "left", "deep")}
    deep = df[(df.unit == "deep") & df.depth_mm.notna()].set_index(["slice", "joint"])["depth_mm"]
    assert deep[(2, "right")] == pytest.approx(10.2) and deep[(5, "right")] == pytest.approx(9.6)
    assert deep[(4, "right")] == pytest.approx(3.6)
    ratio = df[(df.unit == "intense") & df.intensity_ratio.notna()].set_index(["slice", "joint"])["intensity_ratio"]
    assert ratio[(2, "right")] == pytest.approx(0.9) and ratio[(3, "left")] == pytest.approx(0.3)
    assert "lesion" in df.loc[(df.slice == 2) & (df.unit == "deep") & (df.joint == "right"), "reason"].item()
    # deep_mm just above the 10.2 mm lesions removes both deep points; fraction 0.86 keeps only 0.9
    assert score_sparcc(vol, les, an, fluid=fluid, deep_mm=10.3).total == 10 - 2
    assert score_sparcc(vol, les, an, fluid=fluid, intense_fraction=0.86).total == 10 - 1


def test_sparcc_without_fluid_reference_does_not_assess_intense():
    vol, les, an, _ = _sparcc_case()
    with pytest.warns(UserWarning, match="intense"):
        res = score_sparcc(vol, les, an)
    assert res.total == 10 - 2
    assert (res.rows[res.rows.unit == "intense"]["reason"].str.contains("not assessed")).all()


def test_sparcc_fluid_point_and_given_slices_and_overrides_are_recorded():
    vol, les, an, _ = _sparcc_case()
    point = vol.index_to_ras([3, 2, 2])
    res = score_sparcc(vol, les, an, fluid_point_mm=point, fluid_radius_mm=1.0, slices="1-6",
                       overrides=["2:right:deep=0", "3:left:upper_iliac=1"])
    assert res.params["fluid_reference"]["kind"] == "sphere"
    assert res.params["auto_total"] == 10 and res.total == 10
    row = res.rows[(res.rows.slice == 2) & (res.rows.unit == "deep") & (res.rows.joint == "right")].iloc[0]
    assert row.points == 0 and row.auto_points == 1 and row.overridden and "overridden" in row.reason
    assert len(res.params["overrides"]) == 2
    with pytest.raises(ParameterError, match="not among the scored"):
        score_sparcc(vol, les, an, fluid_point_mm=point, overrides={"7:right:deep": 1})
    with pytest.raises(ParameterError, match="0 or 1"):
        score_sparcc(vol, les, an, fluid_point_mm=point, overrides={"2:right:deep": 2})


def test_sparcc_auto_slices_pick_the_longest_joint():
    vol, region, lines = _case()
    lines["right"] = {1: lines["right"][1], 6: lines["right"][6]}
    big = np.zeros((12, R, C), bool)
    big[:, 10:71, 5:116] = True
    vol12 = Volume(np.full((12, R, C), 100.0, np.float32), oblique_affine(spacing=SP))
    short = {"right": {0: [(30, RIGHT_COL), (50, RIGHT_COL)], 3: [(10, RIGHT_COL), (71, RIGHT_COL)],
                       11: [(10, RIGHT_COL), (71, RIGHT_COL)]},
             "left": {0: [(30, LEFT_COL), (50, LEFT_COL)], 3: [(10, LEFT_COL), (71, LEFT_COL)],
                      11: [(10, LEFT_COL), (71, LEFT_COL)]}}
    an = sij_quadrants(big, short, volume=vol12)
    res = score_sparcc(vol12, np.zeros(vol12.shape, bool), an, fluid=big)
    assert len(res.slices) == 6 and res.total == 0
    assert 0 not in res.slices  # the short (20-row) joint of slice 0 loses to full-length slices


def test_berlin_exact_shares():
    vol, region, lines = _case()
    an = sij_quadrants(region, lines, volume=vol)
    les = np.zeros(vol.shape, bool)
    q1 = an.labels == 1
    les[1:3][q1[1:3]] = True  # right upper iliac: 2 of 6 slices -> 33.3% -> grade 2
    q8 = an.labels == 8
    les[1:5][q8[1:5]] = True  # left lower sacral: 4 of 6 -> 66.7% > 66% -> grade 3
    les[3, 50, 40] = True  # right lower sacral: 1 voxel -> grade 1
    res = score_graded(vol, les, an, scheme="berlin")
    g = res.rows.set_index("unit")["grade"]
    assert g["right_upper_iliac"] == 2 and g["left_lower_sacral"] == 3 and g["right_lower_sacral"] == 1
    assert res.total == 6 == int(res.rows["grade"].sum())
    share = res.rows.set_index("unit")["bme_share"]
    assert share["right_upper_iliac"] == pytest.approx(1 / 3, abs=1e-4)
    res2 = score_graded(vol, les, an, scheme="berlin", overrides={"right_lower_sacral": 0})
    assert res2.total == 5 and res2.params["auto_total"] == 6


@pytest.mark.parametrize("scheme,cases", [
    ("worms", [(0, 0), (1, 1), (249, 1), (250, 2), (500, 2), (501, 3), (1000, 3)]),
    ("moaks", [(0, 0), (1, 1), (329, 1), (330, 2), (660, 2), (661, 3)]),
    ("berlin", [(0, 0), (329, 1), (330, 2), (660, 2), (661, 3)]),
])
def test_grade_boundaries_both_sides(scheme, cases):
    # units of exactly 1000 voxels with n BME voxels each, through the whole scoring path
    n = len(cases)
    lab = np.zeros((n, 10, 100), np.int16)
    les = np.zeros(lab.shape, bool)
    for i, (k, _) in enumerate(cases):
        lab[i] = i + 1
        les[i].flat[:k] = True
    vol = Volume(np.zeros(lab.shape, np.float32), np.diag([2.0, 0.5, 0.5, 1]))
    if scheme == "berlin":
        lab = np.where(lab > 0, lab, 0)
        an = load_anatomy(lab, like=vol) if n <= 8 else None
    else:
        an = load_anatomy(lab, like=vol, names={i + 1: f"unit{i + 1}" for i in range(n)})
    res = score_graded(vol, les, an, scheme=scheme)
    assert res.rows["grade"].tolist()[:n] == [g for _, g in cases]
    assert res.rows["grade"].tolist()[n:] == [0] * (len(res.rows) - n)  # Berlin: the quadrants not in the map
    assert [grade(k / 1000, scheme) for k, _ in cases] == [g for _, g in cases]


def test_load_anatomy_from_files(tmp_path):
    vol, region, lines = _case()
    an = sij_quadrants(region, lines, volume=vol)
    from bmeviz import save_mask

    save_mask(an.labels, vol, tmp_path / "q.nii.gz")
    back = load_anatomy(tmp_path / "q.nii.gz", like=vol)
    assert back.kind == "sij" and np.array_equal(back.labels, an.labels)
    (tmp_path / "names.csv").write_text("value,name\n1,femur_medial_central\n2,patella_lateral\n")
    knee = np.zeros(vol.shape, np.int16)
    knee[2, 20:30, 20:30] = 1
    knee[3, 20:30, 20:30] = 2
    save_mask(knee, vol, tmp_path / "k.nii.gz")
    with pytest.raises(ParameterError, match="no name"):
        load_anatomy(tmp_path / "k.nii.gz", like=vol, names={1: "a"})
    k = load_anatomy(tmp_path / "k.nii.gz", like=vol, names=tmp_path / "names.csv")
    (tmp_path / "names.json").write_text(json.dumps({"1": "femur_medial_central", "2": "patella_lateral"}))
    assert load_anatomy(tmp_path / "k.nii.gz", like=vol, names=tmp_path / "names.json").names == k.names
    assert k.kind == "knee" and k.names[5] == "femur_medial_central"
    # renumbered by name to bmeviz's values
    assert np.all(k.labels[2, 20:30, 20:30] == 5) and np.all(k.labels[3, 20:30, 20:30] == 2)
    with pytest.raises(ParameterError, match="SIJ quadrant map"):
        score_graded(vol, knee > 0, back, scheme="worms")
    with pytest.raises(ParameterError, match="SIJ quadrant"):
        score_sparcc(vol, knee > 0, k)


def test_knee_subregions_rules_and_sides():
    # axial-like grid: slice = superior, rows = posterior, cols = patient left
    aff = np.array([[0, 0, -1.0, 60], [0, -1.0, 0, 60], [2.0, 0, 0, -40], [0, 0, 0, 1]])
    shape = (40, 60, 80)
    vol = Volume(np.zeros(shape, np.float32), aff)
    fem = np.zeros(shape, bool)
    tib = np.zeros(shape, bool)
    pat = np.zeros(shape, bool)
    tib[2:20, 15:45, 10:70] = True  # plateau at slice 19, AP rows 15-44
    fem[21:38, 5:50, 10:70] = True  # extends in front of (rows < 15) and behind (rows > 44) the tibia
    pat[25:33, 0:4, 30:50] = True
    for knee in ("right", "left"):
        an = knee_subregions(femur=fem, tibia=tib, patella=pat, volume=vol, knee=knee)
        assert set(np.unique(an.labels)) - {0} == set(range(1, 16))
        x = vol.index_to_ras(np.argwhere(an.labels == 11)).mean(axis=0)[0]  # tibia medial central
        x_lat = vol.index_to_ras(np.argwhere(an.labels == 12)).mean(axis=0)[0]
        assert (x < x_lat) if knee == "right" else (x > x_lat)  # right knee: medial towards the patient's left
        # femur trochlea lies in front of the tibia (rows < 15 run anterior here)
        assert np.all(np.argwhere(np.isin(an.labels, [3, 4]))[:, 1] < 15)
        assert np.all(np.argwhere(np.isin(an.labels, [7, 8]))[:, 1] > 44)
    with pytest.raises(ParameterError, match="knee"):
        knee_subregions(femur=fem, tibia=tib, volume=vol, knee="both")


def test_session_model_without_qt():
    from bmeviz.scores.session import ScoreSession

    vol, les, an, fluid = _sparcc_case()
    _, region, lines = _case()
    paths = [np.c_[np.full(len(p), s), np.asarray(p, float)] for side in lines.values() for s, p in side.items()]
    sess = ScoreSession(vol, region=region)
    with pytest.raises(ParameterError, match="score first"):
        sess.override((2, "right", "deep"), 0)
    assert np.array_equal(sess.build_quadrants(paths).labels, an.labels)
    assert sess.score(les, scheme="sparcc", fluid=fluid).total == 10
    assert sess.override((2, "right", "deep"), 0).total == 9
    assert sess.override("5:right:intense", 0).total == 8 and len(sess.result.params["overrides"]) == 2
    assert sess.override((2, "right", "deep"), None).total == 9  # removed again
    out = sess.save(tmp := Path(__import__("tempfile").mkdtemp()) / "o", figures=False)
    assert out["csv"].exists() and tmp.exists()
    with pytest.raises(ParameterError, match="region"):
        ScoreSession(vol).build_quadrants(paths)


@pytest.mark.parametrize("lines, message", [
    ({"right": {1: [(10, 30)]}}, "at least 2"),
    ({"right": {1: [(10, 30), (10, 30)]}}, "zero length"),
    ({"right": {1: [(10, 30), (90, 30)]}}, "leaves the image"),
    ({"right": {9: [(10, 30), (70, 30)]}}, "outside the image"),
    ({"middle": {1: [(10, 30), (70, 30)]}}, "lines must be"),
    ({"right": {}, "left": {}}, "no joint line"),
])
def test_bad_joint_lines_are_refused_by_name(lines, message):
    vol, region, _ = _case()
    with pytest.raises(ParameterError, match=message):
        sij_quadrants(region, lines, volume=vol)
