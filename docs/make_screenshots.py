"""Screenshots of the napari widget for the docs: the phantom and a real SIJ STIR slice.

    xvfb-run -a -s "-screen 0 1280x1024x24" python docs/make_screenshots.py

Writes ``docs/images/napari_phantom.png`` (the shipped phantom: reference click, one seed
per lesion, Grow) and ``docs/images/napari_sij.png`` (SIJ STIR 1013 of ../shared/data with
its normal-marrow mask as reference and its disease-region mask as region, "Find all in
region"; skipped with a message when the data are absent). Both go through
``bmeviz view ... --screenshot``, the command users run. Each picture is checked by its
share of non-black pixels: a black canvas fails even if the widget drew.
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


def main() -> int:
    from bmeviz.cli import main as bmeviz_main
    from bmeviz.data import load_sample, sample_path

    if not os.environ.get("DISPLAY"):
        print("make_screenshots: no X display; run under xvfb-run -a -s '-screen 0 1280x1024x24'", file=sys.stderr)
        return 2
    IMAGES.mkdir(parents=True, exist_ok=True)
    shots = []

    # 1. the shipped phantom: one click in normal marrow, one per lesion
    _, gt = load_sample()
    ref = gt["reference"].nonzero()
    ref_point = ",".join(str(int(round(float(a.mean())))) for a in ref)
    out = IMAGES / "napari_phantom.png"
    args = ["view", str(sample_path("phantom_stir.nii.gz")), "--reference-point", ref_point,
            "--region", str(sample_path("phantom_bone.nii.gz")), "--slice", ref_point.split(",")[0],
            "--screenshot", str(out)]
    for s in gt["seeds"]:
        args += ["--seed", ",".join(str(int(v)) for v in s)]
    if bmeviz_main(args) != 0:
        return 1
    shots.append(out)

    # 2. a real SIJ STIR (not shipped): reader masks as reference and region, all lesions in the region
    image = SIJ / "images" / "1013_STIR.nii.gz"
    if image.exists():
        out = IMAGES / "napari_sij.png"
        args = ["view", str(image), "--reference", str(SIJ / "normal_marrow" / "1013_normal_marrow.nii.gz"),
                "--region", str(SIJ / "disease_region" / "1013_disease_region.nii.gz"), "--find-all", "--slice", "10",
                "--screenshot", str(out)]
        if bmeviz_main(args) != 0:
            return 1
        shots.append(out)
    else:
        print(f"make_screenshots: {image} not found; the SIJ screenshot is not remade")

    for path in shots:
        print(f"{path.relative_to(ROOT)}: {_check(path):.0%} non-black pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
