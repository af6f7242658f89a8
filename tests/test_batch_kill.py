"""``bmeviz batch`` survives SIGKILL at any moment: the rerun takes over the lock (also from a
killed process not yet reaped, a zombie), and finishes with nothing lost, nothing duplicated,
no stray temporary file or folder, and no study folder that is not complete."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bmeviz

ROOT = Path(__file__).resolve().parents[1]
N_STUDIES = 4
SEED = 20261201
OUTPUTS = ("bme_mask.nii.gz", "lesions.csv", "provenance.json", "overlay.png")


def _study(root: Path, i: int) -> str:
    """A small NIfTI scan with two bright lesions in a box-shaped bone, masks beside it."""
    from bmeviz.io import save_mask, save_volume

    rng = np.random.default_rng(i)
    shape = (10, 48, 48)
    arr = rng.normal(200, 12, shape).astype(np.float32)
    bone = np.zeros(shape, bool)
    bone[1:9, 6:42, 6:42] = True
    arr[3:6, 10:18 + i, 12:20] += 260
    arr[5:8, 28:36, 26:34 - i] += 220
    ref = np.zeros(shape, bool)
    ref[2:8, 24:30, 8:14] = True
    vol = bmeviz.Volume(arr, np.diag([3.0, 0.8, 0.8, 1.0]), {"sequence": "STIR"})
    save_volume(vol, root / f"s{i}.nii.gz")
    save_mask(ref, vol, root / f"s{i}_ref.nii.gz")
    save_mask(bone, vol, root / f"s{i}_bone.nii.gz")
    return f"S{i},s{i}.nii.gz,s{i}_ref.nii.gz,s{i}_bone.nii.gz,\"4,14,16;6,32,29\""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    lines = ["study_id,image,reference_mask,region_mask,seeds"] + [_study(root, i) for i in range(N_STUDIES)]
    manifest = root / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    expected = root / "expected"
    from bmeviz.batch import run

    run(manifest, expected, workers=0, progress=False)
    return manifest, expected


def _start(manifest: Path, out: Path, *, force: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bmeviz.cli", "batch", str(manifest), "--out", str(out), "--workers", "0",
           "--no-progress"] + (["--force"] if force else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(out: Path, pattern: str, proc: subprocess.Popen, timeout: float = 30.0) -> bool:
    """Poll ``out`` until an entry matching ``pattern`` appears (False: the run ended first)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if out.exists() and any(out.glob(pattern)):
            return True
        time.sleep(0.002)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _check_visible_studies(out: Path, expected: Path) -> None:
    """Every study folder in sight is complete and equal to the clean run's (atomic commit)."""
    import nibabel as nib

    if not out.exists():  # killed before it made the output folder (a slow start on a busy machine)
        return
    for d in out.iterdir():
        if not d.is_dir() or d.name.startswith("."):
            continue
        for name in OUTPUTS:
            assert (d / name).is_file(), f"{d.name}/{name} missing: a half-written study is in sight"
        got = np.asarray(nib.load(str(d / "bme_mask.nii.gz")).dataobj)
        want = np.asarray(nib.load(str(expected / d.name / "bme_mask.nii.gz")).dataobj)
        assert np.array_equal(got, want), d.name
        assert (d / "lesions.csv").read_text() == (expected / d.name / "lesions.csv").read_text()


@pytest.mark.slow  # ~50-70 s: 11 runs of the CLI on 2 cores
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombie detection reads /proc")
def test_sigkill_at_random_moments_then_rerun_completes(cohort, tmp_path):
    manifest, expected = cohort
    out = tmp_path / "out"
    rng = random.Random(SEED)
    # when to kill: at a random moment, as soon as a study's temporary folder appears (during a
    # study), while the cohort table or figure is being written, or while a study is committed
    moments = ["random", "study", "cohort", "random", "study", "cohort", "commit", "random", "study", "cohort"]
    kills = {"hit": 0, "finished first": 0}
    # "random" moments are drawn within the duration of a clean run on this machine (a fixed
    # number of seconds is too long on an idle machine and too short on a busy one)
    start = time.monotonic()
    probe = _start(manifest, tmp_path / "probe", force=False)
    assert probe.wait() == 0, probe.stderr.read().decode()
    probe.stderr.close()
    clean_run_s = time.monotonic() - start
    previous = None
    for i, when in enumerate(moments):
        proc = _start(manifest, out, force=rng.random() < 0.5)
        if when == "random":
            time.sleep(rng.uniform(0.15, 0.85) * clean_run_s)
        elif when == "study":
            _wait_for(out, ".S*.tmp-*", proc)
            time.sleep(rng.uniform(0.0, 0.3))
        elif when == "commit":
            if not _wait_for(out, ".S*.old-*", proc):
                _wait_for(out, ".S*.tmp-*", proc)
        else:
            _wait_for(out, ".cohort.*", proc)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills["hit"] += 1
            deadline = time.monotonic() + 5
            while not _is_zombie(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _is_zombie(proc.pid)  # killed, not reaped: the next run meets a zombie owner
        else:
            kills["finished first"] += 1
            assert proc.returncode == 0, proc.stderr.read().decode()
        if previous is not None:
            previous.wait()
            previous.stderr.close()
        previous = proc
        _check_visible_studies(out, expected)
    # the rerun, with the last killed run still a zombie owning the lock
    final = _start(manifest, out, force=False)
    err = final.communicate(timeout=120)[1].decode()
    previous.wait()
    previous.stderr.close()
    assert final.returncode == 0, err
    assert "another bmeviz batch" not in err
    # most moments caught the run alive (a rerun that only skips done studies may finish first)
    assert kills["hit"] >= 6, kills
    # nothing lost, nothing duplicated, nothing stray
    table = pd.read_csv(out / "cohort.csv")
    assert sorted(table["study_id"]) == [f"S{i}" for i in range(N_STUDIES)]
    assert set(table["status"]) <= {"ok", "skipped"}, table.to_string()
    ref = pd.read_csv(expected / "cohort.csv").set_index("study_id")
    got = table.set_index("study_id").loc[ref.index]
    assert np.allclose(got["total_volume_ml"], ref["total_volume_ml"])
    assert list(got["n_lesions"]) == list(ref["n_lesions"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["batch.json", "cohort.csv", "cohort.png", *(f"S{i}" for i in range(N_STUDIES))])
    _check_visible_studies(out, expected)
    stray = [p for p in out.rglob(".*")]
    assert not stray, stray
