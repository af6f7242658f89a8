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

The file is above 600 lines because it is one Qt class whose methods are each the glue of
one control; the controls themselves are built in :mod:`._panel`, the model is
:mod:`bmeviz.session`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QFileDialog, QTableWidgetItem, QWidget

from ..errors import BmevizError, ParameterError
from ..session import SESSION_SUFFIX, Session
from . import _panel
from ._layers import COLORS, KEY, display_orientation, layer_volume, mask_role, world_frame

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["BMEWidget", "autosave_dir"]

log = logging.getLogger(__name__)

_ROLE_REF, _ROLE_SEEDS, _ROLE_PREVIEW, _ROLE_RESULT, _ROLE_DRAWN = (
    "reference", "seeds", "preview", "result", "reference-drawn")


def autosave_dir() -> Path:
    """Where sessions are autosaved: ``$BMEVIZ_AUTOSAVE_DIR``, else ``~/.cache/bmeviz/sessions``."""
    env = os.environ.get("BMEVIZ_AUTOSAVE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "bmeviz" / "sessions"


def _role(layer) -> str | None:
    return (getattr(layer, "metadata", None) or {}).get(KEY, {}).get("role")


def _uid(layer) -> str:
    """A layer's identity (the plugin gets proxies of layers: ``id()`` differs between them)."""
    return str(layer.unique_id)


def _same(a, b) -> bool:
    """The same napari layer (or both None), whether raw layers or the plugin's proxies."""
    if a is None or b is None:
        return a is b
    return _uid(a) == _uid(b)


def _owner(layer) -> str | None:
    return (getattr(layer, "metadata", None) or {}).get(KEY, {}).get("image")


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def _find_all_job(volume, kwargs: dict):
    from ..pipeline import segment

    t0 = time.perf_counter()
    return segment(volume, **kwargs), time.perf_counter() - t0


def _load_job(path: str, key: str):
    from ._reader import read

    return read(path, series=key)


def _export_job(result, folder: str, study: str | None, session_record: dict, source: dict):
    """Everything ``bmeviz segment`` writes, report.html, DICOM SEG for DICOM scans, the session."""
    import dataclasses
    import json

    from ..io._atomic import atomic_write_text
    from ..report import save_report

    vol = result.volume
    seg = False
    if source.get("source") == "dicom" and source.get("path"):
        from ..io import load

        full = load(source["path"], series=source.get("series_key"))  # the files' headers, for the SEG
        if full.shape == vol.shape and np.allclose(full.affine, vol.affine, atol=1e-3):
            result = dataclasses.replace(result, volume=full)
            seg = True
    paths = result.save(folder, seg=seg)
    paths["report"] = save_report(result, Path(folder) / "report.html", title=study or None)
    paths["session"] = atomic_write_text(Path(folder) / f"session{SESSION_SUFFIX}", json.dumps(session_record) + "\n")
    return paths


class BMEWidget(QWidget):
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
                if isinstance(ly, kinds) and _role(ly) not in (_ROLE_RESULT, _ROLE_PREVIEW)]

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
            if ref_now is not None and not any(_same(ref_now, ly) for ly in masks):
                ref_now = None
            if ref_now is None and not self._has_point_reference():
                ref_now = next((ly for ly in masks if mask_role(ly.name) == "reference"), None)
            self._set_combo(self.ref_combo, [(_panel.POINT, None)] + [(ly.name, ly) for ly in masks], ref_now)
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
            if layer is not None:
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
                size=max(4.0, 6 * inplane), symbol="disc", features={"n": np.empty(0, int)},
                text={"string": "{n}", "color": COLORS["seeds"], "anchor": "upper_left", "size": 10}, **common)
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

    # ------------------------------------------------------------------ masks, reference, threshold
    def _layer_mask(self, layer, what: str) -> np.ndarray:
        """A bool mask on the image grid from a Labels or Shapes layer (cached until edited)."""
        from napari.layers import Shapes

        key = (_uid(layer), what)
        if key in self._mask_cache:
            return self._mask_cache[key]
        self._watch(layer)
        shape = self._volume.shape
        if isinstance(layer, Shapes):
            if len(layer.data) == 0:
                raise ParameterError(f"The {what} layer {layer.name!r} has no shapes yet: draw in normal marrow.")
            verts = [np.asarray([self._image.world_to_data(layer.data_to_world(v)) for v in s]) for s in layer.data]
            tmp = Shapes(verts, shape_type=list(layer.shape_type), ndim=3)
            mask = np.asarray(tmp.to_labels(labels_shape=shape)) > 0
        else:
            arr = np.asarray(layer.data[0] if getattr(layer, "multiscale", False) else layer.data)
            if arr.shape != shape:
                raise ParameterError(f"The {what} {layer.name!r} is on another grid ({arr.shape}; the scan is "
                                     f"{shape}): it must be drawn on this scan.")
            mask = arr > 0
        if not mask.any():
            raise ParameterError(f"The {what} {layer.name!r} is empty: draw it first.")
        self._mask_cache[key] = mask
        return mask

    def _on_mask_edit(self, event=None) -> None:
        layer = getattr(event, "source", None)
        if layer is not None:
            for key in [k for k in self._mask_cache if k[0] == _uid(layer)]:
                del self._mask_cache[key]
        self._schedule_threshold()

    def region_mask(self) -> np.ndarray | None:
        layer = self.region_combo.currentData()
        if layer is None or layer not in self.viewer.layers:
            return None
        return self._layer_mask(layer, "region")

    def _on_region_choice(self, index: int) -> None:
        if not self._updating_combos:
            self._schedule_threshold()

    def _on_reference_choice(self, index: int) -> None:
        self.radius_spin.setEnabled(self.ref_combo.currentData() is None)
        if not self._updating_combos:
            self._schedule_threshold()

    def _rule_k(self) -> tuple[str, Any]:
        rule = self.rule_combo.currentText()
        if rule == "otsu" or (rule == "q3-iqr" and self.auto_k.isChecked()):
            return rule, None
        return rule, float(self.k_spin.value())

    def _on_rule(self, rule: str) -> None:
        self.auto_k.setVisible(rule == "q3-iqr")
        self.k_spin.blockSignals(True)
        if rule in _panel.RULE_K:
            self.k_spin.setValue(_panel.RULE_K[rule])
        self.k_spin.blockSignals(False)
        self._on_auto_k(self.auto_k.isChecked())

    def _on_auto_k(self, on: bool) -> None:
        rule = self.rule_combo.currentText()
        self.k_spin.setEnabled(rule != "otsu" and not (rule == "q3-iqr" and on))
        self._schedule_threshold()

    def _schedule_threshold(self, *args) -> None:
        self._thr_timer.start()

    @property
    def min_volume_mm3(self) -> float | None:
        v = float(self.min_volume.value())
        return None if v <= self.min_volume.minimum() else v

    @property
    def min_slices_value(self) -> int | None:
        v = int(self.min_slices.value())
        return None if v <= self.min_slices.minimum() else v

    def _sync(self) -> Session:
        """Put the controls' reference, region and options into the session (cheap when unchanged)."""
        s = self.session
        if s is None:
            raise ParameterError("Open a scan first (an Image layer of a 3D volume).")
        rule, k = self._rule_k()
        s.set_options(rule=rule, k=k, edge=self.edge_combo.currentText(), min_volume_mm3=self.min_volume_mm3,
                      min_slices=self.min_slices_value, reference_radius_mm=float(self.radius_spin.value()))
        region_layer = self.region_combo.currentData()
        s.set_region(self.region_mask(), name=None if region_layer is None else region_layer.name)
        layer = self.ref_combo.currentData()
        if layer is not None:
            s.set_reference(mask=self._layer_mask(layer, "reference"), name=layer.name)
        else:
            pts = self.reference_layer()
            if pts is None or len(pts.data) == 0:
                s.clear_reference()
            else:
                idx = self._image.world_to_data(pts.data_to_world(np.asarray(pts.data[-1])))
                s.set_reference(point=np.rint(np.asarray(idx, float)))
        return s

    @property
    def threshold(self):
        return None if self.session is None else self.session.threshold

    def update_threshold(self) -> None:
        """Recompute the reference statistics and the threshold (core, through the session), then the preview."""
        self._thr_timer.stop()
        pts = self.reference_layer()
        if pts is not None:  # the ring shows the reference ball's diameter
            size = 2 * float(self.radius_spin.value())
            if len(pts.data) and not np.allclose(pts.size, size):
                pts.size = np.full(len(pts.data), size)
            if pts.current_size != size:
                pts.current_size = size
        if self.session is None:
            self.update_preview()
            return
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                s = self._sync()
                thr = s.threshold
                problem = s.threshold_error
            except BmevizError as exc:
                thr, problem = None, str(exc)
        if thr is None:
            self.stats_label.setText(problem or "No reference yet: click Place point, then normal marrow.")
            self.threshold_label.setText("threshold: –")
            self.update_preview()
            return
        st = thr.stats
        where = (f"ball of {s.options['reference_radius_mm']:g} mm at voxel {list(s.reference_point)}"
                 if s.reference_point is not None else repr(s.reference_name))
        self.stats_label.setText(
            f"{where}: {st.n} voxels; mean {_fmt(st.mean)}, SD {_fmt(st.sd)}, median {_fmt(st.median)}, "
            f"Q3 {_fmt(st.q3)}, IQR {_fmt(st.iqr)}, max {_fmt(st.max)}"
            + "".join(f"\nNote: {w.message}" for w in caught))
        ktxt = "" if thr.k is None else f", k = {thr.k:.2f}"
        ratio = f" = {thr.value / st.mean:.2f} × reference mean" if st.mean else ""
        self.threshold_label.setText(f"threshold: <b>{_fmt(thr.value)}</b> ({thr.rule}{ktxt}){ratio}")
        if self.rule_combo.currentText() == "q3-iqr" and self.auto_k.isChecked() and thr.k is not None:
            self.k_spin.blockSignals(True)
            self.k_spin.setValue(float(thr.k))
            self.k_spin.blockSignals(False)
        self.update_preview()

    # ------------------------------------------------------------------ preview
    def _current_plane(self) -> tuple[int, int] | None:
        if self._image is None or self.viewer.dims.ndisplay != 2:
            return None
        not_shown = list(self.viewer.dims.not_displayed)[-3:]
        if len(not_shown) != 1:
            return None
        axis = not_shown[0] - (self.viewer.dims.ndim - 3)
        if axis < 0:
            return None
        idx = self._image.world_to_data(self.viewer.dims.point)[axis]
        return axis, int(np.clip(np.rint(idx), 0, self._volume.shape[axis] - 1))

    def update_preview(self) -> None:
        """Show voxels at or above the threshold (inside the region) on the current slice."""
        t0 = time.perf_counter()
        layer = self.preview_layer
        thr = self.session.threshold if (self.session is not None and self.preview_check.isChecked()) else None
        plane = self._current_plane() if thr is not None else None
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
        above = self._volume.array[tuple(sl)] >= thr.value
        if self.session.region is not None:
            above &= self.session.region[tuple(sl)]
        self._preview_data[tuple(sl)] = above
        self._preview_plane = plane
        if not layer.visible:
            layer.visible = True
        else:
            self._refresh(layer)
        self.last_timing["preview_s"] = time.perf_counter() - t0

    @staticmethod
    def _refresh(layer) -> None:
        try:
            layer.refresh(thumbnail=False, extent=False, highlight=False)
        except TypeError:  # older napari
            layer.refresh()

    def _on_step(self, event=None) -> None:
        if self.session is not None and self.preview_check.isChecked():
            self.update_preview()

    def _contour_guard(self, event=None) -> None:
        """Outlines in 2D, filled labels in 3D (napari draws contours in 2D only)."""
        in2d = self.viewer.dims.ndisplay == 2
        for layer in self.viewer.layers:
            c2d = self._contours.get(_uid(layer))
            if c2d is not None:
                want = c2d if in2d else 0
                if layer.contour != want:
                    layer.contour = want

    def _on_ndisplay(self, event=None) -> None:
        """3D: filled labels, no slice preview, camera reset; back in 2D outlines and preview return."""
        self._contour_guard()
        if self.viewer.dims.ndisplay != 2:
            QTimer.singleShot(0, self.viewer.reset_view)
        self.update_preview()

    # ------------------------------------------------------------------ seeds
    def seeds(self) -> np.ndarray:
        """The seed clicks as (n, 3) fractional voxel indices of the image (as on the layer)."""
        layer = self.seeds_layer()
        if layer is None or len(layer.data) == 0:
            return np.empty((0, 3))
        return np.asarray([self._image.world_to_data(layer.data_to_world(p)) for p in np.asarray(layer.data)], float)

    def _show_seeds(self) -> None:
        """The seeds layer as the session holds them, numbered 1, 2, ... as the user counts."""
        layer = self.seeds_layer(create=bool(self.session and self.session.seeds))
        if layer is None or self.session is None:
            return
        pts = np.asarray(self.session.seeds, float).reshape(-1, 3)
        world = np.asarray([self._image.data_to_world(p) for p in pts]).reshape(-1, 3)
        data = np.asarray([layer.world_to_data(w) for w in world]).reshape(-1, 3)
        self._writing = True
        try:
            with layer.events.data.blocker():
                if len(data) != len(layer.data) or not np.allclose(data, layer.data):
                    layer.data = data
                layer.features = {"n": np.arange(1, len(data) + 1)}
                layer.refresh()
        finally:
            self._writing = False

    def _on_seeds(self, event=None) -> None:
        if self._writing or self.session is None:
            return
        action = str(getattr(event, "action", "added"))
        if not action.endswith(("added", "removed", "changed")):
            return
        t0 = time.perf_counter()
        pts = self.seeds()
        s = self.session
        old = np.asarray(s.seeds, float).reshape(-1, 3)
        try:
            self._sync()
        except BmevizError as exc:
            self._show_seeds()
            return self._error(str(exc))
        grow = self.auto_grow.isChecked() and s.has_reference
        try:
            if len(pts) == len(old) + 1 and np.allclose(pts[:-1], old):
                s.add_seed(pts[-1], grow=grow)
            else:
                s.set_seeds(pts, grow=grow)
        except BmevizError as exc:
            self._show_seeds()  # the refused click disappears at once
            return self._error(str(exc))
        self._after_change(t0)
        if not s.has_reference and s.seeds:
            self.status_label.setText(f"Seed {len(s.seeds)} added. Set the reference (normal marrow) to grow.")

    def remove_seed(self, index: int | None = None) -> None:
        """Remove seed ``index`` (0-based; None: the last) and outline again."""
        if self.session is None or not self.session.seeds:
            return self._error("No seed to remove.")
        t0 = time.perf_counter()
        try:
            self._sync()
            self.session.remove_seed(index, grow=self.session.has_reference)
        except BmevizError as exc:
            return self._error(str(exc))
        self._after_change(t0)

    def remove_selected_seeds(self) -> None:
        layer = self.seeds_layer()
        chosen = sorted(getattr(layer, "selected_data", set()) or set()) if layer is not None else []
        if not chosen:
            return self._error("No seed selected: select seeds in the 'BME seeds' layer (select mode) first.")
        keep = [q for i, q in enumerate(self.session.seeds) if i not in set(chosen)]
        t0 = time.perf_counter()
        try:
            self._sync()
            self.session.set_seeds(keep, grow=self.session.has_reference)
        except BmevizError as exc:
            return self._error(str(exc))
        self._after_change(t0)

    # ------------------------------------------------------------------ segmentation
    def segment_kwargs(self, *, seeds: bool = True) -> dict:
        """The keyword arguments :func:`bmeviz.segment` gets (for scripts and tests)."""
        s = self._sync()
        return s.segment_kwargs(seeds=None if seeds else ())

    def grow(self) -> None:
        """Outline the lesions again from the seeds."""
        t0 = time.perf_counter()
        try:
            self._sync().grow()
        except BmevizError as exc:
            return self._error(str(exc))
        self._after_change(t0)

    def find_all(self) -> None:
        """Every above-threshold lesion in the region (no seeds), in a worker."""
        try:
            kwargs = self.segment_kwargs(seeds=False)
        except BmevizError as exc:
            return self._error(str(exc))
        self._run(_find_all_job, (self._volume, kwargs), on_done=self._found_all,
                  what="finding all lesions in the region", tag=self.session)

    def _found_all(self, out, session) -> None:
        if session is not self.session:
            return
        res, seconds = out
        session.apply_result(res, what="found all in region")
        self.last_timing["segment_s"] = seconds
        self._after_change(None)

    def undo(self) -> None:
        if self.session is not None and self.session.undo():
            self._after_change(None)
            self.status_label.setText("Undone. " + self.status_label.text())

    def redo(self) -> None:
        if self.session is not None and self.session.redo():
            self._after_change(None)

    def _after_change(self, t0: float | None) -> None:
        """Show what the session holds now: the changed box of the labels, seeds, table, totals."""
        s = self.session
        t1 = time.perf_counter()
        self._show_labels(s.last_box)
        if t0 is not None:
            self.last_timing["click_to_labels_s"] = time.perf_counter() - t0
            self.last_timing["layer_update_s"] = time.perf_counter() - t1
        self._show_seeds()
        self._show_result()
        for m in s.warnings:  # what the core warned about in this step (seeds numbered from 1)
            self._warn(m)
        s.warnings = ()
        t2 = time.perf_counter()
        try:
            s.autosave()
        except OSError as exc:
            self._warn(f"Autosave failed ({exc}); save the session by hand.")
        self.last_timing["autosave_s"] = time.perf_counter() - t2

    def _show_labels(self, box) -> None:
        """Write the session's labels into the BME layer: only the changed box, then one refresh."""
        from napari.utils.colormaps import DirectLabelColormap

        from ..plot import lesion_colors

        s = self.session
        layer = self.labels_layer
        if layer is None:
            if not s.labels.any():
                return
            layer = self._helper(_ROLE_RESULT, create=True)
            box = tuple(slice(0, n) for n in s.labels.shape)
        if box is None:
            return
        n = int(s.labels[box].max()) if s.labels[box].size else 0
        record = layer.metadata[KEY]
        if n > record.get("n_colors", 0):  # one colour per lesion id, as in overlay.png and the table
            colors = lesion_colors(max(n, 10))
            cmap = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
            cmap.update({i: (*colors[i - 1], 1.0) for i in range(1, len(colors) + 1)})
            layer.colormap = DirectLabelColormap(color_dict=cmap)
            record["n_colors"] = len(colors)
        self._writing = True
        try:
            layer.data[box] = s.labels[box]
            self._refresh(layer)
        finally:
            self._writing = False

    # ------------------------------------------------------------------ hand edits
    def _on_brush(self, event=None) -> None:
        if not self._writing:
            self._edit_timer.start()

    def _take_brush_edit(self) -> None:
        layer = self.labels_layer
        if layer is None or self.session is None:
            return
        if self.session.set_labels(np.asarray(layer.data)):
            self.session.last_box = None  # the layer already shows it
            self._after_change(None)

    def _selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table_widget.selectionModel().selectedRows()})
        t = self.session.table if self.session is not None else None
        return [] if t is None else [int(t.iloc[r]["lesion_id"]) for r in rows if r < len(t)]

    def _edit(self, fn, need: int) -> None:
        ids = self._selected_ids()
        if len(ids) < need:
            return self._error("Select " + ("a lesion" if need == 1 else "two or more lesions") + " in the table first.")
        try:
            fn(ids)
        except BmevizError as exc:
            return self._error(str(exc))
        self._after_change(None)

    def delete_selected(self) -> None:
        self._edit(lambda ids: [self.session.delete_lesion(i) for i in ids], 1)

    def merge_selected(self) -> None:
        self._edit(self.session.merge_lesions, 2)

    def split_selected(self) -> None:
        self._edit(lambda ids: self.session.split_lesion(ids[0]), 1)

    # ------------------------------------------------------------------ table
    @property
    def table(self):
        return None if self.session is None else self.session.table

    @property
    def result(self):
        """The last Result with the labels as shown (hand edits included)."""
        return None if self.session is None else self.session.current_result()

    def _current_result(self):
        return self.result

    def _show_result(self) -> None:
        """Table, total and status from the session (one source: they always agree)."""
        from ..plot import lesion_colors

        s = self.session
        table = None if s is None else s.table
        tw = self.table_widget
        tw.blockSignals(True)
        tw.setRowCount(0)
        self._update_buttons()
        if table is None or len(table) == 0:
            tw.blockSignals(False)
            self.total_label.setText("total: no lesion" if table is not None else "total: –")
            if s is None or table is None:
                self.status_label.setText("" if s is None else self.status_label.text())
            return
        colors = lesion_colors(int(table["lesion_id"].max()))
        tw.setRowCount(len(table))
        for r, row in enumerate(table.itertuples(index=False)):
            lid = int(row.lesion_id)
            ratio = row.ratio_to_reference
            cells = [str(lid), f"{row.volume_ml:.3f}", "–" if not np.isfinite(ratio) else f"{ratio:.2f}",
                     f"{int(row.first_slice)}–{int(row.last_slice)}"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if c == 0:
                    item.setBackground(QColor.fromRgbF(*[float(v) for v in colors[lid - 1][:3]]))
                    item.setForeground(QColor("black"))
                tw.setItem(r, c, item)
        tw.blockSignals(False)
        tot = s.totals
        frac = tot.get("bme_fraction_of_region")
        self.total_label.setText(
            f"total: {tot['n_lesions']} lesion(s), <b>{tot['total_volume_ml']:.3f} mL</b>"
            + (f", {100 * frac:.2f}% of the region" if frac is not None else "")
            + (" (labels edited by hand)" if s.edited else ""))
        thr = s.result.threshold.value if s.result is not None else None
        self.status_label.setText(f"{s.last_action[:1].upper()}{s.last_action[1:]}: {tot['n_lesions']} lesion(s), "
                                  f"{tot['total_volume_ml']:.3f} mL (threshold {_fmt(thr)})")

    def _update_buttons(self) -> None:
        s = self.session
        self.undo_button.setEnabled(bool(s and s.can_undo))
        self.redo_button.setEnabled(bool(s and s.can_redo))
        has = bool(s and s.table is not None and len(s.table))
        for b in (self.delete_button, self.merge_button, self.split_button):
            b.setEnabled(has)
        self.remove_last_button.setEnabled(bool(s and s.seeds))
        self.remove_selected_button.setEnabled(bool(s and s.seeds))
        self.export_button.setEnabled(bool(s and s.result is not None) and not self.busy)

    def _on_row_selected(self) -> None:
        ids = self._selected_ids()
        if len(ids) == 1:
            self.jump_to(ids[0])

    def jump_to(self, lesion_id: int) -> None:
        """Show lesion ``lesion_id``: its centroid slice, centred, the label selected."""
        t = self.table
        if t is None or self._image is None:
            return
        row = t[t["lesion_id"] == lesion_id]
        if row.empty:
            return
        r = row.iloc[0]
        centroid = np.array([r["centroid_slice"], r["centroid_row"], r["centroid_col"]], float)
        world = np.asarray(self._image.data_to_world(np.rint(centroid)), float)
        nd = self.viewer.dims.ndim
        point = list(self.viewer.dims.point)
        point[nd - 3:] = world
        self.viewer.dims.point = point
        self._camera().center = tuple(point[a] for a in self.viewer.dims.displayed)
        if self.labels_layer is not None:
            self.labels_layer.selected_label = int(lesion_id)

    # ------------------------------------------------------------------ sessions and export
    def save_session(self, path: str | os.PathLike | None = None) -> Path | None:
        """Save the session (seeds, reference, region, options, labels) to a small JSON file."""
        if self.session is None:
            return self._error("Nothing to save: open a scan first.")
        if path is None:
            path = QFileDialog.getSaveFileName(self, "Save the session", f"session{SESSION_SUFFIX}",
                                               f"bmeviz sessions (*{SESSION_SUFFIX})")[0]
            if not path:
                return None
        self._sync()
        out = self.session.save(path)
        self._info(f"Session saved: {Path(out).name}")
        return out

    def load_session(self, path: str | os.PathLike | None = None) -> None:
        """Reload a session onto the current scan (the same grid): labels exactly as saved."""
        if self._image is None:
            return self._error("Open the scan the session belongs to first, then load the session.")
        if path is None:
            path = QFileDialog.getOpenFileName(self, "Load a session", "", f"bmeviz sessions (*{SESSION_SUFFIX})")[0]
            if not path:
                return
        try:
            s = Session.load(path, volume=self._volume)
        except BmevizError as exc:
            return self._error(str(exc))
        old = self.session
        s.autosave_path, s.autosave_now = old.autosave_path, False
        s.source, s.series = old.source or s.source, old.series or s.series
        self.session = self._sessions[str(self._image.unique_id)] = s
        self._restore_controls(s)
        s.last_box = tuple(slice(0, n) for n in s.labels.shape)
        self._after_change(None)
        self._info(f"Session loaded: {len(s.seeds)} seed(s), {s.totals['n_lesions'] if s.totals else 0} lesion(s)")

    def _restore_controls(self, s: Session) -> None:
        """Controls and mask layers from a loaded session (masks as Labels layers if not open)."""
        from ._layers import labels_kwargs, mask_style

        o = s.options
        self.rule_combo.setCurrentText(str(o.get("rule")))
        self.auto_k.setChecked(o.get("k") is None)
        if o.get("k") is not None:
            self.k_spin.setValue(float(o["k"]))
        self.edge_combo.setCurrentText(str(o.get("edge")))
        self.min_volume.setValue(-1.0 if o.get("min_volume_mm3") is None else float(o["min_volume_mm3"]))
        self.min_slices.setValue(0 if o.get("min_slices") is None else int(o["min_slices"]))
        self.radius_spin.setValue(float(o.get("reference_radius_mm") or 8.0))
        for mask, name, combo in ((s.region, s.region_name, self.region_combo),
                                  (s.reference_mask, s.reference_name, self.ref_combo)):
            if mask is None:
                continue
            layer = next((ly for ly in self._mask_layers(shapes=False) if ly.name == name
                          and np.array_equal(np.asarray(ly.data) > 0, mask)), None)
            if layer is None:
                nm = name or "mask"
                layer = self.viewer.add_labels(mask.astype(np.uint8), **labels_kwargs(self._volume, name=nm),
                                               **mask_style(nm))
            self._refresh_layer_choices()
            combo.setCurrentIndex(max(0, combo.findText(layer.name)))
        if s.reference_point is not None:
            self.ref_combo.setCurrentIndex(0)
            pts = self.reference_layer(create=True)
            pts.data = [list(self._image.world_to_data(self._image.data_to_world(s.reference_point)))]
        self.update_threshold()

    def export(self, folder: str | Path | None = None) -> None:
        """Write what ``bmeviz segment`` writes (:meth:`bmeviz.Result.save`), report.html, a DICOM SEG
        for DICOM scans and the session file; hand edits included."""
        res = self.result
        if res is None:
            return self._error("Nothing to export yet: set a reference, click the lesions (or Find all).")
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Export BME results to a folder")
            if not folder:
                return
        record = self.session.to_dict()
        record["image"]["source"] = None  # folder names carry patient names: the export does not
        meta = self._image.metadata.get(KEY, {})
        source = {"source": (meta.get("volume_metadata") or {}).get("source"), "path": meta.get("path"),
                  "series_key": meta.get("series_key")}
        study = self.study_edit.text().strip() or None
        self._run(_export_job, (res, str(folder), study, record, source), on_done=self._exported, what="exporting")

    def _exported(self, paths: dict) -> None:
        self.exported = paths
        folder = Path(next(iter(paths.values()))).parent
        self._info(f"Exported {', '.join(Path(p).name for p in paths.values())} to {folder}")

    # ------------------------------------------------------------------ workers
    @property
    def busy(self) -> bool:
        """True while a worker (find all, loading, export) runs or is queued."""
        return self._worker is not None or bool(self._pending)

    def _run(self, fn, args: tuple, *, on_done, what: str, tag: Any = None) -> None:
        if self._worker is not None:
            self._pending = [job for job in self._pending if job[0] is not fn] + [(fn, args, on_done, what, tag)]
            return
        from napari.qt.threading import create_worker

        worker = create_worker(fn, *args, _ignore_errors=True)
        self._on_done = (on_done, tag)
        worker.returned.connect(self._deliver)
        worker.errored.connect(self._on_error)
        worker.warned.connect(lambda w: self._warn(str(w[0] if w else "")))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        if not self.progress.isVisible():
            self._progress_timer.start()
        self._busy_text = what[:1].upper() + what[1:] + "…"
        QTimer.singleShot(0, worker.start)

    def _deliver(self, out) -> None:
        on_done, tag = self._on_done
        on_done(out) if tag is None else on_done(out, tag)

    def _show_busy(self) -> None:
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
            for b in (self.grow_button, self.find_button):
                b.setEnabled(True)
        self._update_buttons()
        if self.status_label.text().endswith("…"):
            self.status_label.setText("")

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, BmevizError):
            self._error(str(exc))
        else:
            log.error("bmeviz widget: unexpected error", exc_info=(type(exc), exc, exc.__traceback__))
            self._error(f"Unexpected {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ notifications
    @staticmethod
    def _reason_first(message: str) -> str:
        """Messages start with the reason: a leading path (``/long/path/x: reason``) goes to the end."""
        head, sep, rest = message.partition(": ")
        if sep and ("/" in head or "\\" in head) and rest:
            return f"{rest[:1].upper()}{rest[1:]} ({Path(head.split(' (')[0]).name})"
        return message[:1].upper() + message[1:]

    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        message = self._reason_first(message)
        self.status_label.setText(message)
        show_error(message)

    def _warn(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        show_warning(self._reason_first(message))

    def _info(self, message: str) -> None:
        from napari.utils.notifications import show_info

        self.status_label.setText(message)
        show_info(message)
