"""Figures for docs/region.md: region assist on real SIJ T1 scans (vs the manual region) and
on the two real knee series of ../shared/data (never copied into the repository).

    python docs/make_region_figures.py      # writes docs/images/region_*.png (small)
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT / "benchmarks"))


def panel(ax, image, region, manual=None, seeds=(), title=""):
    ax.imshow(image, cmap="gray", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99.5))
    ov = np.zeros(image.shape + (4,))
    if manual is not None:
        ov[find_boundaries(manual)] = (1, 0.2, 0.2, 1)
    ov[find_boundaries(region)] = (0.2, 1, 0.2, 1)
    ax.imshow(ov)
    for s in seeds:
        ax.plot(s[1], s[0], "y+", ms=12, mew=2)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def sij() -> None:
    import bmeviz
    from bmeviz.region import region_from_seeds
    from region_sij import clicks_from_region

    sid = "1013"
    t1 = bmeviz.load(SHARED / "sij-stir-dev" / "images" / f"{sid}_T1W.nii.gz")
    manual = bmeviz.load(SHARED / "sij-stir-dev" / "disease_region" / f"{sid}_disease_region.nii.gz").array > 0
    seeds = clicks_from_region(t1, manual)
    m = region_from_seeds(t1, seeds=seeds).mask.array
    fig, axs = plt.subplots(1, 3, figsize=(10.5, 3.6))
    for ax, z in zip(axs, (8, 12, 16)):
        panel(ax, t1.array[z], m[z], manual[z], [s[1:] for s in seeds if s[0] == z],
              f"SIJ {sid} T1W, slice {z}: green assisted, red manual")
    fig.tight_layout()
    fig.savefig(OUT / "region_sij.png", dpi=80)
    plt.close(fig)


def knee() -> None:
    import bmeviz
    from bmeviz.region import region_from_seeds

    warnings.simplefilter("ignore")
    K = SHARED / "knee-dicom"
    fig, axs = plt.subplots(1, 2, figsize=(9, 4.4))
    mese = bmeviz.load(K / "mese-t2-multiecho", echo=1)
    seeds = [(12, 100, 110), (12, 190, 110), (12, 95, 45)]  # femur, tibia, patella
    try:
        res = region_from_seeds(mese, seeds=seeds, contrast="t1")
        m, note = res.mask.array, f"{res.info['volume_ml']:.0f} mL, {res.info['seconds']:.1f} s"
    except bmeviz.BmevizError as exc:
        m, note = np.zeros(mese.shape, bool), f"refused: {exc}"[:60]
    panel(axs[0], mese.array[12], m[12], seeds=[s[1:] for s in seeds],
          title=f"knee multi-echo SE, echo 1 (marrow bright): {note}")
    cube = bmeviz.load(K / "cubequant-fs-sagittal")
    seeds = [(40, 230, 160), (40, 420, 170)]  # femur, tibia
    try:
        res = region_from_seeds(cube, seeds=seeds, contrast="stir")
        m, note = res.mask.array, f"{res.info['volume_ml']:.0f} mL, {res.info['seconds']:.1f} s"
    except bmeviz.BmevizError as exc:
        m, note = np.zeros(cube.shape, bool), f"refused: {exc}"[:60]
    panel(axs[1], cube.array[40], m[40], seeds=[s[1:] for s in seeds],
          title=f"knee CUBE fat-saturated: {note}")
    fig.tight_layout()
    fig.savefig(OUT / "region_knee.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    if not SHARED.is_dir():
        print(f"skip: {SHARED} not found")
        sys.exit(0)
    OUT.mkdir(parents=True, exist_ok=True)
    sij()
    knee()
    for p in sorted(OUT.glob("region_*.png")):
        print(p, p.stat().st_size // 1024, "kB")
