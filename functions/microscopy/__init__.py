"""Microscopy time-lapse analysis: metadata, per-FOV workflow, merge, synthetic data.

Importing the package registers the ``workflow``, ``workflow.fov`` and ``merge``
capabilities; scipy, scikit-image, nd2 and tifffile load only when work starts.
"""

from functions.microscopy import capability
from functions.microscopy.extraction import list_features
from functions.microscopy.readers import open_reader, read_metadata

__all__ = ["capability", "list_features", "open_reader", "read_metadata"]
