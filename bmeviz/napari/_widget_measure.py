"""The measuring half of the "BME segmentation" widget: reference and threshold, the live
preview, seeds (checked by the session at click time), growing, the labels layer (only the
changed box is rewritten), brush edits, lesion edits by id and the lesion table."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QTableWidgetItem

from ..errors import BmevizError, ParameterError
from ..session import Session
from . import _panel
from ._layers import KEY
from ._roles import _ROLE_PREVIEW, _ROLE_REF_USED, _ROLE_RESULT, _fmt, _uid
from ._widget_files import _find_all_job


class MeasureMixin:
    """Methods of :class:`~bmeviz.napari._widget.BMEWidget` that measure (see the module)."""

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
        if rule == "otsu":
            return rule, None
        if rule == "q3-iqr" and self.auto_k.isChecked():
            return rule, "adaptive"
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
        if isinstance(layer, str):  # "auto": found in the region, no click
            s.set_reference(auto=True)
        elif layer is not None:
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
        robust = (s.reference_info or {}).get("robust") or {}
        found = str(robust.get("method", "")).startswith("automatic reference") or robust.get("method") == "auto"
        if s.reference_point is not None and found:
            where = (f"normal marrow within {robust.get('search_mm', 0):g} mm of the point at voxel "
                     f"{list(s.reference_point)} (the {robust['method']})")
        elif s.reference_auto:
            where = "normal marrow found in the region (automatic reference; place a point to choose instead)"
        self._show_reference_used(s.reference_used if found else None)
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

    def _show_reference_used(self, mask) -> None:
        """The marrow the threshold was computed on, when bmeviz found it (automatic, or what a
        point stands for): shown so the user can accept it or place the point elsewhere."""
        layer = self._helper(_ROLE_REF_USED, create=mask is not None)
        if layer is None:
            return
        if mask is None:
            layer.visible = False
            return
        layer.data = np.asarray(mask, np.uint8)
        layer.visible = True

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
                numbers = np.arange(1, len(data) + 1)
                if not np.array_equal(np.asarray(layer.features.get("n", [])), numbers):
                    layer.features = {"n": numbers}
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
        shown = self._warned.setdefault(id(s), set())
        for m in s.warnings:  # what the core warned about in this step (seeds numbered from 1), once
            if m not in shown:
                shown.add(m)
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
