"""Whole-slide images: metadata, Deep Zoom geometry and tiles, pyramids, synthetic slides.

Importing the package registers the `tiles.pyramid` capability; heavy libraries
(OpenSlide, libvips, tifffile) load only when a function needs them.
"""

from functions.slides import capability as capability
