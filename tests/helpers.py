"""Test helpers (importable: pyproject puts tests/ on the path). Real data lives at ../shared/data beside the repo; tests that need it
skip with a reason when it is absent (a fresh clone elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BMEVIZ_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} (needs ../shared/data beside the repo)")
    return p


def axial_affine(spacing=(3.0, 0.5, 0.5), origin=(60.0, 80.0, -20.0)) -> np.ndarray:
    """A DICOM-like axial affine (slice, row, column) -> RAS: rows run posterior, columns left."""
    s, r, c = spacing
    a = np.eye(4)
    a[:3, 0] = (0, 0, s)
    a[:3, 1] = (0, -r, 0)
    a[:3, 2] = (-c, 0, 0)
    a[:3, 3] = origin
    return a


def oblique_affine(spacing=(3.3, 0.6, 0.6), origin=(-20.0, 35.0, 10.0), angle_deg=20.0) -> np.ndarray:
    """An oblique-coronal affine like an SIJ STIR: slices tilted about the x axis."""
    t = np.deg2rad(angle_deg)
    normal = np.array([0.0, -np.cos(t), np.sin(t)])  # slices step posterior, as DICOM coronal does
    col = np.array([-1.0, 0.0, 0.0])  # columns run to the patient's left
    row = np.cross(normal, col)  # rows run inferior; (slice, row, col) is DICOM-handed
    a = np.eye(4)
    a[:3, 0] = normal * spacing[0]
    a[:3, 1] = row * spacing[1]
    a[:3, 2] = col * spacing[2]
    a[:3, 3] = origin
    return a
