"""Loading speed: bmeviz.load vs a plain pydicom loop and SimpleITK, in one run.

    python benchmarks/bench_io.py

Uses ../shared/data/knee-dicom (80-file 512x512 CUBE series; 192-file multi-echo folder).
The plain loop is what a user would otherwise write: dcmread + pixel_array + np.stack
(no sorting, no checks, no rescale). Target: bmeviz <= 1.3x that loop. The header scan
of the 192-file folder must read no pixel data (checked by counting dcmread calls).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, best_of, save, table  # noqa: E402

import bmeviz  # noqa: E402


def plain_loop(files):
    return np.stack([pydicom.dcmread(f).pixel_array for f in files])


def main() -> int:
    cube = SHARED / "knee-dicom" / "cubequant-fs-sagittal"
    mese = SHARED / "knee-dicom" / "mese-t2-multiecho"
    if not cube.exists():
        print(f"skipped: {cube} not found (needs ../shared/data)")
        return 0
    files = sorted(str(p) for p in cube.iterdir())
    t_plain, ref = best_of(lambda: plain_loop(files))
    t_bme, vol = best_of(lambda: bmeviz.load(cube))
    rows = [("pydicom loop (dcmread+pixel_array+stack)", f"{t_plain:.3f}", "1.00"),
            ("bmeviz.load (scan+group+check+read)", f"{t_bme:.3f}", f"{t_bme / t_plain:.2f}")]
    result = {"cube_files": len(files), "shape": list(vol.shape), "pydicom_loop_s": t_plain, "bmeviz_load_s": t_bme,
              "ratio_vs_pydicom": t_bme / t_plain}
    try:
        import SimpleITK as sitk

        def sitk_load():
            r = sitk.ImageSeriesReader()
            r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(cube)))
            return sitk.GetArrayFromImage(r.Execute())

        t_sitk, _ = best_of(sitk_load)
        rows.append(("SimpleITK ImageSeriesReader (+GetArray)", f"{t_sitk:.3f}", f"{t_sitk / t_plain:.2f}"))
        result["simpleitk_s"] = t_sitk
        result["ratio_vs_simpleitk"] = t_bme / t_sitk
    except ImportError:
        pass
    assert vol.shape == ref.shape  # same data, in position order
    # header scan of the 192-file folder: every dcmread stops before pixels
    calls = []
    real = pydicom.dcmread

    def spy(*a, **k):
        calls.append(bool(k.get("stop_before_pixels")))
        return real(*a, **k)

    pydicom.dcmread = spy
    try:
        t_scan, infos = best_of(lambda: bmeviz.list_series(mese), repeat=3)
    finally:
        pydicom.dcmread = real
    result.update({"scan_192_files_s": t_scan, "scan_reads_pixels": not all(calls), "scan_series": len(infos)})
    rows.append(("bmeviz.list_series, 192 files, headers only", f"{t_scan:.3f}", "-"))
    print(table(rows, ("what", "seconds (median)", "ratio vs pydicom loop")))
    print(f"\nheader scan read pixel data: {result['scan_reads_pixels']} ({len(calls)} dcmread calls, all stop_before_pixels)")
    print(f"results: {save('io', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
