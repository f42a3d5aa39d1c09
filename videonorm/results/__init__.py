"""Reading finished runs and comparing them: run files (:mod:`~videonorm.results.runs`), grid cells
(:mod:`~videonorm.results.comparison`), the report (:mod:`~videonorm.results.report`, :mod:`~videonorm.results.plots`),
the paper's numbers (:mod:`~videonorm.results.paper`) and the command (:mod:`~videonorm.results.compare`).
"""
