"""The names of the metrics runs log (W&B and the local record alike), defined once: training logs under them,
``compare``, the demo and ``predict`` read or write them (the DESIGN contract "Metric names"). Standard library only.
"""

from __future__ import annotations

# training steps (on_step) and epochs
TRAIN_LOSS = "train/loss"
TRAIN_TOP1 = "train/top1"
TRAIN_TOP5 = "train/top5"
TRAIN_LR = "train/lr"
TRAIN_LOSS_EPOCH = "train/loss_epoch"
TRAIN_TOP1_EPOCH = "train/top1_epoch"

# validation: one center clip per video, each video once
VAL_LOSS = "val/loss"
VAL_TOP1 = "val/top1"
VAL_TOP5 = "val/top5"
VAL_VIDEOS = "val/videos"
# the best validation epoch of a fit (summary keys)
VAL_BEST_EPOCH = "val/best_epoch"
VAL_BEST_TOP1 = "val/best_top1"
VAL_BEST_TOP5 = "val/best_top5"

# test: video level, views averaged; every value of videonorm.train.metrics' test result is logged as test/<name>
TEST_PREFIX = "test/"
TEST_TOP1 = "test/top1"
TEST_TOP5 = "test/top5"
TEST_MEAN_CLASS_ACC = "test/mean_class_acc"
TEST_PER_CLASS = "test/per_class"  # W&B table
TEST_CONFUSION_MATRIX = "test/confusion_matrix"  # W&B chart

# data
SKIPPED_VIDEOS = {"train": "data/skipped_videos", "val": "data/skipped_videos_val", "test": "data/skipped_videos_test"}
WAIT_FRACTION = "data/wait_fraction"
CLIPS_PER_S = "data/clips_per_s"

# videonorm predict --wandb
PREDICT_PREDICTIONS = "predict/predictions"
PREDICT_VIDEOS = "predict/videos"
PREDICT_FAILED = "predict/failed"

# what compare (and the demo) read per metric: (top-1, top-5)
ACCURACY = {"val": (VAL_TOP1, VAL_TOP5), "test": (TEST_TOP1, TEST_TOP5)}
