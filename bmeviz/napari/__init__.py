"""The napari plugin of bmeviz: reader, writer, sample data and the "BME segmentation" widget.

Install with ``pip install "bmeviz[napari]"`` (and a Qt binding, ``bmeviz[qt]``); napari
finds the plugin through the ``napari.manifest`` entry point (``napari.yaml`` here).

Importing this package imports neither napari nor Qt: the reader, writer and sample data
(:mod:`bmeviz.napari._reader`, :mod:`._writer`, :mod:`._sample`) are plain Python over the
bmeviz core, and only :mod:`bmeviz.napari._widget` needs napari and a Qt binding. All
measuring is done by the core (:func:`bmeviz.segment` and friends); the plugin only
shows and collects the inputs.
"""

from __future__ import annotations

__all__: list[str] = []
