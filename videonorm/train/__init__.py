"""Training and evaluation through Lightning: the module (:mod:`~videonorm.train.module`), its lr schedule
(:mod:`~videonorm.train.schedule`) and metrics (:mod:`~videonorm.train.metrics`), callbacks
(:mod:`~videonorm.train.callbacks`), the CLI (:mod:`~videonorm.train.cli`) and W&B (:mod:`~videonorm.train.logger`).
"""
