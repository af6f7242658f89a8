"""Putting a label mask on another grid: bmeviz.resample_to vs SimpleITK, in one run.

    python benchmarks/bench_resample.py

The real SIJ region mask (1234, 25 x 336 x 336, 0.595 x 0.595 x 3.3 mm) moved onto the
STIR's grid turned 2 degrees and shifted 1 mm (what a mask drawn on another series of the
session needs), nearest neighbour. SimpleITK's ``Resample(..., sitkNearestNeighbor)`` is
what a user would otherwise run. Reports the time ratio, the peak memory of bmeviz's
call, and how many voxels differ between the two (expected 0).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, best_of, peak_bytes, save, table  # noqa: E402

import bmeviz  # noqa: E402
from bmeviz.volume import REVERSE_AXES  # noqa: E402


def sitk_image(vol):
    import SimpleITK as sitk

    nif = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.affine @ REVERSE_AXES
    spacing = np.linalg.norm(nif[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(vol.array))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (nif[:3, :3] / spacing).ravel()])
    img.SetOrigin([float(v) for v in nif[:3, 3]])
    return img


def turned(affine, deg=2.0, shift=(1.0, 0.0, 0.5)):
    t = np.deg2rad(deg)
    r = np.eye(4)
    r[:3, :3] = [[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]]
    r[:3, 3] = shift
    return r @ affine


def main() -> int:
    import SimpleITK as sitk

    base = SHARED / "sij-stir-dev"
    if not base.exists():
        print(f"needs {base}")
        return 1
    image = bmeviz.load(base / "images" / "1234_STIR.nii.gz")
    region = bmeviz.load(base / "disease_region" / "1234_disease_region.nii.gz")
    region = bmeviz.Volume(region.array.astype(np.uint8), region.affine)
    target = bmeviz.Volume(np.zeros(image.shape, np.uint8), turned(image.affine))
    t_ours, ours = best_of(lambda: bmeviz.resample_to(region, target).array)
    src, ref = sitk_image(region), sitk_image(target)
    t_sitk, theirs = best_of(lambda: sitk.GetArrayFromImage(
        sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)))
    peak = peak_bytes(lambda: bmeviz.resample_to(region, target))
    differ = int(np.count_nonzero(ours != theirs))
    rows = [("bmeviz.resample_to", f"{t_ours * 1000:.1f}", f"{t_ours / t_sitk:.2f}", f"{peak / 1e6:.1f}"),
            ("SimpleITK Resample", f"{t_sitk * 1000:.1f}", "1.00", "-")]
    print(f"{region.shape} uint8 mask, {np.count_nonzero(region.array)} labelled voxels; "
          f"{differ} voxels differ between the two")
    print(table(rows, ("method", "ms (median of 5)", "ratio to SimpleITK", "peak MB")))
    save("resample", {"shape": list(region.shape), "ms_bmeviz": t_ours * 1000, "ms_sitk": t_sitk * 1000,
                      "ratio": t_ours / t_sitk, "peak_mb": peak / 1e6, "voxels_differ": differ})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
