"""Inference over whole slides: the builtin `nuclei-he` detector, ONNX models, tissue
masks, tiling at a model's resolution, seams, GeoJSON/Parquet outputs, viewport queries."""
