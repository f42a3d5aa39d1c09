"""Loggers of training runs (W&B, and the local record), run directories and ids, and the logged run config.

Every run lives in one directory that is a pure function of its config, so ``--ckpt_path last`` finds the
checkpoint of an interrupted run and the resumed run continues the same W&B run id::

    <trainer.default_root_dir>/<group>/<run_name>/
        config.yaml            merged CLI config of the last ``fit`` (config_test.yaml etc. for other subcommands)
        record.jsonl           every logged metric, flushed as logged (:mod:`videonorm.record`); what compare reads
        wandb_run_id           the W&B run id, reused by resumed fits and by validate/test on this run
        wandb/offline-run-*/   offline runs (``wandb sync <run dir>/wandb`` uploads all parts of the run); online runs
                               keep their local copy here too
        checkpoints/last.ckpt, checkpoints/best.ckpt   (best by val/top1)
        skipped_videos_<stage>.csv   broken videos skipped by fit/validate/test, with the reasons (only if any)
        test_per_class.csv, test_confusion.csv   per-class accuracy and confusion matrix of the last test

A fit never starts over in a directory that already holds a run (:func:`existing_run`): it resumes
(``--ckpt_path last``) or the user names another run.

The run name comes from :func:`videonorm.identity.run_name` (e.g. ``i3d_r50-gn-b4-32x2``).

W&B run config: the merged CLI config flattened to dot-separated keys (``model.norm``, ``data.batch_size``,
``trainer.devices``, ``seed_everything``...) plus ``world_size``, ``effective_batch_size`` (clips per optimizer
step over all devices) and the dataset fingerprint (``dataset.hash``, ``dataset.<manifest>.<field>``).
"""

from __future__ import annotations

import netrc
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import wandb
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from videonorm import metric_keys as keys
from videonorm.files import write_text_atomic
from videonorm.identity import flatten
from videonorm.record import DIVERGED_TAG, RECORD_FILE, append_entries, diverged_summary

RUN_ID_FILE = "wandb_run_id"
CHECKPOINT_DIR = "checkpoints"
# W&B job types by subcommand: a validate/test logging into a trained run keeps the run's "train"
JOB_TYPES = {"fit": "train", "validate": "validate", "test": "test", "predict": "predict"}
_SYNC_HINTED: set[str] = set()  # W&B directories whose `wandb sync` line this process printed
# Offline runs: no footer and sync hint of W&B's own (ours is in finalize), and the .wandb file flushed every second
# instead of every 15 s: a killed fit otherwise leaves a header-only file (7 bytes), which also makes `wandb sync`
# of a whole tree fail ("Failed to read ...: EOF"). x_transaction_log_flush_interval is an experimental (x_) setting
# of wandb >= 0.2x; it is only passed where this wandb has it.
_OFFLINE_SETTINGS = {"quiet": True}
if "x_transaction_log_flush_interval" in getattr(wandb.Settings, "model_fields", {}):
    _OFFLINE_SETTINGS["x_transaction_log_flush_interval"] = 1.0


def has_wandb_credentials() -> bool:
    """Whether W&B could log online: an API key in the environment or a netrc entry for the W&B host.

    Only checks presence (never reads or validates the key): no network.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    candidates = [os.environ.get("NETRC", ""), "~/.netrc", "~/_netrc"]
    for name in filter(None, candidates):
        path = Path(name).expanduser()
        if not path.is_file():
            continue
        try:
            if netrc.netrc(path).authenticators(host):
                return True
        except (netrc.NetrcParseError, OSError):
            continue
    return False


def wandb_mode() -> Literal["online", "offline", "disabled"]:
    """The mode a run will use: ``WANDB_MODE`` if set, otherwise online exactly when credentials exist."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun"):
        return "offline"
    if mode == "disabled":
        return "disabled"
    if mode == "online":
        return "online"
    return "online" if has_wandb_credentials() else "offline"


class WandbRunLogger(WandbLogger):
    """Lightning's ``WandbLogger`` with offline-by-default behaviour and explicit run-organizing arguments.

    Differences from the parent, all about never breaking a run for lack of a W&B account and about runs as
    W&B users read them:

    * ``offline=None`` (the default) means offline unless credentials are found (see ``wandb_mode``).
    * ``val/top1`` and ``val/top5`` summarize to their best epoch (``define_metric(summary="max")``); the
      ``BestValidation`` callback adds ``val/best_epoch`` (with ``val/best_top1``, ``val/best_top5`` of that
      epoch), which stays right across resumed and offline parts.
    * ``log_model=True`` (the default) uploads, at the end of a successful fit of an online run, best.ckpt
      (alias ``best``) and last.ckpt (alias ``latest``) as versions of the artifact ``model-<run id>``
      (Lightning's own upload would alias the monitor-less last.ckpt ``best`` too). Ignored offline.
    * At the end the run is finished and, when offline, the one ``wandb sync`` command that uploads every part
      of the run (fit, resumed fits, test) is printed, once per run and process (W&B's own hint is silenced).
    * ``group``, ``tags``, ``entity``, ``notes`` and ``job_type`` are named arguments (the parent takes them
      through ``**kwargs``, which ``--print_config`` and ``--help`` cannot show).

    ``name``, ``save_dir`` and ``job_type`` are normally filled in by the CLI from the experiment config and the
    subcommand (see the module docstring); set them to override.

    Args:
        name: Run name; ``None`` lets the CLI derive it (``run_name``).
        save_dir: Run directory; W&B writes under ``save_dir/wandb``.
        project: W&B project.
        entity: W&B entity (user or team); ``None`` uses the account default.
        group: W&B group, one per experiment grid (e.g. ``kinetics400``, ``demo``); also the run directory's
            parent.
        tags: W&B tags.
        notes: W&B notes.
        job_type: W&B job type; ``None`` lets the CLI set it (``train`` for a fit and for validate/test of a
            trained run, else ``validate`` / ``test``).
        offline: ``True``/``False`` force the mode; ``None`` picks it from ``WANDB_MODE`` and credentials.
        log_model: Upload best.ckpt and last.ckpt as W&B artifacts at the end of a successful fit (online only).
        id: W&B run id; ``None`` lets the CLI reuse the run directory's id when resuming.
        **kwargs: Passed on to ``WandbLogger`` (and from there to ``wandb.init``).
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | None = None,
        project: str = "videonorm",
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        job_type: str | None = None,
        offline: bool | None = None,
        log_model: bool = True,
        id: str | None = None,  # noqa: A002 - W&B's own name for it
        **kwargs: Any,
    ) -> None:
        mode = wandb_mode() if offline is None else ("offline" if offline else "online")
        if os.environ.get("WANDB_MODE", "").lower() == "disabled":
            mode = "disabled"
        if mode != "online" and log_model:
            log_model = False  # artifacts need an online run (Lightning's WandbLogger would raise)
        if save_dir is not None:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
        extra = {"entity": entity, "group": group, "tags": tags, "notes": notes, "job_type": job_type}
        kwargs.update({k: v for k, v in extra.items() if v is not None})
        if mode == "offline" and kwargs.get("settings") is None:  # the CLI passes settings=None
            kwargs["settings"] = wandb.Settings(**_OFFLINE_SETTINGS)
        super().__init__(
            name=name,
            save_dir=save_dir if save_dir is not None else ".",
            project=project,
            offline=mode == "offline",
            log_model=log_model,
            id=id,
            **kwargs,
        )
        if self._wandb_init.get("anonymous") is None:
            del self._wandb_init["anonymous"]  # wandb warns about the key even when it is None
        self.mode = mode
        self.group = group

    @property
    def experiment(self) -> Any:
        """The W&B run (created on first use), with the best-epoch summaries of the validation accuracies."""
        new = self._experiment is None
        run = super().experiment
        if new and self._experiment is not None and hasattr(run, "define_metric"):
            for key in (keys.VAL_TOP1, keys.VAL_TOP5):
                # a metric's own definition replaces the parent's "*" one: keep its x-axis
                run.define_metric(key, step_metric="trainer/global_step", summary="max")
        return run

    @rank_zero_only
    def log_summary(self, values: Mapping[str, Any]) -> None:
        """Set W&B summary keys (not a history row)."""
        self.experiment.summary.update(dict(values))

    @rank_zero_only
    def mark_diverged(self, info: Mapping[str, Any]) -> None:
        """Mark the run diverged: summary ``diverged`` (+ ``diverged/...`` details) and the tag ``diverged``."""
        self.log_summary(diverged_summary(dict(info)))
        run = self.experiment
        run.tags = tuple(dict.fromkeys((*(run.tags or ()), DIVERGED_TAG)))

    @rank_zero_only
    def log_test_report(self, classes: list[str], confusion: Any) -> None:
        """Per-class test accuracy as a table and the confusion matrix as W&B's confusion-matrix chart.

        Args:
            classes: Class names (label order).
            confusion: (C, C) video counts, rows = true class.
        """
        counts = confusion.tolist()
        per_class = wandb.Table(columns=["label", "class", "videos", "accuracy"],
                                data=[[i, name, sum(row), row[i] / sum(row) if sum(row) else None]
                                      for i, (name, row) in enumerate(zip(classes, counts))])
        # only the non-empty cells: W&B's own confusion_matrix() writes all C^2 (160k rows for Kinetics-400,
        # beyond a logged table's 10k limit); its chart draws missing cells as empty
        cells = [[classes[i], classes[j], n] for i, row in enumerate(counts) for j, n in enumerate(row) if n]
        chart = wandb.plot_table("wandb/confusion_matrix/v1",
                                 wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=cells),
                                 {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
                                 {"title": "test confusion matrix (videos)"})
        self.experiment.log({keys.TEST_PER_CLASS: per_class, keys.TEST_CONFUSION_MATRIX: chart})

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        if self._log_model:
            self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback  # uploaded in finalize

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Upload the checkpoints (online), finish the W&B run, and say how to sync an offline run."""
        run = self._experiment
        if run is None or not hasattr(run, "finish"):
            return
        if status == "success" and self._checkpoint_callbacks:
            self._log_checkpoints(run)
        run.finish(exit_code=0 if status == "success" else 1)
        # finish() can return before wandb-core has written the end of an offline .wandb file; teardown waits
        # for it, so a `videonorm compare` right after (same process, e.g. the demo) reads complete runs.
        wandb.teardown()
        # the next fit/validate/test in this process starts (or resumes) a run instead of logging to a finished one
        self._experiment = None
        wandb_dir = Path(self.save_dir or ".") / "wandb"
        if self.mode == "offline" and str(wandb_dir) not in _SYNC_HINTED:
            _SYNC_HINTED.add(str(wandb_dir))
            print(f"W&B run saved offline; upload it (all its parts) with: wandb sync {wandb_dir}", flush=True)

    def _log_checkpoints(self, run: Any) -> None:
        """best.ckpt as ``model-<id>:best``, last.ckpt as ``model-<id>:latest`` (one artifact version each)."""
        for callback in self._checkpoint_callbacks.values():
            path = callback.best_model_path  # the monitor-less last_checkpoint's "best" is its latest save
            if not path or not os.path.isfile(path):
                continue
            score = callback.best_model_score
            metadata = {"file": Path(path).name, "monitor": callback.monitor,
                        "score": None if score is None else float(score)}
            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=metadata)
            artifact.add_file(path, name=Path(path).name)
            run.log_artifact(artifact, aliases=["best" if callback.monitor else "latest"])
        self._checkpoint_callbacks.clear()


class RunRecordLogger(Logger):
    """Writes the run's local record, ``<run dir>/record.jsonl`` (format: :mod:`videonorm.record`).

    Beside W&B on every subcommand: each logging call is one appended line, written before the call returns,
    so a killed run keeps everything it logged (its W&B offline file may keep nothing). ``videonorm compare``
    reads local runs from it. Global rank 0 writes.

    Args:
        run_dir: The run directory.
        run_id: The run's id (the W&B run id, so a record and its W&B run are recognised as one run).
        name: Run name.
        stage: The subcommand (``fit``, ``validate``, ``test``).
        group: W&B group.
        tags: W&B tags.
    """

    def __init__(self, run_dir: str | os.PathLike, run_id: str, name: str, stage: str,
                 group: str | None = None, tags: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.path = Path(run_dir) / RECORD_FILE
        self._start = {"kind": "start", "stage": stage, "run_id": run_id, "name": name, "group": group or "",
                       "tags": list(tags)}
        self._started = False

    @property
    def name(self) -> str | None:
        return None

    @property
    def version(self) -> str | None:
        return None

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    def _write(self, *entries: dict[str, Any], sync: bool = False) -> None:
        if not self._started:
            entries = ({**self._start, "time": time.time()}, *entries)
            self._started = True
        append_entries(self.path, list(entries), sync=sync)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Any, *args: Any, **kwargs: Any) -> None:
        self._write({"kind": "config", "config": dict(params)})

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._write({"kind": "row", "step": step, "values": {k: _scalar(v) for k, v in metrics.items()}})

    @rank_zero_only
    def log_summary(self, values: Mapping[str, Any]) -> None:
        self._write({"kind": "summary", "values": dict(values)})

    @rank_zero_only
    def mark_diverged(self, info: Mapping[str, Any]) -> None:
        self.log_summary(diverged_summary(dict(info)))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._started:
            self._write({"kind": "end", "status": status}, sync=True)
            self._started = False  # a later stage of the same trainer starts a new part


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def run_dir(root: str | os.PathLike, group: str | None, name: str) -> Path:
    """``root/group/name``: the directory holding a run's W&B files, checkpoints and config.

    Args:
        root: ``trainer.default_root_dir`` (``runs`` in the shipped configs).
        group: Experiment grid (W&B group); ``None`` -> ``ungrouped``.
        name: Run name.
    """
    return Path(root) / (group or "ungrouped") / name


def resolve_run_id(directory: Path, reuse: bool) -> str:
    """The W&B run id for a run directory: ``WANDB_RUN_ID`` if set (sweep agents set it), else the stored one
    when ``reuse`` and present, else a new one.

    Only the global rank 0 process writes the id file (other ranks never create the W&B run).

    Args:
        directory: Run directory.
        reuse: Continue the directory's run (resumed fit, or validate/test of a trained run).
    """
    path = directory / RUN_ID_FILE
    if os.environ.get("WANDB_RUN_ID"):  # a W&B sweep agent names the run it launched
        return os.environ["WANDB_RUN_ID"]
    if reuse and path.is_file():
        stored = path.read_text().strip()
        if stored:
            return stored
    run_id = uuid.uuid4().hex[:8]
    if rank_zero_only.rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, run_id + "\n")  # a crash never leaves a half-written id
    return run_id


def existing_run(directory: Path, checkpoint_dir: Path) -> list[str]:
    """What in ``directory`` says a run already lives there: its checkpoints and its record (empty: none).

    A fit that starts from scratch there would replace both (and the stored W&B id), so the CLI refuses it.
    A directory that holds only a W&B id (a start that failed before its first stage began) is no run yet.

    Args:
        directory: Run directory.
        checkpoint_dir: Its checkpoint directory.
    """
    found = sorted(str(p.relative_to(directory) if p.is_relative_to(directory) else p)
                   for p in checkpoint_dir.glob("*.ckpt"))
    if (directory / RECORD_FILE).is_file():
        found.append(RECORD_FILE)
    return found


def run_config(config: Mapping[str, Any], world_size: int, fingerprint: Mapping[str, Any] | None) -> dict[str, Any]:
    """The W&B run config: flattened CLI config + world size + effective batch + dataset fingerprint.

    Args:
        config: The merged CLI config of one subcommand as nested dicts.
        world_size: Number of training processes (devices x nodes).
        fingerprint: ``KineticsDataModule.fingerprint()`` or ``None`` when the datamodule has none.
    """
    flat = flatten({k: v for k, v in config.items() if k not in ("config", "base")})
    flat["world_size"] = world_size
    batch = flat.get("data.batch_size")
    if isinstance(batch, int):
        accumulate = flat.get("trainer.accumulate_grad_batches") or 1
        flat["effective_batch_size"] = batch * world_size * int(accumulate)
    if fingerprint:
        flat.update(flatten(fingerprint, "dataset"))
    return flat
