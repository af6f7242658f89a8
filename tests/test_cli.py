"""The `bmeviz` command: tables, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bmeviz.cli import main
from helpers import shared


def test_series_table_lists_the_study(capsys, tmp_path, small_volume):
    from bmeviz.io.dicom_write import write_dicom_series

    write_dicom_series(small_volume, tmp_path / "a", sequence="STIR", description="Cor STIR", series_number=3)
    write_dicom_series(small_volume, tmp_path / "b", sequence="T1", description="T1 cor", series_number=4)
    assert main(["series", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Cor STIR" in out and "STIR *" in out and "T1 cor" in out and "12x40x36" in out
    assert "2 series" in out


def test_series_json_on_the_knee_echoes(capsys):
    import json

    folder = shared("knee-dicom", "mese-t2-multiecho")
    assert main(["series", str(folder), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["echo"] for r in records] == [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("case, reason", [
    ("slicecount", "too few slices"),
    ("sliceorientation", "mixed slice orientations"),
    ("gantrytilting", "gantry tilt"),
    ("notavolume", "not a volume"),
    ("sliceincrement", "uneven slice increment"),
])
def test_refused_cases_print_one_line_and_exit_nonzero(case, reason):
    folder = shared("dicom-series-cases", "failing", case)
    proc = subprocess.run([sys.executable, "-m", "bmeviz.cli", "info", str(folder)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.startswith("bmeviz: error:")]
    assert len(lines) == 1 and reason in lines[0]
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bmeviz.cli", "--debug", "info", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_info_prints_geometry(capsys, dicom_series):
    assert main(["info", str(dicom_series)]) == 0
    out = capsys.readouterr().out
    assert "shape=(12, 40, 36)" in out and "sequence=STIR" in out and "affine" in out
    # planted identifiers never reach the output
    for phi in ("Doe", "PID-778899", "ACC-445566", "Hospital Zeta", "19700101"):
        assert phi not in out
