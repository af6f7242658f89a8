"""DICOM series: discovery from headers, grouping into stacks, and geometry-checked loading.

The flow (after nibabel's ``nicom`` and dicom2nifti, written anew):

1. :func:`scan` reads headers only (``stop_before_pixels``) of every file under a path;
   files that are not DICOM are skipped with one warning naming them. Enhanced
   (multi-frame) files contribute one entry per frame from their functional groups.
2. :func:`group` splits the images into stacks by SeriesInstanceUID and, where one UID
   holds several, by echo, image type, orientation and matrix size. Localizers are left
   out.
3. :func:`read_stack` sorts a stack by ImagePositionPatient projected on the slice
   normal, checks it forms a volume (enough slices, no duplicates, uniform spacing, no
   gantry tilt), reads and rescales the pixels, and builds the RAS affine.

Modules: :mod:`.headers` (the :class:`Frame` record, defensive value reading),
:mod:`.scan` (file discovery), :mod:`.series` (grouping), :mod:`.geometry` (sorting and
volume checks, the affine), :mod:`.pixels` (pixel data, rescaling, the Volume).
"""

from __future__ import annotations

from .geometry import LPS_TO_RAS, MIN_SLICES, SPACING_ATOL, SPACING_RTOL, TILT_TOLERANCE_DEG, check_geometry, common_folder
from .headers import Frame, PixelLayout
from .pixels import read_stack
from .scan import SCAN_TAGS, scan
from .series import SeriesInfo, group

__all__ = ["Frame", "SeriesInfo", "scan", "group", "read_stack", "MIN_SLICES", "check_geometry", "PixelLayout",
           "LPS_TO_RAS", "SCAN_TAGS", "common_folder", "SPACING_ATOL", "SPACING_RTOL", "TILT_TOLERANCE_DEG"]
