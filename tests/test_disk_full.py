"""A full disk (ENOSPC) or another write error during segment, batch and export: one clear
error naming the file, and nothing partial left that looks like a result.

Errors are injected where a full disk shows up (the flush before the rename, or the writer
itself half-way through a file) and, as root, met for real on a small tmpfs.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import bmeviz
from bmeviz.data import make_phantom
from bmeviz.io import _atomic

RESULT_FILES = {"bme_mask.nii.gz", "lesions.csv", "provenance.json", "overlay.png"}


def _listing(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) with its digest."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def result():
    ph = make_phantom(seed=4, shape=(16, 96, 96))
    return bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)


def _fail_flush_at(monkeypatch, n):
    """The n-th file's flush to disk fails with ENOSPC (0: the first)."""
    real = _atomic.os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == n + 1:
            raise _enospc()
        return real(fd)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    return calls


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_result_save_disk_full_leaves_nothing(result, tmp_path, monkeypatch, n):
    out = tmp_path / "new"
    _fail_flush_at(monkeypatch, n)
    with pytest.raises(OSError) as err:
        result.save(out)
    assert err.value.errno == errno.ENOSPC
    assert "disk full" in str(err.value) and err.value.filename.startswith(str(out))
    assert _listing(out) == {}  # no mask without its table, no temp file


@pytest.mark.parametrize("n", [0, 2, 3])
def test_result_save_disk_full_keeps_the_earlier_result(result, tmp_path, monkeypatch, n):
    out = tmp_path / "r"
    result.save(out)
    before = _listing(out)
    assert set(before) == RESULT_FILES
    _fail_flush_at(monkeypatch, n)
    with pytest.raises(OSError, match="disk full"):
        result.save(out)
    assert _listing(out) == before  # byte for byte, and no temp file beside it


def test_writer_failing_half_way_leaves_nothing(result, tmp_path, monkeypatch):
    import pandas as pd

    real = pd.DataFrame.to_csv

    def half_then_full(self, path, *a, **k):
        Path(path).write_text("study_id,lab")  # a torn line, as a full disk leaves it
        raise _enospc()

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_full)
    out = tmp_path / "half"
    with pytest.raises(OSError, match="disk full") as err:
        result.save(out)
    assert err.value.filename == str(out / "lesions.csv")
    assert _listing(out) == {}
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)


def test_cli_segment_disk_full_is_one_line(tmp_path, monkeypatch, capsys):
    from bmeviz.cli import main
    from bmeviz.io import save_mask, save_volume

    ph = make_phantom(seed=5, shape=(16, 96, 96))
    save_volume(ph.volume, tmp_path / "stir.nii.gz")
    save_mask(ph.reference, ph.volume, tmp_path / "ref.nii.gz")
    save_mask(ph.bone, ph.volume, tmp_path / "bone.nii.gz")
    out = tmp_path / "out"
    _fail_flush_at(monkeypatch, 2)
    rc = main(["segment", str(tmp_path / "stir.nii.gz"), "--reference", str(tmp_path / "ref.nii.gz"),
               "--region", str(tmp_path / "bone.nii.gz"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [line for line in err.splitlines() if line.startswith("bmeviz: error:")]
    assert len(lines) == 1 and "no space left on the device (disk full)" in lines[0], err
    assert str(out) in lines[0] and "Traceback" not in err
    assert not out.exists() or _listing(out) == {}


def test_seg_export_disk_full_leaves_nothing(tmp_path, monkeypatch):
    """Export with a DICOM SEG: the SEG's own write fails; nothing of the result is left."""
    from bmeviz.io.dicom_write import write_dicom_series

    ph = make_phantom(seed=6, shape=(20, 96, 96), spacing=(3.0, 1.4, 1.4))
    write_dicom_series(ph.volume, tmp_path / "dicom")
    vol = bmeviz.load(tmp_path / "dicom")
    # the phantom's masks and seeds onto the DICOM series' grid (its slices run the other way)
    ref = bmeviz.resample_to(bmeviz.Volume(ph.reference, ph.volume.affine), vol).array
    bone = bmeviz.resample_to(bmeviz.Volume(ph.bone, ph.volume.affine), vol).array
    seeds = vol.ras_to_index(ph.volume.index_to_ras(ph.seeds), round=True)
    res = bmeviz.segment(vol, reference=ref, region=bone, seeds=seeds)
    assert res.n_lesions >= 1
    out = tmp_path / "seg"
    _fail_flush_at(monkeypatch, 4)  # mask, table, provenance, overlay, then the SEG
    with pytest.raises(OSError) as err:
        res.save(out, seg=True)
    assert err.value.filename == str(out / "bme_seg.dcm")
    assert _listing(out) == {}


# ----------------------------------------------------------------------------- batch
def _manifest(root: Path, n: int = 3) -> Path:
    from bmeviz.io import save_mask, save_volume

    lines = ["study_id,image,reference_mask,region_mask"]
    for i in range(n):
        ph = make_phantom(seed=10 + i, shape=(20, 96, 96), spacing=(3.0, 1.4, 1.4))
        save_volume(ph.volume, root / f"s{i}.nii.gz")
        save_mask(ph.reference, ph.volume, root / f"s{i}_ref.nii.gz")
        save_mask(ph.bone, ph.volume, root / f"s{i}_bone.nii.gz")
        lines.append(f"S{i},s{i}.nii.gz,s{i}_ref.nii.gz,s{i}_bone.nii.gz")
    path = root / "cohort.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_batch_disk_full_in_a_study_and_in_the_cohort(tmp_path, monkeypatch):
    from bmeviz.batch import run

    manifest = _manifest(tmp_path)
    out = tmp_path / "out"
    # the disk fills up while study S1 is written: S1 fails with the reason, S0 and S2 are whole
    real = _atomic.os.fsync
    state = {"n": 0}

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if "/.S1.tmp-" in name:
            raise _enospc()
        state["n"] += 1
        return real(fd)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    table = run(manifest, out, workers=0, progress=False)
    status = dict(zip(table["study_id"], table["status"]))
    assert status == {"S0": "ok", "S1": "failed", "S2": "ok"}
    error = table.set_index("study_id").loc["S1", "error"]
    assert "disk full" in error
    assert sorted(p.name for p in out.iterdir()) == ["S0", "S2", "batch.json", "cohort.csv", "cohort.png"]
    for sid in ("S0", "S2"):
        assert RESULT_FILES <= {p.name for p in (out / sid).iterdir()}
    before = _listing(out)
    # the disk is full when the rerun writes the cohort table: one error, the earlier table kept
    monkeypatch.setattr(_atomic.os, "fsync", real)

    def full_for_cohort(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".cohort."):
            raise _enospc()
        return real(fd)

    monkeypatch.setattr(_atomic.os, "fsync", full_for_cohort)
    with pytest.raises(OSError, match="disk full") as err:
        run(manifest, out, workers=0, progress=False)
    assert err.value.filename == str(out / "cohort.csv")
    after = _listing(out)
    assert {k: v for k, v in after.items() if not k.startswith(("S1/", "batch.json"))} == \
        {k: v for k, v in before.items() if not k.startswith("batch.json")}
    assert not [p for p in out.rglob(".*")]  # no lock, no temp folder or file
    assert (out / "S1" / "bme_mask.nii.gz").is_file()  # the rerun redid S1, whole


# ----------------------------------------------------------------------------- a real full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (root only): a real ENOSPC."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_result_save_on_a_really_full_disk(result, small_disk):
    filler = small_disk / "filler.bin"
    with open(filler, "wb") as f:  # leave ~100 kB: the mask, table and provenance fit, the overlay (300 kB) not
        f.write(b"\0" * (924 << 10))
    out = small_disk / "res"
    with pytest.raises(OSError) as err:
        result.save(out)
    assert err.value.errno == errno.ENOSPC and "disk full" in str(err.value)
    assert _listing(out) == {}
    filler.unlink()
    paths = result.save(out)  # space again: the same call now succeeds
    assert {p.name for p in paths.values()} == RESULT_FILES
