"""Training-data export: `datasets.build` turns a dataset's slides and time-lapses into
WebDataset shards (patches of slides, single-cell crops of time-lapses), a manifest, a
split by source file and a summary.

Importing the package registers `datasets.build` and `datasets.build.part`; heavy
libraries load only when a function needs them.
"""

from functions.datasets import capability as capability
