"""Screenshots of the "Bone region (bmeviz)" widget on a real SIJ T1 scan.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_region_screenshot.py
    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_region_screenshot.py --atlas 1234
    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_region_screenshot.py --atlas 1013 --refine R.joblib

Writes docs/images/region_widget.png (SIJ 1013, the classical outline, 1366x768). With
``--atlas ID``: scan ID outlined from the other SIJ scans as atlases (a folder of links in a
temporary folder), at 1366x768 and 1600x1000, docs/images/region_widget_atlas_<ID>[_1600x1000].png;
on 1234 the atlases disagree and the status line says so. With ``--refine R.joblib`` too (a
refiner trained without scan ID: ``bmeviz region-refiner --atlas DIR --exclude ID --out R.joblib``):
docs/images/region_widget_refined_<ID>[_1600x1000].png. Needs ../shared/data (never copied
into the repository).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sij-stir-dev"
sys.path.insert(0, str(ROOT / "benchmarks"))


def _atlas_dir(sid: str) -> str:
    """A temporary folder of links to the other scans' T1 and drawn region."""
    import tempfile

    from region_sij import DEV_IDS, EXTRA, EXTRA_IDS, paths

    d = Path(tempfile.mkdtemp(prefix="bmeviz-atlas-shot-"))
    for other in DEV_IDS + (EXTRA_IDS if EXTRA.is_dir() else ()):
        if other != sid:
            p = paths(other)
            (d / f"{other}_T1W.nii.gz").symlink_to(p["t1"].resolve())
            (d / f"{other}_disease_region.nii.gz").symlink_to(p["region"].resolve())
    return str(d)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", metavar="ID", help="outline scan ID from the other scans as atlases")
    ap.add_argument("--refine", metavar="FILE", help="with --atlas: and this refiner (trained without scan ID)")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"skip: {SHARED} not found")
        return 0
    if args.atlas:
        return 0 if all(_shot(args.atlas, size, _atlas_dir(args.atlas), args.refine) == 0
                        for size in ((1366, 768), (1600, 1000))) else 1
    return _shot("1013", (1366, 768), None)


def _shot(sid: str, size: tuple[int, int], atlas: str | None, refine: str | None = None) -> int:
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    import bmeviz
    from region_sij import clicks_from_region

    t1_path = SHARED / "images" / f"{sid}_T1W.nii.gz"
    stir_path = SHARED / "images" / f"{sid}_STIR.nii.gz"
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*size)
    viewer.open(str(stir_path), plugin="bmeviz")
    viewer.open(str(t1_path), plugin="bmeviz")
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "Bone region (bmeviz)")
    t1 = bmeviz.load(t1_path)
    manual = bmeviz.load(SHARED / "disease_region" / f"{sid}_disease_region.nii.gz").array > 0
    if atlas:
        widget.atlas_edit.setText(atlas)
    if refine:
        widget.refine_edit.setText(str(Path(refine).resolve()))
    widget.add_clicks()
    layer = viewer.layers["region clicks"]
    for s in clicks_from_region(t1, manual):
        layer.add([list(map(float, s))])
    widget.run()
    while widget.busy:  # let the worker run: a tight processEvents loop holds the GIL and slows it 2-3x
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.layers["bone region"].contour = 2
    viewer.dims.set_point(0, viewer.layers[f"{sid}_T1W"].data_to_world((14, 0, 0))[0])
    QApplication.processEvents()
    name = (f"region_widget_refined_{sid}" if refine else f"region_widget_atlas_{sid}") if atlas else "region_widget"
    out = ROOT / "docs" / "images" / (name + ("_1600x1000" if size[0] == 1600 else "") + ".png")
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    img = viewer.screenshot(canvas_only=False, flash=False)
    print(out, img.shape, "non-black share", float((np.asarray(img)[..., :3].max(axis=-1) > 16).mean()))
    print("status:", widget.status.text())
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
