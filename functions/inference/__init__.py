"""Inference over whole slides: the builtin `nuclei-he` detector, ONNX models, tissue
masks, tiling at a model's resolution, seams, GeoJSON/Parquet outputs, viewport queries.

Importing the package registers `inference.slide`, `inference.region`,
`inference.region.gpu` and `inference.external`; heavy libraries load only when a
function needs them.
"""

from functions.inference import capability as capability
from functions.inference import external as external
