"""The file half of the "BME segmentation" widget: session save/load, export (what
``bmeviz segment`` writes, the report, a DICOM SEG for DICOM scans), worker threads and
notifications that start with the reason."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog

from ..errors import BmevizError
from ..session import SESSION_SUFFIX, Session
from ._layers import KEY

log = logging.getLogger("bmeviz.napari._widget")


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

    vol = result.volume
    seg = False
    if source.get("source") == "dicom" and source.get("path"):
        from ..io import load

        full = load(source["path"], series=source.get("series_key"))  # the files' headers, for the SEG
        if full.shape == vol.shape and np.allclose(full.affine, vol.affine, atol=1e-3):
            result = dataclasses.replace(result, volume=full)
            seg = True
    from ..export import write_outputs  # the one writer of bmeviz segment / batch

    paths = write_outputs(result, folder, seg=seg, report=True, title=study or None).paths
    paths["session"] = atomic_write_text(Path(folder) / f"session{SESSION_SUFFIX}", json.dumps(session_record) + "\n")
    return paths


class FilesMixin:
    """Methods of :class:`~bmeviz.napari._widget.BMEWidget` that read and write (see the module)."""

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
        self.auto_k.setChecked(o.get("k") == "adaptive")
        if o.get("k") not in (None, "adaptive"):
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
        if s.reference_auto:
            self.ref_combo.setCurrentIndex(max(0, self.ref_combo.findData("auto")))
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
