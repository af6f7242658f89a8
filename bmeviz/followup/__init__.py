"""Follow-up: BME change between two visits (register, match lesions, measure change).

``compare(baseline, followup, ...)`` is the one entry point; see ``docs/followup.md``.

>>> from bmeviz.followup import compare, STATUSES
>>> STATUSES
('persisting', 'shrunk', 'grown', 'resolved', 'new')
"""

from __future__ import annotations

from .change import FollowupResult, compare
from .cohort import save_trajectories, trajectories
from .register import Registration, RegistrationError, register

#: Statuses of a lesion track, in the order tables and legends use.
STATUSES = ("persisting", "shrunk", "grown", "resolved", "new")

__all__ = ["compare", "FollowupResult", "register", "Registration", "RegistrationError", "trajectories",
           "save_trajectories", "STATUSES"]
