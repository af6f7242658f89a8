"""Pixel data: read a checked stack into a :class:`~bmeviz.Volume` (rescaled, RAS affine, metadata)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ...errors import InconsistentGeometryError, NotAVolumeError, ParameterError, UnreadableFileError, check_memory, warn
from ...volume import Volume
from ..sequence import classify
from .geometry import LPS_TO_RAS, _where, check_geometry
from .headers import Frame, PixelLayout, _int, _is_panic, _value
from .scan import _BoundedFile
from .series import SeriesInfo


def _pixels(ds: Any, path: str) -> np.ndarray:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise NotAVolumeError(f"{path}: the DICOM file has no pixel data")
    photometric = str(_value(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in {"MONOCHROME1", "MONOCHROME2"}:
        raise NotAVolumeError(f"{path}: PhotometricInterpretation {photometric} is not a greyscale MR image")
    try:
        arr = ds.pixel_array
    except BaseException as exc:  # decoders raise anything; Rust ones panic (a BaseException)
        if not isinstance(exc, Exception) and not _is_panic(exc):
            raise
        raise UnreadableFileError(
            f"{path}: cannot decode the pixel data ({type(exc).__name__}: {exc}); the file may be "
            "truncated or use an unsupported transfer syntax"
        ) from (exc if isinstance(exc, Exception) else None)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if photometric == "MONOCHROME1":  # inverted grey scale: make bright = high signal
        bits = _int(_value(ds, "BitsStored")) or arr.dtype.itemsize * 8
        arr = ((1 << bits) - 1 - arr).astype(arr.dtype) if arr.dtype.kind == "u" else -arr
    return arr


def _native_pixels(layout: PixelLayout | None, path: str) -> np.ndarray | None:
    """Pixels read straight from the file at the scanned offset (native data only)."""
    if layout is None or layout.photometric not in {"MONOCHROME2"}:
        return None
    count = layout.rows * layout.columns * layout.n_frames
    try:
        arr = np.fromfile(path, dtype=np.dtype(layout.dtype), count=count, offset=layout.offset)
    except (OSError, ValueError):
        return None
    if arr.size != count:  # the file changed since the scan: let pydicom report it
        return None
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False) if not arr.dtype.isnative else arr
    shape = (layout.rows, layout.columns) if layout.n_frames == 1 else (layout.n_frames, layout.rows, layout.columns)
    return arr.reshape(shape)


def read_stack(series: SeriesInfo, *, fast: bool = True) -> Volume:
    """Read one checked stack into a :class:`Volume` (rescaled, RAS affine, metadata).

    ``fast=False`` decodes every file with pydicom instead of taking native pixel data
    straight from the offset found by the scan (the two give identical arrays).
    """
    import pydicom

    frames, affine_lps, facts = check_geometry(series)
    first = frames[0]
    shape = (len(frames), first.rows, first.columns)
    by_file: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(frames):
        by_file[f.path].append(i)
    _check_pixel_header(series, frames, by_file, shape)
    raw: np.ndarray | None = None
    for path, slots in by_file.items():
        pix = _native_pixels(frames[slots[0]].pixels, path) if fast else None
        if pix is None:
            try:
                with _BoundedFile(path) as fp:
                    ds = pydicom.dcmread(fp)
            except Exception as exc:
                raise UnreadableFileError(f"{path}: cannot read the file ({type(exc).__name__}: {exc})") from exc
            except BaseException as exc:
                if not _is_panic(exc):
                    raise
                raise UnreadableFileError(f"{path}: cannot read the file ({exc})") from None
            pix = _pixels(ds, path)
        if frames[slots[0]].frame is not None:
            if pix.ndim == 2:
                pix = pix[np.newaxis]
            if pix.shape[0] <= max(frames[s].frame for s in slots):
                raise NotAVolumeError(f"{path}: pixel data holds {pix.shape[0]} frames, fewer than the header says")
            planes = {s: pix[frames[s].frame] for s in slots}
        else:
            if pix.ndim != 2:
                raise NotAVolumeError(f"{path}: expected one 2D image, got pixel data of shape {pix.shape}")
            planes = {slots[0]: pix}
        for s, plane in planes.items():
            if plane.shape != shape[1:]:
                raise NotAVolumeError(f"{path}: image is {plane.shape}, the header says {shape[1:]}")
            if raw is None:
                raw = np.empty(shape, dtype=plane.dtype)
            raw[s] = plane
    assert raw is not None
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    rescaled = bool(np.any(slopes != 1) or np.any(intercepts != 0))
    if rescaled:
        data = raw.astype(np.float32) * slopes[:, None, None].astype(np.float32) + intercepts[:, None, None].astype(np.float32)
        if np.issubdtype(raw.dtype, np.integer) and not np.all(np.isfinite(data)):
            i = int(np.argmax(~np.isfinite(data).reshape(len(frames), -1).all(axis=1)))
            raise NotAVolumeError(
                f"{frames[i].path}: RescaleSlope {slopes[i]:g} and RescaleIntercept {intercepts[i]:g} take the "
                "pixel values beyond the range of real numbers; the header is corrupt"
            )
    else:
        data = raw
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        n_bad = int(bad.sum())
        if n_bad == data.size:
            raise NotAVolumeError(f"{_where(series)}: every pixel is NaN or infinite")
        if n_bad:
            warn(f"{_where(series)}: {n_bad} pixel(s) are NaN or infinite; they are treated as missing (NaN): "
                 "never part of a lesion, ignored by statistics")
            data = np.where(bad, np.nan, data).astype(data.dtype, copy=False)
    h = first.header
    label = classify(h)
    metadata = {
        "source": "dicom",
        "source_files": list(by_file),
        "series_key": series.key,
        "series_uid": series.uid,
        "frame_of_reference_uid": h.get("FrameOfReferenceUID"),
        "series_number": series.number,
        "description": series.description,
        "sequence": label,
        "fat_suppressed": series.fat_suppressed,
        "fluid_sensitive": series.fluid_sensitive,
        "plane": series.plane,
        "echo": series.echo,
        "echo_time": series.echo_time,
        "manufacturer": str(h.get("Manufacturer") or ""),
        "modality": str(h.get("Modality") or ""),
        "field_strength": h.get("MagneticFieldStrength"),
        "repetition_time": h.get("RepetitionTime"),
        "inversion_time": h.get("InversionTime"),
        "transfer_syntax": h.get("TransferSyntaxUID"),
        "stored_dtype": str(raw.dtype),
        "rescale": {
            "applied": rescaled,
            "slopes": sorted({float(s) for s in slopes}),
            "intercepts": sorted({float(i) for i in intercepts}),
            "per_slice": bool(len(set(slopes)) > 1 or len(set(intercepts)) > 1),
            "source": "RescaleSlope/RescaleIntercept" + (" (per-frame functional groups)" if first.frame is not None else ""),
        },
        "geometry": {**facts, "frame": "RAS", "sorted_by": "ImagePositionPatient along the slice normal"},
    }
    try:
        return Volume(data, LPS_TO_RAS @ affine_lps, metadata)
    except ParameterError as exc:  # e.g. positions so large the affine overflows
        raise InconsistentGeometryError(f"{_where(series)}: {exc}; the geometry tags are corrupt") from None


#: BitsAllocated values a greyscale MR image can have.
_VALID_BITS = (8, 16, 32, 64)


def _check_pixel_header(series: SeriesInfo, frames: list[Frame], by_file: dict[str, list[int]],
                        shape: tuple[int, int, int]) -> None:
    """Refuse, before any pixel is read, what cannot be a greyscale stack or would not fit in memory."""
    where = _where(series)
    for f in frames:
        if f.rows <= 0 or f.columns <= 0:
            raise NotAVolumeError(f"{f.path}: Rows x Columns is {f.rows} x {f.columns}; the image header is corrupt")
        if (f.rows, f.columns) != shape[1:]:
            raise NotAVolumeError(f"{f.path}: image is {f.rows} x {f.columns}, other slices are {shape[1]} x {shape[2]}")
        if f.bits_allocated is not None and f.bits_allocated not in _VALID_BITS:
            raise NotAVolumeError(
                f"{f.path}: BitsAllocated is {f.bits_allocated}; a greyscale image has 8, 16, 32 or 64 bits per pixel"
            )
        if f.samples != 1:
            raise NotAVolumeError(f"{f.path}: SamplesPerPixel is {f.samples}; bmeviz reads greyscale (1 sample) images")
        if f.frame is None and f.n_frames != 1:
            raise NotAVolumeError(
                f"{f.path}: NumberOfFrames is {f.n_frames} in a file without per-frame functional groups; bmeviz "
                "reads classic single-frame or enhanced multi-frame DICOM"
            )
        for name, v in (("RescaleSlope", f.slope), ("RescaleIntercept", f.intercept)):
            if not np.isfinite(v):
                raise NotAVolumeError(f"{f.path}: {name} is not a finite number; the pixel values cannot be scaled")
        if f.slope == 0:
            raise NotAVolumeError(f"{f.path}: RescaleSlope is 0 (every pixel would be the intercept); the header is corrupt")
    # what reading needs at most: the stored stack, its rescaled float32 copy, and the
    # largest single file decoded at once
    item = max((f.bits_allocated or 16) for f in frames) // 8
    n_vox = int(np.prod(shape, dtype=np.int64))
    per_file = max(frames[slots[0]].n_frames * shape[1] * shape[2] * item for slots in by_file.values())
    check_memory(n_vox * (item + 4 + 1) + per_file, f"{where}: {shape[0]} x {shape[1]} x {shape[2]} voxels")
