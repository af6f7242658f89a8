"""DICOM SEG export of a result, and reading a SEG back onto a volume's grid.

:func:`save_seg` writes a label image on a source volume's grid as a DICOM
Segmentation (highdicom) that references the source series: one segment per lesion
(segment number = ``lesion_id`` of ``lesions.csv``; :func:`bmeviz.export.save_seg` gives
the colours of ``overlay.png``) or a single "BME" segment. Every frame says which source image it was derived from
(ReferencedSOPInstanceUID) and where it lies (ImagePositionPatient), so a viewer puts it
on the source voxels.

Frames are matched to the source images by geometry, never by file order: each source
image's ImagePositionPatient is mapped through the volume's affine to its slice index,
and its orientation and matrix are checked against the volume.

Identifiers: a SEG carries a Patient and a Study module, copied from the source; that
is how a PACS files it with its study. With ``include_phi=False`` (the default) the
direct identifiers (name, ID, birth date, accession number, institution, physicians,
study ID) are blanked or removed; the UIDs stay, because they are what link the SEG to
its images. Use ``include_phi=True`` for a SEG meant to go back to the PACS.

:func:`read_seg` reads a SEG back as a label array on a volume's grid, matching frames
by position and, when the volume came from DICOM, by ReferencedSOPInstanceUID.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InconsistentGeometryError, ParameterError, UnreadableFileError
from ..volume import Volume

__all__ = ["save_seg", "read_seg", "PHI_KEYWORDS"]

_LPS = np.diag([-1.0, -1.0, 1.0])

#: Attributes blanked (Type 2, kept empty) when a SEG is written without identifiers.
_BLANK = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "ReferringPhysicianName", "StudyID")
#: Attributes removed when a SEG is written without identifiers.
_REMOVE = (
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName", "PatientBirthTime",
    "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName", "MedicalRecordLocator",
    "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "PerformingPhysicianName", "OperatorsName",
    "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "RequestingPhysician", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "AdmittingDiagnosesDescription", "PatientComments",
    "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialSponsorName",
    "RequestAttributesSequence", "ReferencedPatientSequence", "ReferencedStudySequence",
)
#: Every attribute treated as a patient identifier by :func:`save_seg`.
PHI_KEYWORDS = _BLANK + _REMOVE

#: Type 2 attributes highdicom copies from the source; filled in empty when absent.
_TYPE2_DEFAULTS = {"PatientName": "", "PatientID": "", "PatientBirthDate": "", "PatientSex": "",
                   "AccessionNumber": "", "StudyID": "", "StudyDate": "", "StudyTime": "",
                   "ReferringPhysicianName": ""}


def _source_headers(volume: Volume) -> list[Any]:
    import pydicom

    md = volume.metadata
    files = md.get("source_files") or []
    if md.get("source") != "dicom" or not files:
        kind = md.get("source") or "an array"
        raise ParameterError(
            f"DICOM SEG export needs a DICOM source series; this volume came from {kind}. A SEG must "
            "reference the source images (their UIDs and positions): load the DICOM folder with bmeviz.load, "
            "or keep bme_mask.nii.gz, which overlays a NIfTI source"
        )
    headers = []
    for f in files:
        try:
            headers.append(pydicom.dcmread(f, stop_before_pixels=True))
        except FileNotFoundError as exc:
            raise UnreadableFileError(f"{f}: source image is gone; the SEG must reference it ({exc})") from exc
        except Exception as exc:
            raise UnreadableFileError(f"{f}: cannot read the source image header ({type(exc).__name__}: {exc})") from exc
    return headers


def _floats(value: Any, n: int, what: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise InconsistentGeometryError(f"{where}: {what} is missing or malformed ({value!r})")
    return arr


def _check_orientation(iop: np.ndarray, like: Volume, where: str) -> None:
    """Raise unless the in-plane directions ``iop`` (LPS) are those of ``like``'s rows and columns."""
    aff_lps = _LPS @ like.affine[:3, :3]
    col_dir = aff_lps[:, 2] / np.linalg.norm(aff_lps[:, 2])
    row_dir = aff_lps[:, 1] / np.linalg.norm(aff_lps[:, 1])
    if not (np.dot(iop[:3], col_dir) > 0.9999 and np.dot(iop[3:], row_dir) > 0.9999):
        raise InconsistentGeometryError(
            f"{where}: image orientation {np.round(iop, 4).tolist()} differs from the volume's rows and columns; "
            "the segmentation is not on this grid"
        )


def _slice_of(position_lps: np.ndarray, like: Volume, where: str, *, tol: float = 0.05) -> int:
    """The slice index of ``like`` whose first voxel sits at ``position_lps`` (DICOM IPP)."""
    ras = _LPS @ position_lps
    idx = like.ras_to_index(ras)
    s = int(np.rint(idx[0]))
    if abs(idx[1]) > tol or abs(idx[2]) > tol or abs(idx[0] - s) > tol or not 0 <= s < like.shape[0]:
        raise InconsistentGeometryError(
            f"{where}: ImagePositionPatient {np.round(position_lps, 3).tolist()} is not the first voxel of a slice "
            f"of the volume (index {np.round(idx, 3).tolist()}); the segmentation is not on this grid"
        )
    return s


def _map_sources(headers: list[Any], volume: Volume) -> tuple[list[Any], list[int]]:
    """The source datasets (one per frame, in the order highdicom wants) and their slice indices."""
    rows, cols = volume.shape[1:]
    if len(headers) == 1 and int(headers[0].get("NumberOfFrames", 1) or 1) > 1:
        ds = headers[0]
        where = str(getattr(ds, "filename", "source"))
        n = int(ds.NumberOfFrames)
        if n != volume.shape[0]:
            raise ParameterError(
                f"{where}: a multi-frame source with {n} frames for a volume of {volume.shape[0]} slices "
                "(several echoes or stacks in one file): DICOM SEG export supports one stack per file"
            )
        shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        slices = []
        for i in range(n):
            item = per_frame[i] if i < len(per_frame) else None
            pos = ori = None
            for grp in (item, shared):
                if grp is None:
                    continue
                if pos is None and "PlanePositionSequence" in grp:
                    pos = grp.PlanePositionSequence[0].ImagePositionPatient
                if ori is None and "PlaneOrientationSequence" in grp:
                    ori = grp.PlaneOrientationSequence[0].ImageOrientationPatient
            w = f"{where} frame {i + 1}"
            _check_orientation(_floats(ori, 6, "ImageOrientationPatient", w), volume, w)
            slices.append(_slice_of(_floats(pos, 3, "ImagePositionPatient", w), volume, w))
        sources = headers
    else:
        slices = []
        for ds in headers:
            where = str(getattr(ds, "filename", "source image"))
            if int(ds.get("Rows", 0) or 0) != rows or int(ds.get("Columns", 0) or 0) != cols:
                raise InconsistentGeometryError(
                    f"{where}: image is {ds.get('Rows')}x{ds.get('Columns')}, the volume's slices are {rows}x{cols}")
            _check_orientation(_floats(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", where),
                               volume, where)
            slices.append(_slice_of(_floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", where),
                                    volume, where))
        sources = headers
    if sorted(slices) != list(range(volume.shape[0])):
        raise InconsistentGeometryError(
            f"the source images cover slices {sorted(slices)} of a volume of {volume.shape[0]}: "
            "each slice must come from exactly one source image"
        )
    return sources, slices


def _deidentify(ds: Any) -> Any:
    out = copy.deepcopy(ds)
    for kw in _BLANK:
        if kw in out:
            setattr(out, kw, "")
    for kw in _REMOVE:
        if kw in out:
            delattr(out, kw)
    return out


def _complete(ds: Any, volume: Volume) -> Any:
    """Fill in attributes highdicom reads that real (often anonymised) exports omit: empty
    Type 2 patient/study attributes, and SliceThickness (the volume's slice spacing)."""
    missing = [kw for kw in _TYPE2_DEFAULTS if kw not in ds]
    single = int(ds.get("NumberOfFrames", 1) or 1) <= 1
    no_thickness = single and not str(ds.get("SliceThickness", "") or "").strip()
    if not missing and not no_thickness:
        return ds
    out = copy.copy(ds)
    for kw in missing:
        setattr(out, kw, _TYPE2_DEFAULTS[kw])
    if no_thickness:
        out.SliceThickness = f"{volume.spacing[0]:.6g}"
    return out


def _hoist_shared(ds: Any) -> Any:
    """A multi-frame header whose shared functional groups hold the pixel measures and
    orientation (highdicom reads them there; some vendors put them per frame, identical
    in every frame, which the loader has already checked)."""
    if int(ds.get("NumberOfFrames", 1) or 1) <= 1 or "PerFrameFunctionalGroupsSequence" not in ds:
        return ds
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else Dataset()
    first = ds.PerFrameFunctionalGroupsSequence[0]
    missing = [kw for kw in ("PixelMeasuresSequence", "PlaneOrientationSequence")
               if kw not in shared and kw in first]
    if not missing:
        return ds
    out = copy.deepcopy(ds)
    new_shared = copy.deepcopy(shared)
    for kw in missing:
        setattr(new_shared, kw, copy.deepcopy(first.get(kw)))
        for item in out.PerFrameFunctionalGroupsSequence:
            if kw in item:
                delattr(item, kw)
    out.SharedFunctionalGroupsSequence = DicomSequence([new_shared])
    return out


def save_seg(labels: Any, volume: Volume, path: str | os.PathLike, *, segment_names: Any = None, colors: Any = None,
             algorithm_parameters: dict | None = None, description: str = "Bone marrow edema",
             semiautomatic: bool = True, include_phi: bool = False, per_lesion: bool = True) -> Path:
    """Write a label image as a DICOM Segmentation referencing the source series.

    Parameters
    ----------
    labels : (S, R, C) array of int
        Lesion ids (0 = none) on ``volume``'s grid.
    volume : Volume
        The source, loaded from DICOM (its metadata names the source files).
    path : path-like
        Output file (``bme_seg.dcm``); written atomically.
    segment_names, colors : sequence, optional
        Per segment: its label and RGB colour (0..1); default ``BME lesion i`` / ``BME`` in red.
        :func:`bmeviz.export.save_seg` passes the names and colours of ``lesions.csv`` and
        ``overlay.png``.
    algorithm_parameters : dict of str, optional
        Recorded in the AlgorithmIdentificationSequence (rule, k, threshold...).
    description : str
        ContentDescription (cut to 64 characters).
    semiautomatic : bool
        Seeded (SEMIAUTOMATIC) or not (AUTOMATIC).
    include_phi : bool
        Copy the source's patient and study identifiers verbatim (needed for the SEG to
        file with its study in a PACS). Default: blank or remove them (see
        :data:`PHI_KEYWORDS`); the UIDs that link the SEG to its images are kept.
    per_lesion : bool
        One segment per lesion (segment number = ``lesion_id``), or one "BME" segment.

    Returns
    -------
    Path

    Raises
    ------
    ParameterError
        The source is not DICOM (NIfTI, an array), or a multi-frame file holding several
        stacks.
    UnreadableFileError, InconsistentGeometryError
        A source image is gone or does not sit on the volume's grid.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from .._version import __version__
    from ._atomic import atomic_path

    labels = np.asarray(labels)
    if labels.shape != volume.shape:
        raise ParameterError(f"labels shape {labels.shape} differs from the volume's {volume.shape}")
    headers = _source_headers(volume)
    sources, slices = _map_sources(headers, volume)
    if not all(str(ds.get("FrameOfReferenceUID", "") or "") for ds in sources):
        raise ParameterError(
            f"{sources[0].get('filename', 'the source images')}: the source images have no FrameOfReferenceUID "
            "(an anonymiser may have removed it); a DICOM SEG needs the source's frame of reference to place its "
            "frames. Keep bme_mask.nii.gz, or export the series with its FrameOfReferenceUID"
        )
    prepared = [_hoist_shared(_complete(ds if include_phi else _deidentify(ds), volume)) for ds in sources]

    n_max = int(labels.max()) if labels.size else 0
    if per_lesion and n_max > 0:
        frames = labels[slices]
        numbers = list(range(1, n_max + 1))
        default_names = [f"BME lesion {i}" for i in numbers]
    else:
        frames = (labels[slices] > 0)
        numbers = [1]
        default_names = ["BME"]
    frames = frames.astype(np.uint8 if max(numbers) < 256 else np.uint16)
    names = list(segment_names) if segment_names is not None else default_names
    colors = np.asarray(colors, float) if colors is not None else np.tile([1.0, 0.2, 0.2], (len(numbers), 1))
    if len(names) != len(numbers) or len(colors) < len(numbers):
        raise ParameterError(f"save_seg: {len(numbers)} segment(s) need as many names and colours; got "
                             f"{len(names)} and {len(colors)}")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="bmeviz",
        family=codes.cid7162.HistogramAnalysis,
        version=__version__,
        source="bmeviz",
        parameters={str(k): str(v) for k, v in (algorithm_parameters or {}).items()} or None,
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=num,
            segment_label=name,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Edema,
            algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if semiautomatic
                            else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC),
            algorithm_identification=algorithm,
            tracking_id=name,
            tracking_uid=hd.UID(),
            anatomic_regions=[codes.SCT.BoneMarrow],
            display_color=hd.color.CIELabColor.from_rgb(*(int(round(255 * c)) for c in colors[i][:3])),
        )
        for i, (num, name) in enumerate(zip(numbers, names))
    ]
    series_number = volume.metadata.get("series_number")
    try:
        series_number = int(series_number) + 1000
    except (TypeError, ValueError):
        series_number = 1000
    empty = not frames.any()
    try:
        seg = hd.seg.Segmentation(
            source_images=prepared,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="bmeviz",
            manufacturer_model_name="bmeviz",
            software_versions=__version__,
            device_serial_number="0",
            content_label="BME",
            content_description=str(description)[:64],
            omit_empty_frames=not empty,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ParameterError(f"cannot build the DICOM SEG: {type(exc).__name__}: {exc}") from exc
    seg.SeriesDescription = "BME (bmeviz)"
    if not include_phi:
        for kw in _REMOVE:
            if kw in seg:
                delattr(seg, kw)
    out = Path(path)
    with atomic_path(out) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return out


def read_seg(path: str | os.PathLike, like: Volume) -> np.ndarray:
    """Labels of the DICOM SEG at ``path`` on ``like``'s grid (segment number per voxel).

    Each frame is placed by its own geometry: its ImagePositionPatient mapped through
    ``like``'s affine (orientation and matrix checked); when ``like`` was loaded from
    DICOM, its ReferencedSOPInstanceUID is matched to the source images too, and the two
    must agree. Frames absent from the SEG (omitted as empty) stay 0. Where segments
    overlap the higher segment number wins.

    Returns
    -------
    ndarray of uint8 or uint16, shape ``like.shape``
    """
    import pydicom

    p = Path(path)
    if not p.exists():
        raise UnreadableFileError(f"{p}: no such file")
    try:
        ds = pydicom.dcmread(p)
    except Exception as exc:
        raise UnreadableFileError(f"{p}: cannot read the file ({type(exc).__name__}: {exc})") from exc
    if str(ds.get("Modality", "")) != "SEG":
        raise ParameterError(f"{p}: not a DICOM Segmentation (Modality {ds.get('Modality')!r})")
    rows, cols = like.shape[1:]
    if int(ds.Rows) != rows or int(ds.Columns) != cols:
        raise InconsistentGeometryError(f"{p}: frames are {ds.Rows}x{ds.Columns}; the volume's slices are {rows}x{cols}")
    pix = ds.pixel_array
    if pix.ndim == 2:
        pix = pix[np.newaxis]
    seg_type = str(ds.get("SegmentationType", "BINARY"))
    if seg_type == "FRACTIONAL":
        on = pix >= max(1, int(ds.get("MaximumFractionalValue", 255))) / 2.0
    else:
        on = pix > 0
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != pix.shape[0]:
        raise InconsistentGeometryError(f"{p}: {pix.shape[0]} frames but {len(per_frame)} per-frame descriptions")

    uid_to_slice: dict[str, int] = {}
    files = like.metadata.get("source_files") or []
    if like.metadata.get("source") == "dicom" and files:
        for f in files:
            try:
                src = pydicom.dcmread(f, stop_before_pixels=True)
            except Exception:
                continue  # the positions still place the frames
            if int(src.get("NumberOfFrames", 1) or 1) > 1:
                continue  # multi-frame sources are matched by position
            ipp = src.get("ImagePositionPatient")
            if ipp is None:
                continue
            uid_to_slice[str(src.SOPInstanceUID)] = _slice_of(_floats(ipp, 3, "ImagePositionPatient", f), like, f)

    dtype = np.uint8
    numbers = [int(item.ReferencedSegmentNumber) if "ReferencedSegmentNumber" in item else 1
               for item in (_group(fr, shared, "SegmentIdentificationSequence") for fr in per_frame)]
    if numbers and max(numbers) > 255:
        dtype = np.uint16
    out = np.zeros(like.shape, dtype=dtype)
    for i, fr in enumerate(per_frame):
        where = f"{p} frame {i + 1}"
        ori = _group(fr, shared, "PlaneOrientationSequence")
        if "ImageOrientationPatient" in ori:
            _check_orientation(_floats(ori.ImageOrientationPatient, 6, "ImageOrientationPatient", where), like, where)
        pos = _group(fr, shared, "PlanePositionSequence")
        s_pos = None
        if "ImagePositionPatient" in pos:
            s_pos = _slice_of(_floats(pos.ImagePositionPatient, 3, "ImagePositionPatient", where), like, where)
        s_uid = None
        for der in fr.get("DerivationImageSequence") or []:
            for src in der.get("SourceImageSequence") or []:
                uid = str(src.get("ReferencedSOPInstanceUID", ""))
                if uid in uid_to_slice:
                    s_uid = uid_to_slice[uid]
        if s_pos is not None and s_uid is not None and s_pos != s_uid:
            raise InconsistentGeometryError(
                f"{where}: its position puts it on slice {s_pos} but its source image is slice {s_uid}")
        s = s_pos if s_pos is not None else s_uid
        if s is None:
            raise InconsistentGeometryError(f"{where}: no position and no known source image: cannot place it")
        if seg_type == "LABELMAP":
            vals = pix[i].astype(dtype)
            out[s] = np.where(vals > out[s], vals, out[s])
        else:
            num = numbers[i]
            out[s][on[i]] = np.maximum(out[s][on[i]], num)
    return out


def _group(frame_item: Any, shared: Any, keyword: str) -> Any:
    """The first item of functional group ``keyword`` (per-frame first, then shared), or {}."""
    for grp in (frame_item, shared):
        if grp is not None and keyword in grp:
            seq = grp.get(keyword)
            if seq:
                return seq[0]
    return {}
