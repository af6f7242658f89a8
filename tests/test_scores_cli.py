"""`bmeviz score`: the output folder (CSV sums to the total, JSON, one PNG per slice, no identifiers,
atomic), joint lines from JSON, one-line errors; the report fragment and the batch columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bmeviz import Volume, save_mask
from bmeviz.cli import main
from bmeviz.io import save_volume
from bmeviz.scores import cohort_columns, html_fragment, score, score_study
from test_scores import LEFT_COL, RIGHT_COL, _sparcc_case

NAME = "Doe^Jane_12345"  # a patient-like file name that must not leak into the outputs


@pytest.fixture()
def case_files(tmp_path):
    vol, les, an, fluid = _sparcc_case()
    d = tmp_path / "in"
    d.mkdir()
    save_volume(vol, d / f"{NAME}_stir.nii.gz")
    save_mask(les, vol, d / f"{NAME}_les.nii.gz")
    save_mask(an.labels, vol, d / f"{NAME}_quad.nii.gz")
    save_mask(fluid, vol, d / f"{NAME}_fluid.nii.gz")
    return vol, d


def _args(d, out, *extra):
    return ["score", str(d / f"{NAME}_stir.nii.gz"), "--lesions", str(d / f"{NAME}_les.nii.gz"),
            "--out", str(out), *extra]


def test_cli_sparcc_folder(case_files, tmp_path, capsys):
    vol, d = case_files
    out = tmp_path / "out"
    assert main(_args(d, out, "--anatomy", str(d / f"{NAME}_quad.nii.gz"), "--scheme", "sparcc",
                      "--fluid-mask", str(d / f"{NAME}_fluid.nii.gz"))) == 0
    assert "SPARCC total 10" in capsys.readouterr().out
    df = pd.read_csv(out / "scores.csv")
    js = json.loads((out / "scores.json").read_text())
    assert df["points"].sum() == js["total"] == 10
    assert js["slices"] == [1, 2, 3, 4, 5, 6] and js["params"]["slices"]["how"].startswith("auto")
    assert sorted(p.name for p in (out / "figures").iterdir()) == [f"slice_{s:03d}.png" for s in range(1, 7)]
    for f in [out / "scores.csv", out / "scores.json"]:
        assert NAME not in f.read_text() and "Doe" not in f.read_text()
    assert not list(out.rglob(".*tmp*"))  # atomic writes leave no temporary files


def test_cli_overrides_and_slices_recorded(case_files, tmp_path):
    vol, d = case_files
    out = tmp_path / "o2"
    assert main(_args(d, out, "--anatomy", str(d / f"{NAME}_quad.nii.gz"), "--scheme", "sparcc", "--slices", "1-6",
                      "--fluid-mask", str(d / f"{NAME}_fluid.nii.gz"), "--override", "2:right:deep=0",
                      "--no-figures")) == 0
    df = pd.read_csv(out / "scores.csv")
    js = json.loads((out / "scores.json").read_text())
    assert df["points"].sum() == js["total"] == 9 and js["params"]["auto_total"] == 10
    assert js["params"]["overrides"] == [{"slice": 2, "joint": "right", "unit": "deep", "points": 0}]
    assert js["params"]["slices"]["how"].startswith("given")
    assert not (out / "figures").exists() or not list((out / "figures").iterdir())


def test_cli_joint_lines_build_the_same_quadrants(case_files, tmp_path):
    vol, d = case_files
    region = np.zeros(vol.shape, bool)
    region[:, 10:71, 5:116] = True
    save_mask(region, vol, d / "region.nii.gz")
    paths = [[[s, 10, c], [s, 71, c]] for s in (1, 6) for c in (RIGHT_COL, LEFT_COL)]
    paths[-1] = [[6, 10, LEFT_COL], [6, 40.5, LEFT_COL], [6, 71, LEFT_COL]]  # as _case() draws it
    (d / "lines.json").write_text(json.dumps({"paths": paths}))
    out = tmp_path / "o3"
    assert main(_args(d, out, "--joint-lines", str(d / "lines.json"), "--region", str(d / "region.nii.gz"),
                      "--save-anatomy", str(tmp_path / "quad.nii.gz"), "--scheme", "berlin")) == 0
    from bmeviz import load

    built = load(tmp_path / "quad.nii.gz").array
    given = load(d / f"{NAME}_quad.nii.gz").array
    assert np.array_equal(built, given)
    df = pd.read_csv(out / "scores.csv")
    assert len(df) == 8 and df["grade"].sum() == json.loads((out / "scores.json").read_text())["total"]


@pytest.mark.parametrize("extra, message", [
    ([], "--anatomy LABELS or as --joint-lines"),
    (["--anatomy", "QUAD", "--slices", "9-3"], "select no slice"),
    (["--anatomy", "QUAD", "--slices", "1-40"], "outside the image"),
    (["--anatomy", "QUAD", "--override", "2:middle:deep=1"], "joint must be right or left"),
    (["--anatomy", "QUAD", "--fluid-point-mm=1,2"], "three comma-separated"),
])
def test_cli_errors_are_one_line(case_files, tmp_path, capsys, extra, message):
    vol, d = case_files
    extra = [str(d / f"{NAME}_quad.nii.gz") if e == "QUAD" else e for e in extra]
    assert main(_args(d, tmp_path / "e", "--scheme", "sparcc", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bmeviz: error:") and message in err and len(err.splitlines()) == 1


def test_cli_fluid_for_graded_is_refused(case_files, tmp_path, capsys):
    vol, d = case_files
    assert main(_args(d, tmp_path / "e", "--anatomy", str(d / f"{NAME}_quad.nii.gz"), "--scheme", "berlin",
                      "--fluid-point-mm=1,2,3")) == 2
    assert "for SPARCC" in capsys.readouterr().err


def test_html_fragment_and_cohort_columns(tmp_path):
    vol, les, an, fluid = _sparcc_case()
    res = score(vol, les, an, scheme="sparcc", fluid=fluid)
    frag = html_fragment(res, vol)
    assert frag.startswith('<section class="bmeviz-scores">') and frag.rstrip().endswith("</section>")
    assert "SPARCC score: 10" in frag and frag.count("<img") == 6 and "lesion" in frag
    cols = cohort_columns(res)
    assert cols == {"sparcc_total": 10, "sparcc_left": 3, "sparcc_right": 7, "sparcc_slices": "1-6",
                    "sparcc_overridden": 0}
    save_mask(an.labels, vol, tmp_path / "quad.nii.gz")
    cols2 = score_study(vol, les, anatomy=tmp_path / "quad.nii.gz", scheme="berlin", out_dir=tmp_path / "study")
    assert set(cols2) == {"berlin_total", "berlin_left", "berlin_right", "berlin_slices", "berlin_overridden"}
    assert (tmp_path / "study" / "scores" / "scores.csv").exists()


def test_inputs_are_not_modified():
    vol, les, an, fluid = _sparcc_case()
    before = (vol.array.copy(), les.copy(), an.labels.copy(), fluid.copy())
    score(vol, les, an, scheme="sparcc", fluid=fluid)
    score(vol, les, an, scheme="berlin")
    for a, b in zip(before, (vol.array, les, an.labels, fluid)):
        assert np.array_equal(a, b)


def test_bad_volume_type():
    from bmeviz import ParameterError

    vol, les, an, fluid = _sparcc_case()
    with pytest.raises(ParameterError, match="Volume"):
        score(vol.array, les, an, scheme="sparcc")
    with pytest.raises(ParameterError, match="scheme"):
        score(vol, les, an, scheme="kellgren")
    assert isinstance(vol, Volume)


def test_cli_moaks_knee_map_with_names_and_figures(tmp_path):
    from bmeviz.scores import knee_subregions

    aff = np.array([[0, 0, -1.0, 60], [0, -1.0, 0, 60], [2.0, 0, 0, -40], [0, 0, 0, 1]])
    shape = (40, 60, 80)
    vol = Volume(np.random.default_rng(0).normal(100, 5, shape).astype(np.float32), aff)
    fem, tib = np.zeros(shape, bool), np.zeros(shape, bool)
    tib[2:20, 15:45, 10:70] = True
    fem[21:38, 5:50, 10:70] = True
    an = knee_subregions(femur=fem, tibia=tib, volume=vol, knee="left")
    les = np.zeros(shape, bool)
    les[an.labels == 5] = True  # femur medial central: all of it -> grade 3
    save_volume(vol, tmp_path / "knee.nii.gz")
    save_mask(les, vol, tmp_path / "les.nii.gz")
    save_mask(an.labels, vol, tmp_path / "sub.nii.gz")
    (tmp_path / "names.csv").write_text("value,name\n" + "\n".join(f"{k},{v}" for k, v in an.names.items()))
    out = tmp_path / "out"
    assert main(["score", str(tmp_path / "knee.nii.gz"), "--lesions", str(tmp_path / "les.nii.gz"), "--anatomy",
                 str(tmp_path / "sub.nii.gz"), "--anatomy-names", str(tmp_path / "names.csv"), "--scheme", "moaks",
                 "--out", str(out), "--override", "tibia_subspinous=1", "--slices", "25-26"]) == 0
    df = pd.read_csv(out / "scores.csv")
    assert len(df) == 15 and df.set_index("unit").loc["femur_medial_central", "grade"] == 3
    assert df["grade"].sum() == 4 == json.loads((out / "scores.json").read_text())["total"]
    assert sorted(p.name for p in (out / "figures").glob("slice_*.png")) == ["slice_025.png", "slice_026.png"]


def test_cli_scan_without_bme_scores_zero(case_files, tmp_path):
    vol, d = case_files
    save_mask(np.zeros(vol.shape, bool), vol, d / "empty.nii.gz")
    out = tmp_path / "z"
    argv = ["score", str(d / f"{NAME}_stir.nii.gz"), "--lesions", str(d / "empty.nii.gz"), "--anatomy",
            str(d / f"{NAME}_quad.nii.gz"), "--scheme", "berlin", "--out", str(out), "--no-figures"]
    assert main(argv) == 0
    assert json.loads((out / "scores.json").read_text())["total"] == 0


def test_scores_import_neither_napari_nor_qt():
    import subprocess
    import sys

    code = ("import sys, bmeviz.scores, bmeviz.scores.cli, bmeviz.scores.session, bmeviz.scores.figures\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
