"""From files on disk to batches: manifests and class lists (:mod:`~videonorm.data.manifest`), exact frame decoding
(:mod:`~videonorm.data.video`), clip sampling (:mod:`~videonorm.data.sampling`), transforms
(:mod:`~videonorm.data.transforms`), the dataset (:mod:`~videonorm.data.dataset`) and the LightningDataModule
(:mod:`~videonorm.data.datamodule`).

Nothing is imported here: ``kinetics-prep`` reads :mod:`videonorm.data.manifest` without loading torch.
"""
