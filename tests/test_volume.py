import numpy as np
import pytest

from bmeviz import ParameterError, Volume
from helpers import axial_affine, oblique_affine


def test_geometry_is_derived_from_the_affine():
    vol = Volume(np.zeros((5, 6, 7), np.int16), oblique_affine(spacing=(3.3, 0.6, 0.5)))
    assert vol.spacing == pytest.approx((3.3, 0.6, 0.5))
    assert vol.voxel_volume_mm3 == pytest.approx(3.3 * 0.6 * 0.5)
    assert vol.plane == "oblique-coronal"
    assert len(vol.orientation) == 3 and set("".join(vol.orientation)) <= set("RLAPSI")
    # change the affine -> derived values follow (nothing is stored twice)
    ax = Volume(vol.array, axial_affine(spacing=(4.0, 1.0, 1.0)))
    assert ax.spacing == pytest.approx((4.0, 1.0, 1.0))
    assert ax.plane == "axial"
    assert ax.orientation == ("S", "P", "L")


def test_index_ras_round_trip():
    vol = Volume(np.zeros((5, 6, 7)), oblique_affine())
    idx = np.array([[0, 0, 0], [4, 5, 6], [2.5, 1.25, 3.0]])
    ras = vol.index_to_ras(idx)
    assert np.allclose(vol.ras_to_index(ras), idx)
    # the corner voxel sits at the origin, and one slice step moves by the slice column
    assert np.allclose(ras[0], vol.affine[:3, 3])
    assert np.allclose(vol.index_to_ras([1, 0, 0]) - ras[0], vol.affine[:3, 0])
    assert vol.ras_to_index(vol.index_to_ras([3, 2, 1]), round=True).tolist() == [3, 2, 1]


def test_repr_shows_what_a_notebook_user_needs():
    vol = Volume(np.zeros((10, 64, 64), np.float32), axial_affine(), {"sequence": "STIR", "description": "STIR ax"})
    text = repr(vol)
    for part in ("shape=(10, 64, 64)", "spacing=3x0.5x0.5 mm", "orientation=SPL", "sequence=STIR", "memory=163.8 kB"):
        assert part in text


@pytest.mark.parametrize(
    "array, affine",
    [
        (np.zeros((4, 4)), np.eye(4)),
        (np.zeros((0, 4, 4)), np.eye(4)),
        (np.zeros((2, 4, 4)), np.eye(3)),
        (np.zeros((2, 4, 4)), np.diag([1.0, 0.0, 1.0, 1.0])),
        (np.zeros((2, 4, 4)), np.full((4, 4), np.nan)),
    ],
)
def test_bad_volumes_are_refused(array, affine):
    with pytest.raises(ParameterError):
        Volume(array, affine)


def test_nifti_round_trip_keeps_axes_and_affine():
    arr = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    vol = Volume(arr, oblique_affine())
    img = vol.to_nifti()
    # NIfTI stores (column, row, slice)
    assert img.shape == (5, 4, 3)
    assert np.array_equal(np.asarray(img.dataobj)[4, 3, 2], arr[2, 3, 4])
    # the voxel (s, r, c) is at the same place in both conventions
    assert np.allclose(img.affine @ [4, 3, 2, 1], vol.affine @ [2, 3, 4, 1])
    back = Volume.from_nifti(img)
    assert np.array_equal(back.array, arr) and np.allclose(back.affine, vol.affine)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1


def test_import_does_not_pull_in_napari_or_qt():
    import subprocess
    import sys

    code = "import sys, bmeviz; bad=[m for m in sys.modules if m.split('.')[0] in ('napari','qtpy','PyQt5','PyQt6','PySide2','PySide6','magicgui')]; print(bad); sys.exit(1 if bad else 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_volume_does_not_touch_the_callers_affine():
    aff = oblique_affine()
    Volume(np.zeros((2, 3, 4)), aff)
    assert aff.flags.writeable
    aff[0, 3] = 1.0  # still the caller's to change
