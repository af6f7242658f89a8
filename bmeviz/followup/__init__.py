"""Follow-up: BME change between two visits (register, match lesions, measure change).

``compare(baseline, followup, ...)`` is the one entry point; see ``docs/followup.md``.
"""

from __future__ import annotations
