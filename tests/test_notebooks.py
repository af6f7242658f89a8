"""Every notebook in notebooks/ runs top to bottom (nbclient, kernel python3, cwd notebooks/).

The notebooks are executed in memory: outputs are never written back to the files. Results
the notebooks save go to a temporary folder (``BMEVIZ_NOTEBOOK_OUT``). The committed files
must carry no outputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell: most notebooks take under 20 s; 05 registers atlases and trains a U-Net
# (its longest cells about a minute alone, twice that beside another CPU-bound test under -n 2)

nbformat = pytest.importorskip("nbformat")


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    for expected in ("01_quickstart.ipynb", "02_dicom_study.ipynb", "03_cohort.ipynb", "04_validation.ipynb",
                     "05_region_assist.ipynb"):
        assert expected in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    before = path.read_bytes()
    listing = sorted(p.name for p in path.parent.iterdir())
    nb = nbformat.read(str(path), as_version=4)
    # the kernel inherits the environment: outputs to a temporary folder, no GUI backend
    monkeypatch.setenv("BMEVIZ_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},  # cwd = notebooks/
        allow_errors=False,
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:  # name the notebook and the cell in the failure
        pytest.fail(f"{path.name}: a cell raised:\n{exc}", pytrace=False)
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert path.read_bytes() == before, "executing must not write the notebook back"
    assert sorted(p.name for p in path.parent.iterdir()) == listing, "a notebook wrote into notebooks/"
    assert (tmp_path / "out").exists() or path.stem.startswith("04"), "results go to BMEVIZ_NOTEBOOK_OUT"
