"""NIfTI reading (nibabel) with scaling applied and geometry checked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import NotAVolumeError, ParameterError, ResourceLimitError, UnreadableFileError, warn
from ..volume import Volume

__all__ = ["is_nifti", "read_nifti", "MAX_VOXELS"]

#: Refuse volumes larger than this many voxels up front (about 8 GB as float32).
MAX_VOXELS = 2_000_000_000


def is_nifti(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith((".nii", ".nii.gz", ".nia"))


def _qform_sform_affine(img, path: Path) -> tuple[np.ndarray, str]:
    sform, scode = img.get_sform(coded=True)
    qform, qcode = img.get_qform(coded=True)
    if scode and sform is not None:
        return sform, "sform"
    if qcode and qform is not None:
        return qform, "qform"
    warn(f"{path}: neither sform nor qform is set; using the voxel sizes only (no orientation)")
    return img.affine, "pixdim"


def read_nifti(path: str | os.PathLike, *, volume: int | None = None, mmap: bool = False) -> Volume:
    """Read a NIfTI-1/2 file into a :class:`Volume`, applying scl_slope/scl_inter.

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz``.
    volume : int, optional
        Which 3D volume of a 4D file (required for 4D input).
    """
    import nibabel as nib

    p = Path(path)
    if not p.exists():
        raise UnreadableFileError(f"{p}: no such file")
    try:
        img = nib.load(str(p), mmap=mmap)
    except Exception as exc:
        raise UnreadableFileError(f"{p}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    shape = tuple(int(n) for n in img.shape)
    hdr = img.header
    if len(shape) < 3:
        raise NotAVolumeError(f"{p}: a {len(shape)}D image of shape {shape}; bmeviz needs a 3D volume")
    extra = shape[3:]
    if any(n < 1 for n in shape):
        raise NotAVolumeError(f"{p}: empty image of shape {shape}")
    n_vox = int(np.prod(shape[:3], dtype=np.int64))
    if n_vox > MAX_VOXELS:
        raise ResourceLimitError(
            f"{p}: {shape[:3]} is {n_vox:,} voxels (~{n_vox * 4 / 1e9:.1f} GB as float32), more than bmeviz "
            f"accepts ({MAX_VOXELS:,}); crop or downsample it first"
        )
    n_extra = int(np.prod(extra)) if extra else 1
    if n_extra > 1 and volume is None:
        raise ParameterError(
            f"{p}: a 4D image of shape {shape} holds {n_extra} volumes; choose one with volume=<index> "
            f"(0..{n_extra - 1}) (CLI: --volume)"
        )
    if volume is not None and not (0 <= volume < n_extra):
        raise ParameterError(f"{p}: volume={volume} is out of range; the file holds {n_extra} volume(s)")
    pixdim = hdr["pixdim"][1:4]
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
        raise NotAVolumeError(f"{p}: voxel sizes (pixdim) {list(pixdim)} are zero or not finite")
    affine, source = _qform_sform_affine(img, p)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise NotAVolumeError(f"{p}: the {source} affine is degenerate or not finite")
    # nibabel moves scl_slope/scl_inter from the header into the array proxy on load
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    for name, v in (("scl_slope", slope), ("scl_inter", inter)):
        if v is not None and not np.isfinite(v):
            raise NotAVolumeError(f"{p}: {name} is {v}; the stored intensities cannot be scaled")
    try:
        raw = img.dataobj[..., volume] if n_extra > 1 else img.dataobj
        if len(shape) > 3 and n_extra == 1:
            raw = np.asanyarray(raw).reshape(shape[:3])
        data = np.asanyarray(raw)
    except (EOFError, OSError, ValueError, MemoryError) as exc:
        raise UnreadableFileError(
            f"{p}: cannot read the voxel data ({type(exc).__name__}: {exc}); the file may be truncated"
        ) from exc
    if data.ndim == 4:  # 5D+ files indexed on the flattened extra axes
        data = data.reshape(shape[:3])
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        n_bad = int(bad.sum())
        if n_bad:
            if n_bad == data.size:
                raise NotAVolumeError(f"{p}: every voxel is NaN or infinite")
            warn(f"{p}: {n_bad} voxel(s) are NaN or infinite; they are treated as missing (NaN): never "
                 "part of a lesion, ignored by statistics")
            data = np.where(bad, np.nan, data).astype(data.dtype, copy=False)
    metadata = {
        "source": "nifti",
        "source_files": [str(p)],
        "description": _descrip(hdr) or p.name.split(".nii")[0],
        "sequence": _guess_sequence_from_name(p.name),
        "stored_dtype": str(hdr.get_data_dtype()),
        "rescale": {
            "applied": bool(slope != 1 or inter != 0),
            "slopes": [slope],
            "intercepts": [inter],
            "per_slice": False,
            "source": "scl_slope/scl_inter",
        },
        "geometry": {"frame": "RAS", "affine_from": source},
    }
    if volume is not None:
        metadata["volume_index"] = volume
    return Volume(data.transpose(2, 1, 0), affine @ _reverse(), metadata)


def _descrip(hdr) -> str:
    try:
        return bytes(hdr["descrip"].item()).decode("ascii", "replace").strip("\x00 ")
    except Exception:
        return ""


def _reverse() -> np.ndarray:
    from ..volume import REVERSE_AXES

    return REVERSE_AXES


def _guess_sequence_from_name(name: str) -> str | None:
    from .sequence import classify

    label = classify({"SeriesDescription": name.replace(".nii.gz", "").replace(".nii", "")})
    return None if label == "other" else label
