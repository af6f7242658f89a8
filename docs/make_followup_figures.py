"""Render the follow-up figures of ``docs/followup.md`` into ``docs/images/followup_*.png``.

    python docs/make_followup_figures.py     # from the repository root; needs ../shared/data

- ``followup_checkerboard_1005_1006.png``: the real T1W pair 1005 -> 1006 (``sij-t1-followup``),
  slices 8 and 14, scanner frame and registered.
- ``followup_change_synthetic.png``: ``change.png`` of the synthetic follow-up of the STIR scan
  1013 (``sij-stir-dev``, reader R11 masks as truth; see ``bmeviz.followup.synthetic``).

Only the figures are written here (atomically); the scans stay in ../shared/data.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "images"
SHARED = HERE.parents[1] / "shared" / "data"


def main(out: Path = OUT) -> list[Path]:
    import bmeviz
    from bmeviz.followup import compare, register
    from bmeviz.followup.figures import change_figure, checkerboard_figure
    from bmeviz.followup.synthetic import make_followup
    from bmeviz.io._atomic import atomic_path

    warnings.simplefilter("ignore")
    written = []
    t1 = SHARED / "sij-t1-followup"
    pre, post = bmeviz.load(t1 / "1005_pre_T1W.nii.gz"), bmeviz.load(t1 / "1006_post_T1W.nii.gz")
    fig = checkerboard_figure(pre, post, register(pre, post), slices=[8, 14])
    fig.set_size_inches(6.0, 6.6)
    path = out / "followup_checkerboard_1005_1006.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=72)
    written.append(path)

    stir = SHARED / "sij-stir-dev"
    vol = bmeviz.load(stir / "images" / "1013_STIR.nii.gz")
    lesions = bmeviz.load(stir / "inflammation" / "1013_inflammation_R11.nii.gz").array > 0
    region = bmeviz.load(stir / "disease_region" / "1013_disease_region.nii.gz").array > 0
    ref = bmeviz.load(stir / "normal_marrow" / "1013_normal_marrow.nii.gz").array > 0
    syn = make_followup(vol, lesions, region=region, reference=ref)
    res = compare(vol, syn.followup, baseline_mask=syn.baseline_labels, followup_mask=syn.followup_labels,
                  baseline_options={"reference": ref}, followup_options={"reference": syn.followup_reference},
                  region=region)
    fig = change_figure(res)
    fig.set_size_inches(11, 4.1)
    path = out / "followup_change_synthetic.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=72)
    written.append(path)
    return written


if __name__ == "__main__":
    for p in main():
        print(f"wrote {p}")
    sys.exit(0)
