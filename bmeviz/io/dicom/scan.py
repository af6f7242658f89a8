"""DICOM discovery: :func:`scan` reads the headers (no pixel data) of every file under a path.

Files that are not DICOM, or whose header is broken, are skipped with one warning naming
them; hostile files (absurd lengths, deflate bombs) are refused without allocating what
they claim. Where a file's native pixel data lies is noted (:class:`PixelLayout`) so the
pixels can later be read straight from the file.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...errors import NotAVolumeError, UnreadableFileError, warn
from ..sequence import header_fields
from .headers import MOSAIC_TAGS, Frame, PixelLayout, _frames_of, _int, _is_image_storage, _is_panic, _value

_SKIP_NAMES = {"DICOMDIR", "LOCKFILE", "VERSION", ".DS_Store", "Thumbs.db"}


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

    from ...errors import format_bytes, memory_limit

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
    "FrameOfReferenceUID",
}) + MOSAIC_TAGS

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

