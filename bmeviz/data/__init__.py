"""Synthetic STIR-like knee phantoms with exact ground truth, and the shipped sample.

:func:`make_phantom` draws a fat-suppressed fluid-sensitive (STIR-like) sagittal knee:
femur, tibia and patella with a thin dark cortex and dark (fat-suppressed) marrow,
articular cartilage, joint fluid with a suprapatellar effusion and a chondral defect,
muscle, fat pads and tendons, and bone marrow edema lesions with soft edges. Every
structure is an analytic shape in millimetres, sampled with partial volume (three
sub-samples across each slice, a one-voxel ramp in plane), then scaled like a scanner
image and given Rician noise. The ground truth is exact: each lesion is the 50 %
iso-surface of its soft-edged profile, clipped to marrow, and its volume is its voxel
count times the voxel volume of the affine.

:func:`load_sample` and :func:`sample_path` give the small phantom shipped in
``sample_data/`` (regenerated into a cache folder when bmeviz runs from a wheel).

Signal model, in relative units (fluid ~ 1) before scaling by :data:`SCALE`:

============  =======  ===========================================================
tissue        signal   note
============  =======  ===========================================================
air           0.00     outside the skin (Rician noise floor only)
tendon        0.03     quadriceps and patellar tendons
cortex        0.05     cortical rim, 1.4 mm
fat           0.08     fat-suppressed: subcutaneous fat, Hoffa's and popliteal fat
marrow        0.15     fatty marrow, fat-suppressed, mild texture
muscle        0.30     muscle and other soft tissue
cartilage     0.40     articular cartilage, 2.2 mm
lesion        0.60     BME (default; per lesion ``intensity``)
fluid         0.95     joint fluid and effusion
============  =======  ===========================================================

The whole image is multiplied by a smooth bias field (within +-10 %).
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import ParameterError
from ..io._atomic import atomic_path
from ..volume import Volume
from .phantom import SCALE, SIGNAL, TISSUE, Phantom, make_phantom

__all__ = [
    "Phantom",
    "make_phantom",
    "load_sample",
    "sample_path",
    "write_sample",
    "SIGNAL",
    "SCALE",
    "TISSUE",
    "SAMPLE_PARAMS",
    "SAMPLE_FILES",
]


#: Parameters of the shipped sample (smaller than the default so it stays < 1.5 MB).
SAMPLE_PARAMS: Mapping[str, Any] = {
    "shape": (28, 160, 160),
    "spacing": (3.0, 0.8, 0.8),
    "noise": 0.04,
    "seed": 0,
}


#: Files of the shipped sample, in ``sample_data/``.
SAMPLE_FILES = (
    "phantom_stir.nii.gz",
    "phantom_truth.nii.gz",
    "phantom_bone.nii.gz",
    "phantom_reference.nii.gz",
    "phantom_seeds.csv",
)



# ---------------------------------------------------------------------------------------
# the shipped sample (here, in the package module: tests replace _repo_sample_dir)
# ---------------------------------------------------------------------------------------
def _image_int16(array: np.ndarray) -> np.ndarray:
    """Scanner-like float image -> int16 (rounded, clipped), as the sample stores it."""
    return np.clip(np.rint(array), -32768, 32767).astype(np.int16)



def write_sample(directory: str | os.PathLike, **params: Any) -> dict[str, Path]:
    """Write a phantom as the sample files into ``directory`` (created if missing).

    The image is written as int16, the masks as uint8 NIfTI on the same grid, and the
    seeds as CSV (``lesion_id, slice, row, col, x_mm, y_mm, z_mm``). Each file is written
    to a temporary name and renamed, so a reader never sees half a file.

    Parameters
    ----------
    directory : path
        Where to write.
    **params
        Passed to :func:`make_phantom`; default :data:`SAMPLE_PARAMS`.

    Returns
    -------
    dict
        File name -> path, for each of :data:`SAMPLE_FILES`.

    Examples
    --------
    >>> import tempfile
    >>> from bmeviz.data import write_sample
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_sample(tmp, shape=(12, 96, 96), spacing=(3.0, 1.4, 1.4))
    ...     sorted(p.name for p in paths.values())  # doctest: +NORMALIZE_WHITESPACE
    ['phantom_bone.nii.gz', 'phantom_reference.nii.gz', 'phantom_seeds.csv',
     'phantom_stir.nii.gz', 'phantom_truth.nii.gz']
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ph = make_phantom(**{**SAMPLE_PARAMS, **params})
    vol = ph.volume
    paths = {name: directory / name for name in SAMPLE_FILES}
    img = vol.to_nifti(_image_int16(vol.array))
    img.header["descrip"] = b"bmeviz synthetic STIR phantom"
    images = [("phantom_stir.nii.gz", img)] + [
        (f"phantom_{name}.nii.gz", vol.to_nifti(mask.astype(np.uint8)))
        for name, mask in (("truth", ph.truth), ("bone", ph.bone), ("reference", ph.reference))]
    for name, image in images:
        with atomic_path(paths[name]) as tmp:
            image.to_filename(str(tmp))
    ras = vol.index_to_ras(ph.seeds) if len(ph.seeds) else np.zeros((0, 3))
    with atomic_path(paths["phantom_seeds.csv"]) as tmp, open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["lesion_id", "slice", "row", "col", "x_mm", "y_mm", "z_mm"])
        for i, (idx, xyz) in enumerate(zip(ph.seeds, ras), start=1):
            wr.writerow([i, *(int(x) for x in idx), *(f"{x:.3f}" for x in xyz)])
    return paths



def _repo_sample_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "sample_data"



def _cache_sample_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "bmeviz" / f"sample_data-{__version__}"



def sample_path(name: str = "phantom_stir.nii.gz") -> Path:
    """Path of a file of the shipped sample.

    Looks in the repository's ``sample_data/`` first; an installed wheel has none, so
    the sample is then generated once into ``~/.cache/bmeviz/`` (``$XDG_CACHE_HOME``
    when set) and reused.

    Parameters
    ----------
    name : str
        One of :data:`SAMPLE_FILES`.

    Examples
    --------
    >>> from bmeviz.data import sample_path
    >>> sample_path("phantom_seeds.csv").name
    'phantom_seeds.csv'
    """
    if name not in SAMPLE_FILES:
        raise ParameterError(f"unknown sample file {name!r}; choose one of {list(SAMPLE_FILES)}")
    repo = _repo_sample_dir()
    if all((repo / n).is_file() for n in SAMPLE_FILES):
        return repo / name
    cache = _cache_sample_dir()
    if not all((cache / n).is_file() for n in SAMPLE_FILES):
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-sample-", dir=cache.parent))
        try:
            write_sample(tmp)
            try:
                os.replace(tmp, cache)  # atomic; fails if another process won the race
            except OSError:
                if not all((cache / n).is_file() for n in SAMPLE_FILES):
                    shutil.rmtree(cache, ignore_errors=True)
                    os.replace(tmp, cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return cache / name



def load_sample() -> tuple[Volume, dict]:
    """The shipped sample: the STIR-like image and its ground truth.

    Returns
    -------
    volume : Volume
        The int16 image, axes ``(slice, row, column)`` and the affine of the file.
    truth : dict
        ``'truth'`` (int32 lesion labels), ``'bone'`` and ``'reference'`` (bool), on the
        image grid, and ``'seeds'`` ((N, 3) int indices, one per lesion).

    Examples
    --------
    >>> from bmeviz.data import load_sample
    >>> vol, gt = load_sample()
    >>> vol.plane, vol.shape == gt["truth"].shape, gt["seeds"].shape
    ('sagittal', True, (4, 3))
    >>> [int(gt["truth"][tuple(s)]) for s in gt["seeds"]]
    [1, 2, 3, 4]
    """
    import nibabel as nib

    def read(name, dtype):
        path = sample_path(name)
        img = nib.load(str(path))
        return img, np.asarray(img.dataobj).astype(dtype, copy=False)

    img, data = read("phantom_stir.nii.gz", np.int16)
    meta = {
        "description": "Synthetic STIR phantom",
        "sequence": "STIR",
        "manufacturer": "bmeviz phantom",
        "modality": "MR",
        "source": str(sample_path("phantom_stir.nii.gz")),
        "phantom": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in SAMPLE_PARAMS.items()}},
    }
    vol = Volume.from_nifti(img, metadata=meta, array=data)
    masks: dict[str, np.ndarray] = {}
    for key, dtype in (("truth", np.int32), ("bone", bool), ("reference", bool)):
        mimg, mdata = read(f"phantom_{key}.nii.gz", np.uint8)
        if mdata.shape != data.shape or not np.allclose(mimg.affine, img.affine, atol=1e-5):
            raise ParameterError(
                f"sample file phantom_{key}.nii.gz is not on the image grid; "
                "regenerate it with sample_data/make_sample.py"
            )
        masks[key] = Volume.from_nifti(mimg, array=mdata.astype(dtype)).array
    with open(sample_path("phantom_seeds.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    masks["seeds"] = np.array([[int(r["slice"]), int(r["row"]), int(r["col"])] for r in rows],
                              dtype=np.int64).reshape(-1, 3)
    return vol, masks

