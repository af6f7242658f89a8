"""The "Bone region (bmeviz)" dock widget: a bone-marrow search region from one click per bone.

Pick the scan to outline from (a T1-weighted scan of the session, or the fluid-sensitive
scan itself) and the scan whose grid the region goes on, click "Add clicks" and click once
inside each bone (sacrum, each ilium; femur, tibia, patella), then "Region from clicks".
The outline is :func:`bmeviz.region.region_from_seeds`, run in a worker thread; it lands in
a Labels layer named ``bone region`` on the grid of the chosen scan, which the brush edits
like any Labels layer and which the "BME segmentation" widget picks up as its region (it
recognises the name).

With an atlas folder set (drawn regions of other patients, see :mod:`bmeviz.region_atlas`),
the button registers those atlases to the scan instead (about 20 s, in the worker thread: napari
stays responsive and the status line says what runs). With a refiner file too (trained on that
folder by ``bmeviz region-refiner``, see :mod:`bmeviz.region_refine`), the atlas region's border
is redrawn on this scan's T1 (about 5 s more).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                            QVBoxLayout, QWidget)

from ..errors import BmevizError
from ._layers import KEY, labels_kwargs, layer_volume

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["RegionWidget", "CLICKS_LAYER", "REGION_LAYER"]

#: Names of the layers the widget makes.
CLICKS_LAYER = "region clicks"
REGION_LAYER = "bone region"


def _outline_job(source, seeds: np.ndarray, contrast: str, target, atlas: str | None = None,
                 refine: str | None = None):
    import warnings

    from ..errors import BmevizWarning
    from ..region import region_from_seeds

    with warnings.catch_warnings():  # a warning is in result.info and shown once by _done
        warnings.simplefilter("ignore", BmevizWarning)
        return region_from_seeds(source, seeds=seeds, contrast=contrast, on=target, atlas=atlas or None,
                                 refine=refine or None)


class RegionWidget(QWidget):
    """Dock widget: clicks -> bone-marrow region (Labels) on the fluid-sensitive grid."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self.last_info: dict | None = None
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.source_combo = QComboBox()
        self.source_combo.setToolTip("Outline from: a T1-weighted scan (marrow bright, cortex dark) "
                                     "or the fluid-sensitive scan itself")
        form.addRow("outline from", self.source_combo)
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("The region is written on this scan's grid (the fluid-sensitive scan)")
        form.addRow("region on", self.target_combo)
        self.contrast_combo = QComboBox()
        self.contrast_combo.addItems(["auto", "t1", "stir"])
        self.contrast_combo.setToolTip("auto: from the sequence; t1: marrow bright; stir: fluid-sensitive")
        form.addRow("contrast", self.contrast_combo)
        self.atlas_edit, self.atlas_button = self._path_row(
            form, "atlases", "optional: folder of <id>_T1W + <id>_disease_region",
            "Atlas folder (or CSV manifest): drawn regions of other patients, registered to this scan instead of "
            "the classical outline (slower, often closer)", "Choose the atlas folder", self._browse_atlas)
        self.refine_edit, self.refine_button = self._path_row(
            form, "refiner", "optional: refiner .joblib (bmeviz region-refiner)",
            "A refiner trained on the atlas folder: redraws the atlas region's border on this T1 "
            "(bmeviz region-refiner --atlas DIR --out FILE)", "Choose the refiner file", self._browse_refiner)
        layout.addLayout(form)
        self.clicks_button = QPushButton("Add clicks")
        self.clicks_button.setToolTip("Then click once inside the marrow of each bone")
        self.clicks_button.clicked.connect(self.add_clicks)
        layout.addWidget(self.clicks_button)
        self.run_button = QPushButton("Region from clicks")
        self.run_button.clicked.connect(self.run)
        layout.addWidget(self.run_button)
        self.status = QLabel("One click per bone, then 'Region from clicks'. Edit the result with the brush.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)
        ev = self.viewer.layers.events
        ev.inserted.connect(self._refresh)
        ev.removed.connect(self._refresh)
        self._refresh()

    @staticmethod
    def _path_row(form, label: str, placeholder: str, tip: str, button_tip: str, browse) -> tuple:
        """A line edit for a path with a "…" button beside it, added to ``form``."""
        row = QHBoxLayout()
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.setToolTip(tip)
        button = QPushButton("…")
        button.setToolTip(button_tip)
        button.clicked.connect(browse)
        row.addWidget(edit)
        row.addWidget(button)
        form.addRow(label, row)
        return edit, button

    # ------------------------------------------------------------------ layers
    def _images(self) -> list:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers
                if isinstance(ly, Image) and ly.ndim == 3 and not getattr(ly, "rgb", False)]

    @staticmethod
    def _sequence(layer) -> str:
        rec = (layer.metadata or {}).get(KEY) or {}
        return str((rec.get("volume_metadata") or {}).get("sequence") or "").upper()

    def _refresh(self, event=None) -> None:
        images = self._images()
        for combo, prefer in ((self.source_combo, lambda s: s.startswith("T1")),
                              (self.target_combo, lambda s: bool(s) and not s.startswith("T1"))):
            now = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for ly in images:
                combo.addItem(ly.name, ly)
            if now in images:
                combo.setCurrentIndex(images.index(now))
            else:
                pick = next((i for i, ly in enumerate(images) if prefer(self._sequence(ly))), 0 if images else -1)
                combo.setCurrentIndex(pick)
            combo.blockSignals(False)

    def clicks_layer(self, create: bool = True):
        """The Points layer of clicks on the source scan (made on demand)."""
        if CLICKS_LAYER in self.viewer.layers:
            return self.viewer.layers[CLICKS_LAYER]
        if not create:
            return None
        src = self.source_combo.currentData()
        if src is None:
            raise BmevizError("open the scan to outline from first (File > Open)")
        return self.viewer.add_points(np.empty((0, 3)), name=CLICKS_LAYER, scale=src.scale, translate=src.translate,
                                      size=6, face_color="yellow", ndim=3, units=("mm", "mm", "mm"))

    def add_clicks(self) -> None:
        try:
            layer = self.clicks_layer()
        except BmevizError as exc:
            self._fail(exc)
            return
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.status.setText("Click once inside the marrow of each bone, then 'Region from clicks'.")

    def _browse_atlas(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Atlas folder (<id>_T1W + <id>_disease_region)")
        if folder:
            self.atlas_edit.setText(folder)

    def _browse_refiner(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Refiner (bmeviz region-refiner)", "", "Refiner (*.joblib);;All (*)")
        if path:
            self.refine_edit.setText(path)

    # ------------------------------------------------------------------ run
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def _volume(self, layer):
        return layer_volume(layer.data, layer.metadata, layer.scale, layer.translate)

    def run(self) -> None:
        """Outline the region from the clicks (in a worker thread)."""
        if self._worker is not None:
            return
        try:
            src, tgt = self.source_combo.currentData(), self.target_combo.currentData()
            if src is None or tgt is None:
                raise BmevizError("open the scan to outline from (and the fluid-sensitive scan) first")
            pts = self.clicks_layer(create=False)
            if pts is None or len(pts.data) == 0:
                raise BmevizError("no clicks: press 'Add clicks' and click once inside each bone")
            world = np.asarray([pts.data_to_world(p) for p in np.asarray(pts.data)])
            seeds = np.rint(np.asarray([src.world_to_data(w) for w in world])).astype(int)
            source, target = self._volume(src), self._volume(tgt)
        except BmevizError as exc:
            self._fail(exc)
            return
        from napari.qt.threading import create_worker

        atlas = self.atlas_edit.text().strip() or None
        refine = self.refine_edit.text().strip() or None
        how = f"registering the atlases of {atlas} (about 20 s)" if atlas else "outlining"
        if atlas and refine:
            how += " and refining"
        self.status.setText(f"{how} from {len(seeds)} click(s)…")
        self.run_button.setEnabled(False)
        worker = create_worker(_outline_job, source, seeds, self.contrast_combo.currentText(), target, atlas,
                               refine, _ignore_errors=True)
        worker.returned.connect(self._done)
        worker.errored.connect(self._fail)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _done(self, result) -> None:
        tgt = self.target_combo.currentData()
        data = result.mask.array.astype(np.uint8)
        kw = labels_kwargs(tgt.metadata if KEY in (tgt.metadata or {}) else self._volume(tgt), name=REGION_LAYER)
        if REGION_LAYER in self.viewer.layers:
            layer = self.viewer.layers[REGION_LAYER]
            if layer.data.shape == data.shape:
                layer.data = data
            else:
                self.viewer.layers.remove(layer)
                self.viewer.add_labels(data, **kw, opacity=0.35)
        else:
            self.viewer.add_labels(data, **kw, opacity=0.35)
        info = result.info
        self.last_info = info
        how = f"atlases {', '.join(info['atlases'])}" if info.get("method") == "atlas" else info["contrast"]
        if info.get("refiner"):
            how += f", refined ({'U-Net' if info['refiner'].get('model') == 'unet' else 'boosting'})"
        text = (f"region: {info['volume_ml']:.1f} mL from {len(info['seeds'])} click(s) ({how}, "
                f"{info['seconds']:.1f} s). Edit it with the brush; the BME widget uses it as its region.")
        if info.get("warning"):
            from napari.utils.notifications import show_warning

            text += f" Warning: {info['warning']}."
            show_warning(f"bmeviz region: {info['warning']}")
        self.status.setText(text)

    def _fail(self, exc: Any) -> None:
        from napari.utils.notifications import show_error

        msg = str(exc)
        self.status.setText(f"error: {msg}")
        show_error(msg if isinstance(exc, BmevizError) else f"bmeviz region: {type(exc).__name__}: {msg}")

    def _finished(self) -> None:
        self._worker = None
        self.run_button.setEnabled(True)
