"""DICOM series: discovery from headers, grouping into stacks, and geometry-checked loading.

The flow (after nibabel's ``nicom`` and dicom2nifti, written anew):

1. :func:`scan` reads headers only (``stop_before_pixels``) of every file under a path;
   files that are not DICOM are skipped with one warning naming them. Enhanced
   (multi-frame) files contribute one entry per frame from their functional groups.
2. :func:`group` splits the images into stacks by SeriesInstanceUID and, where one UID
   holds several, by echo, image type, orientation and matrix size. Localizers are left
   out.
3. :func:`read_stack` sorts a stack by ImagePositionPatient projected on the slice
   normal, checks it forms a volume (enough slices, no duplicates, uniform spacing, no
   gantry tilt), reads and rescales the pixels, and builds the RAS affine.
"""

from __future__ import annotations

import io
import os
import stat
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    InconsistentGeometryError,
    NotAVolumeError,
    ParameterError,
    UnreadableFileError,
    check_memory,
    warn,
)
from ..volume import Volume, plane_of
from .sequence import classify, header_fields, is_fat_suppressed, is_fluid_sensitive

__all__ = ["Frame", "SeriesInfo", "scan", "group", "read_stack", "MIN_SLICES"]

#: Fewer slices than this do not make a volume.
MIN_SLICES = 3
#: Relative and absolute tolerance on the slice increment (uniform spacing check).
SPACING_RTOL, SPACING_ATOL = 0.02, 0.01
#: Largest angle (degrees) between slice steps and the slice normal before it is gantry tilt.
TILT_TOLERANCE_DEG = 0.5
#: Matrix/orientation rounding used when grouping.
_IOP_DECIMALS = 4

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_SKIP_NAMES = {"DICOMDIR", "LOCKFILE", "VERSION", ".DS_Store", "Thumbs.db"}


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


class _BoundedFile(io.BufferedReader):
    """A read-only file whose ``read(n)`` never asks for more bytes than are left.

    A corrupt length field (e.g. 0xFFFFFFF0) makes pydicom call ``read(length)``, and
    Python allocates the whole ``length`` before reading: gigabytes for a 1 kB file.
    Capping ``n`` at what the file holds makes such a file fail as truncated instead.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        raw = io.FileIO(os.fspath(path), "r")
        super().__init__(raw)
        self._size = os.fstat(raw.fileno()).st_size

    def read(self, n: int | None = -1) -> bytes:  # type: ignore[override]
        if n is not None and n > 1 << 20:  # small reads cannot hurt (and tell() costs a syscall)
            n = max(0, min(n, self._size - self.tell()))
        return super().read(n)


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
              "SliceThickness", "SpacingBetweenSlices", "PhotometricInterpretation"):
        h[k] = _plain(_value(ds, k))
    try:
        h["TransferSyntaxUID"] = str(ds.file_meta.TransferSyntaxUID)
    except Exception:  # absent, or a meta element pydicom cannot convert
        h["TransferSyntaxUID"] = None
    return h


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
        )
    ]


def _iter_files(path: Path, problems: list[str] | None = None) -> Iterable[Path]:
    if path.is_file():
        yield path
        return

    def onerror(exc: OSError) -> None:  # an unreadable sub-folder: say so instead of skipping silently
        if problems is not None:
            problems.append(f"{exc.filename} (cannot list: {exc.strerror or exc})")

    for root, dirs, files in os.walk(path, onerror=onerror):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name in _SKIP_NAMES:
                continue
            yield Path(root) / name


class _Refused(Exception):
    """A file the scan will not parse (the message says why); it is skipped with a warning."""


_DEFLATED = "1.2.840.10008.1.2.1.99"


def _meta_end(head: bytes) -> int | None:
    """Offset just past the file meta group (explicit VR little endian after 'DICM')."""
    import struct

    if head[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(head):
        group = struct.unpack_from("<H", head, pos)[0]
        if group != 2:
            return pos
        vr = head[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            if pos + 12 > len(head):
                return None
            pos += 12 + struct.unpack_from("<I", head, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", head, pos + 6)[0]
    return None


#: A deflated dataset may inflate to at most this many times its compressed size once it
#: passes _DEFLATE_FREE_BYTES (image data deflates 2-5 fold; only a bomb inflates 1000 fold).
_DEFLATE_MAX_RATIO = 100
_DEFLATE_FREE_BYTES = 64 << 20


def _check_deflated(fp: Any) -> None:
    """Refuse a deflated dataset that inflates absurdly (a zip bomb) or beyond memory.

    pydicom inflates the whole dataset in one call before parsing any of it; here it is
    inflated first in bounded chunks, only counting, and refused when it passes 100x its
    compressed size (beyond 64 MB) or a quarter of the memory limit.
    """
    import zlib

    from ..errors import format_bytes, memory_limit

    head = fp.read(8192)
    fp.seek(0)
    if _DEFLATED.encode() not in head:
        return
    start = _meta_end(head)
    if start is None:
        return
    compressed = max(1, os.fstat(fp.fileno()).st_size - start)
    limit = memory_limit()
    limit = (1 << 32) if limit is None else limit // 4
    limit = min(limit, max(_DEFLATE_FREE_BYTES, _DEFLATE_MAX_RATIO * compressed))
    fp.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        while True:
            chunk = fp.read(1 << 20)
            if not chunk:
                break
            while chunk:
                total += len(inflater.decompress(chunk, 1 << 24))
                chunk = inflater.unconsumed_tail
                if total > limit:
                    raise _Refused(f"deflated dataset of {format_bytes(compressed)} expands beyond "
                                   f"{format_bytes(limit)}: refused as a decompression bomb")
            if inflater.eof:
                break
    except zlib.error:
        pass  # pydicom will report the corrupt stream
    finally:
        fp.seek(0)


def _looks_like_nifti(p: Path) -> bool:
    return p.name.endswith((".nii", ".nii.gz", ".json", ".csv", ".txt", ".md", ".png", ".jpg"))


#: The only top-level tags the scan parses (the rest are skipped unparsed: ~2x faster).
SCAN_TAGS = sorted(set(header_fields) | {
    "SOPClassUID", "SeriesInstanceUID", "SeriesNumber", "InstanceNumber", "Modality", "StudyInstanceUID",
    "SeriesDate", "SeriesTime", "BodyPartExamined", "SliceThickness", "SpacingBetweenSlices",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "NumberOfFrames",
    "EchoNumbers", "EchoTime", "RescaleSlope", "RescaleIntercept", "SamplesPerPixel",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PlanarConfiguration", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
})

_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": "<",  # implicit VR little endian
    "1.2.840.10008.1.2.1": "<",  # explicit VR little endian
    "1.2.840.10008.1.2.2": ">",  # explicit VR big endian (retired)
}


def _single_int(value: Any) -> int | None:
    """An integer tag holding exactly one value (pydicom refuses several in the pixel module)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return None
    return _int(value)


def _pixel_layout(ds: Any, fp: Any, size: int) -> PixelLayout | None:
    """Layout of native pixel data starting at ``fp``'s position, or None to let pydicom decode.

    Only an unambiguous layout qualifies: a native transfer syntax, the encoding the
    dataset was actually read with (a file labelled implicit VR but written explicit is
    read as pydicom reads it), valid pixel-module values, and a PixelData element that
    ends the file and whose length is exactly what Rows x Columns x frames x bytes needs
    (plus one pad byte).
    Anything else goes through pydicom, which decodes it or says what is wrong, so the
    fast path never returns pixels pydicom would not.
    """
    try:
        syntax = str(ds.file_meta.TransferSyntaxUID)
        implicit, little = ds.original_encoding
    except (AttributeError, TypeError, ValueError):
        return None
    if syntax not in _NATIVE_SYNTAXES or implicit is None or little is None:
        return None
    order = "<" if little else ">"
    for keyword in ("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
                    "PhotometricInterpretation", "Rows", "Columns", "NumberOfFrames", "PlanarConfiguration"):
        try:
            if keyword in ds and _value(ds, keyword) is None:
                return None  # present but unreadable (e.g. IS '1e309'): pydicom will refuse it
        except Exception:
            return None
    bits = _single_int(_value(ds, "BitsAllocated"))
    stored = _single_int(_value(ds, "BitsStored"))
    high = _single_int(_value(ds, "HighBit"))
    representation = _single_int(_value(ds, "PixelRepresentation"))
    samples = _single_int(_value(ds, "SamplesPerPixel"))
    photometric = _value(ds, "PhotometricInterpretation")
    rows, cols = _single_int(_value(ds, "Rows")) or 0, _single_int(_value(ds, "Columns")) or 0
    frames_value = _value(ds, "NumberOfFrames")
    n_frames = 1 if frames_value is None else _single_int(frames_value)
    if n_frames is None or (frames_value is not None and n_frames == 0):
        return None  # present but not a number pydicom can use: let it say so
    if (bits not in (8, 16, 32) or stored != bits or high not in (None, bits - 1) or representation not in (0, 1)
            or samples != 1 or photometric is None or rows <= 0 or cols <= 0 or n_frames <= 0):
        return None
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    group_elem = (b"\xe0\x7f\x10\x00" if order == "<" else b"\x7f\xe0\x00\x10")
    if head[:4] != group_elem:
        return None
    if implicit:
        length, header_len = int.from_bytes(head[4:8], "little" if little else "big"), 8
    else:
        if len(head) < 12 or head[4:6] not in (b"OB", b"OW"):
            return None
        length, header_len = int.from_bytes(head[8:12], "little" if little else "big"), 12
    itemsize = bits // 8
    needed = rows * cols * n_frames * itemsize
    if length not in (needed, needed + 1) or start + header_len + length != size:
        # encapsulated, wrong length, truncated, or followed by more elements (padding, a
        # signature, or garbage): pydicom will read it or say what is wrong
        return None
    signed = representation == 1
    dtype = f"{order}{'i' if signed else 'u'}{itemsize}" if bits > 8 else ("i1" if signed else "u1")
    return PixelLayout(offset=start + header_len, dtype=dtype, n_frames=n_frames, rows=rows, columns=cols,
                       photometric=str(photometric))


def scan(path: str | os.PathLike) -> list[Frame]:
    """Header entries of every DICOM image under ``path`` (a folder, recursively, or a file).

    Reads no pixel data. Files that are not DICOM, or whose header is broken, are
    skipped with one :class:`~bmeviz.BmevizWarning` that names them.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(path)
    if not root.exists():
        raise UnreadableFileError(f"{root}: no such file or folder")
    if not root.is_file() and not root.is_dir():
        raise UnreadableFileError(f"{root}: not a regular file or folder (a device, pipe or socket?)")
    frames: list[Frame] = []
    skipped: list[str] = []
    no_image: list[str] = []
    for f in _iter_files(root, skipped):
        if _looks_like_nifti(f):
            skipped.append(f"{f} (not DICOM)")
            continue
        try:
            if not stat.S_ISREG(os.stat(f).st_mode):  # a pipe or device would block or never end
                skipped.append(f"{f} (not a regular file)")
                continue
            with _BoundedFile(f) as fp:
                _check_deflated(fp)
                ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=SCAN_TAGS)
                layout = _pixel_layout(ds, fp, os.fstat(fp.fileno()).st_size)
        except _Refused as exc:
            skipped.append(f"{f} ({exc})")
            continue
        except InvalidDicomError:
            skipped.append(f"{f} (not DICOM)")
            continue
        except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            skipped.append(f"{f} (unreadable header: {type(exc).__name__}: {exc})")
            continue
        except Exception as exc:  # pydicom raises many things on hostile files
            skipped.append(f"{f} (unreadable header: {type(exc).__name__}: {exc})")
            continue
        except BaseException as exc:
            if not _is_panic(exc):
                raise
            skipped.append(f"{f} (unreadable header: {exc})")
            continue
        if _value(ds, "Rows") is None or _value(ds, "Columns") is None:
            if _is_image_storage(ds):
                skipped.append(f"{f} (an image without Rows or Columns: the header is corrupt)")
            else:
                no_image.append(str(f))
            continue
        try:
            frames.extend(_frames_of(ds, str(f), layout))
        except NotAVolumeError:
            raise
        except Exception as exc:
            skipped.append(f"{f} (unusable header: {type(exc).__name__}: {exc})")
    if no_image:
        skipped.append(f"{len(no_image)} DICOM file(s) with no image (reports, presentation states...): "
                       + ", ".join(no_image[:5]) + (" ..." if len(no_image) > 5 else ""))
    if skipped:
        shown = skipped[:10]
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        warn(f"{root}: skipped {len(skipped)} file(s): " + "; ".join(shown) + more)
    if not frames:
        if root.is_file():
            reason = skipped[0].removeprefix(str(root)).strip() if skipped else ""
            raise UnreadableFileError(f"{root}: not a readable DICOM image file" + (f" {reason}" if reason else ""))
        if skipped:
            raise UnreadableFileError(
                f"{root}: no readable DICOM images: {len(skipped)} skipped, e.g. {skipped[0]}"
                + ("" if len(skipped) == 1 else " (the warning lists the others)")
            )
        raise UnreadableFileError(f"{root}: no DICOM images found (is this the right folder?)")
    return frames


# ----------------------------------------------------------------------------- grouping
@dataclass(frozen=True)
class SeriesInfo:
    """One series (one stack of slices) found by :func:`bmeviz.list_series`.

    ``key`` is unique in a listing and is what ``bmeviz.load(path, series=key)`` takes;
    it is the SeriesInstanceUID, with ``#echo=N``, ``#type=...`` or ``#stack=N`` appended
    when one UID holds several stacks.
    """

    key: str
    uid: str
    number: int | None
    description: str
    sequence: str
    fat_suppressed: bool
    fluid_sensitive: bool
    n_slices: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] | None  # (slice, row, column) mm; slice from positions
    plane: str
    echo: float | None
    echo_time: float | None
    image_type: tuple[str, ...]
    manufacturer: str
    modality: str
    n_files: int
    frames: tuple[Frame, ...] = field(repr=False, compare=False)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.path for f in self.frames))

    def to_dict(self) -> dict:
        """JSON-friendly record (no file list)."""
        return {
            "key": self.key,
            "uid": self.uid,
            "number": self.number,
            "description": self.description,
            "sequence": self.sequence,
            "fat_suppressed": self.fat_suppressed,
            "fluid_sensitive": self.fluid_sensitive,
            "n_slices": self.n_slices,
            "shape": list(self.shape),
            "spacing": None if self.spacing is None else [round(s, 4) for s in self.spacing],
            "plane": self.plane,
            "echo": self.echo,
            "echo_time": self.echo_time,
            "image_type": "\\".join(self.image_type),
            "manufacturer": self.manufacturer,
            "modality": self.modality,
            "n_files": self.n_files,
        }


def _orientation_key(f: Frame) -> tuple | None:
    return None if f.orientation is None else tuple(np.round(f.orientation, _IOP_DECIMALS))


def _normal(orientation: Sequence[float]) -> np.ndarray:
    o = np.asarray(orientation, dtype=float)
    n = np.cross(o[:3], o[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def _is_localizer(f: Frame) -> bool:
    return "LOCALIZER" in f.image_type or classify(f.header) == "localizer"


def group(frames: Sequence[Frame]) -> list[SeriesInfo]:
    """Split header entries into stacks (series), localizers left out, sorted by series number."""
    by_uid: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        if not _is_localizer(f):
            by_uid[f.series_uid].append(f)
    out: list[SeriesInfo] = []
    for uid, items in by_uid.items():
        splits: list[tuple[str, list[Frame]]] = [("", items)]
        for name, keyfn in (
            ("echo", lambda f: f.echo),
            ("type", lambda f: f.image_type),
            ("size", lambda f: (f.rows, f.columns)),
            ("stack", _orientation_key),
        ):
            new = []
            for suffix, part in splits:
                buckets: dict[Any, list[Frame]] = defaultdict(list)
                for f in part:
                    buckets[keyfn(f)].append(f)
                if name == "stack" and None in buckets and len(buckets) == 2:
                    # images without orientation stay with the one stack: check_geometry names them
                    lost = buckets.pop(None)
                    next(iter(buckets.values())).extend(lost)
                if len(buckets) == 1:
                    new.append((suffix, part))
                    continue
                # echo splits only when they repeat positions (true multi-echo); otherwise
                # e.g. a slightly varying TE would break one stack into many.
                if name == "echo" and not _positions_repeat(part):
                    new.append((suffix, part))
                    continue
                for i, (k, b) in enumerate(sorted(buckets.items(), key=lambda kv: _sort_key(kv[0]))):
                    if name == "echo":
                        tag = f"echo={_fmt_echo(k)}"
                    elif name == "type":
                        tag = "type=" + "\\".join(k)
                    elif name == "size":
                        tag = f"size={k[0]}x{k[1]}"
                    else:
                        tag = f"stack={i + 1}"
                    new.append((f"{suffix}#{tag}", b))
            splits = new
        multi_echo = len({f.echo for f in items}) > 1 and _positions_repeat(items)
        for suffix, part in splits:
            out.append(_series_info(uid + suffix, uid, part, multi_echo))
    out.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.key))
    return out


def _sort_key(k: Any) -> tuple:
    if k is None:
        return (0, "")
    if isinstance(k, (int, float)):
        return (1, float(k))
    return (2, str(k))


def _fmt_echo(e: Any) -> str:
    if e is None:
        return "none"
    return str(int(e)) if float(e).is_integer() else f"{e:g}"


def _positions_repeat(frames: Sequence[Frame]) -> bool:
    pos = [f.position for f in frames if f.position is not None]
    return len({tuple(np.round(p, 2)) for p in pos}) < len(pos)


def _series_info(key: str, uid: str, frames: list[Frame], multi_echo: bool) -> SeriesInfo:
    h = frames[0].header
    label = classify(h)
    f0 = frames[0]
    positions = [f.position for f in frames if f.position is not None]
    n_positions = len({tuple(np.round(p, 2)) for p in positions}) or len(frames)
    spacing = None
    plane = "unknown"
    if f0.orientation is not None:
        normal = _normal(f0.orientation)
        plane = plane_of(normal)
        if f0.pixel_spacing is not None:
            d = np.unique(np.round([np.dot(p, normal) for p in positions], 3))
            slice_step = float(np.median(np.diff(d))) if d.size > 1 else float("nan")
            spacing = (slice_step, f0.pixel_spacing[0], f0.pixel_spacing[1])
    echoes = {f.echo for f in frames}
    echo = f0.echo if (multi_echo and len(echoes) == 1) else None
    return SeriesInfo(
        key=key,
        uid=uid,
        number=f0.series_number,
        description=str(h.get("SeriesDescription") or h.get("ProtocolName") or ""),
        sequence=label,
        fat_suppressed=is_fat_suppressed(h) or label in {"STIR", "DIXON WATER"},
        fluid_sensitive=is_fluid_sensitive(label),
        n_slices=n_positions,
        shape=(n_positions, f0.rows, f0.columns),
        spacing=spacing,
        plane=plane,
        echo=echo,
        echo_time=f0.echo_time if len({f.echo_time for f in frames}) == 1 else None,
        image_type=f0.image_type,
        manufacturer=str(h.get("Manufacturer") or ""),
        modality=str(h.get("Modality") or ""),
        n_files=len({f.path for f in frames}),
        frames=tuple(frames),
    )


# ----------------------------------------------------------------------------- loading
def _where(series: SeriesInfo) -> str:
    files = series.files
    folder = os.path.commonpath(files) if len(files) > 1 else files[0]
    desc = f" ({series.description})" if series.description else ""
    return f"{folder}: series {series.number if series.number is not None else '?'}{desc}"


def check_geometry(series: SeriesInfo) -> tuple[list[Frame], np.ndarray, dict]:
    """Sort a stack and check it forms a volume; returns (sorted frames, LPS affine, facts).

    Raises
    ------
    NotAVolumeError
        Too few slices, images without position, all images at one position, duplicates.
    InconsistentGeometryError
        Mixed orientations or pixel spacing, uneven slice increment (missing slices), gantry tilt.
    """
    frames = list(series.frames)
    where = _where(series)
    missing = [f.path for f in frames if f.position is None or f.orientation is None or f.pixel_spacing is None]
    if missing:
        raise NotAVolumeError(
            f"{where}: {len(missing)} image(s) lack ImagePositionPatient, ImageOrientationPatient or "
            f"PixelSpacing (e.g. {missing[0]}), so their place in space is unknown; bmeviz cannot build "
            "a volume from them"
        )
    orientations = {_orientation_key(f) for f in frames}
    if len(orientations) > 1:
        planes = sorted({plane_of(_normal(o)) for o in orientations})
        raise InconsistentGeometryError(
            f"{where}: mixed slice orientations ({len(orientations)} different ImageOrientationPatient, "
            f"{', '.join(planes)}) in one series; pick one stack with series='<key>' from bmeviz.list_series"
        )
    spacings = {tuple(np.round(f.pixel_spacing, 4)) for f in frames}
    if len(spacings) > 1:
        raise InconsistentGeometryError(f"{where}: mixed PixelSpacing {sorted(spacings)} in one series")
    if len(frames) < MIN_SLICES:
        raise NotAVolumeError(
            f"{where}: too few slices ({len(frames)}); a volume needs at least {MIN_SLICES}"
        )
    orientation = np.asarray(frames[0].orientation, dtype=float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    if abs(np.dot(row_dir, col_dir)) > 1e-3 or not (
        np.isclose(np.linalg.norm(row_dir), 1, atol=1e-3) and np.isclose(np.linalg.norm(col_dir), 1, atol=1e-3)
    ):
        raise InconsistentGeometryError(
            f"{where}: ImageOrientationPatient {list(orientation)} is not two orthogonal unit vectors"
        )
    normal = _normal(orientation)
    positions = np.array([f.position for f in frames], dtype=float)
    d = positions @ normal
    order = np.argsort(d, kind="stable")
    frames = [frames[i] for i in order]
    positions, d = positions[order], d[order]
    steps = np.diff(d)
    n_unique = 1 + int(np.sum(steps > 1e-3))
    if n_unique == 1:
        raise NotAVolumeError(
            f"{where}: not a volume: all {len(frames)} images lie at one position (a time series, "
            "repeated acquisitions or derived images of one slice)"
        )
    if n_unique < len(frames):
        raise NotAVolumeError(
            f"{where}: not a volume: {len(frames)} images at only {n_unique} positions (duplicate "
            "slices; several acquisitions, echoes or time points mixed in one series?)"
        )
    if n_unique < MIN_SLICES:
        raise NotAVolumeError(f"{where}: too few slices ({n_unique}); a volume needs at least {MIN_SLICES}")
    step = float(np.median(steps))
    bad = np.abs(steps - step) > max(SPACING_ATOL, SPACING_RTOL * step)
    if np.any(bad):
        i = int(np.argmax(bad))
        ratio = steps[i] / step
        hint = (f"about {round(ratio) - 1} missing slice(s)" if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1
                else "irregular positions")
        raise InconsistentGeometryError(
            f"{where}: uneven slice increment: {steps[i]:.3f} mm between slices {i} and {i + 1} where "
            f"{step:.3f} mm is usual ({hint}; files {Path(frames[i].path).name} and "
            f"{Path(frames[i + 1].path).name}); bmeviz will not interpolate a volume with gaps"
        )
    total = positions[-1] - positions[0]
    along = float(np.dot(total, normal))
    across = float(np.linalg.norm(total - along * normal))
    tilt = float(np.degrees(np.arctan2(across, abs(along))))
    if tilt > TILT_TOLERANCE_DEG:
        raise InconsistentGeometryError(
            f"{where}: gantry tilt / sheared stack: slices step {tilt:.1f} degrees off the slice normal; "
            "resample it (e.g. dcm2niix's tilt correction) before measuring"
        )
    ps = frames[0].pixel_spacing
    if not (ps[0] > 0 and ps[1] > 0):
        raise InconsistentGeometryError(
            f"{where}: PixelSpacing {list(ps)} is not positive (e.g. {frames[0].path}); the header is corrupt"
        )
    affine = np.eye(4)
    affine[:3, 0] = total / (len(frames) - 1)
    affine[:3, 1] = col_dir * ps[0]
    affine[:3, 2] = row_dir * ps[1]
    affine[:3, 3] = positions[0]
    facts = {"slice_spacing_mm": step, "n_slices": len(frames)}
    thickness = _float(frames[0].header.get("SliceThickness"))
    if thickness is not None and abs(thickness - step) > max(SPACING_ATOL, SPACING_RTOL * step):
        facts["slice_thickness_mm"] = thickness
        facts["note"] = (f"slice spacing from positions is {step:.3f} mm; SliceThickness says {thickness:g} mm "
                         "(gap or overlap); positions were used")
    return frames, affine, facts


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
