"""data_prep: prepare Kinetics for videonorm, resumably and honestly (``kinetics-prep``, ``python -m data_prep``).

One module per step, each readable top to bottom with its command line in the docstring:
:mod:`~data_prep.download`, :mod:`~data_prep.trim`, :mod:`~data_prep.resize`, :mod:`~data_prep.manifest`,
:mod:`~data_prep.verify`, :mod:`~data_prep.prepare` (all of them per split) and :mod:`~data_prep.synth`
(a small synthetic Kinetics). Shared pieces: :mod:`~data_prep.annotations` (CSV parsing and file names),
:mod:`~data_prep.encode` (decode a window, resize, H.264 with a short GOP; its parts: :mod:`~data_prep.source`
reading and frame timing, :mod:`~data_prep.writer` settings and muxer, :mod:`~data_prep.encode_jobs` many files
in parallel with their records, :mod:`~data_prep.encode_options` the command-line options),
:mod:`~data_prep.report` (summaries and failure CSVs), :mod:`~data_prep.parallel` (worker pools with progress
bars), :mod:`~data_prep.raw` (the raw folder), :mod:`~data_prep.runner` (a step as a program: exit codes,
interruption); :mod:`~data_prep.cli` only lists the steps.

It does not import videonorm's training code; it shares videonorm's file formats
(:mod:`videonorm.data.manifest`) and atomic writes (:mod:`videonorm.files`), which import neither torch nor
Lightning.
"""
