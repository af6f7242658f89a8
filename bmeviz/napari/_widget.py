"""The "BME segmentation" dock widget: a view over a :class:`bmeviz.session.Session`.

The session (Qt-free, tested without a screen) holds the scan, reference, region, options,
seeds, the result, hand edits and their undo history, and writes the autosave file. This
widget maps napari layers onto it and shows what it holds:

* a click on the ``BME seeds`` layer is checked by the session first: outside the image or
  the region it is taken back at once and the reason is shown; otherwise the lesions are
  grown and only the changed box of the ``BME`` labels layer is rewritten;
* brush strokes on ``BME`` go to the session (re-measured; "edited by hand" only while the
  labels really differ from the segmentation); Undo/Redo (and Ctrl+Z / Ctrl+Shift+Z on the
  BME layers) are the session's;
* masks (a reader's region or normal-marrow outline, opened by the bmeviz reader as Labels)
  are offered as region/reference as soon as they appear;
* 3D: outlines switch to filled labels (napari draws contours in 2D only), back in 2D.

The class is split by job: layer choices and helper layers here, measuring in
:mod:`._widget_measure`, files and workers in :mod:`._widget_files`; the controls are built
in :mod:`._panel`, the model is :mod:`bmeviz.session`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QWidget

from ..errors import BmevizError
from ..session import SESSION_SUFFIX, Session
from . import _panel
from ._layers import COLORS, KEY, display_orientation, layer_volume, mask_role, world_frame
from ._roles import (_ROLE_DRAWN, _ROLE_PREVIEW, _ROLE_REF, _ROLE_REF_USED, _ROLE_RESULT, _ROLE_SEEDS, _owner,
                     _role, _same, _uid, autosave_dir)
from ._widget_files import FilesMixin, _load_job
from ._widget_measure import MeasureMixin

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["BMEWidget", "autosave_dir"]


class BMEWidget(MeasureMixin, FilesMixin, QWidget):
    """Dock widget: outline and measure BME with a reference, seeds and the bmeviz core."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session: Session | None = None
        self._sessions: dict[str, Session] = {}
        self._image = None
        self._volume = None
        self._mask_cache: dict[tuple, np.ndarray] = {}
        self._preview_data: np.ndarray | None = None
        self._preview_plane: tuple[int, int] | None = None
        self._worker = None
        self._pending: list[tuple] = []
        self._updating_combos = False
        self._writing = False  # True while the widget itself writes a layer
        self.last_timing: dict[str, float] = {}
        self._watched: set[str] = set()
        self._warned: dict[int, set[str]] = {}
        self._contours: dict[str, int] = {}  # layer unique_id -> its 2D contour
        self.exported: dict | None = None
        _panel.build(self)
        self._timers()
        self._connect()
        self._connect_viewer()
        self._refresh_layer_choices()

    # ------------------------------------------------------------------ wiring
    def _timers(self) -> None:
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
        self._edit_timer.setInterval(150)
        self._edit_timer.timeout.connect(self._take_brush_edit)

    def _connect(self) -> None:
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
        self.remove_last_button.clicked.connect(lambda: self.remove_seed())
        self.remove_selected_button.clicked.connect(self.remove_selected_seeds)
        self.grow_button.clicked.connect(lambda: self.grow())
        self.find_button.clicked.connect(lambda: self.find_all())
        self.undo_button.clicked.connect(lambda: self.undo())
        self.redo_button.clicked.connect(lambda: self.redo())
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.merge_button.clicked.connect(lambda: self.merge_selected())
        self.split_button.clicked.connect(lambda: self.split_selected())
        self.export_button.clicked.connect(lambda: self.export())
        self.save_button.clicked.connect(lambda: self.save_session())
        self.load_button.clicked.connect(lambda: self.load_session())
        self.restore_button.clicked.connect(lambda: self.restore_autosave())
        self.open_button.clicked.connect(lambda: self.open_path(folder=True))
        self.open_file_button.clicked.connect(lambda: self.open_path(folder=False))
        self.table_widget.itemSelectionChanged.connect(self._on_row_selected)
        self._update_buttons()

    def _connect_viewer(self) -> None:
        ev = self.viewer.layers.events
        ev.inserted.connect(self._on_layers_changed)
        ev.removed.connect(self._on_layers_changed)
        ev.reordered.connect(self._on_layers_changed)
        self.viewer.dims.events.current_step.connect(self._on_step)
        # 3D: contours go off at the switch. napari slices the layers (its own callbacks always
        # run before a plugin's) and warns once that it does not draw contours in 3D, before
        # this widget can turn them off: that one message is expected and is silenced.
        import warnings

        warnings.filterwarnings("ignore", message="Contours are not displayed during 3D rendering",
                                category=UserWarning)
        self.viewer.dims.events.ndisplay.connect(self._on_ndisplay)

    # ------------------------------------------------------------------ layer choices
    def _image_layers(self) -> list:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image) and not getattr(ly, "rgb", False)
                and _role(ly) is None and ly.ndim == 3]

    def _mask_layers(self, shapes: bool) -> list:
        from napari.layers import Labels, Shapes

        kinds = (Labels, Shapes) if shapes else (Labels,)
        return [ly for ly in self.viewer.layers
                if isinstance(ly, kinds) and _role(ly) not in (_ROLE_RESULT, _ROLE_PREVIEW, _ROLE_REF_USED)]

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and event.type == "inserted":
            layer.events.name.connect(self._refresh_layer_choices)
            self._style_mask(layer)
        self._refresh_layer_choices(inserted=layer if getattr(event, "type", "") == "inserted" else None)

    def _style_mask(self, layer) -> None:
        """A mask named like a region gets a thin outline in 2D (remembered for 3D switches)."""
        from napari.layers import Labels

        if isinstance(layer, Labels) and _role(layer) is None and mask_role(layer.name) == "region":
            self._contours[_uid(layer)] = 1
            layer.contour = 1 if self.viewer.dims.ndisplay == 2 else 0

    def _set_combo(self, combo, items: list[tuple[str, Any]], current: Any) -> None:
        combo.blockSignals(True)
        combo.clear()
        for text, data in items:
            combo.addItem(text, data)
        idx = next((i for i, (_, d) in enumerate(items) if _same(d, current)), 0 if items else -1)
        combo.setCurrentIndex(idx)
        combo.blockSignals(False)

    def _refresh_layer_choices(self, event=None, inserted=None) -> None:
        if self._updating_combos:
            return
        self._updating_combos = True
        try:
            images = self._image_layers()
            current = next((ly for ly in images if _same(ly, self._image)), images[-1] if images else None)
            self._set_combo(self.image_combo, [(ly.name, ly) for ly in images], current)
            masks = [ly for ly in self._mask_layers(shapes=True) if self._on_grid(ly, current)]
            ref_now = self.ref_combo.currentData() if self.ref_combo.count() else None
            if ref_now is not None and not isinstance(ref_now, str) and not any(_same(ref_now, ly) for ly in masks):
                ref_now = None
            if ref_now is None and not self._has_point_reference():
                ref_now = next((ly for ly in masks if mask_role(ly.name) == "reference"), None)
            self._set_combo(self.ref_combo, [(_panel.POINT, None), (_panel.AUTO, "auto")]
                            + [(ly.name, ly) for ly in masks], ref_now)
            labels_only = {_uid(ly) for ly in self._mask_layers(shapes=False)}
            regions = [ly for ly in masks if _role(ly) != _ROLE_DRAWN and not _same(ly, ref_now)
                       and _uid(ly) in labels_only]
            reg_now = self.region_combo.currentData() if self.region_combo.count() else None
            if reg_now is not None and not any(_same(reg_now, ly) for ly in regions):
                reg_now = None
            if reg_now is None:  # guess again whenever a layer appears, not only with the image
                reg_now = next((ly for ly in regions if mask_role(ly.name) == "region"), None)
            self._set_combo(self.region_combo, [(_panel.NONE, None)] + [(ly.name, ly) for ly in regions], reg_now)
        finally:
            self._updating_combos = False
        for layer in (self.ref_combo.currentData(), self.region_combo.currentData()):
            if layer is not None and not isinstance(layer, str):
                self._watch(layer)
        if not _same(current, self._image) or (self._volume is None and current is not None):
            self.set_image(current)
        else:
            self._schedule_threshold()

    def _on_grid(self, layer, image) -> bool:
        """A mask layer that fits the image's grid (same shape), or any Shapes layer."""
        from napari.layers import Shapes

        if image is None or isinstance(layer, Shapes):
            return True
        return tuple(np.shape(layer.data)) == tuple(np.shape(image.data))

    def _has_point_reference(self) -> bool:
        pts = self.reference_layer()
        return pts is not None and len(pts.data) > 0

    def _on_image_choice(self, index: int) -> None:
        if not self._updating_combos:
            self.set_image(self.image_combo.currentData())

    def set_image(self, layer) -> None:
        """Segment ``layer`` (a 3D napari Image layer); each image keeps its own session."""
        if _same(layer, self._image) and self._volume is not None:
            return
        self._image, self._volume, self.session = layer, None, None
        self._mask_cache.clear()
        self._preview_plane = self._preview_data = None
        if layer is None:
            self.image_info.setText("Open a scan: Open scan… (DICOM folder), Open file… (NIfTI/DICOM), "
                                    "or File > Open Sample > bmeviz.")
            self._show_series([])
            self._show_result()
            self.stats_label.setText("No scan open.")
            self.threshold_label.setText("threshold: –")
            self.update_preview()
            return
        try:
            self._volume = layer_volume(layer.data, layer.metadata, layer.scale, layer.translate)
        except BmevizError as exc:
            self.image_info.setText(str(exc))
            self._image = None
            return
        record = layer.metadata.get(KEY, {})
        uid = str(layer.unique_id)
        if uid not in self._sessions:
            s = Session(self._volume, source=record.get("path"), series=record.get("series_key"))
            s.autosave_path = self._autosave_path(record)
            s.autosave_now = False  # written after the screen is updated (see _after_change)
            self._sessions[uid] = s
            self._keep_earlier_autosave(s)
        self.session = self._sessions[uid]
        vol = self._volume
        sp = " × ".join(f"{s:.3g}" for s in vol.spacing)
        seq = vol.metadata.get("sequence") or "sequence unknown"
        self.image_info.setText(f"{vol.shape[0]} slices of {vol.shape[1]} × {vol.shape[2]}, {sp} mm, "
                                f"{vol.plane}, {seq}" + (f"\n{record['why']}" if record.get("why") else ""))
        self._show_series(record.get("series") or [], record.get("series_key"))
        self._orient(vol)
        self._show_result()
        self._schedule_threshold()

    def _keep_earlier_autosave(self, s: Session) -> None:
        """An autosave of this scan from an earlier (perhaps crashed) viewer: kept aside, never
        overwritten by the new session, and offered with "Restore autosave"."""
        self.restore_button.setVisible(False)
        auto = s.autosave_path
        if auto is None or not auto.exists():
            return
        earlier = auto.with_name(auto.name.replace(SESSION_SUFFIX, ".earlier" + SESSION_SUFFIX))
        os.replace(auto, earlier)
        self._earlier_autosave = earlier
        self.restore_button.setVisible(True)
        self._info("An autosaved session of this scan was found (from an earlier viewer): "
                   "Restore autosave brings its seeds and labels back.")

    def restore_autosave(self) -> None:
        """Load the autosave an earlier viewer left for this scan."""
        path = getattr(self, "_earlier_autosave", None)
        if path is None or not Path(path).exists():
            return self._error("No earlier autosave of this scan.")
        self.load_session(path)
        self.restore_button.setVisible(False)

    def _autosave_path(self, record: dict) -> Path | None:
        path = record.get("path")
        if not path:
            return None
        key = f"{os.path.abspath(path)}|{record.get('series_key') or ''}"
        return autosave_dir() / (hashlib.sha256(key.encode()).hexdigest()[:16] + SESSION_SUFFIX)

    def _orient(self, vol) -> None:
        """Show slices as bmeviz's figures do (radiological; see ``display_orientation``)."""
        dims = self.viewer.dims
        if dims.ndisplay != 2 or dims.ndim != 3 or sorted(dims.displayed) != [1, 2]:
            return
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
        if self._image is not None and key is not None:
            self.open_series(key)

    def open_series(self, key: str) -> None:
        """Open another series or echo of the current image's DICOM folder (in a worker)."""
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
            return self._error("No other series: this image does not come from a DICOM folder bmeviz opened.")
        self._run(_load_job, (path, key), on_done=self._series_loaded, what="opening the series")

    def _series_loaded(self, layer_data: list) -> None:
        layer = None
        for data, kwargs, _kind in layer_data:
            layer = self.viewer.add_image(data, **kwargs)
        self.viewer.reset_view()
        if layer is not None:
            self.image_combo.setCurrentIndex(self.image_combo.findText(layer.name))

    def open_path(self, path: str | None = None, *, folder: bool = True) -> list:
        """Open a scan or mask with the bmeviz reader (napari does not ask which reader)."""
        if path is None:
            path = (QFileDialog.getExistingDirectory(self, "Open a DICOM folder") if folder else
                    QFileDialog.getOpenFileName(self, "Open a scan or mask", "",
                                                "Scans and masks (*.nii *.nii.gz *.dcm *.ima *.dicom);;All files (*)")[0])
            if not path:
                return []
        try:
            return self.viewer.open(str(path), plugin="bmeviz")
        except Exception as exc:  # noqa: BLE001  napari wraps the reader's error
            cause = getattr(exc, "original_error", None) or exc.__cause__ or exc
            self._error(str(cause))
            return []

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
        active = self.viewer.layers.selection.active
        layer = self._make_helper(role, uid)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return layer

    def _make_helper(self, role: str, uid: str):
        scale, translate = world_frame(self._volume.affine)
        record = self._image.metadata.get(KEY, {})
        meta = {KEY: {"role": role, "image": uid, "affine": np.asarray(self._volume.affine).tolist(),
                      "shape": list(self._volume.shape), "path": record.get("path"),
                      "volume_metadata": record.get("volume_metadata", {})}}
        common = dict(scale=scale, translate=translate, units=("mm",) * 3, metadata=meta)
        inplane = float(min(scale[1], scale[2]))
        if role == _ROLE_SEEDS:
            layer = self.viewer.add_points(
                ndim=3, name=self._unique("BME seeds"), face_color=COLORS["seeds"], border_color="black",
                border_width=0.1, size=max(2.5, 3.5 * inplane), symbol="cross", features={"n": np.empty(0, int)},
                text={"string": "{n}", "color": COLORS["seeds"], "anchor": "upper_left", "size": 12,
                      "translation": [0, -2 * inplane, 2 * inplane]}, **common)
            self._bind_undo(layer)
            return layer
        if role == _ROLE_REF:
            return self.viewer.add_points(ndim=3, name=self._unique("BME reference"), face_color="transparent",
                                          border_color=COLORS["reference"], border_width=0.15, symbol="disc",
                                          size=2 * self.radius_spin.value(), **common)
        if role == _ROLE_PREVIEW:
            from napari.utils.colormaps import Colormap

            rgb = [int(COLORS["preview"][i:i + 2], 16) / 255 for i in (1, 3, 5)]
            cmap = Colormap([[0, 0, 0, 0], [*rgb, 1.0]], name="bmeviz preview", interpolation="zero")
            self._preview_data = np.zeros(self._volume.shape, np.uint8)
            return self.viewer.add_image(self._preview_data, name=self._unique("BME threshold preview"),
                                         colormap=cmap, contrast_limits=(0, 1), opacity=0.45,
                                         blending="translucent", **common)
        if role == _ROLE_RESULT:
            layer = self.viewer.add_labels(np.zeros(self._volume.shape, np.int32), name=self._unique("BME"),
                                           opacity=1.0, **common)
            self._contours[_uid(layer)] = 2
            layer.contour = 2 if self.viewer.dims.ndisplay == 2 else 0
            layer.events.paint.connect(self._on_brush)
            layer.events.set_data.connect(self._on_brush)
            self._bind_undo(layer)
            return layer
        if role == _ROLE_REF_USED:
            rgbc = {None: "transparent", 0: "transparent", 1: COLORS["reference"]}
            layer = self.viewer.add_labels(np.zeros(self._volume.shape, np.uint8), colormap=rgbc,
                                           name=self._unique("BME reference (used)"), opacity=0.45, **common)
            layer.editable = False
            return layer
        if role == _ROLE_DRAWN:
            rgbc = {None: "transparent", 0: "transparent", 1: COLORS["reference"]}
            return self.viewer.add_labels(np.zeros(self._volume.shape, np.uint8), colormap=rgbc,
                                          name=self._unique("normal marrow (drawn)"), opacity=0.45, **common)
        raise AssertionError(role)

    def _bind_undo(self, layer) -> None:
        layer.bind_key("Control-Z", lambda _ly: self.undo(), overwrite=True)
        layer.bind_key("Control-Shift-Z", lambda _ly: self.redo(), overwrite=True)

    def _unique(self, name: str) -> str:
        names = {ly.name for ly in self.viewer.layers}
        return name if name not in names else f"{name} ({self._image.name})"

    def _camera(self):
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9 (viewer.camera before)
        return scene.camera if scene is not None and hasattr(scene, "camera") else self.viewer.camera

    def place_reference(self) -> None:
        """Make the reference Points layer active in add mode: the next click sets the reference."""
        if self._image is None:
            return self._error("Open a scan first.")
        layer = self.reference_layer(create=True)
        self.ref_combo.setCurrentIndex(0)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"

    def draw_reference(self) -> None:
        """Make a Labels layer on the image's grid to paint normal marrow in, and use it as reference."""
        if self._image is None:
            return self._error("Open a scan first.")
        layer = self._helper(_ROLE_DRAWN, create=True)
        self._watch(layer)
        self._refresh_layer_choices()
        self.ref_combo.setCurrentIndex(max(0, self.ref_combo.findText(layer.name)))
        self.viewer.layers.selection.active = layer
        layer.brush_size = max(5, int(round(6.0 / min(self._volume.spacing[1:]))))
        layer.mode = "paint"

    def add_seeds(self) -> None:
        """Make the seeds Points layer active in add mode: click each lesion."""
        if self._image is None:
            return self._error("Open a scan first.")
        layer = self.seeds_layer(create=True)
        self.viewer.layers.selection.active = layer
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
        if _uid(layer) in self._watched:
            return
        self._watched.add(_uid(layer))
        role = _role(layer)
        if role == _ROLE_SEEDS:
            layer.events.data.connect(self._on_seeds)
        elif role == _ROLE_REF:
            layer.events.data.connect(self._schedule_threshold)
        else:
            for name in ("data", "paint", "set_data"):
                if hasattr(layer.events, name):
                    getattr(layer.events, name).connect(self._on_mask_edit)
