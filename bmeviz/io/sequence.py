"""Recognise the MR sequence of a series from its DICOM tags.

This is how a user finds the fluid-sensitive series (STIR, TIRM, T2/PD with fat
suppression, Dixon water) among a dozen in a study folder. The guess uses, in order:
localizer flags, Dixon image types, inversion recovery with its inversion time, fat
suppression from ScanOptions (or the enhanced-MR modifier), and the weighting from
the description or, failing that, from TR/TE.

>>> classify({"SeriesDescription": "STIR cor", "RepetitionTime": 4000, "EchoTime": 40})
'STIR'
>>> classify({"SeriesDescription": "pd_tse_fs_sag", "RepetitionTime": 3200, "EchoTime": 33})
'PD FS'
>>> classify({"ScanOptions": ["SAT_GEMS", "FS"], "RepetitionTime": 4500, "EchoTime": 70})
'T2 FS'
>>> classify({"ScanningSequence": ["SE", "IR"], "InversionTime": 160, "RepetitionTime": 5000})
'STIR'
>>> classify({"SeriesDescription": "T1 TSE", "RepetitionTime": 550, "EchoTime": 12})
'T1'
>>> is_fluid_sensitive("T2 FS"), is_fluid_sensitive("T1 FS")
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["classify", "is_fat_suppressed", "is_fluid_sensitive", "FLUID_SENSITIVE", "header_fields"]

#: Sequence labels that show BME (bright fluid on dark marrow), best first.
FLUID_SENSITIVE = ("STIR", "T2 FS", "PD FS", "DIXON WATER", "FS")

#: The tags the classifier reads; the series scan keeps just these.
header_fields = (
    "SeriesDescription",
    "ProtocolName",
    "SequenceName",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "InversionTime",
    "RepetitionTime",
    "EchoTime",
    "ImageType",
    "Manufacturer",
    "MagneticFieldStrength",
    # enhanced MR (flattened by the scanner code)
    "InversionRecovery",
    "SpectrallySelectedSuppression",
    "PulseSequenceName",
)

_FS_OPTIONS = {"FS", "SFS", "FSA", "FSS", "FSP", "FSI", "SPAIR", "SPIR", "FAT_SAT", "FATSAT", "CHESS", "WE"}
_FS_WORDS = {"fs", "fatsat", "fatsup", "fsat", "spair", "spir", "fsupp", "fatsuppressed", "chess", "we", "wateronly"}
_STIR_WORDS = {"stir", "tirm", "irfse", "irtse", "stirfse", "stirtse", "t2stir", "pdstir", "tirmcor", "tirmsag", "tirmtra"}
_NUMBER = re.compile(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _tokens(value: Any) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", _text(value).lower()) if t]


def _upper_set(value: Any) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        return {v.strip().upper() for v in re.split(r"[\\/,\s]+", value) if v.strip()}
    return {str(v).strip().upper() for v in value}


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
        if value is None:
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        m = _NUMBER.search(str(value))
        return float(m.group()) if m else None


def _description_words(h: Mapping[str, Any]) -> list[str]:
    words: list[str] = []
    for key in ("SeriesDescription", "ProtocolName", "SequenceName", "PulseSequenceName"):
        words += _tokens(h.get(key))
    return words


def is_fat_suppressed(h: Mapping[str, Any]) -> bool:
    """True when tags or description say fat suppression (ScanOptions FS, SPAIR, 'fat sat')."""
    options = _upper_set(h.get("ScanOptions"))
    if options & _FS_OPTIONS:
        return True
    if options & {"FS_GEMS", "FSA_GEMS", "FSS_GEMS"}:  # never FAST_GEMS / FSE
        return True
    sss = _text(h.get("SpectrallySelectedSuppression")).upper()
    if "FAT" in sss:
        return True
    words = _description_words(h)
    joined = " ".join(words)
    if any(w in _FS_WORDS for w in words):
        return True
    if re.search(r"\bfat (sat|suppr|supp|sup)", joined):
        return True
    # glued forms: pdfs, t2fs, pdwfs, t2wfs, pdspair, t2fatsat
    return any(re.fullmatch(r"(pd|t2|t1|pdw|t2w|t1w|tse|fse)(fs|spair|spir|fatsat)", w) for w in words)


def _weighting(h: Mapping[str, Any], words: list[str]) -> str | None:
    for w in words:
        if w in {"pd", "pdw", "proton", "pdtse", "pdfse", "pdfs", "pdwfs", "pdspair", "dp"} or w.startswith("pd_"):
            return "PD"
        if re.fullmatch(r"t2(w|tse|fse|fs|wfs|spair|star)?", w) or w == "t2":
            return "T2"
        if w in {"t1rho", "t2map", "t2mapping", "t1rhomap", "t2star", "map"}:
            return None  # quantitative maps: no conventional weighting
        if re.fullmatch(r"t1(w|tse|fse|fs|wfs|se)?", w) or w in {"mprage", "vibe", "flash"}:
            return "T1"
    tr, te = _number(h.get("RepetitionTime")), _number(h.get("EchoTime"))
    if tr is None or te is None:
        return None
    if tr < 1000 and te < 30:
        return "T1"
    if tr >= 1000:
        return "PD" if te < 50 else "T2"
    return None


def classify(h: Mapping[str, Any]) -> str:
    """Guess the sequence of a series from its header fields (a dict or a pydicom Dataset).

    Returns one of ``'STIR'``, ``'T2 FS'``, ``'PD FS'``, ``'T1 FS'``, ``'FS'``,
    ``'DIXON WATER'``, ``'DIXON FAT'``, ``'DIXON'``, ``'FLAIR'``, ``'T1'``, ``'T2'``,
    ``'PD'``, ``'localizer'`` or ``'other'``.
    """
    words = _description_words(h)
    image_type = _upper_set(h.get("ImageType"))
    if "LOCALIZER" in image_type or any(w in {"localizer", "localiser", "scout", "survey", "loc", "3plane"} for w in words):
        return "localizer"
    # Dixon: image type (Siemens DIXON\W, GE IDEAL/FLEX W, Philips mDIXON W) or description
    dixon = "DIXON" in image_type or any(w in {"dixon", "mdixon", "ideal", "flex", "lava"} or w.startswith("dixon") for w in words)
    if dixon or image_type & {"WATER", "FAT"}:
        if image_type & {"W", "WATER"} or any(w in {"w", "water", "wat"} for w in words):
            return "DIXON WATER"
        if image_type & {"F", "FAT"} or any(w in {"f", "fat"} for w in words):
            return "DIXON FAT"
        return "DIXON"
    ti = _number(h.get("InversionTime"))
    scanning = _upper_set(h.get("ScanningSequence"))
    inversion = "IR" in scanning or _text(h.get("InversionRecovery")).upper() == "YES" or ti is not None
    if any(w in _STIR_WORDS for w in words) or ("stir" in " ".join(words)):
        return "STIR"
    if inversion and ti is not None:
        if 50 <= ti <= 300:
            return "STIR"
        if ti >= 1500 or "flair" in words:
            return "FLAIR"
    if "flair" in words:
        return "FLAIR"
    weighting = _weighting(h, words)
    if weighting is None and any(w in {"t1rho", "t2map", "t2mapping", "t1rhomap", "t2star", "map"} for w in words):
        return "FS" if is_fat_suppressed(h) else "other"
    if is_fat_suppressed(h):
        return f"{weighting} FS" if weighting else "FS"
    return weighting or "other"


def is_fluid_sensitive(label: str) -> bool:
    """True for the labels that show BME: STIR, T2 FS, PD FS, Dixon water, FS of unknown weighting."""
    return label in FLUID_SENSITIVE


def fluid_rank(label: str) -> int:
    """Rank for picking the series to measure BME on (lower is better; 99 = not fluid-sensitive)."""
    try:
        return FLUID_SENSITIVE.index(label)
    except ValueError:
        return 99
