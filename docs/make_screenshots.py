"""Screenshots of the napari widget for the docs: the phantom and a real SIJ STIR slice.

    xvfb-run -a -s "-screen 0 1280x1024x24" python docs/make_screenshots.py

Writes, in the two window sizes the widget must fit (1366×768, a common laptop, and
1600×1000): ``docs/images/napari_phantom[_1366x768].png`` (the shipped phantom: reference click,
one seed per lesion) and ``docs/images/napari_sij[_1366x768].png`` (SIJ STIR 1013 of
../shared/data with its readers' normal-marrow mask as reference and disease-region mask as
region, one click in each of the reader's three largest lesions; skipped with a message when
the data are absent). All go through ``bmeviz view ... --screenshot``, the command users
run. Each picture is checked by its share of non-black pixels: a black canvas fails even if
the widget drew. Look at them: nothing may overlap.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
SHARED = Path(os.environ.get("BMEVIZ_SHARED_DATA", ROOT.parent / "shared" / "data"))
SIJ = SHARED / "sij-stir-dev"

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
# a fresh autosave folder: an earlier run's autosave would put a "found an autosave" notice on the picture
os.environ.setdefault("BMEVIZ_AUTOSAVE_DIR", __import__("tempfile").mkdtemp(prefix="bmeviz-shots-"))
if not os.environ.get("XDG_RUNTIME_DIR"):
    os.environ["XDG_RUNTIME_DIR"] = f"/tmp/bmeviz-xdg-{os.getuid()}"
    os.makedirs(os.environ["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)


def _check(path: Path, minimum: float = 0.35) -> float:
    """Share of non-black pixels of a screenshot (fails below ``minimum``)."""
    import numpy as np
    from matplotlib.image import imread

    rgb = imread(str(path))[..., :3]
    if rgb.dtype != np.uint8:
        rgb = (rgb * 255).astype(np.uint8)
    share = float((rgb.max(axis=-1) > 16).mean())
    if share < minimum:
        raise SystemExit(f"{path}: only {share:.0%} of the pixels are not black; the canvas did not draw")
    return share


def _shrink(path: Path, limit: int = 280_000) -> int:
    """Keep a docs picture under ~300 kB: above ``limit`` it is saved with a 256-colour palette."""
    from PIL import Image

    if path.stat().st_size > limit:
        with Image.open(path) as im:
            im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def _sij_seeds():
    """A click in each of the three largest lesions of reader R11 on SIJ 1013 (None without the data)."""
    import numpy as np
    from scipy import ndimage as ndi

    import bmeviz

    if not (SIJ / "images" / "1013_STIR.nii.gz").exists():
        return None
    vol = bmeviz.load(SIJ / "images" / "1013_STIR.nii.gz")
    region = bmeviz.load(SIJ / "disease_region" / "1013_disease_region.nii.gz").array > 0
    reader = (bmeviz.load(SIJ / "inflammation" / "1013_inflammation_R11.nii.gz").array > 0) & region
    lab, _ = ndi.label(reader)
    seeds = []
    for i in np.argsort(np.bincount(lab.ravel())[1:])[::-1][:3] + 1:
        pts = np.argwhere(lab == i)
        seeds.append(pts[np.argmax(vol.array[tuple(pts.T)])])  # a user clicks the bright spot
    return seeds


def _view(bmeviz_main, args) -> int:
    """One ``bmeviz view`` with its own autosave folder: the same scan shown twice (two window
    sizes) would otherwise find the first view's autosave and say so on the picture."""
    import tempfile

    os.environ["BMEVIZ_AUTOSAVE_DIR"] = tempfile.mkdtemp(prefix="bmeviz-shots-")
    return bmeviz_main(args)


def main() -> int:
    from bmeviz.cli import main as bmeviz_main
    from bmeviz.data import load_sample, sample_path

    if not os.environ.get("DISPLAY"):
        print("make_screenshots: no X display; run under xvfb-run -a -s '-screen 0 1280x1024x24'", file=sys.stderr)
        return 2
    IMAGES.mkdir(parents=True, exist_ok=True)
    shots = []

    _, gt = load_sample()
    ref = gt["reference"].nonzero()
    ref_point = ",".join(str(int(round(float(a.mean())))) for a in ref)
    sij_seeds = _sij_seeds()
    for size in ("1366x768", "1600x1000"):
        # 1. the shipped phantom: one click in normal marrow, one per lesion
        suffix = "" if size == "1600x1000" else f"_{size}"  # the README shows the 1600x1000 ones
        out = IMAGES / f"napari_phantom{suffix}.png"
        args = ["view", str(sample_path("phantom_stir.nii.gz")), "--reference-point", ref_point,
                "--region", str(sample_path("phantom_bone.nii.gz")), "--slice", ref_point.split(",")[0],
                "--size", size, "--screenshot", str(out)]
        for s in gt["seeds"]:
            args += ["--seed", ",".join(str(int(v)) for v in s)]
        if _view(bmeviz_main, args) != 0:
            return 1
        shots.append(out)
        # 2. a real SIJ STIR (not shipped): reader masks as reference and region, a click per lesion
        if sij_seeds is None:
            print(f"make_screenshots: {SIJ} not found; the SIJ screenshots are not remade")
            continue
        out = IMAGES / f"napari_sij{suffix}.png"
        args = ["view", str(SIJ / "images" / "1013_STIR.nii.gz"),
                "--reference", str(SIJ / "normal_marrow" / "1013_normal_marrow.nii.gz"),
                "--region", str(SIJ / "disease_region" / "1013_disease_region.nii.gz"), "--slice", "10",
                "--size", size, "--screenshot", str(out)]
        for s in sij_seeds:
            args += ["--seed", ",".join(str(int(v)) for v in s)]
        if _view(bmeviz_main, args) != 0:
            return 1
        shots.append(out)

    for path in shots:
        print(f"{path.relative_to(ROOT)}: {_check(path):.0%} non-black pixels, {_shrink(path) // 1024} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
