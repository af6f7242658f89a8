"""napari: both visits of a follow-up, slices linked, lesions coloured by status, the change table.

Both visits are shown on the baseline grid (the follow-up as registered onto it), so one
slice slider moves both: side by side (napari's grid, one cell per visit) or overlaid (the
follow-up over the baseline with an opacity slider). Lesion outlines take their track's
status colour (``bmeviz.followup.figures.STATUS_COLORS``). The dock widget picks the four
layers (baseline image and lesions, follow-up image and lesions), runs
:func:`bmeviz.followup.compare`, and lists the tracks; clicking a row goes to its slice.

:func:`followup_layers` is the Qt-free part: the layer data and keyword arguments.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["followup_layers", "show_followup", "FollowupWidget"]  # noqa: F822 - FollowupWidget: module __getattr__ (Qt on demand)

_TABLE_COLUMNS = ("track", "status", "baseline_id", "followup_id", "baseline_ml", "followup_ml", "change_ml",
                  "change_pct")


def _status_colors(result) -> tuple[dict, dict]:
    from ..followup.figures import STATUS_COLORS, _status_of

    b, f = _status_of(result)
    return ({i: STATUS_COLORS[s] for i, s in b.items()}, {i: STATUS_COLORS[s] for i, s in f.items()})


def followup_layers(result) -> list[tuple[Any, dict, str]]:
    """``(data, kwargs, layer_type)`` for the baseline, its lesions, the registered follow-up and its
    lesions, all on the baseline grid (napari's layer-data tuples; no napari import)."""
    from ._layers import image_kwargs, labels_kwargs

    b = result.baseline.volume
    fu = b.with_array(result.followup_on_baseline)
    b_col, f_col = _status_colors(result)
    out = []
    kw = image_kwargs(b, name="baseline")
    out.append((b.array, kw, "image"))
    kw = labels_kwargs(b, name="baseline lesions")
    kw["metadata"]["bmeviz_status_colors"] = b_col
    out.append((result.baseline.labels, kw, "labels"))
    kw = image_kwargs(fu, name="follow-up (registered)")
    out.append((fu.array, kw, "image"))
    kw = labels_kwargs(b, name="follow-up lesions (registered)")
    kw["metadata"]["bmeviz_status_colors"] = f_col
    out.append((result.followup_labels_on_baseline, kw, "labels"))
    return out


def _colormap(colors: dict):
    from napari.utils.colormaps import DirectLabelColormap

    cmap = {None: "transparent", 0: "transparent"}
    cmap.update({int(i): c for i, c in colors.items()})
    return DirectLabelColormap(color_dict=cmap)


def show_followup(viewer, result, *, mode: str = "side-by-side") -> list:
    """Add the follow-up layers to ``viewer``; ``mode`` ``'side-by-side'`` (grid) or ``'overlay'``."""
    layers = []
    for data, kw, kind in followup_layers(result):
        kw = dict(kw)
        colors = kw["metadata"].pop("bmeviz_status_colors", None)
        if kind == "image":
            layers.append(viewer.add_image(data, **kw))
        else:
            layer = viewer.add_labels(np.asarray(data), **kw)
            layer.colormap = _colormap(colors or {})
            layer.contour = 1
            layers.append(layer)
    set_mode(viewer, layers, mode)
    return layers


def set_mode(viewer, layers, mode: str, *, opacity: float = 0.5) -> None:
    """Side by side (a 2-cell grid: baseline | follow-up) or overlaid (follow-up at ``opacity``)."""
    if mode not in ("side-by-side", "overlay"):
        from ..errors import ParameterError

        raise ParameterError(f"mode must be 'side-by-side' or 'overlay'; got {mode!r}")
    fu_image = layers[2]
    if mode == "side-by-side":
        viewer.grid.enabled = True
        viewer.grid.stride = 2  # each cell holds an image and its lesions
        viewer.grid.shape = (1, 2)
        fu_image.opacity = 1.0
        fu_image.blending = "translucent"
    else:
        viewer.grid.enabled = False
        fu_image.opacity = float(opacity)
        fu_image.blending = "translucent"


@functools.lru_cache(maxsize=1)
def _widget_class():
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QSlider,
                                QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

    class FollowupWidget(QWidget):
        """Pick the two visits (image + lesions each), compare, browse the tracks."""

        def __init__(self, napari_viewer, parent=None):
            super().__init__(parent)
            self.viewer = napari_viewer
            self.result = None
            self.layers: list = []
            form = QFormLayout()
            self.combos = {}
            for key, label in (("baseline", "baseline image"), ("baseline_mask", "baseline lesions"),
                               ("followup", "follow-up image"), ("followup_mask", "follow-up lesions")):
                box = QComboBox()
                self.combos[key] = box
                form.addRow(label, box)
            self.compare_button = QPushButton("Register and compare")
            self.compare_button.clicked.connect(self.run)
            self.mode = QComboBox()
            self.mode.addItems(["side-by-side", "overlay"])
            self.mode.currentTextChanged.connect(self._mode_changed)
            self.opacity = QSlider(Qt.Orientation.Horizontal)
            self.opacity.setRange(0, 100)
            self.opacity.setValue(50)
            self.opacity.valueChanged.connect(self._opacity_changed)
            self.status = QLabel("")
            self.status.setWordWrap(True)
            self.table = QTableWidget(0, len(_TABLE_COLUMNS))
            self.table.setHorizontalHeaderLabels(list(_TABLE_COLUMNS))
            self.table.cellClicked.connect(self.go_to_track)
            lay = QVBoxLayout(self)
            lay.addLayout(form)
            lay.addWidget(self.compare_button)
            row = QHBoxLayout()
            row.addWidget(self.mode)
            row.addWidget(QLabel("follow-up opacity"))
            row.addWidget(self.opacity)
            lay.addLayout(row)
            lay.addWidget(self.status)
            lay.addWidget(self.table)
            self.viewer.layers.events.inserted.connect(self.refresh_choices)
            self.viewer.layers.events.removed.connect(self.refresh_choices)
            self.refresh_choices()

        def refresh_choices(self, *_):
            import napari

            for key, box in self.combos.items():
                kind = napari.layers.Labels if key.endswith("mask") else napari.layers.Image
                current = box.currentText()
                box.clear()
                names = [ly.name for ly in self.viewer.layers if isinstance(ly, kind) and ly not in self.layers]
                box.addItems(names)
                if current in names:
                    box.setCurrentText(current)

        def _volume(self, key):
            from ._layers import layer_volume

            name = self.combos[key].currentText()
            if not name:
                from ..errors import ParameterError

                raise ParameterError(f"choose the {key.replace('_mask', ' lesions')} layer")
            ly = self.viewer.layers[name]
            return layer_volume(ly.data, ly.metadata, ly.scale, ly.translate)

        def run(self, *_):
            from ..errors import BmevizError
            from ..followup.change import compare

            try:
                b, f = self._volume("baseline"), self._volume("followup")
                bm, fm = self._volume("baseline_mask"), self._volume("followup_mask")
                self.set_result(compare(b, f, baseline_mask=bm.array, followup_mask=fm.array))
            except BmevizError as exc:
                self.status.setText(f"error: {exc}")

        def set_result(self, result):
            for ly in self.layers:
                if ly in self.viewer.layers:
                    self.viewer.layers.remove(ly)
            self.result = result
            self.layers = show_followup(self.viewer, result, mode=self.mode.currentText())
            t = result.totals
            q = result.registration.quality
            self.status.setText(
                f"baseline {t['baseline_ml']:.3f} mL → follow-up {t['followup_ml']:.3f} mL "
                f"({t['change_ml']:+.3f} mL); registration NCC {q['ncc_before']:.2f} → {q['ncc_after']:.2f}")
            self.table.setRowCount(len(result.table))
            for r, (_, row) in enumerate(result.table.iterrows()):
                for c, col in enumerate(_TABLE_COLUMNS):
                    v = row[col]
                    import pandas as pd

                    text = "" if pd.isna(v) else (f"{v:.3f}" if isinstance(v, float) else str(v))
                    self.table.setItem(r, c, QTableWidgetItem(text))

        def go_to_track(self, r, _c=0):
            """Show the slice of track row ``r`` (its centroid, on the baseline grid)."""
            if self.result is None:
                return
            row = self.result.table.iloc[int(r)]
            b = self.result.baseline.volume
            idx = b.ras_to_index([row.centroid_x_mm, row.centroid_y_mm, row.centroid_z_mm])
            world = self.layers[0].data_to_world(idx)
            self.viewer.dims.set_point(0, float(world[0]))

        def _mode_changed(self, mode):
            if self.layers:
                set_mode(self.viewer, self.layers, mode, opacity=self.opacity.value() / 100)

        def _opacity_changed(self, value):
            if self.layers and self.mode.currentText() == "overlay":
                self.layers[2].opacity = value / 100

    return FollowupWidget


def __getattr__(name):  # the widget class is built on first use: importing this module needs no Qt
    if name == "FollowupWidget":
        return _widget_class()
    raise AttributeError(name)
