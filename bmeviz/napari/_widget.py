"""The "BME segmentation" dock widget: reference, threshold preview, seeds, grow, table, export.

The widget collects inputs from napari layers and calls the bmeviz core; it holds no
measuring logic of its own:

* reference statistics and threshold: :func:`bmeviz.pipeline.resolve_reference` and
  :func:`bmeviz.threshold.compute_threshold` (what :func:`bmeviz.segment` does first);
* lesions: :func:`bmeviz.segment`, run in a worker thread, its ``Result`` kept for
  export (:meth:`bmeviz.Result.save`, the same files as ``bmeviz segment``);
* a table of hand-edited labels: :func:`bmeviz.lesions.lesion_table`.

Layers it makes, all on the image's grid (same ``scale`` and ``translate``):
``BME reference`` (Points, one click in normal marrow), ``BME seeds`` (Points, one click
per lesion), ``BME threshold preview`` (translucent, current slice only) and ``BME``
(Labels in contour mode, one id per lesion). A new result is written into ``BME`` through
:meth:`napari.layers.Labels.data_setitem`, which records napari's undo history: Ctrl+Z on
the layer (or ``layer.undo()``) takes the last segmentation back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..errors import BmevizError, ParameterError
from ..pipeline import DEFAULTS
from ._layers import KEY, display_orientation, layer_volume, world_frame

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["BMEWidget", "WIDGET_DEFAULTS"]

log = logging.getLogger(__name__)

#: Widget defaults that differ from :data:`bmeviz.pipeline.DEFAULTS`: the half-maximum
#: edge (partial-volume aware) measures soft-edged lesions within a few %.
WIDGET_DEFAULTS = {"edge": "half-max"}

_RULES = ("q3-iqr", "mean-sd", "percentile", "otsu")
_RULE_K = {"q3-iqr": 1.5, "mean-sd": 2.0, "percentile": 99.0}
_POINT = "point (click in normal marrow)"
_NONE = "(none)"
_ROLE_REF, _ROLE_SEEDS, _ROLE_PREVIEW, _ROLE_RESULT, _ROLE_DRAWN = (
    "reference", "seeds", "preview", "result", "reference-drawn")


def _role(layer) -> str | None:
    return (getattr(layer, "metadata", None) or {}).get(KEY, {}).get("role")


def _owner(layer) -> str | None:
    return (getattr(layer, "metadata", None) or {}).get(KEY, {}).get("image")


def _fmt(v: float | None) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.4g}"


def _segment_job(volume, kwargs: dict):
    """Worker body: the core's segment(); returns the Result and the time it took."""
    from ..pipeline import segment

    t0 = time.perf_counter()
    res = segment(volume, **kwargs)
    return res, time.perf_counter() - t0


def _measure_job(labels: np.ndarray, volume, stats, region):
    """Worker body: the lesion table of hand-edited labels (core lesion_table)."""
    from ..lesions import lesion_table

    return labels, lesion_table(labels, volume.array, affine=volume.affine, reference=stats, region=region)


def _load_job(path: str, key: str):
    from ._reader import read

    return read(path, series=key)


def _edited_result(result, labels: np.ndarray | None):
    """``result`` with ``labels`` (hand-edited in napari) and their lesion table, or as is."""
    if labels is None or (labels.shape == result.labels.shape and np.array_equal(labels, result.labels)):
        return result
    from ..lesions import lesion_table

    table = lesion_table(labels, result.volume.array, affine=result.volume.affine,
                         reference=result.threshold.stats, region=result.region)
    note = "labels edited by hand in napari after segmentation; the table measures the edited labels"
    return dataclasses.replace(result, labels=labels, mask=labels > 0, table=table,
                               messages=(*result.messages, note))


def _save_job(result, labels: np.ndarray | None, folder: str):
    """Worker body: Result.save (what ``bmeviz segment`` writes), hand edits included."""
    return _edited_result(result, labels).save(folder)


class BMEWidget(QWidget):
    """Dock widget: outline and measure BME with a reference, seeds and the bmeviz core."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result = None  # the last bmeviz Result (what Export writes)
        self.threshold = None  # bmeviz Threshold of the current reference and rule
        self.table = None  # the lesion table shown (of result, or of hand-edited labels)
        self._image = None
        self._volume = None
        self._ref_spec: Any = None  # what segment() gets as reference=
        self._ref_radius: float | None = None
        self._ref_error: str | None = None
        self._mask_cache: dict[tuple, np.ndarray] = {}
        self._preview_data: np.ndarray | None = None
        self._preview_plane: tuple[int, int] | None = None
        self._worker = None
        self._pending: list[tuple] = []  # queued worker jobs, at most one per kind
        self._request = 0
        self._shown_fingerprint: tuple | None = None
        self._measuring = False
        self._updating_combos = False
        self.last_timing: dict[str, float] = {}
        self._warned: set[str] = set()
        self._busy_text = ""
        self._on_done: tuple = (None, None)
        self._t_request = 0.0
        self.exported: dict | None = None  # paths written by the last export
        self._watched: set[int] = set()
        self._build()
        self._connect_viewer()
        self._refresh_layer_choices()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)

        box = QGroupBox("Image")
        form = QFormLayout(box)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The fluid-sensitive image (STIR, T2/PD FS) to segment")
        form.addRow("image", self.image_combo)
        self.series_combo = QComboBox()
        self.series_combo.setToolTip("Other series of the same DICOM folder (* = fluid-sensitive)")
        self.series_label = QLabel("series")
        form.addRow(self.series_label, self.series_combo)
        self.image_info = QLabel("")
        self.image_info.setWordWrap(True)
        form.addRow(self.image_info)
        root.addWidget(box)

        box = QGroupBox("Reference: normal marrow")
        form = QFormLayout(box)
        self.ref_combo = QComboBox()
        self.ref_combo.setToolTip("A click in normal marrow (a ball of the radius below), "
                                  "or a drawn Labels/Shapes layer")
        form.addRow("from", self.ref_combo)
        row = QHBoxLayout()
        self.ref_button = QPushButton("Place point")
        self.ref_button.setToolTip("Select the 'BME reference' layer in add mode: click normal marrow")
        self.draw_button = QPushButton("Draw")
        self.draw_button.setToolTip("Make a Labels layer to paint normal marrow in")
        self.radius_spin = QDoubleSpinBox()
        self.radius_spin.setRange(1.0, 50.0)
        self.radius_spin.setSingleStep(1.0)
        self.radius_spin.setValue(float(DEFAULTS["reference_radius_mm"]))
        self.radius_spin.setSuffix(" mm")
        self.radius_spin.setToolTip("Radius of the reference ball around the clicked point")
        row.addWidget(self.ref_button)
        row.addWidget(self.draw_button)
        row.addWidget(QLabel("radius"))
        row.addWidget(self.radius_spin)
        form.addRow(row)
        self.stats_label = QLabel("Place a point in normal marrow.")
        self.stats_label.setWordWrap(True)
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.stats_label)
        root.addWidget(box)

        box = QGroupBox("Threshold")
        form = QFormLayout(box)
        row = QHBoxLayout()
        self.rule_combo = QComboBox()
        self.rule_combo.addItems(_RULES)
        self.rule_combo.setToolTip("q3-iqr: Q3 + k*IQR of the reference (adaptive k by default); mean-sd; "
                                   "percentile; otsu inside the region")
        self.k_spin = QDoubleSpinBox()
        self.k_spin.setRange(0.0, 100.0)
        self.k_spin.setDecimals(2)
        self.k_spin.setSingleStep(0.05)
        self.k_spin.setValue(1.5)
        self.auto_k = QCheckBox("adaptive k")
        self.auto_k.setChecked(True)
        self.auto_k.setToolTip("q3-iqr: raise k from 1.5 until the threshold is within IQR/2 of the "
                               "reference maximum (Hepburn et al.)")
        self.k_spin.setEnabled(False)
        row.addWidget(self.rule_combo)
        row.addWidget(QLabel("k"))
        row.addWidget(self.k_spin)
        row.addWidget(self.auto_k)
        form.addRow("rule", row)
        self.threshold_label = QLabel("threshold: -")
        self.threshold_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.threshold_label)
        self.preview_check = QCheckBox("live preview on this slice")
        self.preview_check.setChecked(True)
        form.addRow(self.preview_check)
        root.addWidget(box)

        box = QGroupBox("Lesions")
        form = QFormLayout(box)
        self.region_combo = QComboBox()
        self.region_combo.setToolTip("Where BME is searched (bone/marrow): a Labels layer; "
                                     "fluid outside is never counted")
        form.addRow("region", self.region_combo)
        row = QHBoxLayout()
        self.seed_button = QPushButton("Add seeds")
        self.seed_button.setToolTip("Select the 'BME seeds' layer in add mode: click each lesion")
        self.auto_grow = QCheckBox("grow on click")
        self.auto_grow.setChecked(True)
        row.addWidget(self.seed_button)
        row.addWidget(self.auto_grow)
        form.addRow(row)
        row = QHBoxLayout()
        self.edge_combo = QComboBox()
        self.edge_combo.addItems(["half-max", "threshold"])
        self.edge_combo.setCurrentText(WIDGET_DEFAULTS["edge"])
        self.edge_combo.setToolTip("half-max: each lesion's edge at half its own maximum (partial-volume aware); "
                                   "threshold: every voxel above the reference threshold")
        # clean-up: 'auto' (the lowest value) leaves it to the core's defaults, which depend
        # on the mode (seeded: keep what was clicked; all in region: >= 10 mm³ on >= 2 slices)
        self.min_volume = QDoubleSpinBox()
        self.min_volume.setRange(-1.0, 100000.0)
        self.min_volume.setDecimals(1)
        self.min_volume.setSpecialValueText("auto")
        self.min_volume.setSuffix(" mm³")
        self.min_volume.setValue(-1.0 if DEFAULTS["min_volume_mm3"] is None else float(DEFAULTS["min_volume_mm3"]))
        self.min_volume.setToolTip("Drop lesions smaller than this (auto: bmeviz's default for the mode)")
        self.min_slices = QSpinBox()
        self.min_slices.setRange(0, 50)
        self.min_slices.setSpecialValueText("auto")
        self.min_slices.setSuffix(" sl")
        self.min_slices.setValue(0 if DEFAULTS["min_slices"] is None else int(DEFAULTS["min_slices"]))
        self.min_slices.setToolTip("Consecutive slices a lesion must span (auto: bmeviz's default for the mode)")
        row.addWidget(QLabel("edge"))
        row.addWidget(self.edge_combo)
        row.addWidget(QLabel("min"))
        row.addWidget(self.min_volume)
        row.addWidget(self.min_slices)
        form.addRow(row)
        row = QHBoxLayout()
        self.grow_button = QPushButton("Grow")
        self.grow_button.setToolTip("Outline the lesions from the seeds")
        self.find_button = QPushButton("Find all in region")
        self.find_button.setToolTip("Every above-threshold lesion in the region, no seeds needed")
        row.addWidget(self.grow_button)
        row.addWidget(self.find_button)
        form.addRow(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumHeight(10)
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        form.addRow(self.progress)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        form.addRow(self.status_label)
        root.addWidget(box)

        box = QGroupBox("Result")
        lay = QVBoxLayout(box)
        self.table_widget = QTableWidget(0, 4)
        self.table_widget.setHorizontalHeaderLabels(["id", "mL", "× ref", "slices"])
        self.table_widget.verticalHeader().setVisible(False)
        self.table_widget.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table_widget.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table_widget.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table_widget.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table_widget.setToolTip("Select a lesion to jump to it; × ref = mean intensity / reference mean")
        self.table_widget.setMinimumHeight(110)
        self.table_widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        lay.addWidget(self.table_widget)
        self.total_label = QLabel("total: -")
        self.total_label.setWordWrap(True)
        lay.addWidget(self.total_label)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write bme_mask.nii.gz (source grid), lesions.csv, provenance.json, overlay.png")
        lay.addWidget(self.export_button)
        root.addWidget(box)

        self._thr_timer = QTimer(self)
        self._thr_timer.setSingleShot(True)
        self._thr_timer.setInterval(0)
        self._thr_timer.timeout.connect(self.update_threshold)
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.setInterval(300)
        self._progress_timer.timeout.connect(self._show_busy)
        self._edit_timer = QTimer(self)
        self._edit_timer.setSingleShot(True)
        self._edit_timer.setInterval(250)
        self._edit_timer.timeout.connect(self._check_labels_edited)

        self.image_combo.currentIndexChanged.connect(self._on_image_choice)
        self.series_combo.activated.connect(self._on_series_choice)
        self.ref_combo.currentIndexChanged.connect(self._on_reference_choice)
        self.region_combo.currentIndexChanged.connect(self._on_region_choice)
        self.radius_spin.valueChanged.connect(self._schedule_threshold)
        self.rule_combo.currentTextChanged.connect(self._on_rule)
        self.k_spin.valueChanged.connect(self._schedule_threshold)
        self.auto_k.toggled.connect(self._on_auto_k)
        self.preview_check.toggled.connect(lambda _: self.update_preview())
        self.ref_button.clicked.connect(self.place_reference)
        self.draw_button.clicked.connect(self.draw_reference)
        self.seed_button.clicked.connect(self.add_seeds)
        self.grow_button.clicked.connect(lambda: self.grow())
        self.find_button.clicked.connect(lambda: self.find_all())
        self.export_button.clicked.connect(lambda: self.export())
        self.table_widget.itemSelectionChanged.connect(self._on_row_selected)

    def _connect_viewer(self) -> None:
        ev = self.viewer.layers.events
        ev.inserted.connect(self._on_layers_changed)
        ev.removed.connect(self._on_layers_changed)
        ev.reordered.connect(self._on_layers_changed)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.viewer.dims.events.ndisplay.connect(self._on_ndisplay)

    # ------------------------------------------------------------------ layer choices
    def _image_layers(self) -> list:
        from napari.layers import Image

        out = []
        for layer in self.viewer.layers:
            if isinstance(layer, Image) and not getattr(layer, "rgb", False) and _role(layer) is None:
                if layer.ndim == 3:
                    out.append(layer)
        return out

    def _mask_layers(self, shapes: bool) -> list:
        from napari.layers import Labels, Shapes

        kinds = (Labels, Shapes) if shapes else (Labels,)
        return [ly for ly in self.viewer.layers
                if isinstance(ly, kinds) and _role(ly) not in (_ROLE_RESULT, _ROLE_PREVIEW)]

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and event.type == "inserted":
            layer.events.name.connect(self._refresh_layer_choices)
        self._refresh_layer_choices()

    def _set_combo(self, combo: QComboBox, items: list[tuple[str, Any]], current: Any) -> None:
        combo.blockSignals(True)
        combo.clear()
        for text, data in items:
            combo.addItem(text, data)
        idx = next((i for i, (_, d) in enumerate(items) if d is current), 0 if items else -1)
        combo.setCurrentIndex(idx)
        combo.blockSignals(False)

    def _refresh_layer_choices(self, event=None) -> None:
        if self._updating_combos:
            return
        self._updating_combos = True
        try:
            images = self._image_layers()
            current = self._image if self._image in images else (images[-1] if images else None)
            self._set_combo(self.image_combo, [(ly.name, ly) for ly in images], current)
            refs = [(_POINT, None)] + [(ly.name, ly) for ly in self._mask_layers(shapes=True)]
            ref_now = self.ref_combo.currentData() if self.ref_combo.count() else None
            if ref_now is not None and ref_now not in self.viewer.layers:
                ref_now = None
            self._set_combo(self.ref_combo, refs, ref_now)
            regions = [(_NONE, None)] + [(ly.name, ly) for ly in self._mask_layers(shapes=False)
                                          if _role(ly) != _ROLE_DRAWN and ly is not ref_now]
            reg_now = self.region_combo.currentData() if self.region_combo.count() else None
            if reg_now is not None and reg_now not in self.viewer.layers:
                reg_now = None
            if reg_now is None and self._image is None and current is not None:
                reg_now = self._guess_region(current, [d for _, d in regions if d is not None])
            self._set_combo(self.region_combo, regions, reg_now)
        finally:
            self._updating_combos = False
        if current is not self._image:
            self.set_image(current)
        else:
            self._schedule_threshold()

    @staticmethod
    def _guess_region(image, candidates: list):
        """A Labels layer on the image's grid named like a bone/region mask, if there is one."""
        for ly in candidates:
            name = ly.name.lower()
            if any(w in name for w in ("region", "bone", "marrow")) and "normal" not in name:
                if tuple(np.shape(ly.data)) == tuple(np.shape(image.data)):
                    return ly
        return None

    def _on_image_choice(self, index: int) -> None:
        if not self._updating_combos:
            self.set_image(self.image_combo.currentData())

    def set_image(self, layer) -> None:
        """Segment ``layer`` (a 3D napari Image layer)."""
        if layer is self._image and self._volume is not None:
            return
        self._image = layer
        self._volume = None
        self._mask_cache.clear()
        self.threshold = None
        self._preview_plane = None
        self._preview_data = None
        if layer is None:
            self.image_info.setText("Open a scan (File > Open Folder… for DICOM) or File > Open Sample > bmeviz.")
            self._show_series([])
            return
        try:
            self._volume = layer_volume(layer.data, layer.metadata, layer.scale, layer.translate)
        except BmevizError as exc:
            self.image_info.setText(str(exc))
            self._image = None
            return
        vol = self._volume
        sp = " × ".join(f"{s:.3g}" for s in vol.spacing)
        seq = vol.metadata.get("sequence") or "?"
        self.image_info.setText(f"{vol.shape[0]} slices of {vol.shape[1]} × {vol.shape[2]}, {sp} mm, "
                                f"{vol.plane}, {seq}")
        record = layer.metadata.get(KEY, {})
        self._show_series(record.get("series") or [], record.get("series_key"))
        self._orient(vol)
        res = self._helper(_ROLE_RESULT)
        if res is not None:
            res.contour = 2 if self.viewer.dims.ndisplay == 2 else 0
        self._schedule_threshold()

    def _orient(self, vol) -> None:
        """Show slices as bmeviz's figures do (radiological; see ``display_orientation``)."""
        dims = self.viewer.dims
        if dims.ndisplay != 2 or dims.ndim != 3 or sorted(dims.displayed) != [1, 2]:
            return  # the user looks at another plane (or in 3D): leave the view alone
        transpose, vertical, horizontal = display_orientation(vol)
        order = (0, 2, 1) if transpose else (0, 1, 2)
        if tuple(dims.order) != order:
            dims.order = order
        self._camera().orientation2d = (vertical, horizontal)

    def _show_series(self, series: list, current_key: str | None = None) -> None:
        visible = len(series) > 1
        self.series_combo.setVisible(visible)
        self.series_label.setVisible(visible)
        self.series_combo.blockSignals(True)
        self.series_combo.clear()
        for rec in series:
            self.series_combo.addItem(rec["label"], rec["key"])
            if rec["key"] == current_key:
                self.series_combo.setCurrentIndex(self.series_combo.count() - 1)
        self.series_combo.blockSignals(False)

    def _on_series_choice(self, index: int) -> None:
        key = self.series_combo.itemData(index)
        if self._image is None or key is None:
            return
        self.open_series(key)

    def open_series(self, key: str) -> None:
        """Load another series of the current image's DICOM folder (in a worker) and segment it."""
        record = self._image.metadata.get(KEY, {})
        path = record.get("path")
        if key == record.get("series_key"):
            return
        for ly in self._image_layers():
            rec = ly.metadata.get(KEY, {})
            if rec.get("path") == path and rec.get("series_key") == key:
                self.image_combo.setCurrentIndex(self.image_combo.findText(ly.name))
                return
        if not path:
            self._error("this image does not come from a DICOM folder bmeviz opened: no other series to load")
            return
        self._run(_load_job, (path, key), on_done=self._series_loaded, what=f"loading series {key[-12:]}")

    def _series_loaded(self, layer_data: list) -> None:
        for data, kwargs, _kind in layer_data:
            layer = self.viewer.add_image(data, **kwargs)
        self.viewer.reset_view()
        self.image_combo.setCurrentIndex(self.image_combo.findText(layer.name))

    # ------------------------------------------------------------------ helper layers
    def _helper(self, role: str, create: bool = False):
        """The widget's layer of ``role`` for the current image (made on its grid when asked)."""
        if self._image is None:
            return None
        uid = str(self._image.unique_id)
        for ly in self.viewer.layers:
            if _role(ly) == role and _owner(ly) == uid:
                return ly
        if not create:
            return None
        # napari makes a new layer the active one: give the focus back (the user may be
        # clicking seeds when the BME layer appears)
        active = self.viewer.layers.selection.active
        layer = self._make_helper(role, uid)
        if active is not None and active in self.viewer.layers:
            self._select(active)
        return layer

    def _make_helper(self, role: str, uid: str):
        scale, translate = world_frame(self._volume.affine)
        meta = {KEY: {"role": role, "image": uid, "affine": np.asarray(self._volume.affine).tolist(),
                      "shape": list(self._volume.shape), "path": self._image.metadata.get(KEY, {}).get("path"),
                      "volume_metadata": self._image.metadata.get(KEY, {}).get("volume_metadata", {})}}
        common = dict(scale=scale, translate=translate, units=("mm",) * 3, metadata=meta)
        inplane = float(min(scale[1], scale[2]))
        if role == _ROLE_SEEDS:
            return self.viewer.add_points(ndim=3, name=self._unique("BME seeds"), face_color="yellow",
                                          border_color="black", size=max(4.0, 6 * inplane), symbol="disc",
                                          **common)
        if role == _ROLE_REF:
            return self.viewer.add_points(ndim=3, name=self._unique("BME reference"), face_color="transparent",
                                          border_color="lime", border_width=0.15, symbol="disc",
                                          size=2 * self.radius_spin.value(), **common)
        if role == _ROLE_PREVIEW:
            from napari.utils.colormaps import Colormap

            cmap = Colormap([[0, 0, 0, 0], [1.0, 0.55, 0.0, 1.0]], name="bmeviz preview", interpolation="zero")
            self._preview_data = np.zeros(self._volume.shape, np.uint8)
            return self.viewer.add_image(self._preview_data, name=self._unique("BME threshold preview"),
                                         colormap=cmap, contrast_limits=(0, 1), opacity=0.45,
                                         blending="translucent", **common)
        if role == _ROLE_RESULT:
            layer = self.viewer.add_labels(np.zeros(self._volume.shape, np.int32), name=self._unique("BME"),
                                           opacity=1.0, **common)
            layer.contour = 2 if self.viewer.dims.ndisplay == 2 else 0
            layer.events.paint.connect(self._on_labels_edit)
            layer.events.set_data.connect(self._on_labels_edit)
            return layer
        if role == _ROLE_DRAWN:
            layer = self.viewer.add_labels(np.zeros(self._volume.shape, np.uint8),
                                           name=self._unique("normal marrow (drawn)"), opacity=0.5, **common)
            return layer
        raise AssertionError(role)

    def _unique(self, name: str) -> str:
        names = {ly.name for ly in self.viewer.layers}
        if name not in names:
            return name
        return f"{name} ({self._image.name})"

    def _camera(self):
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9 (viewer.camera before)
        return scene.camera if scene is not None and hasattr(scene, "camera") else self.viewer.camera

    def _select(self, layer) -> None:
        self.viewer.layers.selection.active = layer

    def place_reference(self) -> None:
        """Make the reference Points layer active in add mode: the next click sets the reference."""
        if self._image is None:
            return self._error("open a scan first")
        layer = self._helper(_ROLE_REF, create=True)
        self._watch(layer)
        self.ref_combo.setCurrentIndex(0)
        self._select(layer)
        layer.mode = "add"

    def draw_reference(self) -> None:
        """Make a Labels layer on the image's grid to paint normal marrow in, and use it as reference."""
        if self._image is None:
            return self._error("open a scan first")
        layer = self._helper(_ROLE_DRAWN, create=True)
        self._watch(layer)
        self._refresh_layer_choices()
        self.ref_combo.setCurrentIndex(max(0, self.ref_combo.findText(layer.name)))
        self._select(layer)
        layer.brush_size = max(5, int(round(6.0 / min(self._volume.spacing[1:]))))
        layer.mode = "paint"

    def add_seeds(self) -> None:
        """Make the seeds Points layer active in add mode: click each lesion."""
        if self._image is None:
            return self._error("open a scan first")
        layer = self.seeds_layer(create=True)
        self._select(layer)
        layer.mode = "add"

    def seeds_layer(self, create: bool = False):
        layer = self._helper(_ROLE_SEEDS, create=create)
        if layer is not None:
            self._watch(layer)
        return layer

    def reference_layer(self, create: bool = False):
        layer = self._helper(_ROLE_REF, create=create)
        if layer is not None:
            self._watch(layer)
        return layer

    @property
    def labels_layer(self):
        """The ``BME`` Labels layer of the current image (None before the first result)."""
        return self._helper(_ROLE_RESULT)

    @property
    def preview_layer(self):
        return self._helper(_ROLE_PREVIEW)

    def _watch(self, layer) -> None:
        """Connect a layer's edits to the widget (once)."""
        if id(layer) in self._watched:
            return
        self._watched.add(id(layer))
        role = _role(layer)
        if role == _ROLE_SEEDS:
            layer.events.data.connect(self._on_seeds)
        elif role == _ROLE_REF:
            layer.events.data.connect(self._on_reference_edit)
        else:  # a reference or region mask: Labels (set data, paint) or Shapes (data)
            for name in ("data", "paint"):
                if hasattr(layer.events, name):
                    getattr(layer.events, name).connect(self._on_mask_edit)

    # ------------------------------------------------------------------ masks
    def _layer_mask(self, layer, what: str) -> np.ndarray:
        """A bool mask on the image grid from a Labels or Shapes layer (cached until edited)."""
        from napari.layers import Shapes

        key = (id(layer), what)
        if key in self._mask_cache:
            return self._mask_cache[key]
        self._watch(layer)
        shape = self._volume.shape
        if isinstance(layer, Shapes):
            if len(layer.data) == 0:
                raise ParameterError(f"{what} layer {layer.name!r} has no shapes: draw in normal marrow")
            # the shapes' vertices in the image's voxels, rasterised on its grid
            verts = [np.asarray([self._image.world_to_data(layer.data_to_world(v)) for v in s]) for s in layer.data]
            tmp = Shapes(verts, shape_type=list(layer.shape_type), ndim=3)
            mask = np.asarray(tmp.to_labels(labels_shape=shape)) > 0
        else:
            data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
            arr = np.asarray(data)
            if arr.shape != shape:
                raise ParameterError(f"{what} layer {layer.name!r} has shape {arr.shape}; the image "
                                     f"{self._image.name!r} is {shape}: it must be on the same grid")
            mask = arr > 0
        if not mask.any():
            raise ParameterError(f"{what} layer {layer.name!r} is empty: draw it first")
        self._mask_cache[key] = mask
        return mask

    def _on_mask_edit(self, event=None) -> None:
        layer = getattr(event, "source", None)
        if layer is not None:
            for key in [k for k in self._mask_cache if k[0] == id(layer)]:
                del self._mask_cache[key]
        self._schedule_threshold()

    def region_mask(self) -> np.ndarray | None:
        layer = self.region_combo.currentData()
        if layer is None or layer not in self.viewer.layers:
            return None
        return self._layer_mask(layer, "region")

    def _on_region_choice(self, index: int) -> None:
        if not self._updating_combos:
            layer = self.region_combo.currentData()
            if layer is not None:
                self._watch(layer)
            self._schedule_threshold()

    def _on_reference_choice(self, index: int) -> None:
        layer = self.ref_combo.currentData()
        self.radius_spin.setEnabled(layer is None)
        self.ref_button.setEnabled(True)
        if layer is not None:
            self._watch(layer)
        if not self._updating_combos:
            self._schedule_threshold()

    def _on_reference_edit(self, event=None) -> None:
        self._schedule_threshold()

    # ------------------------------------------------------------------ reference and threshold
    def _reference_spec(self) -> tuple[Any, float | None]:
        """``(reference, radius_mm)`` as :func:`bmeviz.segment` takes them."""
        layer = self.ref_combo.currentData()
        if layer is not None:
            return self._layer_mask(layer, "reference"), None
        pts = self.reference_layer()
        if pts is None or len(pts.data) == 0:
            raise ParameterError("no reference yet: click 'Place point', then click normal marrow "
                                 "(or draw it and pick the layer)")
        world = pts.data_to_world(np.asarray(pts.data[-1]))
        idx = np.asarray(self._image.world_to_data(world), float)
        point = tuple(int(v) for v in np.rint(idx))
        return point, float(self.radius_spin.value())

    def _rule_k(self) -> tuple[str, Any]:
        rule = self.rule_combo.currentText()
        if rule == "otsu":
            return rule, None
        if rule == "q3-iqr" and self.auto_k.isChecked():
            return rule, None
        return rule, float(self.k_spin.value())

    def _on_rule(self, rule: str) -> None:
        self.auto_k.setVisible(rule == "q3-iqr")
        self.k_spin.blockSignals(True)
        if rule in _RULE_K:
            self.k_spin.setValue(_RULE_K[rule])
        self.k_spin.blockSignals(False)
        self.k_spin.setEnabled(rule != "otsu" and not (rule == "q3-iqr" and self.auto_k.isChecked()))
        self._schedule_threshold()

    def _on_auto_k(self, on: bool) -> None:
        rule = self.rule_combo.currentText()
        self.k_spin.setEnabled(rule != "otsu" and not (rule == "q3-iqr" and on))
        self._schedule_threshold()

    def _schedule_threshold(self, *args) -> None:
        self._thr_timer.start()

    def update_threshold(self) -> None:
        """Recompute the reference statistics and the threshold (core), then the preview."""
        from ..pipeline import resolve_reference
        from ..threshold import compute_threshold

        self._thr_timer.stop()
        self.threshold = None
        if self._volume is None:
            self.update_preview()
            return
        pts = self.reference_layer()
        if pts is not None:  # the ring shows the reference ball's diameter
            size = 2 * float(self.radius_spin.value())
            if len(pts.data) and not np.allclose(pts.size, size):
                pts.size = np.full(len(pts.data), size)
            if pts.current_size != size:
                pts.current_size = size
        try:
            ref, radius = self._reference_spec()
            ref_mask, info = resolve_reference(ref, self._volume, radius_mm=radius)
            rule, k = self._rule_k()
            region = self.region_mask()
            import warnings

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                thr = compute_threshold(self._volume.array, reference=ref_mask, rule=rule, k=k, region=region)
        except BmevizError as exc:
            self._ref_spec, self._ref_radius, self._ref_error = None, None, str(exc)
            self.stats_label.setText(str(exc))
            self.threshold_label.setText("threshold: -")
            self.update_preview()
            return
        self._ref_spec, self._ref_radius, self._ref_error = ref, radius, None
        self.threshold = thr
        st = thr.stats
        where = (f"ball of {radius:g} mm at voxel {list(info['point'])}" if info.get("kind") == "sphere"
                 else f"{self.ref_combo.currentText()}")
        self.stats_label.setText(
            f"{where}: {st.n} voxels; mean {_fmt(st.mean)}, SD {_fmt(st.sd)}, median {_fmt(st.median)}, "
            f"Q3 {_fmt(st.q3)}, IQR {_fmt(st.iqr)}, max {_fmt(st.max)}"
            + "".join(f"\nwarning: {w.message}" for w in caught))
        ktxt = "" if thr.k is None else f", k = {thr.k:g}"
        ratio = f" = {thr.value / st.mean:.2f} × reference mean" if st.mean else ""
        self.threshold_label.setText(f"threshold: <b>{_fmt(thr.value)}</b> ({thr.rule}{ktxt}){ratio}")
        if rule == "q3-iqr" and self.auto_k.isChecked() and thr.k is not None:
            self.k_spin.blockSignals(True)
            self.k_spin.setValue(float(thr.k))
            self.k_spin.blockSignals(False)
        self.update_preview()

    # ------------------------------------------------------------------ preview
    def _current_plane(self) -> tuple[int, int] | None:
        """(axis, index) of the slice on screen, in the image's array."""
        if self._image is None or self.viewer.dims.ndisplay != 2:
            return None
        not_shown = [a for a in self.viewer.dims.not_displayed][-3:]
        if len(not_shown) != 1:
            return None
        ndim_world = self.viewer.dims.ndim
        axis_world = not_shown[0]
        axis = axis_world - (ndim_world - 3)
        if axis < 0:
            return None
        idx = self._image.world_to_data(self.viewer.dims.point)[axis]
        idx = int(np.clip(np.rint(idx), 0, self._volume.shape[axis] - 1))
        return axis, idx

    def update_preview(self) -> None:
        """Show voxels at or above the threshold (inside the region) on the current slice."""
        t0 = time.perf_counter()
        layer = self.preview_layer
        want = self.preview_check.isChecked() and self.threshold is not None and self._volume is not None
        plane = self._current_plane() if want else None
        if plane is None:
            if layer is not None and self._preview_plane is not None and self._preview_data is not None:
                self._preview_data[...] = 0
                self._preview_plane = None
                self._refresh(layer)
            if layer is not None and layer.visible:
                layer.visible = False
            return
        if layer is None:
            layer = self._helper(_ROLE_PREVIEW, create=True)
        if self._preview_data is None or self._preview_data.shape != self._volume.shape:
            self._preview_data = np.asarray(layer.data)
        axis, idx = plane
        sl = [slice(None)] * 3
        if self._preview_plane is not None:
            old = list(sl)
            old[self._preview_plane[0]] = self._preview_plane[1]
            self._preview_data[tuple(old)] = 0
        sl[axis] = idx
        img = self._volume.array[tuple(sl)]
        above = img >= self.threshold.value
        try:
            region = self.region_mask()
        except BmevizError:
            region = None
        if region is not None:
            above &= region[tuple(sl)]
        self._preview_data[tuple(sl)] = above
        self._preview_plane = plane
        if not layer.visible:
            layer.visible = True  # (refreshes)
        else:
            self._refresh(layer)
        self.last_timing["preview_s"] = time.perf_counter() - t0

    @staticmethod
    def _refresh(layer) -> None:
        """Redraw a layer whose array was changed in place (no thumbnail or extent work)."""
        try:
            layer.refresh(thumbnail=False, extent=False, highlight=False)
        except TypeError:  # older napari
            layer.refresh()

    def _on_step(self, event=None) -> None:
        if self.threshold is not None and self.preview_check.isChecked():
            self.update_preview()

    def _on_ndisplay(self, event=None) -> None:
        res = self.labels_layer
        if res is not None:
            res.contour = 2 if self.viewer.dims.ndisplay == 2 else 0
        self.update_preview()

    # ------------------------------------------------------------------ segmentation
    def seeds(self) -> np.ndarray:
        """The seed clicks as (n, 3) fractional voxel indices of the image."""
        layer = self.seeds_layer()
        if layer is None or len(layer.data) == 0:
            return np.empty((0, 3))
        return np.asarray([self._image.world_to_data(layer.data_to_world(p)) for p in np.asarray(layer.data)], float)

    def segment_kwargs(self, *, seeds: bool = True) -> dict:
        """The keyword arguments this widget passes to :func:`bmeviz.segment` (for scripts and tests)."""
        if self._volume is None:
            raise ParameterError("open a scan first (an Image layer of a 3D volume)")
        if self._thr_timer.isActive() or self.threshold is None:
            self.update_threshold()
        if self._ref_spec is None:
            raise ParameterError(self._ref_error or "set the reference first")
        rule, k = self._rule_k()
        kwargs = dict(reference=self._ref_spec, region=self.region_mask(), rule=rule, k=k,
                      edge=self.edge_combo.currentText(), min_volume_mm3=self.min_volume_mm3,
                      min_slices=self.min_slices_value)
        if self._ref_radius is not None:
            kwargs["reference_radius_mm"] = self._ref_radius
        if seeds:
            s = self.seeds()
            if not len(s):
                raise ParameterError("no seeds: click 'Add seeds' and click each lesion (or use 'Find all in region')")
            kwargs["seeds"] = s
        return kwargs

    @property
    def min_volume_mm3(self) -> float | None:
        v = float(self.min_volume.value())
        return None if v <= self.min_volume.minimum() else v

    @property
    def min_slices_value(self) -> int | None:
        v = int(self.min_slices.value())
        return None if v <= self.min_slices.minimum() else v

    def _on_seeds(self, event=None) -> None:
        action = str(getattr(event, "action", "added"))
        if not action.endswith(("added", "removed", "changed")) or not self.auto_grow.isChecked():
            return
        layer = self.seeds_layer()
        if layer is not None and len(layer.data) == 0:
            if self.labels_layer is not None:
                self._apply_labels(np.zeros(self._volume.shape, np.int32))
            self.result = None
            self._show_table(None)
            return
        if self._ref_spec is None and self.threshold is None and self.ref_combo.currentData() is None:
            pts = self.reference_layer()
            if pts is None or len(pts.data) == 0:
                self.status_label.setText("Seed added. Set the reference (normal marrow) to grow.")
                return
        self.grow()

    def grow(self) -> None:
        """Outline the lesions from the seeds (core :func:`bmeviz.segment`, in a worker)."""
        self._start_segment(seeds=True)

    def find_all(self) -> None:
        """Every above-threshold lesion in the region (no seeds)."""
        self._start_segment(seeds=False)

    def _start_segment(self, *, seeds: bool) -> None:
        try:
            kwargs = self.segment_kwargs(seeds=seeds)
        except BmevizError as exc:
            return self._error(str(exc))
        n = len(kwargs.get("seeds", []))
        what = f"growing from {n} seed{'s' if n != 1 else ''}" if seeds else "finding all lesions in the region"
        self._request += 1
        self._t_request = time.perf_counter()
        self._run(_segment_job, (self._volume, kwargs), on_done=self._segment_done, what=what,
                  tag=(self._request, self._image))

    def _segment_done(self, out, tag) -> None:
        request, image = tag
        if request != self._request or image is not self._image:
            return  # a newer request (or another image) superseded this one
        res, seconds = out
        self.result = res
        self._apply_labels(res.labels)
        self._show_table(res.table)
        # the layer now holds res.labels: its fingerprint from the table, without a pass over the volume
        t = res.table
        self._shown_fingerprint = (res.labels.shape, int(t["voxels"].sum()),
                                   int((t["lesion_id"].astype("int64") * t["voxels"]).sum()))
        tot = res.totals
        self.last_timing["segment_s"] = seconds
        self.last_timing["click_to_labels_s"] = time.perf_counter() - self._t_request
        self.status_label.setText(f"{tot['n_lesions']} lesion(s), {tot['total_volume_ml']:.3f} mL "
                                  f"(threshold {_fmt(res.threshold.value)}, {seconds * 1000:.0f} ms)")
        for m in res.messages:  # what the core noted and did not already warn about
            if m not in self._warned:
                self._warn(m)

    def _apply_labels(self, labels: np.ndarray) -> None:
        """Write ``labels`` into the BME layer as one undoable edit (napari's Labels history)."""
        from napari.utils.colormaps import DirectLabelColormap

        from ..plot import lesion_colors

        layer = self._helper(_ROLE_RESULT, create=True)
        data = layer.data
        new = np.asarray(labels)
        changed = self._changed_indices(data, new)
        n = int(new.max()) if new.size else 0
        record = layer.metadata[KEY]
        if n > record.get("n_colors", 0):  # one colour per lesion id, as in overlay.png and the table
            colors = lesion_colors(max(n, 10))
            cmap = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
            cmap.update({i: (*colors[i - 1], 1.0) for i in range(1, len(colors) + 1)})
            layer.colormap = DirectLabelColormap(color_dict=cmap)
            record["n_colors"] = len(colors)
        if changed[0].size:
            layer.data_setitem(changed, new[changed].astype(data.dtype))
        contour = 2 if self.viewer.dims.ndisplay == 2 else 0
        if layer.contour != contour:
            layer.contour = contour

    @staticmethod
    def _changed_indices(old: np.ndarray, new: np.ndarray) -> tuple:
        """Indices where ``new`` differs from ``old``, searched only in the slices that differ."""
        diff = old != new
        hit = np.flatnonzero(diff.reshape(diff.shape[0], -1).any(axis=1))
        if hit.size == 0:
            return tuple(np.empty(0, np.intp) for _ in range(3))
        lo, hi = int(hit[0]), int(hit[-1]) + 1
        idx = np.nonzero(diff[lo:hi])
        return (idx[0] + lo, idx[1], idx[2])

    @staticmethod
    def _fingerprint(data) -> tuple:
        arr = np.asarray(data)
        return (arr.shape, int(np.count_nonzero(arr)), int(arr.sum(dtype=np.int64)))

    def _on_labels_edit(self, event=None) -> None:
        if self.labels_layer is not None:
            self._edit_timer.start()

    def _check_labels_edited(self) -> None:
        """If the BME layer no longer shows the table's lesions (painted, undone), measure it again."""
        layer = self.labels_layer
        if layer is None or self._volume is None:
            return
        if self.busy:  # look again when the running job is done
            self._edit_timer.start()
            return
        fp = self._fingerprint(layer.data)
        if fp == self._shown_fingerprint:
            return
        labels = np.array(layer.data, copy=True)
        stats = None if self.threshold is None else self.threshold.stats
        try:
            region = self.region_mask()
        except BmevizError:
            region = None
        self._shown_fingerprint = fp
        self._run(_measure_job, (labels, self._volume, stats, region), on_done=self._measured,
                  what="measuring the edited labels", tag=self._image)

    def _measured(self, out, image) -> None:
        labels, table = out
        if image is not self._image:
            return
        self.table = table
        self._show_table(table, edited=True)

    # ------------------------------------------------------------------ table
    def _show_table(self, table, *, edited: bool = False) -> None:
        from ..lesions import summarize
        from ..plot import lesion_colors

        self.table = table
        tw = self.table_widget
        tw.blockSignals(True)
        tw.setRowCount(0)
        if table is None or len(table) == 0:
            tw.blockSignals(False)
            self.total_label.setText("total: no lesion" if table is not None else "total: -")
            return
        colors = lesion_colors(int(table["lesion_id"].max()))
        tw.setRowCount(len(table))
        for r, row in enumerate(table.itertuples(index=False)):
            lid = int(row.lesion_id)
            ratio = row.ratio_to_reference
            cells = [str(lid), f"{row.volume_ml:.3f}", "-" if not np.isfinite(ratio) else f"{ratio:.2f}",
                     f"{int(row.first_slice)}–{int(row.last_slice)}"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if c == 0:
                    rgb = colors[lid - 1] if lid - 1 < len(colors) else (1, 1, 1)
                    item.setBackground(QColor.fromRgbF(*[float(v) for v in rgb[:3]]))
                    item.setForeground(QColor("black"))
                tw.setItem(r, c, item)
        tw.blockSignals(False)
        tot = summarize(table)
        frac = tot.get("bme_fraction_of_region")
        self.total_label.setText(
            f"total: {tot['n_lesions']} lesion(s), <b>{tot['total_volume_ml']:.3f} mL</b>"
            + (f", {100 * frac:.2f}% of the region" if frac is not None else "")
            + (" (labels edited by hand)" if edited else ""))

    def _on_row_selected(self) -> None:
        rows = self.table_widget.selectionModel().selectedRows()
        if rows:
            self.jump_to(int(self.table.iloc[rows[0].row()]["lesion_id"]))

    def jump_to(self, lesion_id: int) -> None:
        """Show lesion ``lesion_id``: its centroid slice, centred, the label selected."""
        if self.table is None or self._image is None:
            return
        row = self.table[self.table["lesion_id"] == lesion_id]
        if row.empty:
            return
        r = row.iloc[0]
        centroid = np.array([r["centroid_slice"], r["centroid_row"], r["centroid_col"]], float)
        world = np.asarray(self._image.data_to_world(np.rint(centroid)), float)
        nd = self.viewer.dims.ndim
        point = list(self.viewer.dims.point)
        point[nd - 3:] = world
        self.viewer.dims.point = point
        shown = list(self.viewer.dims.displayed)
        self._camera().center = tuple(point[a] for a in shown)
        layer = self.labels_layer
        if layer is not None:
            layer.selected_label = int(lesion_id)

    # ------------------------------------------------------------------ export
    def export(self, folder: str | Path | None = None) -> None:
        """Write the result like ``bmeviz segment`` (:meth:`bmeviz.Result.save`): mask on the source
        grid, lesions.csv, provenance.json, overlay.png. Hand edits of the BME layer are included."""
        if self.result is None:
            return self._error("nothing to export yet: set a reference, click lesions and Grow")
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Export BME results to a folder")
            if not folder:
                return
        layer = self.labels_layer
        labels = None if layer is None else np.array(layer.data, copy=True)
        self._run(_save_job, (self.result, labels, str(folder)), on_done=self._exported, what="exporting")

    def _current_result(self):
        """The last Result, with the labels as they are in the BME layer (hand edits included)."""
        layer = self.labels_layer
        if layer is None or self.result is None:
            return self.result
        return _edited_result(self.result, np.array(layer.data, copy=True))

    def _exported(self, paths: dict) -> None:
        self.exported = paths
        folder = Path(next(iter(paths.values()))).parent
        self._info(f"bmeviz: wrote {', '.join(Path(p).name for p in paths.values())} to {folder}")

    # ------------------------------------------------------------------ workers
    @property
    def busy(self) -> bool:
        """True while a worker (segmentation, loading, export, measuring) runs or is queued."""
        return self._worker is not None or bool(self._pending)

    def _run(self, fn, args: tuple, *, on_done, what: str, tag: Any = None) -> None:
        """Run ``fn(*args)`` in a worker thread; one at a time, the latest request queued."""
        if self._worker is not None:  # one at a time: a newer job of the same kind replaces the queued one
            self._pending = [job for job in self._pending if job[0] is not fn] + [(fn, args, on_done, what, tag)]
            return
        from napari.qt.threading import create_worker

        self._warned = set()
        self._on_done = (on_done, tag)
        worker = create_worker(fn, *args, _ignore_errors=True)
        # bound methods only: PyQt drops them if the widget is deleted while the worker runs
        worker.returned.connect(self._deliver)
        worker.errored.connect(self._on_error)
        worker.warned.connect(self._on_warned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        # the busy bar only for work that lasts: its animation repaints the window, which on
        # software OpenGL (Xvfb, remote desktops) slows a quick grow down three times
        if not self.progress.isVisible():
            self._progress_timer.start()
        self._busy_text = what + "…"
        # start once the event loop is back: napari first draws what the click changed (the new
        # seed), so the drawing and the worker do not fight for the CPU (on software OpenGL a
        # repaint takes tens of ms of CPU)
        QTimer.singleShot(0, worker.start)

    def _deliver(self, out) -> None:
        on_done, tag = self._on_done
        if tag is None:
            on_done(out)
        else:
            on_done(out, tag)

    def _show_busy(self) -> None:
        """Work that lasts: show the busy bar and say what runs; the buttons wait."""
        if self._worker is None:
            return
        self.progress.setVisible(True)
        self.status_label.setText(self._busy_text)
        for b in (self.grow_button, self.find_button, self.export_button):
            b.setEnabled(False)

    def _on_finished(self) -> None:
        self._worker = None
        if self._pending:
            fn, args, on_done, what, tag = self._pending.pop(0)
            self._run(fn, args, on_done=on_done, what=what, tag=tag)
            return
        self._progress_timer.stop()
        if self.progress.isVisible():
            self.progress.setVisible(False)
            for b in (self.grow_button, self.find_button, self.export_button):
                b.setEnabled(True)
        if self.status_label.text().endswith("…"):
            self.status_label.setText("")

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, BmevizError):
            self._error(str(exc))
        else:
            log.error("bmeviz widget: unexpected error", exc_info=(type(exc), exc, exc.__traceback__))
            self._error(f"unexpected {type(exc).__name__}: {exc}")

    def _on_warned(self, w: tuple) -> None:
        message = str(w[0] if w else "")
        self._warned.add(message)
        self._warn(message)

    # ------------------------------------------------------------------ notifications
    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status_label.setText(f"error: {message}")
        show_error(message)

    def _warn(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        show_warning(message)

    def _info(self, message: str) -> None:
        from napari.utils.notifications import show_info

        self.status_label.setText(message)
        show_info(message)
