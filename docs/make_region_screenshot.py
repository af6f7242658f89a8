"""Screenshot of the "Bone region (bmeviz)" widget on a real SIJ T1 scan, 1366x768.

    xvfb-run -a -s "-screen 0 1366x768x24" python docs/make_region_screenshot.py

Writes docs/images/region_widget.png. Needs ../shared/data (never copied into the repository).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sij-stir-dev"
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    if not SHARED.is_dir():
        print(f"skip: {SHARED} not found")
        return 0
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    import bmeviz
    from region_sij import clicks_from_region

    sid = "1013"
    t1_path = SHARED / "images" / f"{sid}_T1W.nii.gz"
    stir_path = SHARED / "images" / f"{sid}_STIR.nii.gz"
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.open(str(stir_path), plugin="bmeviz")
    viewer.open(str(t1_path), plugin="bmeviz")
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "Bone region (bmeviz)")
    t1 = bmeviz.load(t1_path)
    manual = bmeviz.load(SHARED / "disease_region" / f"{sid}_disease_region.nii.gz").array > 0
    widget.add_clicks()
    layer = viewer.layers["region clicks"]
    for s in clicks_from_region(t1, manual):
        layer.add([list(map(float, s))])
    widget.run()
    while widget.busy:
        QApplication.processEvents()
    viewer.layers["bone region"].contour = 2
    viewer.dims.set_point(0, viewer.layers[f"{sid}_T1W"].data_to_world((14, 0, 0))[0])
    QApplication.processEvents()
    out = ROOT / "docs" / "images" / "region_widget.png"
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    img = viewer.screenshot(canvas_only=False, flash=False)
    print(out, img.shape, "non-black share", float((np.asarray(img)[..., :3].max(axis=-1) > 16).mean()))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
