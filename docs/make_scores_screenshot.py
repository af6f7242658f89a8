"""Screenshot of the napari "BME scores" widget on the real SIJ STIR scan 1007 for docs/scores.md.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_scores_screenshot.py

The joint lines of benchmarks/data/sij_joint_lines.json are added to the widget's Shapes layer
(as if drawn), quadrants are built (snapped to the T1), the R11 reader mask is scored (SPARCC).
Writes docs/images/napari_scores.png; skipped with a message without ../shared/data.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIJ = Path(os.environ.get("BMEVIZ_SHARED_DATA", ROOT.parent / "shared" / "data")) / "sij-stir-dev"
os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
if not os.environ.get("XDG_RUNTIME_DIR"):
    os.environ["XDG_RUNTIME_DIR"] = f"/tmp/bmeviz-xdg-{os.getuid()}"
    os.makedirs(os.environ["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)


def main() -> int:
    if not SIJ.exists():
        print(f"skip: {SIJ} not found")
        return 0
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    import bmeviz
    from bmeviz.napari._layers import display_orientation, image_kwargs, labels_kwargs

    sid = "1007"
    vol = bmeviz.load(SIJ / "images" / f"{sid}_STIR.nii.gz")
    t1 = bmeviz.load(SIJ / "images" / f"{sid}_T1W.nii.gz")
    region = bmeviz.load(SIJ / "disease_region" / f"{sid}_disease_region.nii.gz").array > 0
    r11 = bmeviz.load(SIJ / "inflammation" / f"{sid}_inflammation_R11.nii.gz").array > 0
    paths = json.loads((ROOT / "benchmarks" / "data" / "sij_joint_lines.json").read_text())["scans"][sid]["paths"]
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    img = viewer.add_image(vol.array, **image_kwargs(vol, name="STIR 1007"))
    viewer.add_image(t1.array, **image_kwargs(t1, name="T1W 1007"), visible=False)
    viewer.add_labels(region.astype(np.uint8), **labels_kwargs(img.metadata, name="bone region"), visible=False)
    les = viewer.add_labels(r11.astype(np.uint8), **labels_kwargs(img.metadata, name="R11 lesions"))
    les.contour = 1
    _, w = viewer.window.add_plugin_dock_widget("bmeviz", "BME scores")
    w.image_combo.setCurrentText("STIR 1007")
    w.snap_combo.setCurrentText("T1W 1007")
    w.region_combo.setCurrentText("bone region")
    w.lesion_combo.setCurrentText("R11 lesions")
    shapes = w.lines_layer()
    for p in paths:
        shapes.add(np.asarray(p, float), shape_type="path")
    shapes.mode = "pan_zoom"
    w.build_quadrants()
    w.score()
    transpose, vertical, horizontal = display_orientation(vol)
    viewer.camera.orientation2d = (vertical, horizontal)
    viewer.dims.set_point(0, img.data_to_world([8, 0, 0])[0])
    viewer.reset_view()
    for _ in range(5):
        QApplication.processEvents()
    out = ROOT / "docs" / "images" / "napari_scores.png"
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    from PIL import Image  # keep the docs picture small (< 300 kB): 1200 px wide

    im = Image.open(out).convert("RGB")
    im = im.resize((1200, round(im.height * 1200 / im.width)), Image.LANCZOS)
    im.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1000} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
