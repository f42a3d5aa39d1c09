"""Training and evaluation through Lightning: the module (:mod:`~videonorm.train.module`), its lr schedule
(:mod:`~videonorm.train.schedule`) and metrics (:mod:`~videonorm.train.metrics`), the callbacks (precise BN
:mod:`~videonorm.train.precise_bn`, CPU threads :mod:`~videonorm.train.threads`, the divergence guard
:mod:`~videonorm.train.guards`, the run's reports :mod:`~videonorm.train.reports`, the progress bar
:mod:`~videonorm.train.progress`, data wait :mod:`~videonorm.train.data_wait`), the CLI (:mod:`~videonorm.train.cli`)
and W&B (:mod:`~videonorm.train.logger`).
"""
