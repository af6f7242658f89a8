"""Write a :class:`~bmeviz.Volume` as a classic single-frame MR DICOM series.

Used to turn the synthetic phantom into a DICOM study (tests, notebooks, batch demos),
so the DICOM path is exercised end to end without patient data. Geometry is written
from the affine (RAS converted to DICOM's LPS), so ``bmeviz.load`` of the folder gives
back the same grid. (DICOM orders slices along the normal row x column; a volume whose
slice axis points the other way, as some NIfTI files do, comes back with its slices in
reverse order: the same voxels at the same places, indexed from the other end.)

>>> import numpy as np, tempfile, bmeviz
>>> from bmeviz.io.dicom_write import write_dicom_series
>>> axial = np.array([[0, 0, -0.5, 60], [0, -0.5, 0, 80], [3.0, 0, 0, -20], [0, 0, 0, 1]])
>>> vol = bmeviz.Volume(np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5), axial,
...                     {"description": "STIR ax"})
>>> folder = write_dicom_series(vol, tempfile.mkdtemp())
>>> back = bmeviz.load(folder)
>>> bool(np.allclose(back.affine, vol.affine, atol=1e-4)), bool(np.allclose(back.array, vol.array, atol=0.01))
(True, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..volume import Volume
from .dicom.geometry import LPS_TO_RAS

__all__ = ["write_dicom_series"]

_LPS = LPS_TO_RAS[:3, :3]  # the flip between RAS and DICOM's LPS (its own inverse)

#: Sequence tags that make bmeviz (and a radiologist) recognise the series.
SEQUENCE_TAGS: dict[str, dict[str, Any]] = {
    "STIR": {"ScanningSequence": ["SE", "IR"], "SequenceVariant": ["SK", "SP"], "ScanOptions": ["IR"],
             "InversionTime": 160.0, "RepetitionTime": 4500.0, "EchoTime": 40.0},
    "T2 FS": {"ScanningSequence": "SE", "SequenceVariant": "SK", "ScanOptions": ["FS"],
              "RepetitionTime": 4200.0, "EchoTime": 70.0},
    "PD FS": {"ScanningSequence": "SE", "SequenceVariant": "SK", "ScanOptions": ["FS"],
              "RepetitionTime": 3000.0, "EchoTime": 30.0},
    "T1": {"ScanningSequence": "SE", "SequenceVariant": "SK", "ScanOptions": "",
           "RepetitionTime": 550.0, "EchoTime": 12.0},
}


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike,
    *,
    sequence: str | None = None,
    description: str | None = None,
    series_number: int = 1,
    patient: Mapping[str, str] | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    prefix: str = "IM",
    shuffle_names: bool = False,
    seed: int = 0,
    frame_of_reference_uid: str | None = None,
) -> Path:
    """Write ``volume`` to ``folder`` as one MR series of single-frame files; return the folder.

    Float data are stored as int16 with a RescaleSlope chosen to keep 1/30000 of the
    range (and recorded, so loading gives the values back within that step). ``patient``
    may carry PatientName, PatientID, PatientBirthDate, AccessionNumber,
    InstitutionName (synthetic identifiers for privacy tests); default: anonymous.
    ``shuffle_names`` writes files in a scrambled order, like interleaved exports.
    ``frame_of_reference_uid``: shared by series of one session (default: a new UID).
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    seq = sequence or volume.metadata.get("sequence") or "STIR"
    desc = description or volume.metadata.get("description") or f"{seq} (bmeviz synthetic)"
    data = np.asarray(volume.array)
    if np.issubdtype(data.dtype, np.integer) and data.min() >= -32768 and data.max() <= 32767:
        stored, slope, intercept = data.astype(np.int16), 1.0, 0.0
    else:
        finite = data[np.isfinite(data)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        intercept = lo
        slope = (hi - lo) / 30000.0 if hi > lo else 1.0
        stored = np.rint((np.nan_to_num(data, nan=lo) - intercept) / slope).astype(np.int16)
    aff_lps = _LPS @ volume.affine[:3, :]
    col_step = aff_lps[:, 2]  # along a row: column index
    row_step = aff_lps[:, 1]  # down a column: row index
    sp_col, sp_row = float(np.linalg.norm(col_step)), float(np.linalg.norm(row_step))
    if sp_col == 0 or sp_row == 0:
        raise ParameterError("volume has a zero in-plane voxel size")
    iop = [*(col_step / sp_col), *(row_step / sp_row)]
    slice_step = aff_lps[:, 0]
    normal = np.cross(iop[:3], iop[3:])
    spacing = float(abs(np.dot(slice_step, normal)))
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    tags = SEQUENCE_TAGS.get(seq, {})
    who = {"PatientName": "Anonymous", "PatientID": "ANON", "PatientBirthDate": "", "AccessionNumber": "",
           "InstitutionName": ""}
    who.update(patient or {})
    order = np.arange(data.shape[0])
    if shuffle_names:
        order = np.random.default_rng(seed).permutation(order)
    for s in range(data.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = out / f"{prefix}{int(order[s]) + 1:04d}.dcm"
        ds = FileDataset(str(name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.Manufacturer = str(volume.metadata.get("manufacturer") or "bmeviz synthetic")
        for k, v in who.items():
            setattr(ds, k, v)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.StudyDate = ds.SeriesDate = "20260101"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = int(order[s]) + 1
        ds.SeriesDescription = desc
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.MagneticFieldStrength = 3.0
        for k, v in tags.items():
            setattr(ds, k, v)
        pos = aff_lps[:, 3] + s * slice_step
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.PixelSpacing = [f"{sp_row:.6f}", f"{sp_col:.6f}"]
        ds.SliceThickness = f"{spacing:.4f}"
        ds.SpacingBetweenSlices = f"{spacing:.4f}"
        ds.SliceLocation = f"{float(np.dot(pos, normal)):.4f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(data.shape[1]), int(data.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = f"{intercept:.10g}"
        ds.RescaleType = "US"
        ds.PixelData = np.ascontiguousarray(stored[s]).tobytes()
        pydicom.dcmwrite(name, ds, enforce_file_format=True)
    return out
