"""Semi-quantitative scores from BME outlines: SPARCC and Berlin (sacroiliac joints), MOAKS and
WORMS (knee). Anatomy comes as a named label map (:mod:`.anatomy`); the rules and their cited
cut-offs are in :mod:`.sparcc` and :mod:`.graded`; ``docs/scores.md`` explains them.

>>> from bmeviz.scores import SIJ_LABELS
>>> SIJ_LABELS[1], SIJ_LABELS[8]
('right_upper_iliac', 'left_lower_sacral')
"""

from __future__ import annotations

from ._common import SCHEMES, ScoreResult, parse_overrides, parse_slices
from .anatomy import (KNEE_LABELS, SIJ_LABELS, Anatomy, interpolate_lines, knee_subregions, lines_from_paths,
                      load_anatomy, sij_quadrants)
from .graded import CUTOFFS, grade, score_graded
from .outputs import cohort_columns, html_fragment, score, score_study, write_scores
from .sparcc import choose_slices, score_sparcc

__all__ = [
    "SCHEMES", "ScoreResult", "Anatomy", "SIJ_LABELS", "KNEE_LABELS", "sij_quadrants", "interpolate_lines",
    "lines_from_paths", "load_anatomy", "knee_subregions", "score", "score_sparcc", "score_graded", "grade",
    "CUTOFFS", "choose_slices", "write_scores", "html_fragment", "cohort_columns", "score_study",
    "parse_overrides", "parse_slices",
]
