"""Scores of one batch study (manifest columns ``anatomy``, ``score_scheme``...): computed after the
segmentation, written into the study folder (``scores/<scheme>/``), returned as cohort.csv columns.

A scoring failure never fails the study: that scheme's columns stay empty and a note says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BmevizError


class StudyScores:
    """The scores of one study: cohort columns, report sections, notes; :meth:`write` writes the files.

    Parameters
    ----------
    spec : mapping
        ``task["scores"]``: ``schemes``, ``anatomy``, ``anatomy_names``, ``options``.
    image : bmeviz.Volume
        The scan as loaded for the segmentation.
    labels : numpy.ndarray
        The segmentation's lesion labels on ``image``'s grid.
    sections : bool
        Also build the report.html sections (``--report``).
    """

    def __init__(self, spec: Mapping[str, Any], image: Any, labels: Any, *, sections: bool) -> None:
        self.spec = spec
        self.image = image
        self.columns: dict[str, Any] = {}
        self.sections: list[str] = []  # report.html sections; changed in place by write() (export reads it later)
        self._section_of: dict[str, str] = {}
        self.notes: list[str] = []
        self.names: list[str] = []  # files written, relative to the study folder
        self._results: list[Any] = []
        schemes = list(spec["schemes"])
        try:
            from ..scores import load_anatomy

            anatomy = load_anatomy(spec["anatomy"], like=image, names=spec.get("anatomy_names"))
        except Exception as exc:  # noqa: BLE001 - any failure: the study's measurements stand
            for s in schemes:
                self._fail(s, exc)
            return
        for s in schemes:
            try:
                self._score(s, anatomy, labels, sections)
            except Exception as exc:  # noqa: BLE001
                self._fail(s, exc)

    def _score(self, scheme: str, anatomy: Any, labels: Any, sections: bool) -> None:
        from ..scores import cohort_columns, html_fragment, score

        opts = dict(self.spec.get("options") or {})
        if scheme != "sparcc":  # the fluid reference is SPARCC's 'intense' only
            opts.pop("fluid", None)
            opts.pop("fluid_point_mm", None)
        elif opts.get("fluid_point_mm") is not None:
            opts["fluid_point_mm"] = tuple(opts["fluid_point_mm"])
        res = score(self.image, labels, anatomy, scheme=scheme, **opts)
        cols = cohort_columns(res)
        section = html_fragment(res, self.image) if sections else None
        self._results.append(res)
        self.columns.update(cols)
        if section is not None:
            self._section_of[scheme] = section
            self.sections.append(section)

    def _fail(self, scheme: str, exc: BaseException) -> None:
        self.columns[f"{scheme}_total"] = None
        msg = str(exc) if isinstance(exc, BmevizError) else f"{type(exc).__name__}: {exc}"
        self.notes.append(f"{scheme} score failed ({msg}); its columns are empty")

    def write(self, folder: Path) -> None:
        """Write ``folder/scores/<scheme>/`` (scores.csv, scores.json, figures/) for every scored scheme."""
        from ..scores import write_scores

        for res in list(self._results):
            sub = Path("scores") / res.scheme
            try:
                written = write_scores(res, self.image, folder / sub)
            except Exception as exc:  # noqa: BLE001 - e.g. a figure that cannot be drawn
                self._results.remove(res)
                for k in [k for k in self.columns if k.startswith(res.scheme + "_")]:
                    del self.columns[k]
                if res.scheme in self._section_of:
                    self.sections.remove(self._section_of.pop(res.scheme))
                self._fail(res.scheme, exc)
                continue
            self.names += [str(sub / written[k].name) for k in ("csv", "json")]
