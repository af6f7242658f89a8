"""bmeviz batch on Dask: 1 worker vs 2 workers, and the Dask path vs a plain loop.

    python benchmarks/bench_batch.py [--n 8] [--shape 40,384,384] [--repeat 2] [--data DIR]

The cohort: ``--n`` synthetic STIR knees (make_phantom, different seeds) of 384x384x40
written as DICOM series (what a PACS export gives), each with a reference point, a bone
region (NIfTI) and one click per lesion in RAS mm, ``edge=half-max``; every study writes
what ``bmeviz segment`` writes (mask, table, provenance, overlay.png).

In one run, on the same files:
- loop:   ``run(workers=0)``, the studies one after the other in this process (no Dask)
- dask-1: ``run(scheduler=...)`` on a LocalCluster of 1 worker process (1 thread)
- dask-2: the same on 2 worker processes
Cluster start-up (processes spawned, bmeviz imported) is timed apart: it is paid once
per run, not per study. The three paths are run in turn, ``--repeat`` times, and each
figure is the best of its runs (``force=True``: every study is redone).

Targets: dask-2 >= 1.6x faster than dask-1; Dask overhead per study vs the loop <= 10 %.
The machine's load average is recorded: on a shared machine the figures are noisy. Two
figures hold up under load: how busy the workers were (sum of the studies' own times over
workers x wall time) and Dask's own time per study (wall time minus the studies' times).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import save, table  # noqa: E402


def _warm() -> str:
    """One tiny study in this process: every lazy import, font cache and code path of a study
    is loaded (part of a worker's start-up, paid once per run, not per study)."""
    import shutil

    import bmeviz
    import bmeviz.io.seg  # noqa: F401
    from bmeviz.data import make_phantom

    ph = make_phantom(shape=(16, 96, 96), spacing=(3.0, 1.4, 1.4), seed=1)
    res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds, edge="half-max")
    tmp = tempfile.mkdtemp()
    try:
        res.save(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return bmeviz.__version__


def make_cohort(folder: Path, n: int, shape: tuple[int, int, int]) -> Path:
    import bmeviz
    from bmeviz.data import make_phantom
    from bmeviz.io import save_mask
    from bmeviz.io.dicom_write import write_dicom_series

    manifest = folder / "manifest.csv"
    if manifest.exists():
        return manifest
    spacing = (3.0, 0.7 * 192 / shape[1], 0.7 * 192 / shape[2])  # the knee fills the field of view
    rows = ["study_id,image,reference_point,reference_radius_mm,region_mask,seeds_mm,edge"]
    for i in range(n):
        ph = make_phantom(shape=shape, spacing=spacing, seed=100 + i)
        dicom = write_dicom_series(ph.volume, folder / f"K{i:02d}")
        vol = bmeviz.load(dicom)
        m = np.linalg.inv(ph.volume.affine) @ vol.affine  # the DICOM grid vs the phantom's (a flip)
        idx = np.indices(vol.shape).reshape(3, -1).T
        src = np.rint(idx @ m[:3, :3].T + m[:3, 3]).astype(int)
        bone = ph.bone[src[:, 0], src[:, 1], src[:, 2]].reshape(vol.shape)
        save_mask(bone, vol, folder / f"K{i:02d}_bone.nii.gz")
        ref = vol.ras_to_index(ph.volume.index_to_ras(ph.reference_point), round=True)
        seeds = ";".join(",".join(f"{v:.3f}" for v in p) for p in ph.volume.index_to_ras(ph.seeds))
        rows.append(f'K{i:02d},K{i:02d},"{",".join(str(int(v)) for v in ref)}",7,K{i:02d}_bone.nii.gz,"{seeds}",half-max')
        print(f"  wrote K{i:02d} ({shape}, {len(ph.seeds)} lesions)", flush=True)
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def timed_run(manifest: Path, out: Path, **kw) -> tuple[float, object]:
    from bmeviz.batch import run

    t = time.perf_counter()
    tab = run(manifest, out, force=True, progress=False, **kw)
    wall = time.perf_counter() - t
    if not (tab["status"] == "ok").all():
        raise SystemExit(f"a study failed:\n{tab.to_string()}")
    return wall, tab


def start_cluster(workers: int):
    """A LocalCluster like bmeviz.batch's own, its Client, and its start-up time (workers warmed)."""
    import dask
    from distributed import Client, LocalCluster

    t = time.perf_counter()
    # as bmeviz.batch's own LocalCluster (see _client there): the default glibc allocator
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
    client = Client(cluster)
    client.run(_warm)
    return cluster, client, time.perf_counter() - t


def main() -> int:
    args = sys.argv[1:]

    def opt(name, default):
        return args[args.index(name) + 1] if name in args else default

    n = int(opt("--n", 8))
    shape = tuple(int(v) for v in opt("--shape", "40,384,384").split(","))
    repeat = int(opt("--repeat", 2))
    data = Path(opt("--data", tempfile.mkdtemp(prefix="bmeviz-bench-batch-")))
    data.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    print(f"cohort: {n} x {shape} DICOM in {data}", flush=True)
    manifest = make_cohort(data, n, shape)
    _warm()
    work = Path(tempfile.mkdtemp(prefix="bmeviz-bench-out-"))

    # start-up apart (paid once per run); then the three paths interleaved, best of --repeat each
    # (interleaving spreads a busy machine's load drift over the three alike)
    timed_run(manifest, work / "warm", workers=0)  # first touch of the files (page cache) and of the code
    c1, cl1, up1 = start_cluster(1)
    c2, cl2, up2 = start_cluster(2)
    walls = {"loop": [], "dask1": [], "dask2": []}
    study_s = {"loop": [], "dask1": [], "dask2": []}
    try:
        for r in range(repeat):
            for name, kw in (("loop", {"workers": 0}), ("dask1", {"scheduler": cl1}), ("dask2", {"scheduler": cl2})):
                wall, tab = timed_run(manifest, work / name, **kw)
                walls[name].append(wall)
                study_s[name].append(float(tab["seconds"].sum()))
                print(f"  run {r + 1}: {name}: {wall:.2f} s", flush=True)
    finally:
        logging.getLogger("distributed").setLevel(logging.CRITICAL)  # closing: no comm chatter
        for obj in (cl1, cl2, c1, c2):  # clients first, then clusters
            obj.close()
    best = {k: int(np.argmin(v)) for k, v in walls.items()}
    loop_wall = walls["loop"][best["loop"]]
    d1 = {"workers": 1, "startup_s": up1, "wall_s": walls["dask1"][best["dask1"]], "walls_s": walls["dask1"],
          "sum_study_s": study_s["dask1"][best["dask1"]]}
    d2 = {"workers": 2, "startup_s": up2, "wall_s": walls["dask2"][best["dask2"]], "walls_s": walls["dask2"],
          "sum_study_s": study_s["dask2"][best["dask2"]]}
    loops = [(w, None) for w in walls["loop"]]
    load1 = os.getloadavg()

    speedup = d1["wall_s"] / d2["wall_s"]
    speedup_with_startup = (d1["wall_s"] + d1["startup_s"]) / (d2["wall_s"] + d2["startup_s"])
    overhead = (d1["wall_s"] - loop_wall) / n
    overhead_pct = 100 * (d1["wall_s"] / loop_wall - 1)
    rows = [
        ("loop (no Dask)", f"{loop_wall:.2f}", "-", f"{loop_wall / n:.2f}", "-"),
        ("Dask, 1 worker", f"{d1['wall_s']:.2f}", f"{d1['startup_s']:.2f}", f"{d1['wall_s'] / n:.2f}",
         f"{overhead_pct:+.1f}% vs loop"),
        ("Dask, 2 workers", f"{d2['wall_s']:.2f}", f"{d2['startup_s']:.2f}", f"{d2['wall_s'] / n:.2f}",
         f"{speedup:.2f}x vs 1 worker"),
    ]
    print()
    print(table(rows, ("path", "wall s", "start-up s", "s/study", "")))
    print(f"\nspeed-up 2 vs 1 worker: {speedup:.2f}x (target >= 1.6); with start-up: {speedup_with_startup:.2f}x")
    print(f"Dask overhead per study vs the loop: {overhead * 1000:+.0f} ms = {overhead_pct:+.1f}% (target <= 10%); "
          f"cluster start-up {d1['startup_s']:.1f} s once per run")
    util2 = d2["sum_study_s"] / (2 * d2["wall_s"])
    sched1 = (d1["wall_s"] - d1["sum_study_s"]) / n
    print(f"workers busy (sum of study times / workers x wall): 1 worker {d1['sum_study_s'] / d1['wall_s']:.0%}, "
          f"2 workers {util2:.0%}; Dask's own time per study (wall - study time, 1 worker): {sched1 * 1000:.0f} ms")
    print(f"time per study inside the workers: 1 worker {d1['sum_study_s'] / n:.2f} s, 2 workers "
          f"{d2['sum_study_s'] / n:.2f} s (equal on an idle machine; more when other processes share the cores)")
    print(f"load average (1 min) before/after: {load0[0]:.2f} / {load1[0]:.2f} on {os.cpu_count()} CPUs"
          + ("  -- the machine is busy: figures are noisy" if max(load0[0], load1[0]) > 0.5 * (os.cpu_count() or 1)
             else ""))
    path = save("batch", {
        "n_studies": n, "shape": list(shape), "repeat": repeat, "cpus": os.cpu_count(),
        "loop_s": loop_wall, "loop_walls_s": [w for w, _ in loops],
        "dask1": d1, "dask2": d2,
        "speedup_2_vs_1": speedup, "speedup_2_vs_1_with_startup": speedup_with_startup,
        "overhead_per_study_s": overhead, "overhead_pct": overhead_pct,
        "workers_busy_2": util2, "dask_time_per_study_s": sched1,
        "loadavg_before": list(load0), "loadavg_after": list(load1),
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
