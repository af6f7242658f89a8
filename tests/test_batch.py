"""Cohort runs (bmeviz.batch): manifest validation, Dask LocalCluster runs, failures that do
not stop the others, resuming, atomic study folders, no identifiers, the CLI."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import bmeviz
from bmeviz.batch import COHORT_COLUMNS, ManifestError, read_manifest, run
from bmeviz.errors import ParameterError
from helpers import SHARED

PLANTED = {"PatientName": "Doe^Jane", "PatientID": "PID-778899", "PatientBirthDate": "19700101",
           "AccessionNumber": "ACC-445566", "InstitutionName": "Hospital Zeta"}
SHAPE, SPACING = (20, 96, 96), (3.0, 1.4, 1.4)
HEADER = ("study_id,image,series,reference_mask,reference_point,reference_radius_mm,region_mask,seeds,seeds_mm,"
          "rule,k,edge,seg,report")
SIJ = SHARED / "sij-stir-dev"


def on_grid(array, src, dst):
    """``array`` on ``src``'s grid moved onto ``dst``'s (the same voxels; axes permuted/flipped)."""
    m = np.linalg.inv(src.affine) @ dst.affine
    assert np.allclose(m[:3, :3], np.rint(m[:3, :3]), atol=1e-4)
    idx = np.indices(dst.shape).reshape(3, -1).T
    s = np.rint(idx @ m[:3, :3].T + m[:3, 3]).astype(int)
    return np.asarray(array)[s[:, 0], s[:, 1], s[:, 2]].reshape(dst.shape)


def _pts(points) -> str:
    return '"' + ";".join(",".join(f"{float(v):.4g}" for v in p) for p in points) + '"'


def row(**kw) -> str:
    cols = HEADER.split(",")
    return ",".join(str(kw.get(c, "")) for c in cols)


def nifti_study(root: Path, name: str, seed: int):
    """A phantom as NIfTI image + reference + bone masks; returns (phantom, dict of file names)."""
    from bmeviz.data import make_phantom
    from bmeviz.io import save_mask, save_volume

    ph = make_phantom(shape=SHAPE, spacing=SPACING, seed=seed)
    save_volume(ph.volume, root / f"{name}.nii.gz")
    save_mask(ph.reference, ph.volume, root / f"{name}_ref.nii.gz")
    save_mask(ph.bone, ph.volume, root / f"{name}_bone.nii.gz")
    return ph, {"image": f"{name}.nii.gz", "reference_mask": f"{name}_ref.nii.gz", "region_mask": f"{name}_bone.nii.gz"}


def dicom_study(root: Path, name: str, seed: int):
    """A phantom as a DICOM series with planted identifiers; reference point and seeds given
    on the loaded series' grid (voxels) and in RAS mm, the bone mask saved on that grid."""
    from bmeviz.data import make_phantom
    from bmeviz.io import save_mask
    from bmeviz.io.dicom_write import write_dicom_series

    ph = make_phantom(shape=SHAPE, spacing=SPACING, seed=seed)
    folder = write_dicom_series(ph.volume, root / name, patient=PLANTED, shuffle_names=True, seed=seed)
    vol = bmeviz.load(folder)
    save_mask(on_grid(ph.bone, ph.volume, vol), vol, root / f"{name}_bone.nii.gz")
    ref = vol.ras_to_index(ph.volume.index_to_ras(ph.reference_point), round=True)
    return ph, {"image": name, "reference_point": '"' + ",".join(str(int(v)) for v in ref) + '"',
                "reference_radius_mm": 7, "region_mask": f"{name}_bone.nii.gz",
                "seeds_mm": _pts(ph.volume.index_to_ras(ph.seeds))}


def corrupt_study(root: Path, name: str, seed: int) -> dict:
    """A DICOM series with one file truncated in its pixel data."""
    from bmeviz.data import make_phantom
    from bmeviz.io.dicom_write import write_dicom_series

    ph = make_phantom(shape=SHAPE, spacing=SPACING, seed=seed)
    folder = write_dicom_series(ph.volume, root / name, patient=PLANTED)
    f = sorted(folder.iterdir())[7]
    f.write_bytes(f.read_bytes()[:3000])
    return {"image": name, "reference_point": '"10,40,40"'}


def sij_rows() -> list[str]:
    """Rows for the shared SIJ STIR dev scans (absent: no rows; test_sij_rows says why)."""
    if not SIJ.exists():
        return []
    out = []
    for sid in ("1007", "1234"):
        out.append(row(study_id=f"SIJ{sid}", image=SIJ / "images" / f"{sid}_STIR.nii.gz",
                       reference_mask=SIJ / "normal_marrow" / f"{sid}_normal_marrow.nii.gz",
                       region_mask=SIJ / "disease_region" / f"{sid}_disease_region.nii.gz"))
    return out


def expect(table, statuses):
    """Assert the statuses of a cohort table (showing the table, errors included, if not)."""
    assert list(table["status"]) == statuses, table.to_string()


def _text_outputs(out: Path) -> dict[Path, str]:
    names = {"cohort.csv", "lesions.csv", "provenance.json", "report.html", "batch.json"}
    return {p: p.read_text(encoding="utf-8") for p in out.rglob("*") if p.name in names}


def _read_cohort(out: Path):
    import pandas as pd

    return pd.read_csv(out / "cohort.csv")


# ----------------------------------------------------------------------------- the cohort on Dask
def test_cohort_on_local_cluster_failures_resume_and_no_identifiers(tmp_path, capfd):
    """>= 6 scans (3 DICOM, 3 NIfTI, + the SIJ dev scans when present) and two broken rows on a
    LocalCluster of 2 workers; a second run skips everything; changing k redoes only that row."""
    from distributed import LocalCluster

    data = tmp_path / "data"
    data.mkdir()
    rows = [HEADER]
    truth = {}
    for i in range(3):
        ph, cols = dicom_study(data, f"D{i}", 30 + i)
        rows.append(row(study_id=f"D{i}", edge="half-max", seg="yes", report="yes" if i == 0 else "", **cols))
        truth[f"D{i}"] = sum(ph.lesion_volumes_ml)
    for i in range(3):
        ph, cols = nifti_study(data, f"N{i}", 40 + i)
        extra = {"seeds": _pts(ph.seeds), "edge": "half-max"} if i < 2 else {"rule": "q3-iqr"}  # N2: all in region
        rows.append(row(study_id=f"N{i}", **cols, **extra))
        truth[f"N{i}"] = sum(ph.lesion_volumes_ml)
    rows += sij_rows()
    rows.append(row(study_id="MISSING", image="gone/nothere.nii.gz", reference_mask="N0_ref.nii.gz"))
    rows.append(row(study_id="CORRUPT", **corrupt_study(data, "C0", 50)))
    manifest = data / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    ids = [r.split(",")[0] for r in rows[1:]]
    out = tmp_path / "out"

    with pytest.warns(bmeviz.BmevizWarning, match="MISSING.*image not found"):
        table = run(manifest, out, workers=2)
    err = capfd.readouterr().err
    assert "remaining" in err and "failed" in err and f"{len(ids) - 1}/{len(ids) - 1} done" in err

    cohort = _read_cohort(out)
    assert list(cohort.columns) == list(COHORT_COLUMNS) and list(cohort["study_id"]) == ids
    assert list(table["study_id"]) == ids
    status = dict(zip(cohort["study_id"], cohort["status"]))
    assert all(status[s] == "ok" for s in ids if s not in ("MISSING", "CORRUPT")), cohort.to_string()
    errors = dict(zip(cohort["study_id"], cohort["error"]))
    assert status["MISSING"] == "failed" and errors["MISSING"] == "image not found: gone/nothere.nii.gz"
    assert status["CORRUPT"] == "failed" and "C0/IM" in errors["CORRUPT"] and "pixel data" in errors["CORRUPT"]
    assert not (out / "MISSING").exists() and not (out / "CORRUPT").exists()
    for sid, vol_ml in truth.items():
        got = cohort.loc[cohort.study_id == sid].iloc[0]
        if sid != "N2":  # seeded: the four lesions, volumes close to the truth
            assert int(got.n_lesions) == 4
            assert abs(float(got.total_volume_ml) / vol_ml - 1) < 0.15, (sid, got.total_volume_ml, vol_ml)
        assert got.rule == "q3-iqr" and float(got.threshold) > 0 and float(got.seconds) > 0
    # the outputs of bmeviz segment, per study; SEG for DICOM rows, report where asked
    for sid in [s for s in ids if status[s] == "ok"]:
        names = {p.name for p in (out / sid).iterdir()}
        assert {"bme_mask.nii.gz", "lesions.csv", "provenance.json", "overlay.png"} <= names, (sid, names)
        assert ("bme_seg.dcm" in names) == sid.startswith("D")
        assert ("report.html" in names) == (sid == "D0")
        prov = json.loads((out / sid / "provenance.json").read_text())
        assert len(prov["batch"]["hash"]) == 64 and prov["batch"]["study_id"] == sid
    assert (out / "cohort.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary folders or lock left"

    # the SEG lands on bme_mask.nii.gz's voxels
    import nibabel as nib

    from bmeviz.io.seg import read_seg

    d0 = bmeviz.load(data / "D0")
    mask = np.asarray(nib.load(str(out / "D0" / "bme_mask.nii.gz")).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(read_seg(out / "D0" / "bme_seg.dcm", d0), mask)

    # no identifiers anywhere (planted DICOM tags, absolute paths) without include_phi
    texts = _text_outputs(out)
    assert {p.name for p in texts} >= {"cohort.csv", "lesions.csv", "provenance.json", "report.html"}
    for path, text in texts.items():
        # embedded images (base64 data: URIs in report.html) can hold "Doe" by chance
        text = re.sub(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=\s]+", "", text)
        for value in list(PLANTED.values()) + ["Doe", str(tmp_path)]:
            assert value not in text, (path, value)
    raw = (out / "D1" / "bme_seg.dcm").read_bytes()
    assert not any(v.encode() in raw for v in PLANTED.values())

    # second run, on an existing cluster: every finished study is skipped; the broken ones are tried again
    stamps = {s: (out / s / "provenance.json").stat().st_mtime_ns for s in ids if status[s] == "ok"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with pytest.warns(bmeviz.BmevizWarning):
            again = run(manifest, out, scheduler=cluster.scheduler_address)
        st2 = dict(zip(again["study_id"], again["status"]))
        assert all(st2[s] == "skipped" for s in stamps), again.to_string()
        assert st2["MISSING"] == "failed" and st2["CORRUPT"] == "failed"
        assert {s: (out / s / "provenance.json").stat().st_mtime_ns for s in stamps} == stamps
        skipped = again.set_index("study_id").loc["D1"]
        first = table.set_index("study_id").loc["D1"]
        assert skipped.total_volume_ml == pytest.approx(first.total_volume_ml)
        assert skipped.k_used == pytest.approx(first.k_used)

        # change k for one row: only that row is redone
        text = manifest.read_text().splitlines()
        text = [ln.replace(",,half-max,", ",2.5,half-max,") if ln.startswith("N1,") else ln for ln in text]
        manifest.write_text("\n".join(text) + "\n")
        with pytest.warns(bmeviz.BmevizWarning):
            third = run(manifest, out, scheduler=cluster.scheduler_address)
    st3 = dict(zip(third["study_id"], third["status"]))
    assert st3["N1"] == "ok" and float(third.set_index("study_id").loc["N1", "k_used"]) == 2.5
    assert all(st3[s] == "skipped" for s in stamps if s != "N1"), third.to_string()
    assert (out / "N1" / "provenance.json").stat().st_mtime_ns != stamps["N1"]
    assert json.loads((out / "N1" / "provenance.json").read_text())["params"]["k"] == 2.5


def test_sij_rows(shared_data):
    """The shared SIJ dev scans join the cohort test when present (else: skipped, with the reason)."""
    shared_data("sij-stir-dev", "images")
    rows = sij_rows()
    assert len(rows) == 2
    table = read_manifest_from_rows(rows)
    assert list(table["study_id"]) == ["SIJ1007", "SIJ1234"] and not table["missing"].any()


def read_manifest_from_rows(rows, tmp=None):
    import tempfile

    folder = Path(tmp or tempfile.mkdtemp())
    path = folder / "manifest.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return read_manifest(path)


# ----------------------------------------------------------------------------- manifest validation
def test_every_bad_row_is_reported_at_once_before_any_work(tmp_path):
    _, cols = nifti_study(tmp_path, "ok", 1)
    (tmp_path / "m.csv").write_text("\n".join([
        HEADER,
        row(study_id="A1", **cols),
        row(study_id="A2", image="ok.nii.gz"),                                           # no reference
        row(study_id="A3", image="ok.nii.gz", reference_mask="ok_ref.nii.gz", reference_point='"1,2,3"'),
        row(study_id="A4", image="ok.nii.gz", reference_point='"1,2"', k="abc", rule="median"),
        row(study_id="a1", **cols),                                                      # duplicate (case)
        row(study_id="../etc", **cols),
        row(study_id="A7", image="ok.nii.gz", reference_mask="ok_ref.nii.gz", seeds='"1,2,3;4,5"', seg="yes"),
        row(study_id="A8", image="ok.nii.gz", reference_mask="ok_ref.nii.gz", series="5"),
        row(study_id="A9", image="ok.nii.gz", reference_point='"1,2,3"', rule="otsu", k="adaptive"),
    ]) + "\n")
    out = tmp_path / "out"
    with pytest.raises(ManifestError) as info:
        run(tmp_path / "m.csv", out, workers=0)
    msg = str(info.value)
    assert "8 bad row(s) of 9; nothing was run" in msg
    for expected in [
        "line 3 (study A2): no reference",
        "line 4 (study A3): give one reference, not reference_mask and reference_point",
        "line 5 (study A4): reference_point must be three numbers",
        "line 5 (study A4): k must be a number or 'adaptive'; got 'abc'",
        "line 5 (study A4): rule must be one of",
        "line 6 (study a1): study_id 'a1' is already used on line 2",
        "line 7 (study ../etc): study_id '../etc' cannot be a folder name",
        "line 8 (study A7): seeds must be three numbers",
        "line 8 (study A7): seg=yes needs a DICOM source",
        "line 9 (study A8): series/echo apply to DICOM",
        "line 10 (study A9): k=adaptive applies to rule q3-iqr, not otsu",
    ]:
        assert expected in msg, expected
    assert len(info.value.problems) == 11
    assert not out.exists(), "validation comes before any work"


def test_manifest_columns(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("study_id,image,referance_mask\nA,a.nii.gz,r.nii.gz\n")
    with pytest.raises(ManifestError, match="'referance_mask' \\(did you mean 'reference_mask'\\?\\)"):
        read_manifest(m)
    m.write_text("study,reference_mask\nA,r.nii.gz\n")
    with pytest.raises(ManifestError, match="needs the column\\(s\\) image"):
        read_manifest(m)
    m.write_text("# only a comment\n\n")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(m)
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.csv")
    m.write_text("study_id,image,reference_point,visit\nA,a.nii.gz,\"1,2,3\",V1\n")
    with pytest.warns(bmeviz.BmevizWarning) as rec:
        t = read_manifest(m)
    messages = " ".join(str(w.message) for w in rec)
    assert "visit are not bmeviz's and are ignored" in messages and "image not found" in messages
    assert t.loc[0, "missing"] == f"image not found: {tmp_path / 'a.nii.gz'}"


def test_read_manifest_parses_and_resolves(tmp_path):
    (tmp_path / "sub").mkdir()
    m = tmp_path / "sub" / "m.csv"
    m.write_text(
        "Study ID;Image;Reference-Point;reference_radius_mm;Seeds;seeds_mm;k;min_slices;fill_holes;seg\n"
        "# comment line\n"
        "K01;../img.nii.gz;12,140,96;6;12,180,120 | 13,181,121;-12.5,40.2,3;adaptive;1;no;\n"
        "K02;/abs/dicom;1,2,3;;;;2.5;;yes;yes\n"
    )
    with pytest.warns(bmeviz.BmevizWarning, match="not exist"):
        t = read_manifest(m)
    a, b = t.iloc[0], t.iloc[1]
    assert a.image == str(tmp_path / "img.nii.gz") and b.image == "/abs/dicom"
    assert a.reference_point == (12.0, 140.0, 96.0) and a.reference_radius_mm == 6.0
    assert a.seeds == [(12.0, 180.0, 120.0), (13.0, 181.0, 121.0)] and a.seeds_mm == [(-12.5, 40.2, 3.0)]
    assert a.k == "adaptive" and a.min_slices == 1 and a.fill_holes is False and a.line == 3
    assert b.k == 2.5 and b.fill_holes is True and b.seg is True and b.line == 4
    with pytest.raises(ManifestError, match="missing|not exist"):
        read_manifest(m, strict=True)
    with pytest.raises(ParameterError, match="unknown option 'kk'"):
        read_manifest(m, kk=1)


# ----------------------------------------------------------------------------- in-process runs: resume details
@pytest.fixture
def two_niftis(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = [HEADER]
    for i in range(2):
        ph, cols = nifti_study(data, f"N{i}", 60 + i)
        rows.append(row(study_id=f"N{i}", seeds=_pts(ph.seeds), **cols))
    (data / "m.csv").write_text("\n".join(rows) + "\n")
    return data / "m.csv"


def test_resume_redoes_what_changed_and_cleans_killed_runs(two_niftis, tmp_path):
    out = tmp_path / "out"
    t1 = run(two_niftis, out, workers=0, overlay=False, progress=False)
    assert list(t1["status"]) == ["ok", "ok"]
    # a run killed while writing N0 left its temporary folder; N1 lost an output
    (out / ".N0.tmp-0123abcd").mkdir()
    (out / ".N0.tmp-0123abcd" / "lesions.csv").write_text("half")
    (out / "N1" / "lesions.csv").unlink()
    t2 = run(two_niftis, out, workers=0, overlay=False, progress=False)
    assert list(t2["status"]) == ["skipped", "ok"]
    assert not (out / ".N0.tmp-0123abcd").exists() and (out / "N1" / "lesions.csv").exists()
    # an input changed (new mtime): redone; force: all redone; a command default: all redone
    img = two_niftis.parent / "N0.nii.gz"
    os.utime(img, ns=(time.time_ns(), time.time_ns() + 10**9))
    again = dict(overlay=False, progress=False, workers=0)
    expect(run(two_niftis, out, **again), ["ok", "skipped"])
    expect(run(two_niftis, out, **again), ["skipped", "skipped"])
    expect(run(two_niftis, out, force=True, **again), ["ok", "ok"])
    expect(run(two_niftis, out, min_volume_mm3=5, **again), ["ok", "ok"])
    prov = json.loads((out / "N0" / "provenance.json").read_text())
    assert prov["params"]["min_volume_mm3"] == 5
    # other outputs asked for (the overlay): redone
    expect(run(two_niftis, out, workers=0, progress=False, min_volume_mm3=5), ["ok", "ok"])
    assert (out / "N0" / "overlay.png").exists()


def test_study_replaced_atomically(two_niftis, tmp_path, monkeypatch):
    """A study that fails half-way leaves its previous folder as it was, and no temporary."""
    import bmeviz.report

    out = tmp_path / "out"
    run(two_niftis, out, workers=0, overlay=False, progress=False)
    before = (out / "N0" / "provenance.json").read_text()

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bmeviz.report, "save_report", broken)
    t = run(two_niftis, out, workers=0, overlay=False, progress=False, report=True)
    assert list(t["status"]) == ["failed", "failed"]
    assert list(t["error"]) == ["RuntimeError: disk full"] * 2
    assert (out / "N0" / "provenance.json").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_unexpected_error_is_recorded_with_its_type(two_niftis, tmp_path, monkeypatch):
    import bmeviz.pipeline

    calls = []
    real = bmeviz.pipeline.segment

    def flaky(volume, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("boom")
        return real(volume, **kw)

    monkeypatch.setattr(bmeviz.pipeline, "segment", flaky)
    t = run(two_niftis, tmp_path / "out", workers=0, progress=False)
    assert list(t["status"]) == ["failed", "ok"] and t.loc[0, "error"] == "ZeroDivisionError: boom"


def test_output_folder_rules(two_niftis, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="holds files bmeviz batch did not write"):
        run(two_niftis, foreign, workers=0)
    with pytest.raises(ParameterError, match="not both"):
        run(two_niftis, tmp_path / "o", workers=2, scheduler="tcp://127.0.0.1:1")
    # another run is writing there (a live pid on this host): refused; a dead one's lock is taken over
    import socket

    out = tmp_path / "out"
    run(two_niftis, out, workers=0, progress=False)
    lock = out / ".bmeviz-batch.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    with pytest.raises(ParameterError, match="another bmeviz batch"):
        run(two_niftis, out, workers=0, progress=False)
    lock.write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "started": "then"}))
    expect(run(two_niftis, out, workers=0, progress=False), ["skipped", "skipped"])
    assert not lock.exists()


def test_unreachable_scheduler_is_a_clear_error(two_niftis, tmp_path, monkeypatch):
    import bmeviz.batch

    monkeypatch.setattr(bmeviz.batch, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(ParameterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run(two_niftis, tmp_path / "out", scheduler="tcp://127.0.0.1:9", progress=False)


def test_include_phi_keeps_paths_and_identifiers(tmp_path):
    import pydicom

    data = tmp_path / "data"
    data.mkdir()
    ph, cols = dicom_study(data, "D0", 70)
    (data / "m.csv").write_text("\n".join([HEADER, row(study_id="D0", seg="yes", **cols)]) + "\n")
    out = tmp_path / "out"
    run(data / "m.csv", out, workers=0, include_phi=True, report=True, progress=False)
    prov = json.loads((out / "D0" / "provenance.json").read_text())
    assert prov["batch"]["inputs"]["image"] == str(data / "D0")
    assert str(data / "D0") in (out / "D0" / "report.html").read_text()
    assert str(pydicom.dcmread(out / "D0" / "bme_seg.dcm").PatientName) == "Doe^Jane"


def test_seg_that_cannot_be_written_is_a_note_not_a_failure(tmp_path):
    """DICOM without FrameOfReferenceUID (an anonymiser removed it): no SEG, the measurements stand."""
    import pydicom

    data = tmp_path / "data"
    data.mkdir()
    _, cols = dicom_study(data, "D0", 71)
    for f in (data / "D0").iterdir():
        ds = pydicom.dcmread(f)
        del ds.FrameOfReferenceUID
        ds.save_as(f)
    (data / "m.csv").write_text("\n".join([HEADER, row(study_id="D0", seg="yes", **cols)]) + "\n")
    t = run(data / "m.csv", tmp_path / "out", workers=0, overlay=False, progress=False)
    expect(t, ["ok"])
    assert "no DICOM SEG" in t.loc[0, "notes"] and "FrameOfReferenceUID" in t.loc[0, "notes"]
    assert not (tmp_path / "out" / "D0" / "bme_seg.dcm").exists()
    expect(run(data / "m.csv", tmp_path / "out", workers=0, overlay=False, progress=False), ["skipped"])


# ----------------------------------------------------------------------------- CLI, import, figure
def test_cli_batch(two_niftis, tmp_path, capsys):
    from bmeviz.cli import main

    text = two_niftis.read_text() + row(study_id="GONE", image="gone.nii.gz", reference_point='"1,2,3"') + "\n"
    two_niftis.write_text(text)
    out = tmp_path / "out"
    with pytest.warns(bmeviz.BmevizWarning):
        assert main(["batch", str(two_niftis), "--out", str(out), "--check"]) == 0
    got = capsys.readouterr().out
    assert "N0" in got and "run" in got and "2 to run, 0 up to date, 1 with missing inputs" in got
    assert not out.exists()
    with pytest.warns(bmeviz.BmevizWarning):
        code = main(["batch", str(two_niftis), "--out", str(out), "--workers", "0", "--no-overlay", "--k", "2",
                     "--edge", "half-max"])
    assert code == 1  # a study failed
    got = capsys.readouterr()
    assert "failed: GONE: image not found: gone.nii.gz" in got.out
    assert "3 studies: 2 ok, 1 failed, 0 up to date" in got.out
    assert "remaining" in got.err
    cohort = _read_cohort(out)
    assert list(cohort["k_used"][:2]) == [2.0, 2.0]
    prov = json.loads((out / "N0" / "provenance.json").read_text())
    assert prov["params"]["edge"] == "half-max"
    assert main(["batch", str(two_niftis), "--out", str(out), "--k", "abc"]) == 2
    assert "k must be a number" in capsys.readouterr().err


def test_import_is_light():
    code = ("import sys, bmeviz.batch, bmeviz.cli; bmeviz.cli.build_parser(); "
            "bad = [m for m in ('dask', 'distributed', 'highdicom') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cohort_figure_has_every_study():
    import pandas as pd
    from matplotlib.figure import Figure

    from bmeviz.batch import cohort_figure

    t = pd.DataFrame({"study_id": ["A", "B", "C"], "status": ["ok", "failed", "skipped"],
                      "total_volume_ml": [3.0, None, 5.5]})
    fig = cohort_figure(t)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [tx.get_text() for tx in ax.get_xticklabels()] == ["A", "B", "C"]
    assert [round(p.get_height(), 3) for p in ax.patches] == [3.0, 0.0, 5.5]
    assert "pyplot" not in " ".join(m for m in sys.modules if m.startswith("matplotlib.pyplot"))


def test_paths_in_messages_are_shortened():
    """Error messages and notes show paths relative to the manifest's folder; outside it, only the name."""
    from bmeviz.batch import _scrub

    task = {"outputs": {}, "base": "/data/study", "image": "/data/study/n0.nii.gz",
            "region": "/other/Doe_Jane/bone.nii.gz", "reference": {"mask": "/data/study/masks/ref.nii.gz"},
            "out": "/results"}
    text = ("/data/study/n0.nii.gz: bad; /data/study/x.nii.gz; /other/Doe_Jane/bone.nii.gz; "
            "/other/Doe_Jane/y.nii.gz; /data/study/masks/ref.nii.gz; /results/.K.tmp-0123abcd/a")
    assert _scrub(text, task) == ("n0.nii.gz: bad; x.nii.gz; …/bone.nii.gz; …/y.nii.gz; masks/ref.nii.gz; "
                                  "<out>/.K.tmp-0123abcd/a")
    assert _scrub(text, {**task, "outputs": {"include_phi": True}}) == text
