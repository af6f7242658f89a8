"""Regenerate the shipped sample phantom in this folder.

Run from the repository root (or anywhere, with bmeviz installed)::

    python sample_data/make_sample.py

It writes the files listed in ``bmeviz.data.SAMPLE_FILES`` next to this script, from
``bmeviz.data.make_phantom(**bmeviz.data.SAMPLE_PARAMS)``. ``tests/test_data.py``
checks that the shipped files still equal what the code makes, so rerun this script
(and commit its output) whenever the phantom generator changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the bmeviz of this checkout, installed or not

from bmeviz.data import SAMPLE_PARAMS, write_sample  # noqa: E402


def main() -> None:
    paths = write_sample(HERE)
    total = 0
    for name, path in paths.items():
        size = path.stat().st_size
        total += size
        print(f"{name:28s} {size / 1e3:8.1f} kB")
    print(f"{'total':28s} {total / 1e3:8.1f} kB   (parameters: {dict(SAMPLE_PARAMS)})")


if __name__ == "__main__":
    main()
