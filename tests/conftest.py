"""Shared fixtures (helpers live in helpers.py)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

# The README's run has two test workers on two cores. OpenMP threads (PyTorch's U-Net, scikit-learn's
# boosting) that spin while they wait then take the core the other worker needs: the U-Net phantom test
# took 9.5 s alone, 52 s beside a U-Net training and 19 s with passive waiting (171 s in the CI run of
# 021b88c). Set before anything loads the OpenMP runtime; notebook kernels and CLI subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest

from helpers import axial_affine, oblique_affine, shared  # noqa: F401


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Before pytest-xvfb looks for Xvfb: install it where the run may (root + apt-get), once, in
    the controller only; else note why not (the napari tests skip, or fail under CI=true).
    See tests/_system.py."""
    import _system

    _system.configure(config)


def pytest_collection_modifyitems(config, items):
    """Tests marked slow first (the real-data refiner files, U-Net and boosting, about 4-5 min each, and
    the batch kill test),
    so that with ``-n 2 --dist loadfile --no-loadscope-reorder`` (each file on one worker: a module
    fixture is built once) they start at once beside the rest instead of ending the run.
    No X display or no loadable Qt (and not CI): skip the napari tests with the reason,
    before their Qt fixtures are looked up. Under CI=true they run and fail (tests/napari/conftest.py)."""
    import _system

    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order

    napari_dir = Path(__file__).parent / "napari"
    ours = [item for item in items if napari_dir in Path(str(item.path)).parents]
    if not ours or _system.in_ci():
        return
    reason = _system.napari_skip_reason()
    if reason:
        mark = pytest.mark.skip(reason=f"napari tests need an X display: {reason}")
        for item in ours:
            item.add_marker(mark)


@pytest.fixture
def shared_data():
    return shared


@pytest.fixture
def small_volume():
    import bmeviz

    rng = np.random.default_rng(1)
    arr = rng.normal(200, 20, size=(12, 40, 36)).astype(np.float32)
    return bmeviz.Volume(arr, oblique_affine(), {"description": "STIR test", "sequence": "STIR"})


@pytest.fixture
def dicom_series(tmp_path, small_volume):
    """A synthetic STIR series written as DICOM (with planted identifiers)."""
    from bmeviz.io.dicom_write import write_dicom_series

    folder = tmp_path / "study" / "stir"
    write_dicom_series(
        small_volume,
        folder,
        sequence="STIR",
        description="STIR cor obl",
        patient={"PatientName": "Doe^Jane", "PatientID": "PID-778899", "PatientBirthDate": "19700101",
                 "AccessionNumber": "ACC-445566", "InstitutionName": "Hospital Zeta"},
        shuffle_names=True,
    )
    return folder


@pytest.fixture
def no_bmeviz_warnings():
    import bmeviz

    with warnings.catch_warnings():
        warnings.simplefilter("error", bmeviz.BmevizWarning)
        yield
