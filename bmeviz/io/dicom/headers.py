"""DICOM headers: the :class:`Frame` record of one 2D image and how it is read from a dataset.

Values are read defensively (a corrupt element counts as absent); enhanced (multi-frame)
files give one :class:`Frame` per frame from their functional groups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import NotAVolumeError
from ..sequence import header_fields

@dataclass(frozen=True)
class Frame:
    """One 2D image from the header scan: a single-frame file or one frame of an enhanced file."""

    path: str
    frame: int | None  # index into an enhanced file's frames; None for a single-frame file
    series_uid: str
    series_number: int | None
    instance_number: int | None
    position: tuple[float, float, float] | None  # ImagePositionPatient (LPS mm)
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    rows: int
    columns: int
    echo: float | None  # echo number, else echo time
    echo_time: float | None
    image_type: tuple[str, ...]
    slope: float
    intercept: float
    header: dict = field(compare=False, repr=False)  # the classifier's fields + study facts
    pixels: "PixelLayout | None" = field(default=None, compare=False, repr=False)
    bits_allocated: int | None = None  # BitsAllocated (None: absent or unreadable)
    samples: int = 1  # SamplesPerPixel
    n_frames: int = 1  # NumberOfFrames of the file this image comes from
    mosaic: int = 0  # Siemens mosaic: images tiled in this one (NumberOfImagesInMosaic; -1 count unknown)


@dataclass(frozen=True)
class PixelLayout:
    """Where a file's native (uncompressed) pixel data lies, found during the header scan.

    With it, :func:`read_stack` takes the pixel bytes straight from the file (numpy) and
    does not parse the header a second time. Compressed or unusual data has no layout
    and is decoded by pydicom (+ pylibjpeg).
    """

    offset: int  # byte offset of the pixel values
    dtype: str  # numpy dtype string with byte order, e.g. '<i2'
    n_frames: int
    rows: int
    columns: int
    photometric: str



def _is_image_storage(ds: Any) -> bool:
    """The file's SOP class is an image storage class (MR, CT, enhanced, secondary capture...)."""
    uid = _value(ds, "SOPClassUID")
    if uid is None:
        try:
            uid = ds.file_meta.MediaStorageSOPClassUID
        except Exception:  # absent, or a corrupt meta element pydicom cannot convert
            return False
    try:
        name = getattr(uid, "name", "") or ""
    except Exception:
        return False
    return "Image Storage" in name


def _is_panic(exc: BaseException) -> bool:
    """A Rust panic from a pixel decoder (pyo3's PanicException derives from BaseException)."""
    return type(exc).__name__ == "PanicException"


def _value(ds: Any, keyword: str, default: Any = None) -> Any:
    try:
        elem = ds.get(keyword, default)
    except Exception:  # a corrupt element: treat as absent
        return default
    if elem is None:
        return default
    return elem


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(np.isfinite(out)):
        return None
    return out


def _float(value: Any, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        out = float(value)
    except (TypeError, ValueError, IndexError):
        return default
    return out if np.isfinite(out) else default


def _rescale(value: Any, default: float) -> float:
    """RescaleSlope/Intercept: ``default`` when absent, NaN when present but not a finite number
    (refused when the pixels are read, rather than silently replaced)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    out = _float(value)
    return float("nan") if out is None else out


def _int(value: Any) -> int | None:
    f = _float(value)
    return None if f is None else int(f)


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a DICOM value."""
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return value
    if type(value).__name__ in {"MultiValue", "list", "tuple"}:
        return [_plain(v) for v in value]
    if type(value).__name__ in {"DSfloat", "DSdecimal"}:
        return float(value)
    if type(value).__name__ == "IS":
        return int(value)
    return str(value)


#: Classifier fields holding numbers; the others are text (a string or a list of strings).
_NUMERIC_FIELDS = {"InversionTime", "RepetitionTime", "EchoTime", "MagneticFieldStrength"}


def _header(ds: Any) -> dict:
    h = {k: _plain(_value(ds, k)) for k in header_fields}
    for k, v in h.items():  # a corrupt VR can make text a number: the classifier wants text
        if k not in _NUMERIC_FIELDS and v is not None and not isinstance(v, (str, list)):
            h[k] = str(v)
    for k in ("Modality", "StudyInstanceUID", "SeriesDate", "SeriesTime", "BodyPartExamined",
              "SliceThickness", "SpacingBetweenSlices", "PhotometricInterpretation", "FrameOfReferenceUID"):
        h[k] = _plain(_value(ds, k))
    try:
        h["TransferSyntaxUID"] = str(ds.file_meta.TransferSyntaxUID)
    except Exception:  # absent, or a meta element pydicom cannot convert
        h["TransferSyntaxUID"] = None
    return h


#: Siemens' private block holding NumberOfImagesInMosaic at (0019,xx0A).
SIEMENS_MR_CREATOR = "SIEMENS MR HEADER"
MOSAIC_TAGS = [0x00190010, 0x0019100A]


def _mosaic_images(ds: Any, image_type: tuple[str, ...]) -> int:
    """How many images a Siemens mosaic tiles in this one: 0 when not a mosaic, -1 when the
    ImageType says MOSAIC but the count (private tag NumberOfImagesInMosaic) is absent."""
    count = 0
    try:
        creator = ds.get(0x00190010)
        if creator is not None and str(creator.value).strip() == SIEMENS_MR_CREATOR:
            elem = ds.get(0x0019100A)
            value = None if elem is None else elem.value
            if isinstance(value, bytes) and len(value) >= 2:  # read as UN (implicit VR): an US
                value = int.from_bytes(value[:2], "little")
            count = max(0, _int(value) or 0)
    except Exception:  # a corrupt private element: judge by ImageType only
        count = 0
    if count == 0 and "MOSAIC" in image_type:
        return -1
    return count


def _first(seq: Any) -> Any:
    try:
        return seq[0] if seq else None
    except Exception:
        return None


def _group_item(frame_groups: Any, shared: Any, keyword: str) -> Any:
    """The first item of a functional-group macro, per-frame first then shared."""
    for groups in (frame_groups, shared):
        if groups is None:
            continue
        item = _first(_value(groups, keyword))
        if item is not None:
            return item
    return None


def _frames_of(ds: Any, path: str, layout: PixelLayout | None = None) -> list[Frame]:
    """Header entries of one dataset (one for classic, one per frame for enhanced)."""
    uid = str(_value(ds, "SeriesInstanceUID", "")) or f"no-series-uid:{os.path.dirname(path)}"
    number = _int(_value(ds, "SeriesNumber"))
    header = _header(ds)
    rows, columns = _int(_value(ds, "Rows")) or 0, _int(_value(ds, "Columns")) or 0
    image_type = tuple(str(v).upper() for v in (_value(ds, "ImageType") or ()))
    n_frames = _int(_value(ds, "NumberOfFrames")) or 1
    bits = _int(_value(ds, "BitsAllocated"))
    samples = _int(_value(ds, "SamplesPerPixel")) or 1
    per_frame = _value(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame is not None:
        shared = _first(_value(ds, "SharedFunctionalGroupsSequence"))
        # enhanced MR: flatten the sequence facts the classifier wants
        for macro, keys in (
            ("MRTimingAndRelatedParametersSequence", ("RepetitionTime",)),
            ("MRModifierSequence", ("InversionRecovery",)),
            ("MRImagingModifierSequence", ()),
        ):
            item = _group_item(None, shared, macro)
            for key in keys:
                if item is not None and header.get(key) is None:
                    header[key] = _plain(_value(item, key))
        for key in ("SpectrallySelectedSuppression", "PulseSequenceName"):
            if header.get(key) is None:
                header[key] = _plain(_value(ds, key))
        frames = []
        if len(per_frame) != n_frames:
            raise NotAVolumeError(
                f"{path}: NumberOfFrames is {n_frames} but the per-frame functional groups hold "
                f"{len(per_frame)} frames; the file is inconsistent"
            )
        for i, fg in enumerate(per_frame):
            pos = _group_item(fg, shared, "PlanePositionSequence")
            ori = _group_item(fg, shared, "PlaneOrientationSequence")
            meas = _group_item(fg, shared, "PixelMeasuresSequence")
            pvt = _group_item(fg, shared, "PixelValueTransformationSequence")
            echo_item = _group_item(fg, shared, "MREchoSequence")
            ftype = _group_item(fg, shared, "MRImageFrameTypeSequence")
            te = _float(_value(echo_item, "EffectiveEchoTime")) if echo_item is not None else None
            if header.get("EchoTime") is None and te is not None:
                header["EchoTime"] = te
            if header.get("InversionTime") is None:
                mod = _group_item(fg, shared, "MRModifierSequence")
                ti = _float(_value(mod, "InversionTimes")) if mod is not None else None
                if ti is not None:
                    header["InversionTime"] = ti
            frames.append(
                Frame(
                    path=path,
                    frame=i,
                    series_uid=uid,
                    series_number=number,
                    instance_number=i + 1,
                    position=_floats(_value(pos, "ImagePositionPatient"), 3) if pos is not None else None,
                    orientation=_floats(_value(ori, "ImageOrientationPatient"), 6) if ori is not None else None,
                    pixel_spacing=_floats(_value(meas, "PixelSpacing"), 2) if meas is not None else None,
                    rows=rows,
                    columns=columns,
                    echo=te,
                    echo_time=te,
                    image_type=tuple(str(v).upper() for v in (_value(ftype, "FrameType") or image_type))
                    if ftype is not None
                    else image_type,
                    slope=_rescale(_value(pvt, "RescaleSlope"), 1.0) if pvt is not None else 1.0,
                    intercept=_rescale(_value(pvt, "RescaleIntercept"), 0.0) if pvt is not None else 0.0,
                    header=header,
                    pixels=layout,
                    bits_allocated=bits,
                    samples=samples,
                    n_frames=n_frames,
                )
            )
        return frames
    echo_number = _float(_value(ds, "EchoNumbers"))
    echo_time = _float(_value(ds, "EchoTime"))
    return [
        Frame(
            path=path,
            frame=None,
            series_uid=uid,
            series_number=number,
            instance_number=_int(_value(ds, "InstanceNumber")),
            position=_floats(_value(ds, "ImagePositionPatient"), 3),
            orientation=_floats(_value(ds, "ImageOrientationPatient"), 6),
            pixel_spacing=_floats(_value(ds, "PixelSpacing"), 2),
            rows=rows,
            columns=columns,
            echo=echo_number if echo_number is not None else echo_time,
            echo_time=echo_time,
            image_type=image_type,
            slope=_rescale(_value(ds, "RescaleSlope"), 1.0),
            intercept=_rescale(_value(ds, "RescaleIntercept"), 0.0),
            header=header,
            pixels=layout,
            bits_allocated=bits,
            samples=samples,
            n_frames=n_frames,
            mosaic=_mosaic_images(ds, image_type),
        )
    ]

