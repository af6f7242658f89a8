"""Scores in ``bmeviz batch``: SPARCC and Berlin as cohort.csv columns on synthetic SIJ-like studies
whose scores are known exactly; bad score columns refused before any work; the report's scores
section; resuming with the anatomy in the hash; a scoring failure that does not fail the study."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bmeviz import Volume
from bmeviz.batch import ManifestError, read_manifest, run
from bmeviz.io import save_mask, save_volume
from helpers import oblique_affine

SP = (3.3, 0.6, 0.6)
S, R, C = 8, 80, 120
HEADER = "study_id,image,reference_mask,region_mask,anatomy,score_scheme,fluid_mask,fluid_point_mm,score_slices"
RUN = dict(workers=0, overlay=False, progress=False, min_slices=1, min_volume_mm3=0)


def quadrant_map() -> np.ndarray:
    """SIJ quadrants (fixed values 1-8) on slices 1-6: upper rows 10-40, lower 41-70; columns 5-30 right
    iliac, 31-59 right sacral, 61-90 left sacral, 91-115 left iliac (the interfaces at columns 30|31, 90|91)."""
    lab = np.zeros((S, R, C), np.int16)
    for rows, up in (((10, 41), True), ((41, 71), False)):
        r = slice(*rows)
        lab[1:7, r, 5:31] = 1 if up else 2
        lab[1:7, r, 31:60] = 3 if up else 4
        lab[1:7, r, 91:116] = 5 if up else 6
        lab[1:7, r, 61:91] = 7 if up else 8
    return lab


def study(root: Path, name: str, lesions, seed: int) -> dict:
    """Marrow 95-105 (uniform), fluid 995-1005 in rows/columns 0-9 (outside the bone region), lesion
    boxes ``(slice range, row range, column range, value)``; files written under ``root``."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(95, 105, (S, R, C)).astype(np.float32)
    fluid = np.zeros((S, R, C), bool)
    fluid[:, 0:10, 0:10] = True
    img[fluid] += 900
    for (s0, s1), (r0, r1), (c0, c1), value in lesions:
        img[s0:s1 + 1, r0:r1 + 1, c0:c1 + 1] += value - 100
    vol = Volume(img, oblique_affine(spacing=SP))
    region = np.zeros((S, R, C), bool)
    region[:, 10:71, 5:116] = True
    ref = np.zeros((S, R, C), bool)
    ref[7, 20:61, 40:81] = True  # lesion-free slice 7
    save_volume(vol, root / f"{name}.nii.gz")
    save_mask(ref, vol, root / f"{name}_ref.nii.gz")
    save_mask(region, vol, root / f"{name}_bone.nii.gz")
    save_mask(fluid, vol, root / f"{name}_fluid.nii.gz")
    save_mask(quadrant_map(), vol, root / f"{name}_quadrants.nii.gz")
    return {"vol": vol, "image": f"{name}.nii.gz", "reference_mask": f"{name}_ref.nii.gz",
            "region_mask": f"{name}_bone.nii.gz", "anatomy": f"{name}_quadrants.nii.gz"}


# Study A (the placements of tests/test_scores.py::_sparcc_case), fluid as a mask. SPARCC:
#   s2 right upper iliac, columns 14-30: 17 x 0.6 = 10.2 mm from the sacrum -> deep; 900/1000 -> intense: 3
#   s3 left lower sacral, shallow, dim: 1;  s4 right lower iliac + lower sacral across the line: 2
#   s5 right upper sacral, 9.6 mm -> not deep; 850/1000 -> intense: 2;  s6 left lower iliac, 10.2 mm deep: 2
#   s0 lies outside the quadrant map: 0.  Right 3+2+2 = 7, left 1+2 = 3, total 10.
# Berlin (slices 1-6): 6 quadrants with a small share -> grade 1 each: right 4, left 2.
LESIONS_A = [((2, 2), (15, 20), (14, 30), 900), ((3, 3), (50, 55), (85, 89), 300), ((4, 4), (45, 50), (25, 34), 300),
             ((5, 5), (15, 18), (31, 46), 850), ((6, 6), (60, 62), (91, 107), 500), ((0, 0), (15, 20), (10, 20), 900)]
# Study B, fluid as a point, slices given: the whole right upper iliac quadrant on slices 1-6 (dim, 15.6 mm
# deep): 6 + 6 deep; the medial half of the left lower sacral quadrant (columns 61-75, bright 950: intense;
# 18 mm from the ilium: deep): 6 + 6 + 6. SPARCC right 12, left 18, total 30.
# Berlin: right upper iliac share 1.0 -> 3; left lower sacral 15/30 = 0.5 -> 2; total 5.
LESIONS_B = [((1, 6), (10, 40), (5, 30), 300), ((1, 6), (41, 70), (61, 75), 950)]
EXPECTED = {
    "A": {"sparcc_total": 10, "sparcc_left": 3, "sparcc_right": 7, "sparcc_slices": "1-6", "sparcc_overridden": 0,
          "berlin_total": 6, "berlin_left": 2, "berlin_right": 4, "berlin_slices": "1-6", "berlin_overridden": 0},
    "B": {"sparcc_total": 30, "sparcc_left": 18, "sparcc_right": 12, "sparcc_slices": "1-6", "sparcc_overridden": 0,
          "berlin_total": 5, "berlin_left": 2, "berlin_right": 3, "berlin_slices": "1-6", "berlin_overridden": 0},
}
SCORE_COLS = list(EXPECTED["A"])


def line(**kw) -> str:
    return ",".join(str(kw.get(c, "")) for c in HEADER.split(","))


@pytest.fixture
def manifest(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    a = study(data, "A", LESIONS_A, 1)
    b = study(data, "B", LESIONS_B, 2)
    fluid_mm = b["vol"].index_to_ras([3, 4, 4])
    rows = [HEADER,
            line(study_id="A", score_scheme="sparcc+berlin", fluid_mask="A_fluid.nii.gz",
                 **{k: v for k, v in a.items() if k != "vol"}),
            line(study_id="B", score_scheme="sparcc;berlin", score_slices="1-6",
                 fluid_point_mm='"' + ",".join(f"{v:.4f}" for v in fluid_mm) + '"',
                 **{k: v for k, v in b.items() if k != "vol"})]
    (data / "m.csv").write_text("\n".join(rows) + "\n")
    return data / "m.csv"


def cohort(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "cohort.csv", keep_default_na=False, dtype=str).set_index("study_id")


def test_scores_are_cohort_columns_exactly_and_resume_follows_the_anatomy(manifest, tmp_path):
    out = tmp_path / "out"
    table = run(manifest, out, **RUN)
    assert list(table["status"]) == ["ok", "ok"]
    cols = list(table.columns)
    assert cols[cols.index("notes") + 1:] == SCORE_COLS  # after the segmentation's columns, in this order
    got = cohort(out)
    for sid, want in EXPECTED.items():
        assert {c: got.loc[sid, c] for c in SCORE_COLS} == {c: str(v) for c, v in want.items()}, sid
    # the segmentation found the placed lesions (5 + the one outside the map; 2)
    assert got.loc["A", "n_lesions"] == "6" and got.loc["B", "n_lesions"] == "2"
    # the scores folder of each scheme, its csv summing to the cohort value, and provenance saying so
    for sid in EXPECTED:
        for scheme, col in (("sparcc", "points"), ("berlin", "grade")):
            df = pd.read_csv(out / sid / "scores" / scheme / "scores.csv")
            assert int(df[col].sum()) == EXPECTED[sid][f"{scheme}_total"]
        prov = json.loads((out / sid / "provenance.json").read_text())
        assert "scores/sparcc/scores.csv" in prov["batch"]["outputs"]
        assert prov["batch"]["scores"]["sparcc_total"] == EXPECTED[sid]["sparcc_total"]
    js = json.loads((out / "A" / "scores" / "sparcc" / "scores.json").read_text())
    assert js["params"]["fluid_reference"]["kind"] == "mask"
    js = json.loads((out / "B" / "scores" / "sparcc" / "scores.json").read_text())
    assert js["params"]["fluid_reference"]["kind"] == "sphere"
    assert sorted(p.name for p in (out / "A" / "scores" / "sparcc" / "figures").iterdir()) == \
        [f"slice_{s:03d}.png" for s in range(1, 7)]

    # rerun: both up to date, and the skipped rows keep their scores
    again = run(manifest, out, **RUN)
    assert list(again["status"]) == ["skipped", "skipped"]
    got = cohort(out)
    assert got.loc["B", "sparcc_total"] == "30" and got.loc["A", "berlin_total"] == "6"
    # the anatomy of A changed (no right upper iliac quadrant on slice 2): only A is redone, with the new
    # score: the s2 lesion is outside the map there, so its quadrant, intense and deep points go (10 - 3)
    lab = quadrant_map()
    lab[2][lab[2] == 1] = 0
    save_mask(lab, Volume(np.zeros((S, R, C), np.float32), oblique_affine(spacing=SP)),
              manifest.parent / "A_quadrants.nii.gz")
    again = run(manifest, out, **RUN)
    assert list(again["status"]) == ["ok", "skipped"]
    assert cohort(out).loc["A", "sparcc_total"] == "7" and cohort(out).loc["A", "berlin_right"] == "3"
    # a score option changed (the slices of B): B redone; only touching the anatomy: redone too
    text = manifest.read_text().replace(',1-6\n', ',0-5\n')
    manifest.write_text(text)
    assert list(run(manifest, out, **RUN)["status"]) == ["skipped", "ok"]
    assert cohort(out).loc["B", "sparcc_slices"] == "0-5"
    anat = manifest.parent / "B_quadrants.nii.gz"
    os.utime(anat, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert list(run(manifest, out, **RUN)["status"]) == ["skipped", "ok"]


def test_report_has_the_scores_section(manifest, tmp_path):
    out = tmp_path / "out"
    run(manifest, out, report=True, **RUN)
    html = (out / "A" / "report.html").read_text()
    assert "SPARCC score: 10 (max 72)" in html and "BERLIN score: 6" in html
    assert html.index("SPARCC score") < html.index("<h2>Input</h2>")  # inside the body, before the input
    section = html[html.index('<section class="bmeviz-scores">'):]
    assert section.count("data:image/png;base64,") >= 6 and "<script" not in html
    assert "SPARCC score: 30" in (out / "B" / "report.html").read_text()


def test_a_scoring_failure_empties_the_columns_not_the_study(manifest, tmp_path):
    """An anatomy on another grid: the study is measured, its score columns empty, a note says why."""
    data = manifest.parent
    vol = Volume(np.zeros((S, R, C // 2), np.float32), oblique_affine(spacing=SP))
    save_mask(np.ones((S, R, C // 2), np.int16), vol, data / "small.nii.gz")
    text = manifest.read_text().replace("B_quadrants.nii.gz", "small.nii.gz")
    manifest.write_text(text)
    table = run(manifest, tmp_path / "out", **RUN).set_index("study_id")
    assert list(table["status"]) == ["ok", "ok"]
    assert table.loc["B", "n_lesions"] == 2
    assert all(pd.isna(table.loc["B", c]) for c in ("sparcc_total", "berlin_total"))
    assert "sparcc score failed" in table.loc["B", "notes"] and "not on the image grid" in table.loc["B", "notes"]
    assert table.loc["A", "sparcc_total"] == 10  # the other study is scored
    assert not (tmp_path / "out" / "B" / "scores").exists()


@pytest.mark.parametrize("edit, message", [
    (("sparcc+berlin", "sparcc+sparc"), "score_scheme 'sparcc+sparc': each scheme must be one of"),
    (("A_quadrants.nii.gz", "A_quadrantz.nii.gz"), "anatomy file not found: A_quadrantz.nii.gz"),
    (("A_fluid.nii.gz", "nofluid.nii.gz"), "fluid_mask file not found: nofluid.nii.gz"),
])
def test_bad_score_columns_are_refused_with_the_row_before_any_work(manifest, tmp_path, edit, message):
    manifest.write_text(manifest.read_text().replace(*edit))
    out = tmp_path / "out"
    with pytest.raises(ManifestError, match="nothing was run") as ei:
        run(manifest, out, **RUN)
    assert f"line 2 (study A): {message}" in str(ei.value)
    assert [(p[0], p[1]) for p in ei.value.problems] == [(2, "A")]
    assert not out.exists()


def test_score_column_combinations(manifest, tmp_path):
    text = manifest.read_text()
    bad = text.replace("sparcc;berlin", "berlin")  # B: a fluid point without sparcc
    manifest.write_text(bad)
    with pytest.raises(ManifestError, match=r"line 3 \(study B\): fluid_mask / fluid_point_mm are SPARCC's"):
        read_manifest(manifest)
    manifest.write_text(text.replace("sparcc;berlin", ""))  # B: anatomy without a scheme
    with pytest.raises(ManifestError, match=r"line 3 \(study B\): anatomy is given but score_scheme is empty"):
        read_manifest(manifest)
    manifest.write_text(text.replace(",1-6\n", ",6\n"))
    with pytest.raises(ManifestError, match="score_slices must be FIRST-LAST"):
        read_manifest(manifest)
    manifest.write_text(text)
    df = read_manifest(manifest)
    assert list(df["score_scheme"]) == ["sparcc+berlin", "sparcc+berlin"]
    assert df.loc[1, "score_slices"] == "1-6" and len(df.loc[1, "fluid_point_mm"]) == 3


def test_score_cli_report(manifest, tmp_path, capsys):
    """``bmeviz score --report``: the same section as in the batch's report, as a page of its own."""
    from bmeviz.cli import main

    data = manifest.parent
    les = np.zeros((S, R, C), bool)
    for (s0, s1), (r0, r1), (c0, c1), _ in LESIONS_A:
        les[s0:s1 + 1, r0:r1 + 1, c0:c1 + 1] = True
    save_mask(les, Volume(np.zeros((S, R, C), np.float32), oblique_affine(spacing=SP)), data / "A_les.nii.gz")
    out = tmp_path / "scored"
    assert main(["score", str(data / "A.nii.gz"), "--lesions", str(data / "A_les.nii.gz"), "--anatomy",
                 str(data / "A_quadrants.nii.gz"), "--scheme", "sparcc", "--fluid-mask", str(data / "A_fluid.nii.gz"),
                 "--out", str(out), "--report"]) == 0
    page = (out / "report.html").read_text()
    assert "SPARCC score: 10 (max 72)" in page and page.count("data:image/png;base64,") == 6
    assert "<script" not in page and str(data) not in page
