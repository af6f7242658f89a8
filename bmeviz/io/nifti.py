"""NIfTI reading (nibabel) with scaling applied and geometry checked."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import (
    BmevizError,
    NotAVolumeError,
    ParameterError,
    ResourceLimitError,
    UnreadableFileError,
    check_memory,
    format_bytes,
    warn,
)
from ..volume import Volume

__all__ = ["is_nifti", "read_nifti", "MAX_VOXELS"]

#: Refuse volumes larger than this many voxels up front (about 8 GB as float32).
MAX_VOXELS = 2_000_000_000


def is_nifti(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith((".nii", ".nii.gz", ".nia"))


def _qform_sform_affine(img, path: Path) -> tuple[np.ndarray, str]:
    problems = []
    for source in ("sform", "qform"):
        try:
            aff, code = getattr(img, f"get_{source}")(coded=True)
        except Exception as exc:  # e.g. a quaternion that is not a rotation
            problems.append(f"{source}: {exc}")
            continue
        if code and aff is not None:
            return aff, source
    if problems:
        raise NotAVolumeError(
            f"{path}: the orientation in the header is invalid ({'; '.join(problems)}); the file's "
            "geometry is corrupt: re-export it or fix the header"
        )
    warn(f"{path}: neither sform nor qform is set; using the voxel sizes only (no orientation)")
    return img.affine, "pixdim"


#: nibabel's header fixes that do not matter when the geometry comes from the sform
#: (pixdim is then unused: the sform holds the voxel sizes).
_HARMLESS_WITH_SFORM = ("pixdim[1,2,3] should be positive",)


@contextlib.contextmanager
def _nibabel_log() -> Iterator[list[str]]:
    """Collect (and keep off the terminal) what nibabel logs in this thread inside the block.

    nibabel reports header fixes ("pixdim[1,2,3] should be positive; setting to abs of
    pixdim values") through its own logger, which prints them raw. A logger filter drops
    this thread's records (other threads' records are left to their own filter).
    """
    got: list[str] = []
    me = threading.get_ident()

    def grab(record: logging.LogRecord) -> bool:
        if record.thread != me or record.levelno < logging.WARNING:
            return True
        got.append(record.getMessage())
        return False

    loggers = [logging.getLogger("nibabel"), logging.getLogger("nibabel.global")]
    for lg in loggers:
        lg.addFilter(grab)
    try:
        yield got
    finally:
        for lg in loggers:
            lg.removeFilter(grab)


def _report_nibabel(p: Path, notes: list[str], source: str) -> None:
    """One bmeviz warning for what nibabel fixed in ``p``'s header, or none when it does not matter."""
    notes = list(dict.fromkeys(n.strip() for n in notes if n.strip()))
    if source == "sform":
        notes = [n for n in notes if not n.startswith(_HARMLESS_WITH_SFORM)]
    if notes:
        warn(f"{p}: the header needed fixing on reading (nibabel: {'; '.join(notes)}); the geometry comes "
             f"from the {source}: check the overlay")


def _needed_bytes(dtype: np.dtype, n_vox: int, scaled: bool) -> tuple[int, int]:
    """(bytes of voxel data in the file per volume, bytes loading it needs at most)."""
    stored = dtype.itemsize
    float_out = scaled or dtype.kind == "f"
    # the stored array, a float64 copy when scaling, a NaN mask and its clean copy for float data
    return n_vox * stored, n_vox * (stored + (8 if scaled else 0) + (9 if float_out else 0))


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
    if not p.is_file():
        raise UnreadableFileError(f"{p}: not a regular file")
    raw_slope = _check_extensions(p)
    with _nibabel_log() as notes:  # nibabel logs header fixes to stderr: they become one bmeviz warning
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
    if volume is not None and (isinstance(volume, bool) or not isinstance(volume, (int, np.integer))):
        raise ParameterError(f"{p}: volume= must be a whole number (an index from 0), not {volume!r:.40}")
    if volume is not None and not (0 <= volume < n_extra):
        raise ParameterError(f"{p}: volume={volume} is out of range; the file holds {n_extra} volume(s)")
    dtype = np.dtype(hdr.get_data_dtype())
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise NotAVolumeError(
            f"{p}: voxels of type {_dtype_name(hdr)} are not a greyscale image; bmeviz reads integer or "
            "real (float) NIfTI files"
        )
    # nibabel moves scl_slope/scl_inter from the header into the array proxy on load
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    for name, v in (("scl_slope", slope), ("scl_inter", inter)):
        if not np.isfinite(v):
            raise NotAVolumeError(f"{p}: {name} is {v}; the stored intensities cannot be scaled")
    if raw_slope is not None and not np.isfinite(raw_slope):
        warn(f"{p}: scl_slope is {raw_slope} in the header; the voxels are read unscaled (the NIfTI rule for an "
             "unusable slope): measurements relative to a reference region are unaffected, absolute intensities "
             "may be off by a factor")
    per_volume, needed = _needed_bytes(dtype, n_vox, slope != 1 or inter != 0)
    offset = _vox_offset(hdr)
    if not str(p).lower().endswith(".gz"):
        size = p.stat().st_size
        need_in_file = offset + per_volume * (n_extra if n_extra > 1 else 1)
        if need_in_file > size:
            raise UnreadableFileError(
                f"{p}: the header says {shape} voxels of {dtype} ({format_bytes(need_in_file)} with the header), "
                f"but the file holds {format_bytes(size)}; it is truncated or its header is corrupt"
            )
    check_memory(needed, f"{p}: {shape[:3]} voxels of {dtype}")
    pixdim = hdr["pixdim"][1:4]
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
        raise NotAVolumeError(f"{p}: voxel sizes (pixdim) {[float(v) for v in pixdim]} are zero or not finite")
    affine, source = _qform_sform_affine(img, p)
    _report_nibabel(p, notes, source)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise NotAVolumeError(f"{p}: the {source} affine is degenerate or not finite")
    try:
        raw = img.dataobj[..., volume] if n_extra > 1 else img.dataobj
        if len(shape) > 3 and n_extra == 1:
            raw = np.asanyarray(raw).reshape(shape[:3])
        data = np.asanyarray(raw)
    except MemoryError as exc:
        raise ResourceLimitError(
            f"{p}: out of memory reading {shape[:3]} voxels ({format_bytes(needed)}); crop or downsample it first"
        ) from exc
    except (EOFError, OSError, ValueError, TypeError, zlib.error) as exc:
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
        "description": _descrip(hdr),  # the header only: file names often carry patient names
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


def _check_extensions(p: Path) -> float | None:
    """Walk the header extensions before nibabel does, refusing one that is larger than
    what follows it in the file; return the raw ``scl_slope`` of the header (None if the
    header cannot be parsed here).

    nibabel allocates each extension's declared size (up to 2 GB) before reading it,
    so a corrupt ``esize`` would cost gigabytes for a tiny file. Here the bytes are
    skipped in a stream (bounded memory) to prove they exist. Headers this cannot
    parse are left to nibabel, which says what is wrong.
    """
    import gzip
    import struct

    gz = str(p).lower().endswith(".gz")
    try:
        with (gzip.open(p, "rb") if gz else open(p, "rb")) as f:
            head = f.read(544)
            if len(head) < 352:
                return None
            for e in ("<", ">"):
                sizeof_hdr = struct.unpack_from(e + "i", head, 0)[0]
                if sizeof_hdr in (348, 540):
                    break
            else:
                # nibabel still reads a .nii with a wrong sizeof_hdr as NIfTI-1, taking the
                # byte order from dim[0]: do the same
                sizeof_hdr = 348
                e = "<" if 1 <= struct.unpack_from("<h", head, 40)[0] <= 7 else ">"
            if sizeof_hdr == 348:
                vox_offset, flag_at = struct.unpack_from(e + "f", head, 108)[0], 348
                slope = float(struct.unpack_from(e + "f", head, 112)[0])
            else:
                vox_offset, flag_at = struct.unpack_from(e + "q", head, 168)[0], 540
                slope = float(struct.unpack_from(e + "d", head, 176)[0])
            if len(head) < flag_at + 4 or head[flag_at] == 0:
                return slope
            # as nibabel: extensions run to vox_offset, or to the end of the file when
            # vox_offset lies before them (then each one is read until the file ends)
            remaining = float(vox_offset) - (flag_at + 4)
            if not np.isfinite(remaining):
                return slope
            size = None if gz else os.fstat(f.fileno()).st_size
            pos = flag_at + 4
            f.seek(pos)
            while remaining >= 16 or remaining < 0:
                raw = f.read(8)
                if len(raw) < 8:
                    return slope  # the end, or a short header nibabel refuses without allocating
                esize, _code = struct.unpack(e + "ii", raw)
                if esize < 8:
                    raise UnreadableFileError(
                        f"{p}: a header extension has a size of {esize} bytes; the header is corrupt"
                    )
                if size is not None and pos + esize > size:
                    raise UnreadableFileError(
                        f"{p}: a header extension claims {format_bytes(esize)} but the file holds "
                        f"{format_bytes(size)}; the header is corrupt or the file truncated"
                    )
                check_memory(esize, f"{p}: a header extension", "the header is probably corrupt")
                if gz:
                    left = esize - 8
                    while left > 0:
                        chunk = f.read(min(left, 1 << 20))
                        if not chunk:
                            raise UnreadableFileError(
                                f"{p}: a header extension claims {format_bytes(esize)} but the file ends "
                                "before it; the header is corrupt or the file truncated"
                            )
                        left -= len(chunk)
                else:
                    f.seek(esize - 8, os.SEEK_CUR)
                pos += esize
                remaining -= esize
            return slope
    except BmevizError:
        raise
    except (OSError, EOFError, ValueError, struct.error, zlib.error):
        return None  # unreadable: nibabel will say so


def _vox_offset(hdr) -> int:
    try:
        off = float(hdr["vox_offset"])
    except (KeyError, TypeError, ValueError):
        return 0
    return int(off) if np.isfinite(off) and off > 0 else 0


def _dtype_name(hdr) -> str:
    try:
        code = int(hdr["datatype"])
        from nibabel.nifti1 import data_type_codes

        return f"{data_type_codes.label[code]} (datatype {code})"
    except Exception:
        return str(hdr.get_data_dtype())


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
