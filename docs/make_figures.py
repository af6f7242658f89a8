"""Render the quickstart figures into ``docs/images/quickstart_*.png``.

    python docs/make_figures.py            # from the repository root (about 10 s)

The same steps as ``notebooks/01_quickstart.ipynb`` on the shipped synthetic sample (no
patient data): reference = the sample's normal-marrow ball, one seed per lesion, the
bone as search region, ``edge='half-max'``. Each figure is written atomically.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "images"


def main(out: Path = OUT, dpi: int = 120) -> list[Path]:
    import bmeviz
    from bmeviz import plot
    from bmeviz.data import load_sample
    from bmeviz.io._atomic import atomic_path

    volume, truth = load_sample()
    result = bmeviz.segment(volume, reference=truth["reference"], region=truth["bone"],
                            seeds=truth["seeds"], edge="half-max")
    figures = {
        "overlay": plot.overlay(result, title=f"{volume.metadata.get('description', '')}: "
                                              "slice with the most BME").figure,
        "montage": plot.montage(result, max_slices=8, title="slices with BME (8 of them, evenly spread)"),
        "mip": plot.mip(result, axis=1, region=truth["bone"]).figure,
        "histogram": plot.histogram(volume, truth["reference"], result).figure,
        "volumes": plot.volumes(result.table).figure,
        "summary": plot.summary(result),
    }
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        path = out / f"quickstart_{name}.png"
        with atomic_path(path) as tmp:
            # the montage is big and noisy: a lower dpi keeps the file small
            fig.savefig(tmp, dpi=80 if name == "montage" else dpi, format="png", facecolor="white")
        os.chmod(path, 0o644)  # the temporary file was private
        written.append(path)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(p)
