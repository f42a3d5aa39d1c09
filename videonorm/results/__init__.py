"""Reading finished runs and comparing them: runs (:mod:`~videonorm.results.runs`: local records
:mod:`~videonorm.results.records`, the W&B API :mod:`~videonorm.results.wandb_api`), grid cells
(:mod:`~videonorm.results.comparison`), the report (:mod:`~videonorm.results.report`, :mod:`~videonorm.results.plots`),
the paper's numbers (:mod:`~videonorm.results.paper`) and the command (:mod:`~videonorm.results.compare`).
"""
