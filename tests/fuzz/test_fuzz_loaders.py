"""Fuzzing the loaders: mutated DICOM series and NIfTI files give a sane Volume or a
BmevizError naming the input, never another exception, a hang or a giant allocation.

Each test draws its cases with hypothesis from a fixed seed (``derandomize``), so CI runs
the same cases every time; ``BMEVIZ_FUZZ_SCALE`` multiplies the number of cases and
``BMEVIZ_FUZZ_SEED`` picks other ones (benchmarks/fuzz_long.py does both). Every DICOM
volume that loads is also read again with pydicom decoding every file (``fast=False``)
and must be identical: the fast native path may never return pixels pydicom would not.
The mutated files must be byte-identical after loading (inputs are read-only).

Counts per CI run: see the ``EXAMPLES`` table (about 900 mutated inputs in all).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz import harness as H
from helpers import SHARED

S = H.strategies()

#: Mutated inputs per test in one CI run (times $BMEVIZ_FUZZ_SCALE).
EXAMPLES = {
    "classic": 220,  # explicit VR little endian, element- and byte-level mutations
    "encodings": 140,  # the same series as implicit VR, big endian, RLE and deflated
    "enhanced": 110,  # one Enhanced MR multi-frame file
    "real": 110,  # real vendor files (JPEG, JPEG-LS, JPEG 2000, RLE, enhanced; shared data)
    "nifti": 330,  # NIfTI-1 header fields, header bytes, voxel data, extensions, truncation, gzip
}

REAL_CASES = [
    "generic/anatomical/001", "generic/anatomical/001_implicit", "generic/compressed/001",
    "generic/compressed_j2k/001", "generic/compressed_jpeg/001", "generic/compressed_jpegls/001",
    "generic/compressed_rle/001", "hitachi/anatomical/001", "philips/anatomical/001",
    "philips_enhanced/anatomical/001", "siemens_multiframe/anatomical/001",
]

_counter = itertools.count()


def _fresh(src: Path, tmp: Path) -> Path:
    dst = tmp / f"case{next(_counter)}"
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.mkdir()
        shutil.copy(src, dst / src.name)
    return dst


def _mutate_files(folder: Path, ops) -> list[str]:
    files = sorted(folder.iterdir())
    done = []
    for which, op in ops:
        f = files[which % len(files)]
        f.write_bytes(H.apply_op(f.read_bytes(), op))
        done.append(f"{f.name}: {op!r:.120}")
    return done


def _run_dicom(seed_folder: Path, tmp: Path, ops) -> None:
    folder = _fresh(seed_folder, tmp)
    try:
        what = _mutate_files(folder, ops)
        problems = H.check_dicom_folder(folder)
        assert not problems, "\n".join(what + problems)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


ops_any = st.lists(st.tuples(st.integers(0, 99), S["any"]), min_size=1, max_size=3)


def test_classic_series_mutations(seeds, tmp_path):
    calls = []

    @H.fuzz_settings(EXAMPLES["classic"])
    @H.fuzz_seed
    @given(ops=ops_any)
    def case(ops):
        calls.append(1)
        _run_dicom(seeds["classic"], tmp_path, ops)

    case()
    assert len(calls) >= H.expected_examples(EXAMPLES["classic"])


def test_other_encodings_mutations(seeds, tmp_path):
    calls = []

    @H.fuzz_settings(EXAMPLES["encodings"])
    @H.fuzz_seed
    @given(encoding=st.sampled_from(["implicit", "bigendian", "rle", "deflated"]), ops=ops_any)
    def case(encoding, ops):
        calls.append(1)
        _run_dicom(seeds[encoding], tmp_path, ops)

    case()
    assert len(calls) >= H.expected_examples(EXAMPLES["encodings"])


def test_enhanced_multiframe_mutations(seeds, tmp_path):
    calls = []

    @H.fuzz_settings(EXAMPLES["enhanced"])
    @H.fuzz_seed
    @given(ops=st.lists(st.tuples(st.just(0), S["any"]), min_size=1, max_size=4))
    def case(ops):
        calls.append(1)
        _run_dicom(seeds["enhanced"], tmp_path, ops)

    case()
    assert len(calls) >= H.expected_examples(EXAMPLES["enhanced"])


def test_real_vendor_file_mutations(tmp_path):
    available = [c for c in REAL_CASES if (SHARED / "dicom-series-cases" / c).is_dir()]
    if not available:
        pytest.skip(f"real data not available: {SHARED / 'dicom-series-cases'}")
    calls = []

    @H.fuzz_settings(EXAMPLES["real"])
    @H.fuzz_seed
    @given(case_name=st.sampled_from(available), ops=ops_any)
    def case(case_name, ops):
        calls.append(1)
        _run_dicom(SHARED / "dicom-series-cases" / case_name, tmp_path, ops)

    case()
    assert len(calls) >= H.expected_examples(EXAMPLES["real"])


def test_nifti_mutations(seeds, tmp_path):
    calls = []

    @H.fuzz_settings(EXAMPLES["nifti"])
    @H.fuzz_seed
    @given(base=st.sampled_from(["nifti_int", "nifti_float"]), ops=st.lists(S["nifti"], min_size=1, max_size=4),
           gz=st.sampled_from([None, None, 1.0, 0.99, 0.5, 0.05]))
    def case(base, ops, gz):
        calls.append(1)
        data = seeds[base].read_bytes()
        for op in ops:
            data = H.apply_nifti_op(data, op)
        path = tmp_path / (f"case{next(_counter)}.nii" + (".gz" if gz is not None else ""))
        path.write_bytes(data if gz is None else H.truncate(H.gz_bytes(data), gz) if gz < 1 else H.gz_bytes(data))
        try:
            problems = H.check_nifti_file(path)
            assert not problems, f"{ops!r}: " + "\n".join(problems)
        finally:
            path.unlink()

    case()
    assert len(calls) >= H.expected_examples(EXAMPLES["nifti"])
