"""`aperture batch`: one job per input file, resumable through a manifest."""
