"""``bmeviz view``: open napari with the bmeviz plugin, the scan and (optionally) its segmentation.

This module is imported by :mod:`bmeviz.cli` to add the sub-command; it imports neither
napari nor Qt until the command runs.
"""

from __future__ import annotations

import argparse

__all__ = ["add_cli", "run_view"]


def add_cli(subparsers, command) -> None:
    """Add ``view`` to the ``bmeviz`` sub-commands and register its handler."""
    p = subparsers.add_parser(
        "view",
        help="open a scan in napari with the BME segmentation widget (needs bmeviz[napari])",
        description="Open PATH (DICOM folder/file or NIfTI) in napari with the 'BME segmentation' widget. "
        "With a reference and seeds the lesions are grown and outlined; with --screenshot the window "
        "is saved to FILE and napari exits.",
    )
    p.add_argument("path", help="DICOM folder/file or NIfTI")
    p.add_argument("--series", help="series key, UID, number or description (default: the fluid-sensitive one)")
    p.add_argument("--echo", type=float, help="echo number of a multi-echo series")
    p.add_argument("--volume", type=int, help="volume index of a 4D NIfTI")
    p.add_argument("--reference", help="normal-marrow mask (NIfTI on the image grid)")
    p.add_argument("--reference-point", metavar="Z,Y,X", help="voxel (slice,row,column) in normal marrow")
    p.add_argument("--reference-radius-mm", type=float, help="radius of the reference ball (default 8 mm)")
    p.add_argument("--region", metavar="MASK", help="search region mask (bone/marrow) on the image grid")
    p.add_argument("--seed", action="append", metavar="Z,Y,X", help="voxel (slice,row,column) in a lesion; repeatable")
    p.add_argument("--find-all", action="store_true", help="segment every lesion in --region (no seeds needed)")
    p.add_argument("--edge", choices=["half-max", "threshold"], help="lesion edge (default: as bmeviz segment)")
    p.add_argument("--slice", type=int, help="slice to show (default: the one with the most BME, else the middle)")
    p.add_argument("--screenshot", metavar="FILE", help="save the napari window to FILE (PNG) and exit")
    p.add_argument("--size", default="1280x900", metavar="WxH", help="window size for --screenshot (default 1280x900)")
    command("view")(_view)


def _view(args: argparse.Namespace) -> int:
    from ..cli import _triple, load_from_args

    vol = load_from_args(args)
    reference_point = _triple(args.reference_point, "--reference-point") if args.reference_point else None
    seeds = [_triple(s, "--seed") for s in args.seed or []]
    return run_view(vol, path=args.path, reference=args.reference, reference_point=reference_point,
                    reference_radius_mm=args.reference_radius_mm, region=args.region, seeds=seeds,
                    find_all=args.find_all, edge=args.edge, slice_index=args.slice, screenshot=args.screenshot,
                    size=args.size)


def run_view(volume, *, path=None, reference=None, reference_point=None, reference_radius_mm=None, region=None,
             seeds=(), find_all=False, edge=None, slice_index=None, screenshot=None, size="1280x900",
             viewer=None) -> int:
    """Open ``volume`` in napari with the widget set up from the arguments (what ``bmeviz view`` does)."""
    import os

    from ..errors import ParameterError
    from ..io import list_series, load
    from ._layers import image_kwargs, labels_kwargs, mask_style, series_records

    if screenshot and os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        raise ParameterError("--screenshot needs an X display (offscreen Qt has no OpenGL): run it under "
                             "xvfb-run -a -s '-screen 0 1280x1024x24' bmeviz view ...")
    import napari

    records = []
    if path is not None and os.path.isdir(path):
        try:
            records = series_records(list_series(path))
        except Exception:  # noqa: BLE001  the series list is a convenience
            records = []
    own = viewer is None
    if own:
        viewer = _make_viewer(f"bmeviz - {os.path.basename(str(path or 'scan'))}")
    try:
        w, h = (int(v) for v in str(size).lower().split("x"))
        viewer.window.resize(w, h)
    except ValueError:
        raise ParameterError(f"--size must be WIDTHxHEIGHT, e.g. 1280x900; got {size!r}") from None
    image = viewer.add_image(volume.array, **image_kwargs(volume, path=path, series=records))
    masks = {}
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
    for name, src in (("normal marrow (reference)", reference), ("region", region)):
        if src is None:
            continue
        mvol = load(src)
        if mvol.shape != volume.shape:
            raise ParameterError(f"{src}: shape {mvol.shape} differs from the image's {volume.shape}")
        masks[name] = viewer.add_labels((mvol.array > 0).astype("uint8"), **labels_kwargs(volume, name=name),
                                        **mask_style(name))
    widget.set_image(image)
    if "region" in masks:
        widget.region_combo.setCurrentIndex(widget.region_combo.findText(masks["region"].name))
    if reference_radius_mm is not None:
        widget.radius_spin.setValue(float(reference_radius_mm))
    if "normal marrow (reference)" in masks:
        widget.ref_combo.setCurrentIndex(widget.ref_combo.findText(masks["normal marrow (reference)"].name))
    elif reference_point is not None:
        ref = widget.reference_layer(create=True)
        ref.data = [[float(v) for v in reference_point]]
    if edge is not None:
        widget.edge_combo.setCurrentText(edge)
    slice_to_show = slice_index
    if seeds:
        widget.auto_grow.setChecked(False)
        layer = widget.seeds_layer(create=True)
        layer.data = [[float(v) for v in s] for s in seeds]
        widget.auto_grow.setChecked(True)
    widget.update_threshold()
    if (seeds or find_all) and widget.threshold is not None:
        widget.grow() if seeds else widget.find_all()
        _wait(lambda: not widget.busy, timeout=120)
    if slice_to_show is None:
        if widget.table is not None and len(widget.table):
            lab = widget.labels_layer.data
            slice_to_show = int(lab.astype(bool).sum(axis=(1, 2)).argmax())
        elif reference_point is not None:
            slice_to_show = int(round(reference_point[0]))
        else:
            slice_to_show = volume.shape[0] // 2
    viewer.dims.set_current_step(0, slice_to_show)
    viewer.layers.selection.active = image
    viewer.reset_view()
    widget.update_preview()
    if screenshot:
        _wait(lambda: False, timeout=0.3)
        viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
        if own:
            _close_viewer(viewer)
        print(f"wrote: {screenshot}")
        return 0
    if own:
        napari.run()
    return 0


def _make_viewer(title: str):
    """A shown napari viewer (a shown window is needed for pixels in a screenshot)."""
    import napari

    return napari.Viewer(title=title, show=True)


def _close_viewer(viewer) -> None:
    viewer.close()


def _wait(condition, timeout: float) -> None:
    """Process Qt events until ``condition()`` is true or ``timeout`` seconds pass."""
    import time

    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.005)
    QApplication.processEvents()
