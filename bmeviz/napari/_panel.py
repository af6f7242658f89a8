"""The controls of the "BME segmentation" widget: layout, labels, units and tooltips (no logic).

Everything sits in a scroll area, so the panel works in a 1366×768 window; each control
has a label, its unit and a tooltip in a radiologist's words. The defaults come from
:func:`bmeviz.session.default_options` (= ``bmeviz.pipeline.DEFAULTS``), so the widget and
``bmeviz segment`` give the same mL for the same clicks.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from ..options import Q3_IQR_K, SegmentOptions
from ._layers import COLORS

#: Choices and help texts come from the one options model (bmeviz.options), as the CLI's do.
_OPT = {o.name: o for o in SegmentOptions.fields()}
RULES = tuple(_OPT["rule"].choices)
EDGES = tuple(_OPT["edge"].choices)
#: k a rule starts from when the user turns adaptive k off (the core's own defaults).
RULE_K = {"q3-iqr": Q3_IQR_K, "mean-sd": 2.0, "percentile": 99.0}
POINT = "point (click in normal marrow)"
AUTO = "automatic (found in the region)"
NONE = "(none: whole image)"


def _button(text: str, tip: str) -> QPushButton:
    b = QPushButton(text)
    b.setToolTip(tip)
    return b


def _legend() -> QLabel:
    sw = '<span style="background:{c};color:{c}">&nbsp;&nbsp;&nbsp;</span>&nbsp;{t}'
    items = [sw.format(c="#ff3333", t="lesions (outline, colour = id)"),
             sw.format(c=COLORS["region"], t="search region (thin outline)"),
             sw.format(c=COLORS["reference"], t="reference (fill)"),
             sw.format(c=COLORS["preview"], t="threshold preview (this slice)"),
             sw.format(c=COLORS["seeds"], t="seeds (numbered)")]
    label = QLabel("<br>".join(items))
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setToolTip("What the colours on the canvas mean")
    return label


def build(w) -> None:
    """Make the widget's controls as attributes of ``w`` (a QWidget)."""
    from ..session import default_options

    defaults = default_options()
    outer = QVBoxLayout(w)
    outer.setContentsMargins(0, 0, 0, 0)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    inner = QWidget()
    root = QVBoxLayout(inner)
    root.setContentsMargins(6, 6, 6, 6)
    root.setSpacing(6)
    scroll.setWidget(inner)
    outer.addWidget(scroll)
    w.scroll_area = scroll

    # ---- image
    box = QGroupBox("1. Image")
    form = QFormLayout(box)
    w.image_combo = QComboBox()
    w.image_combo.setToolTip("The fat-suppressed fluid-sensitive scan to measure (STIR, T2/PD FS, Dixon water)")
    form.addRow("scan", w.image_combo)
    w.series_combo = QComboBox()
    w.series_combo.setToolTip("Other series or echoes of the same DICOM folder (* = fluid-sensitive); "
                              "pick one to open it beside the first")
    w.series_label = QLabel("series / echo")
    form.addRow(w.series_label, w.series_combo)
    w.image_info = QLabel("")
    w.image_info.setWordWrap(True)
    form.addRow(w.image_info)
    row = QHBoxLayout()
    w.open_button = _button("Open scan…", "Open a DICOM folder with bmeviz (no reader question)")
    w.open_file_button = _button("Open file…", "Open a NIfTI, DICOM or DICOM SEG file (scan or mask) with bmeviz")
    row.addWidget(w.open_button)
    row.addWidget(w.open_file_button)
    form.addRow(row)
    root.addWidget(box)

    # ---- reference
    box = QGroupBox("2. Reference: normal marrow")
    form = QFormLayout(box)
    w.ref_combo = QComboBox()
    w.ref_combo.setToolTip("Normal marrow of this scan: a click (with a region: the normal marrow the automatic "
                           "reference finds near it), automatic (found in the region with no click), or a "
                           "Labels/Shapes layer you drew or opened (e.g. a reader's normal-marrow mask). The marrow "
                           "used is shown as the 'BME reference (used)' layer")
    form.addRow("from", w.ref_combo)
    row = QHBoxLayout()
    w.ref_button = _button("Place point", "Then click a patch of normal marrow (no oedema, cortex or fluid)")
    w.draw_button = _button("Draw", "Make a Labels layer and paint normal marrow in it")
    row.addWidget(w.ref_button)
    row.addWidget(w.draw_button)
    form.addRow(row)
    w.radius_spin = QDoubleSpinBox()
    w.radius_spin.setRange(1.0, 50.0)
    w.radius_spin.setSingleStep(1.0)
    w.radius_spin.setValue(float(defaults.get("reference_radius_mm") or 8.0))
    w.radius_spin.setSuffix(" mm")
    w.radius_spin.setToolTip("Radius of the ball of marrow taken around the clicked point")
    form.addRow("ball radius", w.radius_spin)
    w.stats_label = QLabel("No reference yet: click Place point, then normal marrow.")
    w.stats_label.setWordWrap(True)
    w.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    form.addRow(w.stats_label)
    root.addWidget(box)

    # ---- threshold
    box = QGroupBox("3. Threshold")
    form = QFormLayout(box)
    w.rule_combo = QComboBox()
    w.rule_combo.addItems(RULES)
    w.rule_combo.setCurrentText(str(defaults.get("rule") or "q3-iqr"))
    w.rule_combo.setToolTip(_OPT["rule"].help)
    form.addRow("rule", w.rule_combo)
    row = QHBoxLayout()
    w.k_spin = QDoubleSpinBox()
    w.k_spin.setRange(0.0, 100.0)
    w.k_spin.setDecimals(2)
    w.k_spin.setSingleStep(0.05)
    w.k_spin.setValue(float(defaults["k"]) if defaults.get("k") is not None else RULE_K["q3-iqr"])
    w.k_spin.setToolTip("How far above normal marrow a voxel must be (IQRs, SDs or a percentile, by rule)")
    w.auto_k = QCheckBox("adaptive")
    w.auto_k.setChecked(defaults.get("k") == "adaptive")
    w.auto_k.setToolTip("q3-iqr: the published adaptive k (Hepburn et al.): raise k from 1.5 in 0.05 steps until "
                        "the threshold is within IQR/2 of the reference's 99th percentile; off: k as set (default "
                        f"{Q3_IQR_K:g}, on the robust reference)")
    w.k_spin.setEnabled(not w.auto_k.isChecked())
    row.addWidget(w.k_spin)
    row.addWidget(w.auto_k)
    form.addRow("k", row)
    w.threshold_label = QLabel("threshold: –")
    w.threshold_label.setWordWrap(True)
    w.threshold_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    form.addRow(w.threshold_label)
    w.preview_check = QCheckBox("preview on this slice")
    w.preview_check.setChecked(True)
    w.preview_check.setToolTip("Orange: voxels at or above the threshold inside the region, on the slice shown")
    form.addRow(w.preview_check)
    root.addWidget(box)

    # ---- lesions
    box = QGroupBox("4. Lesions")
    form = QFormLayout(box)
    w.region_combo = QComboBox()
    w.region_combo.setToolTip("Where BME is searched (bone/marrow, e.g. a reader's disease-region mask); "
                              "fluid outside it is never counted; clicks outside it are refused")
    form.addRow("region", w.region_combo)
    row = QHBoxLayout()
    w.seed_button = _button("Add seeds", "Then click each lesion once; each click outlines its lesion")
    w.auto_grow = QCheckBox("grow on click")
    w.auto_grow.setChecked(True)
    w.auto_grow.setToolTip("Outline the lesions at each click (off: click all seeds, then press Grow)")
    row.addWidget(w.seed_button)
    row.addWidget(w.auto_grow)
    form.addRow(row)
    row = QHBoxLayout()
    w.remove_last_button = _button("Remove last", "Take the last seed back and outline again")
    w.remove_selected_button = _button("Remove selected", "Remove the seeds selected in the 'BME seeds' layer")
    row.addWidget(w.remove_last_button)
    row.addWidget(w.remove_selected_button)
    form.addRow(row)
    w.edge_combo = QComboBox()
    w.edge_combo.addItems(list(EDGES))
    w.edge_combo.setCurrentText(str(defaults.get("edge") or "threshold"))
    w.edge_combo.setToolTip(_OPT["edge"].help)
    form.addRow("lesion edge", w.edge_combo)
    # clean-up: 'auto' (the lowest value) leaves it to the core's defaults for the mode
    w.min_volume = QDoubleSpinBox()
    w.min_volume.setRange(-1.0, 100000.0)
    w.min_volume.setDecimals(1)
    w.min_volume.setSpecialValueText("auto")
    w.min_volume.setSuffix(" mm³")
    mv = defaults.get("min_volume_mm3")
    w.min_volume.setValue(-1.0 if mv is None else float(mv))
    w.min_volume.setToolTip("Drop lesions smaller than this (auto: keep what you clicked; "
                            "find all: 10 mm³)")
    form.addRow("smallest lesion", w.min_volume)
    w.min_slices = QSpinBox()
    w.min_slices.setRange(0, 50)
    w.min_slices.setSpecialValueText("auto")
    w.min_slices.setSuffix(" slices")
    ms = defaults.get("min_slices")
    w.min_slices.setValue(0 if ms is None else int(ms))
    w.min_slices.setToolTip("Consecutive slices a lesion must span (auto: 1 for clicked lesions; "
                            "find all: 2, the ASAS definition)")
    form.addRow("on at least", w.min_slices)
    row = QHBoxLayout()
    w.grow_button = _button("Grow", "Outline every seeded lesion again (after changing rule, k, edge or clean-up)")
    w.find_button = _button("Find all in region", "Every above-threshold lesion in the region, no seeds needed")
    row.addWidget(w.grow_button)
    row.addWidget(w.find_button)
    form.addRow(row)
    row = QHBoxLayout()
    w.undo_button = _button("Undo", "Take the last seed, grow or edit back (Ctrl+Z on the BME layers)")
    w.redo_button = _button("Redo", "Redo what Undo took back (Ctrl+Shift+Z)")
    row.addWidget(w.undo_button)
    row.addWidget(w.redo_button)
    form.addRow(row)
    w.progress = QProgressBar()
    w.progress.setRange(0, 0)
    w.progress.setMaximumHeight(10)
    w.progress.setTextVisible(False)
    w.progress.setVisible(False)
    form.addRow(w.progress)
    w.status_label = QLabel("")
    w.status_label.setWordWrap(True)
    w.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    form.addRow(w.status_label)
    root.addWidget(box)

    # ---- result
    box = QGroupBox("5. Result")
    lay = QVBoxLayout(box)
    w.table_widget = QTableWidget(0, 4)
    w.table_widget.setHorizontalHeaderLabels(["id", "mL", "× ref", "slices"])
    w.table_widget.verticalHeader().setVisible(False)
    w.table_widget.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    w.table_widget.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    w.table_widget.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    w.table_widget.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    w.table_widget.setToolTip("Click a lesion to jump to it (Ctrl/Shift-click to select several); "
                              "× ref = mean intensity / reference mean; slices as numbered on napari's slider")
    w.table_widget.setMinimumHeight(120)
    w.table_widget.setMaximumHeight(220)
    w.table_widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    lay.addWidget(w.table_widget)
    w.total_label = QLabel("total: –")
    w.total_label.setWordWrap(True)
    lay.addWidget(w.total_label)
    grid = QGridLayout()
    w.delete_button = _button("Delete", "Remove the selected lesion(s)")
    w.merge_button = _button("Merge", "Merge the selected lesions into one (the smallest id)")
    w.split_button = _button("Split", "Split the selected lesion: by the seeds inside it, or into its "
                             "separate pieces")
    grid.addWidget(w.delete_button, 0, 0)
    grid.addWidget(w.merge_button, 0, 1)
    grid.addWidget(w.split_button, 0, 2)
    lay.addLayout(grid)
    w.study_edit = QLineEdit()
    w.study_edit.setPlaceholderText("study label for the report, e.g. SIJ-042 baseline")
    w.study_edit.setToolTip("Title of report.html (no patient identifiers are written unless you type them)")
    lay.addWidget(w.study_edit)
    w.export_button = _button("Export…", "Write what bmeviz segment writes (bme_mask.nii.gz on the source grid, "
                              "lesions.csv, provenance.json, overlay.png), report.html, DICOM SEG for DICOM scans, "
                              "and the session file")
    w.save_button = _button("Save session…", "Save seeds, reference, region, options and labels to a small file")
    w.load_button = _button("Load session…", "Reload a saved or autosaved session (labels as they were)")
    lay.addWidget(w.export_button)
    row = QHBoxLayout()
    row.addWidget(w.save_button)
    row.addWidget(w.load_button)
    w.restore_button = _button("Restore autosave", "Bring back the seeds and labels an earlier viewer of this scan "
                               "autosaved (e.g. before a crash)")
    w.restore_button.setVisible(False)
    lay.addLayout(row)
    lay.addWidget(w.restore_button)
    root.addWidget(box)

    box = QGroupBox("Legend")
    lay = QVBoxLayout(box)
    w.legend = _legend()
    lay.addWidget(w.legend)
    root.addWidget(box)
    root.addStretch(1)
    # long layer or series names must not widen the panel beyond the dock (1366×768 windows)
    for combo in inner.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)
    w.setMinimumWidth(320)
