"""One home for each idea: the options model drives segment(), the CLI and the manifest;
Result is data with one writer (bmeviz.export); module rules (imports, sizes)."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bmeviz
from bmeviz import lesions
from bmeviz.cli import build_parser, main
from bmeviz.data import make_phantom
from bmeviz.errors import ParameterError
from bmeviz.options import DEFAULTS, SegmentOptions

PKG = Path(bmeviz.__file__).parent
SHAPE, SPACING = (16, 96, 96), (3.0, 1.4, 1.4)


@pytest.fixture(scope="module")
def ph():
    return make_phantom(shape=SHAPE, spacing=SPACING, seed=3)


# ----------------------------------------------------------------------------- the options model
def test_segment_signature_is_the_options_model():
    params = inspect.signature(bmeviz.segment).parameters
    for opt in SegmentOptions.fields():
        assert opt.name in params, f"segment() lacks option {opt.name}"
        if opt.name != "reference_radius_mm":  # None there means "the model's default"
            assert params[opt.name].default == opt.default, opt.name
        assert params[opt.name].kind is inspect.Parameter.KEYWORD_ONLY
    assert dict(DEFAULTS) == {o.name: o.default for o in SegmentOptions.fields()}
    with pytest.raises(TypeError):
        DEFAULTS["edge"] = "half-max"  # read-only: nobody changes the defaults behind segment()'s back
    assert bmeviz.pipeline.DEFAULTS is DEFAULTS


def test_every_option_is_a_flag_of_segment_and_batch():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in ("segment", "batch"):
        flags = {s for a in sub.choices[command]._actions for s in a.option_strings}
        for opt in SegmentOptions.fields():
            assert opt.flag in flags, (command, opt.flag)
    from bmeviz.batch import MANIFEST_COLUMNS

    assert set(SegmentOptions.names()) <= set(MANIFEST_COLUMNS)


def test_fields_describe_controls_for_a_widget():
    by = {o.name: o for o in SegmentOptions.fields()}
    assert by["edge"].choices == ("threshold", "half-max") and by["edge"].default == "threshold"
    assert by["connectivity"].choices == (6, 18, 26)
    assert by["max_volume_ml"].minimum == 0 and by["max_volume_ml"].exclusive_minimum
    assert all(o.help for o in by.values())
    json.dumps([o.to_dict() for o in by.values()])  # plain data


@pytest.mark.parametrize("name, text, value", [
    ("k", "adaptive", "adaptive"), ("k", "2.5", 2.5), ("high_k", "none", None), ("fill_holes", "yes", True),
    ("connectivity", "18", 18), ("edge", "HALF-MAX", "half-max"), ("max_radius_mm", "12", 12.0),
])
def test_parse_from_strings(name, text, value):
    assert SegmentOptions.option(name).parse(text) == value


@pytest.mark.parametrize("name, text, words", [
    ("k", "abc", "k must be a number or 'adaptive'"), ("connectivity", "8", "6, 18 or 26"),
    ("min_slices", "0", "at least 1"), ("max_volume_ml", "-1", "> 0"), ("rule", "median", "one of"),
    ("fill_holes", "maybe", "yes or no"), ("confidence_k", "none", "confidence_k"),
])
def test_parse_refuses_by_name(name, text, words):
    with pytest.raises(ValueError, match=words):
        SegmentOptions.option(name).parse(text)
    with pytest.raises(ParameterError, match="unknown option 'nope'"):
        SegmentOptions.option("nope")


def test_options_instance_runs_segment(ph):
    opts = SegmentOptions(edge="half-max", min_volume_mm3=5.0)
    a = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds, **opts.kwargs())
    b = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds, edge="half-max",
                       min_volume_mm3=5.0)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.params["edge"] == "half-max"


def test_cli_exposes_what_batch_accepted(ph, tmp_path):
    """upper, max_radius_mm and confidence_k were manifest-only; the CLI has them now and
    they reach segment() (provenance records them)."""
    from bmeviz.io import save_mask, save_volume

    save_volume(ph.volume, tmp_path / "stir.nii.gz")
    save_mask(ph.reference, ph.volume, tmp_path / "ref.nii.gz")
    seeds = [a for s in ph.seeds for a in ("--seed", ",".join(map(str, s)))]
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "stir.nii.gz"), "--reference", str(tmp_path / "ref.nii.gz"),
                 "--method", "confidence", "--confidence-k", "3", "--max-radius-mm", "30", "--upper", "4000",
                 "--out", str(out), "--no-overlay", *seeds]) == 0
    params = json.loads((out / "provenance.json").read_text())["params"]
    assert params["confidence_k"] == 3.0 and params["max_radius_mm"] == 30.0 and params["upper"] == 4000.0
    assert main(["segment", str(tmp_path / "stir.nii.gz"), "--reference", str(tmp_path / "ref.nii.gz"),
                 "--k", "abc", "--out", str(tmp_path / "o2")]) == 2


# ----------------------------------------------------------------------------- Result is data
def test_with_labels_remeasures_hand_edits(ph):
    res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    edited = res.labels.copy()
    edited[edited == 2] = 0
    edited[tuple(ph.reference_point)] = 9  # a voxel painted by hand
    new = res.with_labels(edited)
    expect = lesions.lesion_table(edited, ph.volume.array, affine=ph.volume.affine, reference=res.threshold.stats,
                                  region=res.region)
    pd.testing.assert_frame_equal(new.table, expect)
    assert new.n_lesions == res.n_lesions and 2 not in set(new.table["lesion_id"])
    assert new.messages[-1].code == "edited" and new.threshold is res.threshold
    assert np.array_equal(new.mask, edited > 0)
    assert res.with_labels(res.labels.copy()) is res  # nothing changed: the same result


def test_notes_have_codes(ph):
    below = (0, 2, 2)  # in the air: below the threshold
    with pytest.warns(bmeviz.BmevizWarning, match="outside the region|below the threshold"):
        res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=[*ph.seeds.tolist(), below])
    codes = {(m.code, m.seed) for m in res.messages}
    assert ("below-threshold", len(ph.seeds) + 1) in codes  # seeds are numbered from 1, as clicked
    res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds, min_volume_mm3=1e5)
    assert {m.code for m in res.messages} == {"cleaned-away"} and res.n_lesions == 0
    assert json.dumps(res.provenance()["messages"])


def test_export_writes_one_folder_atomically(ph, tmp_path):
    from bmeviz.export import write_outputs

    res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    written = write_outputs(res, tmp_path / "study", overlay=True, seg=True, seg_errors="note", atomic_folder=True,
                            provenance_extra=lambda w: {"extra": {"outputs": w.names}})
    assert written.names == ["bme_mask.nii.gz", "lesions.csv", "provenance.json", "overlay.png"]
    assert written.notes and "DICOM" in written.notes[0]  # a NIfTI-like source: no SEG, a note
    prov = json.loads((tmp_path / "study" / "provenance.json").read_text())
    assert prov["extra"]["outputs"] == written.names and prov["totals"]["n_lesions"] == res.n_lesions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study"]  # no temporary folder left
    with pytest.raises(ParameterError, match="DICOM"):
        write_outputs(res, tmp_path / "again", overlay=False, seg=True, atomic_folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study"]  # a failed write leaves nothing


# ----------------------------------------------------------------------------- lesion table: two ways, one answer
def test_lesion_table_in_boxes_equals_per_voxel(monkeypatch):
    rng = np.random.default_rng(4)
    labels = lesions.label(rng.random((12, 40, 44)) < 0.06, connectivity=6)
    labels = np.where(labels % 40 == 0, labels // 40, 0)  # ~25 lesions spread over the volume
    image = rng.normal(100, 10, labels.shape)
    image[0, 0, :5] = np.nan
    region = rng.random(labels.shape) < 0.8
    stats = bmeviz.threshold.reference_stats(image, rng.random(labels.shape) < 0.1)
    kw = dict(affine=np.diag([3.0, 0.5, 0.7, 1.0]), reference=stats, region=region)
    boxes = lesions.lesion_table(labels[2:10], image[2:10], origin=(2, 0, 0), region_voxels=int(region.sum()), **{
        **kw, "region": region[2:10]})
    from bmeviz import _measure

    assert 5 < len(boxes) <= _measure._PER_BOX_LESIONS  # the boxes path ran
    monkeypatch.setattr(_measure, "_PER_BOX_LESIONS", 0)
    voxels = lesions.lesion_table(labels[2:10], image[2:10], origin=(2, 0, 0), region_voxels=int(region.sum()), **{
        **kw, "region": region[2:10]})
    pd.testing.assert_frame_equal(boxes, voxels, check_exact=False, rtol=1e-12)
    assert boxes.attrs["totals"] == voxels.attrs["totals"]


# ----------------------------------------------------------------------------- module rules
def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every import of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level and not node.module:  # from . import sibling
                out.extend((node.level, a.name) for a in node.names)
            else:
                out.append((node.level, node.module or ""))
        elif isinstance(node, ast.Import):
            out.extend((0, a.name) for a in node.names)
    return out


def _absolute(path: Path, level: int, module: str) -> str:
    if not level:
        return module
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    base = parts[:-level] if path.name != "__init__.py" else parts[:len(parts) - level]
    return ".".join(base + ([module] if module else []))


def test_no_module_imports_the_package_root_and_io_imports_no_plot_or_pipeline():
    for path in PKG.rglob("*.py"):
        for level, module in _imports(path):
            name = _absolute(path, level, module)
            where = path.relative_to(PKG.parent)
            assert name != "bmeviz", f"{where} imports the package root"
            if path.parent.name == "io":
                assert not name.startswith(("bmeviz.plot", "bmeviz.pipeline", "bmeviz.result", "bmeviz.export")), \
                    f"{where} imports {name}"


def test_files_are_small_or_say_why():
    for path in sorted(PKG.rglob("*.py")):  # every module of the package, not only the refactored ones
        text = path.read_text(encoding="utf-8")
        n = text.count("\n")
        assert n <= 600 or "lines because" in text[:2000], f"{path.name}: {n} lines"


def test_manifest_subject_and_visit_reach_the_cohort(ph, tmp_path):
    from bmeviz.batch import run
    from bmeviz.io import save_mask, save_volume

    save_volume(ph.volume, tmp_path / "a.nii.gz")
    save_mask(ph.reference, ph.volume, tmp_path / "a_ref.nii.gz")
    (tmp_path / "m.csv").write_text("study_id,subject,visit,image,reference_mask\n"
                                    "A_v1,P01,baseline,a.nii.gz,a_ref.nii.gz\nA_v2,P01,week12,a.nii.gz,a_ref.nii.gz\n")
    with pytest.warns(bmeviz.BmevizWarning, match="cohort.csv carries them"):
        cohort = run(tmp_path / "m.csv", tmp_path / "out", workers=0, overlay=False, progress=False)
    assert list(cohort["subject"]) == ["P01", "P01"] and list(cohort["visit"]) == ["baseline", "week12"]
    on_disk = pd.read_csv(tmp_path / "out" / "cohort.csv")
    assert list(on_disk["visit"]) == ["baseline", "week12"] and list(on_disk.columns[-2:]) == ["subject", "visit"]
    # the same run writes the per-subject trajectory (bmeviz.followup.cohort) beside cohort.csv
    traj = pd.read_csv(tmp_path / "out" / "trajectories.csv")
    assert list(traj["subject"]) == ["P01", "P01"] and list(traj["visit"].astype(str)) == ["baseline", "week12"]
    assert (tmp_path / "out" / "trajectories.png").stat().st_size > 1000
