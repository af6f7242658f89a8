"""Seeds and guards for the fuzz suite.

Seeds are written once per session (per xdist worker) into a temporary folder: a classic
single-frame series and an Enhanced MR file with planted identifiers, and small NIfTI
files. Each fuzz case copies a seed, mutates the copy, and loads it under the limits of
``harness.run_case``. A backstop (faulthandler) ends the worker if one test runs far
past its budget, e.g. a hang inside C code that SIGALRM cannot interrupt.
"""

from __future__ import annotations

import faulthandler
import os
import sys

import numpy as np
import pytest

from fuzz import harness as H

#: Seconds one fuzz test may take before the backstop dumps the stacks and ends the worker.
BACKSTOP_S = float(os.environ.get("BMEVIZ_FUZZ_BACKSTOP", "900"))


@pytest.fixture(autouse=True)
def _backstop():
    faulthandler.dump_traceback_later(BACKSTOP_S, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def seeds(tmp_path_factory):
    """Paths of the generated seed inputs (never modified: cases work on copies)."""
    root = tmp_path_factory.mktemp("fuzz-seeds")
    vol = H.synthetic_volume()
    classic = H.write_classic_series(root / "classic", vol, shuffle_names=True)
    return {
        "classic": classic,
        "implicit": H.convert_series(classic, root / "implicit", "implicit"),
        "bigendian": H.convert_series(classic, root / "bigendian", "bigendian"),
        "rle": H.convert_series(classic, root / "rle", "rle"),
        "deflated": H.convert_series(classic, root / "deflated", "deflated"),
        "enhanced": H.write_enhanced(root / "enhanced" / "enh.dcm", vol).parent,
        "nifti_int": H.write_nifti(root / "int16.nii", vol, dtype=np.int16, slope=2.5),
        "nifti_float": H.write_nifti(root / "float.nii", vol, dtype=np.float32, slope=None),
        "volume": vol,
    }
