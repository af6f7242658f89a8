"""Fuzzing harness shared by the CI fuzz suite (tests/fuzz/) and the long local run
(benchmarks/fuzz_long.py): seed inputs, mutators, and a guarded runner.

A case passes when the loader returns a sane :class:`bmeviz.Volume` or raises a
:class:`bmeviz.BmevizError`. It fails on any other exception, on a hang (per-case time
limit) and on a giant allocation: each case runs with the address space capped a little
above what the process uses (``RLIMIT_AS``), so a loader that tries to allocate more than
the input can justify hits ``MemoryError``; one that turns that ``MemoryError`` into a
BmevizError still fails here (the size must be refused *before* allocating).

Everything is deterministic: seeds are generated, mutations drawn by hypothesis with a
fixed seed (``derandomize``) or by ``random.Random(seed)``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import resource
import signal
import struct
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Identifiers planted in every synthetic DICOM seed (the privacy tests look for them).
PHI = {
    "PatientName": "Fuzzson^Hostile",
    "PatientID": "PID-FZ-314159",
    "PatientBirthDate": "19561231",
    "AccessionNumber": "ACC-FZ-271828",
    "InstitutionName": "Clinic Omicron Fuzz",
}

#: A case taking longer than this (seconds) is a hang.
CASE_TIMEOUT_S = float(os.environ.get("BMEVIZ_FUZZ_CASE_TIMEOUT", "20"))
#: Address space a case may add on top of what the process already maps.
CASE_HEADROOM_BYTES = int(float(os.environ.get("BMEVIZ_FUZZ_HEADROOM_MB", "1536")) * 2**20)


# ----------------------------------------------------------------------------- seeds
def synthetic_volume(shape=(5, 16, 12), *, seed: int = 0, dtype=np.float32):
    """A small volume with an oblique, DICOM-handed affine (STIR-like values)."""
    import bmeviz

    rng = np.random.default_rng(seed)
    arr = rng.normal(200, 25, size=shape).astype(dtype)
    t = np.deg2rad(15.0)
    normal = np.array([0.0, -np.cos(t), np.sin(t)])
    col = np.array([-1.0, 0.0, 0.0])
    row = np.cross(normal, col)
    aff = np.eye(4)
    aff[:3, 0], aff[:3, 1], aff[:3, 2] = normal * 3.0, row * 0.7, col * 0.6
    aff[:3, 3] = (-20.0, 35.0, 10.0)
    return bmeviz.Volume(arr, aff, {"description": "STIR fuzz", "sequence": "STIR"})


def write_classic_series(folder: Path, volume=None, **kwargs) -> Path:
    """A classic single-frame explicit-VR-little-endian MR series with planted identifiers."""
    from bmeviz.io.dicom_write import write_dicom_series

    volume = synthetic_volume() if volume is None else volume
    kwargs.setdefault("patient", PHI)
    kwargs.setdefault("sequence", "STIR")
    return write_dicom_series(volume, folder, **kwargs)


def write_enhanced(path: Path, volume=None, *, transfer_syntax: str | None = None) -> Path:
    """A minimal Enhanced MR (multi-frame) file: per-frame positions, shared orientation,
    spacing and rescale, with planted identifiers."""
    import pydicom
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

    volume = synthetic_volume() if volume is None else volume
    data = np.asarray(volume.array)
    lo, hi = float(data.min()), float(data.max())
    slope = (hi - lo) / 30000.0 if hi > lo else 1.0
    stored = np.rint((data - lo) / slope).astype(np.int16)
    lps = np.diag([-1.0, -1.0, 1.0]) @ volume.affine[:3, :]
    col_step, row_step, slice_step = lps[:, 2], lps[:, 1], lps[:, 0]
    sp_c, sp_r = float(np.linalg.norm(col_step)), float(np.linalg.norm(row_step))
    iop = [*(col_step / sp_c), *(row_step / sp_r)]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    for k, v in PHI.items():
        setattr(ds, k, v)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SeriesNumber = 3
    ds.SeriesDescription = "STIR enhanced fuzz"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ScanningSequence, ds.SequenceVariant = ["SE", "IR"], ["SK"]
    ds.InversionTime = 160.0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(data.shape[1]), int(data.shape[2])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.NumberOfFrames = int(data.shape[0])
    shared = Dataset()
    ori = Dataset()
    ori.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
    meas = Dataset()
    meas.PixelSpacing = [f"{sp_r:.6f}", f"{sp_c:.6f}"]
    meas.SliceThickness = f"{float(np.linalg.norm(slice_step)):.4f}"
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = f"{slope:.10g}", f"{lo:.10g}", "US"
    shared.PlaneOrientationSequence = Sequence([ori])
    shared.PixelMeasuresSequence = Sequence([meas])
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for s in range(data.shape[0]):
        fg = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [f"{v:.6f}" for v in lps[:, 3] + s * slice_step]
        fg.PlanePositionSequence = Sequence([pos])
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_nifti(path: Path, volume=None, *, dtype=np.int16, slope: float | None = 2.5) -> Path:
    """A small NIfTI-1 file (``.nii`` or ``.nii.gz``) with scl_slope set."""
    import nibabel as nib

    volume = synthetic_volume() if volume is None else volume
    data = volume.array.astype(dtype)
    img = nib.Nifti1Image(data.transpose(2, 1, 0), volume.affine @ _reverse())
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def _reverse() -> np.ndarray:
    from bmeviz.volume import REVERSE_AXES

    return REVERSE_AXES


# ----------------------------------------------------------------------------- DICOM element map
@dataclass(frozen=True)
class Span:
    """Where one top-level element lies in a file's bytes."""

    tag: int  # group << 16 | element
    vr: str | None  # None for implicit VR
    start: int  # first byte of the element header
    value_start: int
    length: int  # value length (0xFFFFFFFF: undefined)
    little: bool
    explicit: bool

    @property
    def end(self) -> int:
        return self.value_start + (0 if self.length == 0xFFFFFFFF else self.length)


_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _meta_spans(data: bytes) -> list[Span]:
    """Elements of the file meta group (always explicit VR little endian) after 'DICM'."""
    spans = []
    pos = 132 if data[128:132] == b"DICM" else 0
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 2:
            break
        vr = data[pos + 4:pos + 6].decode("latin-1")
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                break
            length = struct.unpack_from("<I", data, pos + 8)[0]
            value = pos + 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            value = pos + 8
        spans.append(Span(group << 16 | elem, vr, pos, value, length, True, True))
        if length == 0xFFFFFFFF:
            break
        pos = value + length
    return spans


def element_spans(data: bytes) -> list[Span]:
    """Top-level elements (file meta and dataset) with their byte offsets; [] if unparsable."""
    import pydicom

    spans = _meta_spans(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        implicit, little = ds.original_encoding
    except Exception:
        return spans
    explicit = not implicit
    for tag in ds.keys():
        try:
            raw = ds.get_item(tag)
        except Exception:
            continue
        tell = getattr(raw, "value_tell", None)
        if tell is None or not getattr(raw, "is_raw", False):
            continue
        vr = raw.VR if explicit else None
        head = 12 if (explicit and vr in _LONG_VRS) else 8
        spans.append(Span(int(tag), vr, tell - head, tell, raw.length, little, explicit))
    return spans


def encode_element(span: Span, value: bytes) -> bytes:
    """Bytes of ``span``'s element with a new value (same tag and VR, new length)."""
    e = "<" if span.little else ">"
    group, elem = span.tag >> 16, span.tag & 0xFFFF
    head = struct.pack(e + "HH", group, elem)
    if not span.explicit:
        return head + struct.pack(e + "I", len(value)) + value
    vr = (span.vr or "UN").encode("latin-1")
    if span.vr in _LONG_VRS:
        return head + vr + b"\0\0" + struct.pack(e + "I", len(value)) + value
    if len(value) > 0xFFFF:
        value = value[:0xFFFF]
    return head + vr + struct.pack(e + "H", len(value)) + value


def fix_meta_group_length(data: bytes) -> bytes:
    """Recompute (0002,0000) after an edit of the meta group (so only the edit is wrong)."""
    spans = _meta_spans(data)
    if not spans or spans[0].tag != 0x00020000 or spans[0].length != 4:
        return data
    total = spans[-1].end - spans[0].end
    return data[:spans[0].value_start] + struct.pack("<I", total) + data[spans[0].end:]


def replace_value(data: bytes, span: Span, value: bytes) -> bytes:
    if span.length == 0xFFFFFFFF:
        return data
    out = data[:span.start] + encode_element(span, value) + data[span.end:]
    return fix_meta_group_length(out) if span.tag >> 16 == 2 else out


def delete_element(data: bytes, span: Span) -> bytes:
    if span.length == 0xFFFFFFFF:
        return data
    out = data[:span.start] + data[span.end:]
    return fix_meta_group_length(out) if span.tag >> 16 == 2 else out


def set_length_field(data: bytes, span: Span, length: int) -> bytes:
    """Lie about an element's length (the value bytes stay)."""
    e = "<" if span.little else ">"
    if span.explicit and span.vr not in _LONG_VRS:
        return data[:span.start + 6] + struct.pack(e + "H", length & 0xFFFF) + data[span.start + 8:]
    off = span.start + (8 if span.explicit else 4)
    return data[:off] + struct.pack(e + "I", length & 0xFFFFFFFF) + data[off + 4:]


def tag_of(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    return int(tag_for_keyword(keyword))


#: Tags the loaders depend on: the structured mutators aim here first.
TARGET_KEYWORDS = [
    "TransferSyntaxUID", "SOPClassUID", "SeriesInstanceUID", "SeriesNumber", "InstanceNumber",
    "ImageType", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "RescaleSlope", "RescaleIntercept",
    "EchoNumbers", "EchoTime", "SeriesDescription", "ScanningSequence", "InversionTime", "PixelData",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "SpecificCharacterSet",
]

#: Hostile values per VR (bytes as stored; numbers for binary VRs are packed per the file's endianness).
INTERESTING_TEXT = [
    b"", b" ", b"0", b"-1", b"1", b"nan", b"NaN", b"inf", b"-inf", b"1e309", b"-1e309", b"1e-320", b"abc",
    b"2147483648", b"-2147483649", b"99999999999999999999", b"4294967296", b"0\\0", b"0\\0\\0", b"1\\2\\3",
    b"0\\0\\0\\0\\0\\0", b"1\\0\\0\\1\\0\\0", b"1\\0\\0\\0\\1\\0", b"nan\\nan\\nan", b"1e308\\1e308\\1e308",
    b"\\\\\\", b"\xff\xfe\x00", b"1" * 64, b"0.5\\abc", b"1e5\\1e5", b"-0.7\\-0.7", b"65535", b"2e9",
]
INTERESTING_UIDS = [
    b"", b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.1", b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.1.99",
    b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.70", b"1.2.840.10008.1.2.4.80", b"1.2.840.10008.1.2.4.90",
    b"1.2.840.10008.1.2.4.91", b"1.2.840.10008.1.2.4.201", b"1.2.840.10008.1.2.5", b"1.2.840.10008.1.2.4.100",
    b"1.2.3.4\0", b"not.a.uid", b"\x00" * 8,
]
INTERESTING_CS = [b"", b"MONOCHROME1", b"MONOCHROME2", b"RGB ", b"PALETTE COLOR", b"YBR_FULL", b"ISO_IR 192",
                  b"ISO 2022 IR 87", b"LOCALIZER", b"ORIGINAL\\PRIMARY\\LOCALIZER", b"\x1b$B", b"??"]
INTERESTING_US = [0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 24, 31, 32, 33, 64, 255, 256, 4096, 0x7FFF, 0x8000, 0xFFFF]
INTERESTING_UL = [0, 1, 2, 3, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def interesting_value(span: Span, choice: int) -> bytes:
    """One hostile value suited to ``span``'s VR (``choice`` picks it)."""
    e = "<" if span.little else ">"
    vr = span.vr
    if vr is None:  # implicit VR: guess from the dictionary
        from pydicom.datadict import dictionary_VR

        try:
            vr = dictionary_VR(span.tag)
        except KeyError:
            vr = "UN"
    if vr in ("US", "SS"):
        vals = INTERESTING_US
        v = vals[choice % len(vals)]
        return struct.pack(e + "H", v) * (1 + (choice // len(vals)) % 2)
    if vr in ("UL", "SL"):
        v = INTERESTING_UL[choice % len(INTERESTING_UL)]
        return struct.pack(e + "I", v)
    if vr in ("FL", "FD"):
        fmt = "f" if vr == "FL" else "d"
        v = [0.0, -1.0, float("nan"), float("inf"), 1e38, -0.0, 1e-45][choice % 7]
        return struct.pack(e + fmt, v)
    if vr == "UI":
        return _pad(INTERESTING_UIDS[choice % len(INTERESTING_UIDS)], b"\0")
    if vr == "CS":
        return _pad(INTERESTING_CS[choice % len(INTERESTING_CS)], b" ")
    if vr in ("OB", "OW", "UN"):
        n = [0, 1, 2, 3, 16, 100, 4097][choice % 7]
        return bytes((i * 37 + choice) & 0xFF for i in range(n))
    return _pad(INTERESTING_TEXT[choice % len(INTERESTING_TEXT)], b" ")


def _pad(b: bytes, pad: bytes) -> bytes:
    return b + pad if len(b) % 2 else b


# ----------------------------------------------------------------------------- byte mutators
def flip_bytes(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    """XOR byte ``pos % len`` with ``mask`` (0 becomes 0xFF) for each edit."""
    if not data:
        return data
    buf = bytearray(data)
    for pos, mask in edits:
        buf[pos % len(buf)] ^= (mask & 0xFF) or 0xFF
    return bytes(buf)


def truncate(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * min(max(fraction, 0.0), 1.0))]


def splice(data: bytes, pos: int, delete: int, insert: bytes) -> bytes:
    pos = pos % (len(data) + 1)
    return data[:pos] + insert + data[pos + delete:]


# ----------------------------------------------------------------------------- NIfTI header
#: NIfTI-1 header fields: name -> (offset, struct format of one item, count).
NIFTI1_FIELDS = {
    "sizeof_hdr": (0, "i", 1), "dim": (40, "h", 8), "intent_code": (68, "h", 1), "datatype": (70, "h", 1),
    "bitpix": (72, "h", 1), "pixdim": (76, "f", 8), "vox_offset": (108, "f", 1), "scl_slope": (112, "f", 1),
    "scl_inter": (116, "f", 1), "xyzt_units": (123, "b", 1), "qform_code": (252, "h", 1),
    "sform_code": (254, "h", 1), "quatern": (256, "f", 6), "srow": (280, "f", 12), "magic": (344, "4s", 1),
}


def nifti_set(header: bytes, name: str, index: int, value: Any) -> bytes:
    """Set item ``index`` of NIfTI-1 header field ``name`` (little-endian header)."""
    off, fmt, count = NIFTI1_FIELDS[name]
    size = struct.calcsize("<" + fmt)
    pos = off + (index % count) * size
    return header[:pos] + struct.pack("<" + fmt, value) + header[pos + size:]


NIFTI_INTERESTING = {
    "dim": [0, 1, 2, 3, 4, 5, 7, 8, -1, -32768, 32767, 10000, 1290],
    "datatype": [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 255, -1],
    "bitpix": [0, 1, 8, 16, 32, 64, 128, -8, 7],
    "pixdim": [0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-30, 1e30, 3.3],
    "vox_offset": [0.0, 1.0, 348.0, 352.0, 353.0, 1e12, -1.0, float("nan"), 3.5e9],
    "scl_slope": [0.0, 1.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e38, 1e-38],
    "scl_inter": [0.0, float("nan"), float("inf"), -1e38, 1e38],
    "qform_code": [0, 1, 2, 3, 4, 5, -1, 32767],
    "sform_code": [0, 1, 2, 3, 4, 5, -1, 32767],
    "quatern": [0.0, 1.0, -1.0, 2.0, float("nan"), float("inf"), 1e30],
    "srow": [0.0, 1.0, -1.0, float("nan"), float("inf"), 1e30, 1e-30],
    "sizeof_hdr": [348, 540, 0, -348, 1 << 30],
    "intent_code": [0, 1, 2001, -1],
    "xyzt_units": [0, 1, 2, 3, 10, -1],
    "magic": [b"n+1\0", b"ni1\0", b"n+2\0", b"\0\0\0\0", b"xxxx"],
}


def gz_bytes(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=1, mtime=0)


# ----------------------------------------------------------------------------- the guarded runner
class CaseTimeout(BaseException):
    """Raised inside a case that ran past its time limit (BaseException: no loader may swallow it)."""


@dataclass
class Outcome:
    kind: str  # "volume", "error" (a BmevizError), "crash", "hang", "giant-allocation", "bad-volume"
    detail: str = ""
    seconds: float = 0.0
    exc: BaseException | None = None
    value: Any = None  # what the call returned
    warnings: list = None  # the warnings' messages

    @property
    def said(self) -> str:
        """The error message and every warning, as one text."""
        return " ".join([str(self.exc or "")] + list(self.warnings or []))

    @property
    def ok(self) -> bool:
        return self.kind in ("volume", "error")


def _vm_size() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def limits(timeout_s: float = CASE_TIMEOUT_S, headroom: int = CASE_HEADROOM_BYTES) -> Iterator[None]:
    """Cap the address space at (current + ``headroom``) and the wall time at ``timeout_s``.

    The time limit uses SIGALRM and works in the main thread only (pytest and pytest-xdist
    workers run tests there); elsewhere only the memory cap applies. A case that hangs
    inside C code where SIGALRM cannot reach is stopped by the per-test backstop
    (faulthandler) in conftest.py instead.
    """
    old_limit = None
    vm = _vm_size()
    if vm is not None and headroom > 0:
        try:
            old_limit = resource.getrlimit(resource.RLIMIT_AS)
            cap = vm + headroom
            if old_limit[1] != resource.RLIM_INFINITY:
                cap = min(cap, old_limit[1])
            resource.setrlimit(resource.RLIMIT_AS, (cap, old_limit[1]))
        except (ValueError, OSError):
            old_limit = None
    use_alarm = threading.current_thread() is threading.main_thread() and timeout_s > 0
    old_handler = None
    if use_alarm:
        def on_alarm(signum, frame):
            raise CaseTimeout(f"case ran longer than {timeout_s:g} s")

        old_handler = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
        if old_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, old_limit)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def check_volume(vol) -> str | None:
    """Why a returned volume is not sane, or None."""
    import bmeviz

    if not isinstance(vol, bmeviz.Volume):
        return f"returned {type(vol).__name__}, not a Volume"
    arr = vol.array
    if arr.ndim != 3 or 0 in arr.shape:
        return f"bad shape {arr.shape}"
    if arr.dtype.kind not in "iuf" or not arr.dtype.isnative:
        return f"bad dtype {arr.dtype}"
    if not np.all(np.isfinite(vol.affine)) or abs(np.linalg.det(vol.affine[:3, :3])) < 1e-12:
        return "degenerate affine"
    if not all(np.isfinite(s) and s > 0 for s in vol.spacing):
        return f"bad spacing {vol.spacing}"
    if arr.dtype.kind == "f" and np.isinf(arr).any():
        return "infinite voxel values (should be NaN, missing)"
    return None


def run_case(fn: Callable[[], Any], *, timeout_s: float = CASE_TIMEOUT_S,
             headroom: int = CASE_HEADROOM_BYTES) -> Outcome:
    """Run one loader call under :func:`limits` and classify what happened (warnings recorded)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = _classify(fn, timeout_s, headroom, t0)
    out.warnings = [str(w.message) for w in record]
    return out


def _classify(fn, timeout_s, headroom, t0) -> Outcome:
    import bmeviz

    try:
        with limits(timeout_s, headroom):
            result = fn()
    except CaseTimeout as exc:
        return Outcome("hang", str(exc), time.perf_counter() - t0, exc)
    except bmeviz.BmevizError as exc:
        dt = time.perf_counter() - t0
        if any(isinstance(e, MemoryError) and not isinstance(e, bmeviz.BmevizError) for e in _chain(exc)):
            return Outcome("giant-allocation", f"{type(exc).__name__}: {exc} (after a MemoryError)", dt, exc)
        return Outcome("error", f"{type(exc).__name__}: {exc}", dt, exc)
    except MemoryError as exc:
        return Outcome("giant-allocation", f"MemoryError: {exc}", time.perf_counter() - t0, exc)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # also what escapes ``except Exception``: e.g. pyo3's PanicException
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
        return Outcome("crash", f"{type(exc).__name__}: {exc}\n{tb}", time.perf_counter() - t0, exc)
    dt = time.perf_counter() - t0
    results = result if isinstance(result, list) else [result]
    for r in results:
        if isinstance(r, bmeviz.Volume):
            why = check_volume(r)
            if why:
                return Outcome("bad-volume", why, dt, value=result)
    return Outcome("volume", "", dt, value=result)


# ----------------------------------------------------------------------------- other encodings
DEFLATED_UID = "1.2.840.10008.1.2.1.99"


def deflate_file(src: Path, dst: Path) -> Path:
    """Re-encode a DICOM file as Deflated Explicit VR Little Endian (pydicom writes it)."""
    import pydicom

    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = DEFLATED_UID
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=True)
    return dst


def deflate_bomb(src: Path, dst: Path, inflated_bytes: int) -> Path:
    """``src``'s meta group followed by a raw deflate stream that inflates to ``inflated_bytes``
    of zeros: a few hundred kB on disk. Fast to build: after a full flush the compressor
    emits the same bytes for the same input, so one 64 MB block is compressed twice and
    then repeated."""
    import zlib

    data = deflate_file(src, dst).read_bytes()
    start = _meta_spans(data)[-1].end
    block = bytes(64 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    n = max(1, inflated_bytes // len(block))
    dst.write_bytes(data[:start] + first + again * (n - 1) + c.flush())
    return dst


def convert_series(src: Path, dst: Path, encoding: str) -> Path:
    """Re-encode every file of a series: ``implicit`` (Implicit VR LE), ``bigendian``
    (Explicit VR BE, retired but still met), ``rle`` (RLE Lossless) or ``deflated``."""
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, RLELossless

    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if encoding == "deflated":
            deflate_file(f, dst / f.name)
            continue
        ds = pydicom.dcmread(f)
        if encoding == "implicit":
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
            ds.save_as(dst / f.name, enforce_file_format=True, implicit_vr=True, little_endian=True)
        elif encoding == "bigendian":
            arr = ds.pixel_array
            ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
            ds.PixelData = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
            pydicom.dcmwrite(dst / f.name, ds, implicit_vr=False, little_endian=False, force_encoding=True)
        elif encoding == "rle":
            ds.compress(RLELossless)
            ds.save_as(dst / f.name, enforce_file_format=True)
        else:
            raise ValueError(encoding)
    return dst


# ----------------------------------------------------------------------------- applying ops
def insert_element(data: bytes, tag: int, value: bytes) -> bytes:
    """Add a top-level element (in tag order) encoded like the file's dataset."""
    from pydicom.datadict import dictionary_VR

    body = [s for s in element_spans(data) if s.tag >> 16 != 2]
    if not body:
        return data
    ref = body[0]
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = "UN"
    vr = vr.split(" or ")[0]
    new = Span(tag, vr if ref.explicit else None, 0, 0, 0, ref.little, ref.explicit)
    after = [s for s in body if s.tag > tag]
    pos = after[0].start if after else len(data)
    return data[:pos] + encode_element(new, value) + data[pos:]


def apply_op(data: bytes, op: tuple) -> bytes:
    """Apply one mutation ``op`` (as drawn by :func:`strategies`) to a DICOM file's bytes.

    Byte-level: ``("flip", [(pos, mask), ...])``, ``("truncate", fraction)``,
    ``("splice", pos, n_delete, insert)``. Element-level, on a keyword the loader uses
    (or on the n-th element of the file when ``target`` is an int): ``("delete", target)``,
    ``("set", target, choice)`` (a hostile value for the VR; the element is added if
    absent), ``("length", target, length)`` (the length field lies).
    """
    kind = op[0]
    if kind == "flip":
        return flip_bytes(data, op[1])
    if kind == "truncate":
        return truncate(data, op[1])
    if kind == "splice":
        return splice(data, op[1], op[2], op[3])
    spans = element_spans(data)
    target = op[1]
    if isinstance(target, str):
        tag = tag_of(target)
        hits = [s for s in spans if s.tag == tag]
    else:
        hits = [spans[target % len(spans)]] if spans else []
        tag = hits[0].tag if hits else None
    if kind == "delete":
        return delete_element(data, hits[0]) if hits else data
    if kind == "set":
        if hits:
            return replace_value(data, hits[0], interesting_value(hits[0], op[2]))
        if tag is None or tag >> 16 == 2:
            return data
        return insert_element(data, tag, interesting_value(Span(tag, None, 0, 0, 0, True, False), op[2]))
    if kind == "length":
        return set_length_field(data, hits[0], op[2]) if hits else data
    raise ValueError(f"unknown op {op!r}")


def apply_nifti_op(data: bytes, op: tuple) -> bytes:
    """Apply one mutation to an uncompressed NIfTI-1 file's bytes (header fields, header
    bytes, voxel data, extensions, truncation)."""
    kind = op[0]
    if kind == "field":
        _, name, index, choice = op
        values = NIFTI_INTERESTING[name]
        return nifti_set(data[:348], name, index, values[choice % len(values)]) + data[348:]
    if kind == "flip-header":
        return flip_bytes(data[:352], op[1]) + data[352:]
    if kind == "nonfinite-data":
        buf = bytearray(data)
        _, positions, choice = op
        value = [float("nan"), float("inf"), -float("inf"), 3.0e38][choice % 4]
        for pos in positions:
            at = 352 + (pos % max(1, (len(buf) - 352) // 4)) * 4
            if at + 4 <= len(buf):
                buf[at:at + 4] = struct.pack("<f", value)
        return bytes(buf)
    if kind == "truncate":
        return truncate(data, op[1])
    if kind == "extension":
        _, esize, ecode = op
        return data[:348] + b"\x01\0\0\0" + struct.pack("<Ii", esize & 0xFFFFFFFF, ecode) + data[356:]
    raise ValueError(f"unknown op {op!r}")


# ----------------------------------------------------------------------------- hypothesis
def fuzz_settings(examples: int):
    """Settings for one fuzz test: ``examples`` cases times ``$BMEVIZ_FUZZ_SCALE`` (default 1),
    a fixed derandomised seed (or ``$BMEVIZ_FUZZ_SEED``), no deadline (the per-case time
    limit of :func:`run_case` applies instead), no example database."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=expected_examples(examples),
        derandomize="BMEVIZ_FUZZ_SEED" not in os.environ,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


def fuzz_seed(fn):
    """Apply ``$BMEVIZ_FUZZ_SEED`` (when set) to a hypothesis test."""
    from hypothesis import seed

    value = os.environ.get("BMEVIZ_FUZZ_SEED")
    return seed(int(value))(fn) if value else fn


def expected_examples(examples: int) -> int:
    return max(1, int(examples * float(os.environ.get("BMEVIZ_FUZZ_SCALE", "1"))))


def strategies():
    """The hypothesis strategies of the mutation ops (see :func:`apply_op`, :func:`apply_nifti_op`)."""
    from hypothesis import strategies as st

    pos = st.integers(0, 2**31 - 1)
    flip = st.tuples(st.just("flip"), st.lists(st.tuples(pos, st.integers(1, 255)), min_size=1, max_size=8))
    trunc = st.tuples(st.just("truncate"), st.floats(0.0, 0.999))
    splice_ = st.tuples(st.just("splice"), pos, st.integers(0, 64), st.binary(max_size=48))
    target = st.one_of(st.sampled_from(TARGET_KEYWORDS), st.integers(0, 10_000))
    delete = st.tuples(st.just("delete"), target)
    set_ = st.tuples(st.just("set"), target, st.integers(0, 1000))
    length = st.tuples(st.just("length"), target,
                       st.sampled_from([0, 1, 2, 3, 7, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF]))
    byte_op = st.one_of(flip, trunc, splice_)
    tag_op = st.one_of(delete, set_, set_, length)
    nifti_field = st.sampled_from(sorted(NIFTI_INTERESTING)).flatmap(
        lambda name: st.tuples(st.just("field"), st.just(name), st.integers(0, NIFTI1_FIELDS[name][2] - 1),
                               st.integers(0, 100)))
    nifti_op = st.one_of(
        nifti_field, nifti_field,
        st.tuples(st.just("flip-header"), st.lists(st.tuples(st.integers(0, 351), st.integers(1, 255)),
                                                   min_size=1, max_size=6)),
        st.tuples(st.just("nonfinite-data"), st.lists(pos, min_size=1, max_size=10), st.integers(0, 3)),
        st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
        st.tuples(st.just("extension"), st.sampled_from([0, 8, 16, 32, 1 << 20, 0x7FFFFFF0, 0xFFFFFFF0]),
                  st.integers(-1, 40)),
    )
    return {"byte": byte_op, "tag": tag_op, "any": st.one_of(byte_op, tag_op, tag_op), "nifti": nifti_op}


# ----------------------------------------------------------------------------- checks
def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def check_dicom_folder(folder: Path) -> list[str]:
    """Problems found loading a (mutated) DICOM folder; [] when bmeviz behaved.

    ``load`` and ``list_series`` must give a sane volume or a BmevizError naming the
    folder; a volume must equal what decoding every file with pydicom gives
    (``read_stack(fast=False)``); the files must not change.
    """
    import bmeviz
    from bmeviz.io.dicom import group, read_stack, scan

    problems = []
    before = snapshot(folder)
    listed = run_case(lambda: bmeviz.list_series(folder))
    if not listed.ok:
        problems.append(f"list_series: {listed.kind}: {listed.detail}")
    loaded = run_case(lambda: bmeviz.load(folder))
    if not loaded.ok:
        problems.append(f"load: {loaded.kind}: {loaded.detail}")
    elif loaded.kind == "error" and str(folder) not in str(loaded.exc):
        problems.append(f"load: the error does not name the input: {loaded.detail}")
    elif loaded.kind == "volume":
        vol = loaded.value
        key = vol.metadata["series_key"]

        def slow():
            [info] = [s for s in group(scan(folder)) if s.key == key]
            return read_stack(info, fast=False)

        again = run_case(slow)
        if again.kind != "volume":
            problems.append(f"fast path gave a volume, pydicom decoding: {again.kind}: {again.detail}")
        elif not (np.array_equal(vol.array, again.value.array, equal_nan=True)
                  and vol.array.dtype == again.value.array.dtype
                  and np.array_equal(vol.affine, again.value.affine)):
            problems.append("fast path and pydicom decoding disagree on the pixels or the geometry")
    if snapshot(folder) != before:
        problems.append("an input file changed while loading")
    return problems


def check_nifti_file(path: Path) -> list[str]:
    """Problems found loading a (mutated) NIfTI file; [] when bmeviz behaved."""
    import bmeviz

    before = path.read_bytes()
    out = run_case(lambda: bmeviz.load(path))
    problems = [] if out.ok else [f"load: {out.kind}: {out.detail}"]
    if out.kind == "error" and str(path) not in str(out.exc):
        problems.append(f"the error does not name the file: {out.detail}")
    if path.read_bytes() != before:
        problems.append("the input file changed while loading")
    return problems
