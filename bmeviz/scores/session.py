"""A Qt-free model of a scoring session (what the napari "BME scores" widget shows and edits).

The widget is a thin view over it: the user's joint lines -> quadrants, a score, a reader's
overrides (each one re-scores and is recorded), the output folder. Tested without Qt.

>>> import numpy as np
>>> from bmeviz import Volume
>>> vol = Volume(np.zeros((4, 40, 60), np.float32), np.diag([3.0, 0.6, 0.6, 1.0]))
>>> region = np.zeros(vol.shape, bool); region[:, 5:35, 5:55] = True
>>> s = ScoreSession(vol, region=region)
>>> paths = [[[k, 5, c], [k, 35, c]] for k in (0, 3) for c in (15.5, 44.5)]
>>> int(s.build_quadrants(paths).labels.max())
8
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError
from ..volume import Volume
from ._common import ScoreResult
from .anatomy import Anatomy, lines_from_paths, sij_quadrants

__all__ = ["ScoreSession"]


class ScoreSession:
    """State of one scoring session on ``volume``.

    Parameters
    ----------
    volume : Volume
        The fluid-sensitive scan (STIR).
    region : bool array, optional
        The bone region for building SIJ quadrants from joint lines.
    """

    def __init__(self, volume: Volume, *, region: Any = None) -> None:
        if not isinstance(volume, Volume):
            raise ParameterError(f"volume must be a bmeviz.Volume; got {type(volume).__name__}")
        self.volume = volume
        self.region = None if region is None else np.asarray(region) > 0
        self.anatomy: Anatomy | None = None
        self.result: ScoreResult | None = None
        self.overrides: dict = {}
        self._last: dict = {}

    def build_quadrants(self, paths: Any, *, snap_to: Any = None, max_distance_mm: float | None = 30.0) -> Anatomy:
        """SIJ quadrants from joint-line paths ((n, 3) slice/row/column each, as a napari Shapes layer)."""
        if self.region is None:
            raise ParameterError("choose the bone region (a Labels layer of sacrum and ilia) before building quadrants")
        if not len(paths):
            raise ParameterError("draw the joint line (ilium | sacrum) as a path on a few slices of each joint first")
        lines = lines_from_paths(paths, volume=self.volume, region=self.region)
        self.anatomy = sij_quadrants(self.region, lines, volume=self.volume, snap_to=snap_to,
                                     max_distance_mm=max_distance_mm)
        self.result = None
        self.overrides = {}
        return self.anatomy

    def set_anatomy(self, labels: Any, names: Any = None) -> Anatomy:
        """Use an existing label map (e.g. loaded from a file) as the anatomy."""
        from .anatomy import load_anatomy

        self.anatomy = load_anatomy(labels, like=self.volume, names=names)
        self.result = None
        self.overrides = {}
        return self.anatomy

    def score(self, lesions: Any, *, scheme: str, **options) -> ScoreResult:
        """Score ``lesions`` (mask or labels) with ``scheme``; the current overrides apply."""
        from .outputs import score

        if self.anatomy is None:
            raise ParameterError("no anatomy yet: build the SIJ quadrants from joint lines or choose a label map")
        self._last = {"lesions": lesions, "scheme": scheme, "options": dict(options)}
        self.result = score(self.volume, lesions, self.anatomy, scheme=scheme, overrides=dict(self.overrides),
                            **options)
        return self.result

    def override(self, key: Any, value: int | None) -> ScoreResult:
        """A reader's correction of one unit (SPARCC ``(slice, joint, unit)``, graded: the unit name);
        ``None`` removes it. Re-scores; the result records auto value, new value and the list."""
        from ._common import parse_overrides

        if self.result is None:
            raise ParameterError("score first, then override a unit")
        scheme = self._last["scheme"]
        if value is None:
            norm = next(iter(parse_overrides({key: 0}, scheme=scheme)))
            self.overrides.pop(norm, None)
        else:
            self.overrides.update(parse_overrides({key: value}, scheme=scheme))
        return self.score(self._last["lesions"], scheme=scheme, **self._last["options"])

    def save(self, out_dir: Any, *, figures: bool = True) -> dict:
        """Write the output folder (scores.csv, scores.json, figures) of the current result."""
        from .outputs import write_scores

        if self.result is None:
            raise ParameterError("nothing to save: score first")
        return write_scores(self.result, self.volume, out_dir, figures=figures)
