"""The "BME scores" dock widget: SIJ quadrants from a drawn joint line, SPARCC / Berlin / MOAKS /
WORMS in a table, a reader's overrides (recorded), the output folder.

A thin view over :class:`bmeviz.scores.session.ScoreSession` (Qt-free, tested without Qt):

1. choose the image, the bone region and the lesions (Labels layers);
2. "Joint lines": a Shapes layer in path mode on the image's grid; on a few slices of each joint,
   draw the line between ilium and sacrum (interpolated between slices);
3. "Build quadrants": an "SIJ quadrants" Labels layer (values 1-8, docs/scores.md), optionally
   snapped onto the dark articular line of a T1 image;
4. "Score": the table (one row per unit); edit a points/grade cell to override it (recorded);
5. "Save...": scores.csv, scores.json, one PNG per scored slice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                            QLineEdit, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ..errors import BmevizError
from ._layers import labels_kwargs, layer_volume

__all__ = ["ScoresWidget"]

LINES_LAYER = "SIJ joint lines"
QUAD_LAYER = "SIJ quadrants"
FLUID_LAYER = "fluid reference"
_NONE = "(none)"
_COLUMNS = ("slice", "joint", "unit", "bme_share", "value", "reason")


class ScoresWidget(QWidget):
    """Dock widget: scores from BME outlines and a quadrant / subregion map."""

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = None
        self.saved: dict | None = None
        self._filling = False
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh)
        self.viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        root = QVBoxLayout(self)
        box = QGroupBox("Layers")
        form = QFormLayout(box)
        self.image_combo, self.region_combo, self.lesion_combo = QComboBox(), QComboBox(), QComboBox()
        self.snap_combo, self.anatomy_combo = QComboBox(), QComboBox()
        form.addRow("image", self.image_combo)
        form.addRow("bone region", self.region_combo)
        form.addRow("lesions", self.lesion_combo)
        form.addRow("snap lines to", self.snap_combo)
        form.addRow("anatomy", self.anatomy_combo)
        self.snap_combo.setToolTip("Optional: a T1 image on the same grid; each slice's line moves onto its dark "
                                   "articular line (within 4 mm)")
        self.anatomy_combo.setToolTip(f"The quadrant / subregion map to score in ('{QUAD_LAYER}' once built)")
        root.addWidget(box)
        box = QGroupBox("SIJ quadrants from the joint line")
        row = QHBoxLayout(box)
        self.lines_button = QPushButton("Joint lines")
        self.lines_button.setToolTip("Draw the ilium|sacrum line as a path on a few slices of each joint")
        self.build_button = QPushButton("Build quadrants")
        row.addWidget(self.lines_button)
        row.addWidget(self.build_button)
        root.addWidget(box)
        box = QGroupBox("Score")
        form = QFormLayout(box)
        self.scheme_combo = QComboBox()
        self.scheme_combo.addItems(["sparcc", "berlin", "moaks", "worms"])
        form.addRow("scheme", self.scheme_combo)
        self.slices_edit = QLineEdit()
        self.slices_edit.setPlaceholderText("auto (SPARCC: 6 slices)  or  FIRST-LAST")
        form.addRow("slices", self.slices_edit)
        row = QHBoxLayout()
        self.fluid_button = QPushButton("Fluid point")
        self.fluid_button.setToolTip("SPARCC 'intense': click CSF or a presacral vessel")
        self.fluid_radius = QDoubleSpinBox()
        self.fluid_radius.setRange(0.5, 20.0)
        self.fluid_radius.setValue(3.0)
        self.fluid_radius.setSuffix(" mm")
        row.addWidget(self.fluid_button)
        row.addWidget(self.fluid_radius)
        form.addRow(row)
        row = QHBoxLayout()
        self.score_button = QPushButton("Score")
        self.save_button = QPushButton("Save...")
        row.addWidget(self.score_button)
        row.addWidget(self.save_button)
        form.addRow(row)
        self.total_label = QLabel("")
        self.total_label.setWordWrap(True)
        form.addRow(self.total_label)
        root.addWidget(box)
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.setToolTip("Edit a 'value' cell to override that unit (recorded in scores.csv/json)")
        root.addWidget(self.table)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        root.addWidget(self.status)
        self.lines_button.clicked.connect(self.lines_layer)
        self.build_button.clicked.connect(self.build_quadrants)
        self.fluid_button.clicked.connect(self.fluid_layer)
        self.score_button.clicked.connect(self.score)
        self.save_button.clicked.connect(lambda: self.save())
        self.table.itemChanged.connect(self._edited)

    def _refresh(self, event: Any = None) -> None:
        images = [ly.name for ly in self.viewer.layers if ly._type_string == "image"]
        labels = [ly.name for ly in self.viewer.layers if ly._type_string == "labels"]
        for combo, names, none in ((self.image_combo, images, False), (self.snap_combo, images, True),
                                   (self.region_combo, labels, False), (self.lesion_combo, labels, False),
                                   (self.anatomy_combo, labels, False)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(([_NONE] if none else []) + names)
            if current in ([_NONE] + names):
                combo.setCurrentText(current)
            combo.blockSignals(False)
        if QUAD_LAYER in labels:
            self.anatomy_combo.setCurrentText(QUAD_LAYER)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        if error:
            from napari.utils.notifications import show_error

            show_error(text)

    # ------------------------------------------------------------------ model access
    def _layer(self, name: str):
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _volume(self):
        ly = self._layer(self.image_combo.currentText())
        if ly is None:
            raise BmevizError("open the fluid-sensitive image first (an Image layer)")
        return ly, layer_volume(ly.data, ly.metadata, ly.scale, ly.translate)

    def _session(self):
        from ..scores.session import ScoreSession

        ly, vol = self._volume()
        region_ly = self._layer(self.region_combo.currentText())
        region = None if region_ly is None else np.asarray(region_ly.data) > 0
        if self.session is None or self.session.volume.shape != vol.shape or self.session.volume.array is not vol.array:
            self.session = ScoreSession(vol, region=region)
        else:
            self.session.region = region
        return ly, self.session

    def lines_layer(self):
        """The joint-line Shapes layer (made on the image's grid, selected in path mode)."""
        if LINES_LAYER in self.viewer.layers:
            layer = self.viewer.layers[LINES_LAYER]
        else:
            ly, _ = self._volume()
            layer = self.viewer.add_shapes(name=LINES_LAYER, ndim=3, scale=ly.scale, translate=ly.translate,
                                           edge_color="yellow", edge_width=1.0, shape_type="path")
        self.viewer.layers.selection.active = layer
        layer.mode = "add_path"
        self._say("Draw the ilium | sacrum line on a few slices of each joint (double-click ends a line).")
        return layer

    def fluid_layer(self):
        """The Points layer for the fluid reference (one click in CSF or a presacral vessel)."""
        if FLUID_LAYER in self.viewer.layers:
            layer = self.viewer.layers[FLUID_LAYER]
        else:
            ly, _ = self._volume()
            layer = self.viewer.add_points(name=FLUID_LAYER, ndim=3, scale=ly.scale, translate=ly.translate,
                                           face_color="cyan", size=4)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        return layer

    def build_quadrants(self):
        """Quadrants from the drawn lines -> the 'SIJ quadrants' Labels layer."""
        try:
            ly, session = self._session()
            if LINES_LAYER not in self.viewer.layers:
                raise BmevizError("draw the joint lines first ('Joint lines')")
            shapes = self.viewer.layers[LINES_LAYER]
            paths = [np.asarray(d) for d, t in zip(shapes.data, shapes.shape_type) if t in ("path", "line")]
            snap_ly = self._layer(self.snap_combo.currentText())
            snap = None if snap_ly is None else np.asarray(snap_ly.data)
            an = session.build_quadrants(paths, snap_to=snap)
        except BmevizError as e:
            self._say(str(e), error=True)
            return None
        if QUAD_LAYER in self.viewer.layers:
            self.viewer.layers[QUAD_LAYER].data = an.labels
        else:
            self.viewer.add_labels(an.labels, **labels_kwargs(ly.metadata, name=QUAD_LAYER), opacity=0.35)
        self.anatomy_combo.setCurrentText(QUAD_LAYER)
        drawn = an.source["drawn_slices"]
        self._say(f"Quadrants on slices {min(an.slices())}-{max(an.slices())} (drawn: right {drawn['right']}, "
                  f"left {drawn['left']}).")
        return an

    def score(self):
        """Score the lesions in the anatomy with the chosen scheme; fill the table."""
        try:
            ly, session = self._session()
            anat_ly = self._layer(self.anatomy_combo.currentText())
            lesion_ly = self._layer(self.lesion_combo.currentText())
            if anat_ly is None or lesion_ly is None:
                raise BmevizError("choose the lesions and the anatomy (e.g. 'SIJ quadrants') layers")
            built = session.anatomy is not None and anat_ly.name == QUAD_LAYER and \
                np.array_equal(np.asarray(anat_ly.data), session.anatomy.labels)
            if not built:
                session.set_anatomy(np.asarray(anat_ly.data))
            scheme = self.scheme_combo.currentText()
            opts: dict = {"slices": self.slices_edit.text().strip() or None}
            if scheme == "sparcc":
                fl = self._layer(FLUID_LAYER)
                if fl is not None and len(fl.data):
                    opts.update(fluid_point_mm=session.volume.index_to_ras(np.asarray(fl.data[-1], float)),
                                fluid_radius_mm=float(self.fluid_radius.value()))
            lesions = np.asarray(lesion_ly.data) > 0
            res = session.score(lesions, scheme=scheme, **opts)
        except BmevizError as e:
            self._say(str(e), error=True)
            return None
        self._show(res)
        return res

    def _show(self, res) -> None:
        col = res.value_column
        self._filling = True
        df = res.rows
        self.table.setRowCount(len(df))
        for i, row in enumerate(df.itertuples(index=False)):
            r = row._asdict()
            cells = (r.get("slice", ""), r.get("joint", ""), r["unit"], f"{r['bme_share']:.3f}", r[col], r["reason"])
            for j, v in enumerate(cells):
                item = QTableWidgetItem(str(v))
                if _COLUMNS[j] != "value":
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        self._filling = False
        over = len(res.params.get("overrides") or [])
        self.total_label.setText(f"{res.scheme.upper()} total {res.total} (max {res.params['maximum']}); slices "
                                 f"{res.slices[0]}-{res.slices[-1]}" + (f"; {over} overridden (automatic "
                                                                        f"{res.params['auto_total']})" if over else ""))

    def _edited(self, item) -> None:
        if self._filling or self.session is None or self.session.result is None:
            return
        if _COLUMNS[item.column()] != "value":
            return
        row = self.session.result.rows.iloc[item.row()]
        key = ((int(row["slice"]), row["joint"], row["unit"]) if self.session.result.scheme == "sparcc"
               else row["unit"])
        try:
            res = self.session.override(key, int(item.text()))
        except (BmevizError, ValueError) as e:
            self._say(f"override refused: {e}", error=True)
            self._show(self.session.result)
            return
        self._show(res)

    def set_value(self, row: int, value: int) -> None:
        """Override the unit in table row ``row`` (what editing the cell does)."""
        self.table.item(row, _COLUMNS.index("value")).setText(str(value))

    def save(self, folder: str | None = None):
        """Write the output folder (asks for it when not given)."""
        if self.session is None or self.session.result is None:
            self._say("score first", error=True)
            return None
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Output folder for the scores")
            if not folder:
                return None
        try:
            self.saved = self.session.save(folder)
        except (BmevizError, OSError) as e:
            self._say(str(e), error=True)
            return None
        self._say(f"Saved {self.saved['csv']} and {len(self.saved['figures'])} figure(s).")
        return self.saved
