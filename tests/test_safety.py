"""Data safety: inputs are opened read-only and never change; outputs are written
atomically; --out never points into the inputs or over files bmeviz did not write;
nothing is deleted; no patient identifier reaches an output, stdout, stderr or a warning
unless --include-phi."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import bmeviz
from bmeviz.cli import main
from bmeviz.data import make_phantom
from bmeviz.io.dicom_write import write_dicom_series

PHI = {"PatientName": "Quux^Wilhelmina", "PatientID": "PID-SAFE-5150", "PatientBirthDate": "19441106",
       "AccessionNumber": "ACC-SAFE-8086", "InstitutionName": "Sanatorium Zyxwv"}
#: Every planted identifier, and the parts a writer might split them into.
PHI_STRINGS = ["Quux", "Wilhelmina", "PID-SAFE-5150", "19441106", "1944-11-06", "ACC-SAFE-8086", "Sanatorium Zyxwv",
               "Zyxwv"]


# ----------------------------------------------------------------------------- helpers
def _digest(root: Path) -> dict[str, tuple[str, int, int]]:
    """sha256, mtime and mode of every file under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_mode)
    return out


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_OPENS: list | None = None


def _audit(event, args):
    if _OPENS is not None and event == "open":
        path, mode, flags = (list(args) + [None, None, None])[:3]
        _OPENS.append((str(path), mode, flags))


sys.addaudithook(_audit)  # stays for the process; records only while a test watches


class _WatchOpens:
    """Record every file opened (Python audit event 'open': builtins.open, io.FileIO, os.open)."""

    def __enter__(self):
        global _OPENS
        _OPENS = []
        return self

    def __exit__(self, *exc):
        global _OPENS
        self.opens, _OPENS = _OPENS, None

    def writes_under(self, root: Path) -> list:
        root_s = str(root.resolve())
        bad = []
        for path, mode, flags in self.opens:
            try:
                resolved = str(Path(path).resolve())
            except (OSError, ValueError):
                continue
            if not resolved.startswith(root_s):
                continue
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writes:
                bad.append((path, mode, flags))
        return bad

    def reads_under(self, root: Path) -> int:
        root_s = str(root.resolve())
        return sum(str(Path(p).resolve()).startswith(root_s) for p, _, _ in self.opens if isinstance(p, str))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The phantom as a DICOM series with planted identifiers, plus NIfTI masks, in an input tree."""
    root = tmp_path_factory.mktemp("inputs")
    ph = make_phantom(seed=0, shape=(20, 128, 128))  # all four lesions, a quarter of the voxels
    dicom = write_dicom_series(ph.volume, root / "dicom" / "stir", sequence="STIR", description="STIR cor",
                               patient=PHI, shuffle_names=True)
    (root / "dicom" / "stir" / "README.txt").write_text("exported by the scanner")  # a non-DICOM file beside
    vol = bmeviz.load(dicom)
    # the masks on the DICOM grid (DICOM may index the slices from the other end)
    flip = np.dot(vol.affine[:3, 0], ph.volume.affine[:3, 0]) < 0
    on_grid = (lambda a: a[::-1]) if flip else (lambda a: a)
    masks = root / "masks"
    bmeviz.save_mask(on_grid(ph.reference), vol, masks / "reference.nii.gz")
    bmeviz.save_mask(on_grid(ph.bone), vol, masks / "bone.nii.gz")
    bmeviz.io.save_volume(vol, masks / "stir.nii.gz")
    seeds_mm = [ph.volume.index_to_ras(s) for s in ph.seeds]
    return {"root": root, "dicom": dicom, "masks": masks, "seeds_mm": seeds_mm, "phantom": ph}


def _segment_args(study, out: Path, *extra: str) -> list[str]:
    args = ["segment", str(study["dicom"]), "--reference", str(study["masks"] / "reference.nii.gz"),
            "--region", str(study["masks"] / "bone.nii.gz"), "--edge", "half-max", "--out", str(out)]
    for p in study["seeds_mm"][:2]:
        args.append(f"--seed-mm={p[0]:.3f},{p[1]:.3f},{p[2]:.3f}")
    return args + list(extra)


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bmeviz.cli", *args], capture_output=True, text=True,
                          timeout=600)


def _texts_of(path: Path) -> list[str]:
    """The bytes of a file as text, plus its decompressed content and image metadata."""
    raw = path.read_bytes()
    texts = [raw.decode("latin-1")]
    if path.name.endswith(".gz"):
        texts.append(gzip.decompress(raw).decode("latin-1"))
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            texts.append(json.dumps({k: str(v) for k, v in im.info.items()}))
    if path.suffix == ".dcm":
        import pydicom

        texts.append(str(pydicom.dcmread(path)))
    return texts


def _leaks(text: str) -> list[str]:
    return [s for s in PHI_STRINGS if s in text]


# ----------------------------------------------------------------------------- inputs
def test_inputs_are_opened_read_only_and_never_change(study, tmp_path):
    root = study["root"]
    before = _digest(root)
    with _WatchOpens() as watch:
        bmeviz.list_series(study["dicom"])
        vol = bmeviz.load(study["dicom"])
        bmeviz.load(study["masks"] / "stir.nii.gz")
        res = bmeviz.segment(vol, reference=study["masks"] / "reference.nii.gz", region=study["masks"] / "bone.nii.gz",
                             seeds_mm=study["seeds_mm"], edge="half-max")
        res.save(tmp_path / "api", seg=True, report=True)
        assert main(_segment_args(study, tmp_path / "cli", "--no-overlay")) == 0
        assert main(["info", str(study["dicom"])]) == 0
        assert main(["series", str(study["dicom"])]) == 0
    assert watch.reads_under(root) > 0  # the hook saw the reads
    assert watch.writes_under(root) == []
    assert _digest(root) == before


# ----------------------------------------------------------------------------- atomic outputs
def _stray(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]


def test_failure_mid_write_leaves_no_partial_file_and_no_temp_file(tmp_path, monkeypatch):
    import nibabel as nib

    vol = bmeviz.Volume(np.zeros((4, 8, 8), np.float32), np.diag([3.0, 0.5, 0.5, 1.0]))
    out = tmp_path / "o"
    real_save = nib.save

    def half_then_fail(img, filename):
        Path(filename).write_bytes(b"\x1f\x8b partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nib, "save", half_then_fail)
    with pytest.raises(OSError):
        bmeviz.save_mask(np.ones(vol.shape, bool), vol, out / "mask.nii.gz")
    assert list(out.iterdir()) == []  # no partial mask, no temp file
    # an existing output is left whole when its replacement fails
    monkeypatch.setattr(nib, "save", real_save)
    bmeviz.save_mask(np.ones(vol.shape, bool), vol, out / "mask.nii.gz")
    good = (out / "mask.nii.gz").read_bytes()
    monkeypatch.setattr(nib, "save", half_then_fail)
    with pytest.raises(OSError):
        bmeviz.save_mask(np.zeros(vol.shape, bool), vol, out / "mask.nii.gz")
    assert (out / "mask.nii.gz").read_bytes() == good
    assert _stray(out) == []


@pytest.mark.parametrize("fail_at", [0, 1, 2, 3])
def test_interrupted_save_of_a_result(tmp_path, monkeypatch, fail_at):
    """Result.save stopped at its n-th rename (a crash, Ctrl-C): every file present is
    complete, the earlier run's files are untouched, and no temp file is left."""
    from bmeviz.io import _atomic

    ph = make_phantom(seed=2, shape=(20, 128, 128))
    res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    out = tmp_path / "r"
    res.save(out)
    first = _digest(out)
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) > fail_at:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(_atomic.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        res.save(out)
    monkeypatch.setattr(_atomic.os, "replace", real_replace)
    assert _stray(out) == []
    now = _digest(out)
    assert set(now) == set(first)
    for name, (sha, _, _) in now.items():  # each file is the old one or a complete new one
        path = out / name
        if name.endswith(".nii.gz"):
            bmeviz.load(path)
        elif name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".csv"):
            import pandas as pd

            pd.read_csv(path)


# ----------------------------------------------------------------------------- --out
def test_out_refusals_and_nothing_foreign_is_touched(study, tmp_path, capsys):
    dicom = study["dicom"]
    for out in (dicom, dicom / "results", dicom.parent.parent / "dicom" / "stir" / "sub" / "x"):
        assert main(_segment_args(study, out)) == 2
        assert "input folder" in capsys.readouterr().err
    assert not (dicom / "results").exists() and not (dicom / "sub").exists()
    afile = tmp_path / "a_file"
    afile.write_text("keep")
    assert main(_segment_args(study, afile)) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "keep"
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("chapter 1")
    (foreign / "lesions.csv").write_text("their own table")
    before = _digest(foreign)
    assert main(_segment_args(study, foreign)) == 2
    assert "did not write" in capsys.readouterr().err
    assert main(_segment_args(study, foreign, "--force")) == 2  # would overwrite their lesions.csv
    assert "does not overwrite" in capsys.readouterr().err
    assert _digest(foreign) == before
    (foreign / "lesions.csv").unlink()
    before = _digest(foreign)
    assert main(_segment_args(study, foreign, "--force", "--no-overlay")) == 0  # beside, not over
    after = _digest(foreign)
    assert {k: v for k, v in after.items() if k in before} == before
    assert {"bme_mask.nii.gz", "lesions.csv", "provenance.json"} <= set(after)


def test_rerun_into_a_bmeviz_folder_and_demo_rerun(study, tmp_path, capsys):
    out = tmp_path / "again"
    assert main(_segment_args(study, out, "--no-overlay")) == 0
    assert main(_segment_args(study, out, "--no-overlay")) == 0  # its own earlier output: allowed
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "provenance.json").write_text('{"software": {"name": "something else"}}')
    assert main(_segment_args(study, fake, "--no-overlay")) == 2  # a provenance.json is not enough
    capsys.readouterr()


def test_demo_can_run_twice_into_the_same_folder(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()


def test_output_errors_are_one_line_not_a_traceback(study, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    proc = _run_cli(_segment_args(study, blocked / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [l for l in proc.stderr.splitlines() if l.startswith("bmeviz: error:")][0].count("blocked") >= 1


# ----------------------------------------------------------------------------- identifiers
def test_no_identifier_in_any_output_or_message(study, tmp_path, capsys):
    """Run the whole CLI on a DICOM study with planted identifiers, with every optional
    output and some warnings, and look for the identifiers everywhere: every file written,
    stdout and stderr (one real subprocess, so nothing escapes capture), warnings. The
    inputs are byte-identical afterwards."""
    before = _digest(study["root"])
    out = tmp_path / "out"
    proc = _run_cli(_segment_args(study, out, "--seg", "--report"))
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr  # the README beside the images is named
    texts = {"subprocess stdout": proc.stdout, "subprocess stderr": proc.stderr}
    for i, args in enumerate([
        ["series", str(study["dicom"])],
        ["series", "--json", str(study["dicom"])],
        ["info", str(study["dicom"])],
        ["segment", str(study["dicom"]), "--reference", str(study["masks"] / "reference.nii.gz"),
         "--out", str(tmp_path / "noregion"), "--no-overlay"],  # warns: no seeds and no region
        ["segment", str(study["dicom"]), "--reference-point", "999,0,0", "--out", str(tmp_path / "bad")],
    ]):
        code = main(args)
        assert code == (2 if "999,0,0" in args else 0)
        cap = capsys.readouterr()
        texts[f"{args[0]} #{i} stdout"], texts[f"{args[0]} #{i} stderr"] = cap.out, cap.err
    leaks = {where: _leaks(text) for where, text in texts.items() if _leaks(text)}
    files = [p for p in sorted(tmp_path.rglob("*")) if p.is_file()]
    assert {p.name for p in files if p.parent == out} >= {"bme_mask.nii.gz", "lesions.csv", "provenance.json",
                                                          "overlay.png", "bme_seg.dcm", "report.html"}
    for p in files:
        for text in _texts_of(p):
            if _leaks(text):
                leaks[str(p.relative_to(tmp_path))] = _leaks(text)
    assert leaks == {}
    assert _digest(study["root"]) == before


def test_no_identifier_in_python_objects(study):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        infos = bmeviz.list_series(study["dicom"].parent)
        vol = bmeviz.load(study["dicom"])
        res = bmeviz.segment(vol, reference=study["masks"] / "reference.nii.gz", seeds_mm=study["seeds_mm"][:1])
    texts = [repr(infos), json.dumps([s.to_dict() for s in infos]), repr(vol), json.dumps(vol.metadata, default=str),
             json.dumps(res.provenance(), default=str), res.table.to_csv(), repr(res)]
    texts += [str(w.message) for w in record]
    assert [_leaks(t) for t in texts if _leaks(t)] == []


def test_include_phi_is_what_puts_identifiers_in(study, tmp_path):
    """With --include-phi the DICOM SEG carries the patient module (for the PACS) and the
    provenance the source paths; without it, neither."""
    import pydicom

    for flag, expect in (("--include-phi", True), (None, False)):
        out = tmp_path / ("phi" if flag else "nophi")
        args = _segment_args(study, out, "--seg", "--no-overlay") + ([flag] if flag else [])
        assert main(args) == 0
        seg = pydicom.dcmread(out / "bme_seg.dcm")
        assert (str(seg.get("PatientName", "")) == PHI["PatientName"]) is expect
        prov = (out / "provenance.json").read_text()
        assert (str(study["dicom"]) in prov) is expect
