"""``videonorm fit|validate|test``: Lightning's CLI over ``VideoClassifier`` and ``KineticsDataModule``.

Configs extend a base with a top-level ``base:`` key (jsonargparse has no include; its nested ``config:`` key
replaces whole sections instead of merging them). Before parsing, ``--config exp.yaml`` whose file says
``base: base.yaml`` becomes ``--config <dir of exp.yaml>/base.yaml --config exp.yaml``; bases may chain. Since the
bases are then merged in, ``base`` is set to null: ``--print_config`` prints the fully merged config, which works
as a ``--config`` from any directory. A ``--config`` that is not a file may name a config shipped in the package
(``--config kinetics400/i3d_r50_gn_b4_32x2``, ``--config demo/b16_8x2.yaml``).

Besides the trainer, model and data sections, every subcommand has:
    checkpoint: ModelCheckpoint, best.ckpt by val/top1, in <run dir>/checkpoints
    last_checkpoint: ModelCheckpoint, last.ckpt after every epoch, in the same folder. Lightning >= 2.6 writes
        ``save_last=True``'s last.ckpt only when a top-k checkpoint is saved at the same step, so with
        ``save_top_k=1`` it was a copy of best.ckpt: ``--ckpt_path last`` resumed from the best epoch, not
        the latest, and tested a model that was not the final one. A monitor-less checkpoint saves every epoch.
    precise_bn: PreciseBN (200 batches; a no-op for models without BN or EvoNorm-B0 running statistics)
    cpu_threads: CpuThreads (on CPU, torch threads = cores - data workers; ``--cpu_threads.enabled false``)
    data_wait: DataWait (data/wait_fraction and data/clips_per_s per epoch; warns above 5% wait)
and always: DivergenceGuard (``videonorm.train.guards``), SkippedVideos, BestValidation, TestReport,
CheckpointMetadata (``videonorm.train.reports``) and, unless the bar is off or the config names one, our ProgressBar
(``videonorm.train.progress``); beside the configured loggers, the run's local record (``RunRecordLogger``).
The run directory and W&B run id are set here from the config (see ``videonorm.train.logger``), so
``--ckpt_path last`` resumes an interrupted fit into the same directory and W&B run, and ``validate``/``test``
with ``--ckpt_path last|best`` find the trained run's checkpoints and log into its W&B run. A ``fit`` without
``--ckpt_path`` into a directory that already holds a run is refused (its checkpoints, record and W&B id would be
replaced), as is resuming a run that diverged. ``predict`` is ``videonorm predict`` (``videonorm.predict``).
"""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.callbacks import ProgressBar as AnyProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

from videonorm import metric_keys as keys
from videonorm.data.datamodule import KineticsDataModule
from videonorm.identity import flatten, run_name, run_setting
from videonorm.models.spec import lift_legacy
from videonorm.record import RECORD_FILE, diverged
from videonorm.train.data_wait import DataWait
from videonorm.train.guards import DivergenceGuard
from videonorm.train.logger import (
    CHECKPOINT_DIR,
    JOB_TYPES,
    RunRecordLogger,
    existing_run,
    resolve_run_id,
    run_config,
    run_dir,
)
from videonorm.train.module import VideoClassifier
from videonorm.train.precise_bn import PreciseBN
from videonorm.train.progress import ProgressBar
from videonorm.train.reports import BestValidation, CheckpointMetadata, SkippedVideos, TestReport
from videonorm.train.threads import CpuThreads

SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> list[str]:
    """Names of the configs that ship inside the package (``kinetics400/i3d_r50_gn_b4_32x2.yaml``, ...)."""
    return sorted(p.relative_to(SHIPPED_CONFIGS).as_posix() for p in SHIPPED_CONFIGS.rglob("*.yaml")
                  if p.parent.name != "sweeps" and p.name not in ("base.yaml", "lr.yaml"))  # lr.yaml: the demo's rates


def resolve_config(path: str) -> str:
    """A ``--config`` value as a file: the path as given, else a shipped config of that name (``.yaml`` optional).

    Inline YAML (``--config '{...}'``) is passed through for jsonargparse to read.

    Raises:
        SystemExit: a file name that is neither a file nor a shipped config (the message lists the shipped ones).
    """
    if Path(path).is_file() or any(c in path for c in "{}\n:"):
        return path
    for candidate in (SHIPPED_CONFIGS / path, SHIPPED_CONFIGS / f"{path}.yaml"):
        if candidate.is_file():
            return str(candidate)
    raise SystemExit(f"error: --config {path}: no such file, and no shipped config of that name; shipped: "
                     + ", ".join(shipped_configs()))


def _config_chain(path: str, seen: tuple[Path, ...] = ()) -> list[str]:
    """``[base_of_base, ..., base, path]`` for a config file with ``base:`` keys (paths relative to the file)."""
    path = resolve_config(path)
    file = Path(path)
    if not file.is_file():
        return [path]  # an inline YAML string: jsonargparse reads it
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise SystemExit(f"error: {file}: not valid YAML: {err}") from None
    base = data.get("base") if isinstance(data, dict) else None
    if not base:
        return [path]
    base_file = (file.parent / str(base)).resolve()
    if not base_file.is_file():
        raise SystemExit(f"error: {file}: base: {base} does not exist (looked for {base_file})")
    if base_file in seen or base_file == file.resolve():
        raise SystemExit(f"error: {file}: base: {base} makes a cycle")
    return _config_chain(str(base_file), (*seen, file.resolve())) + [path]


def expand_base_configs(argv: list[str]) -> list[str]:
    """Replace each ``--config FILE`` whose file has a ``base:`` key by the chain of ``--config``s it extends.

    Args:
        argv: Lightning CLI arguments (subcommand first), e.g. ``["fit", "--config", "exp.yaml"]``.
    """
    out: list[str] = []
    expanded = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            path, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            path, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        for file in _config_chain(path):
            out += ["--config", file]
        expanded = True
    # the bases are merged in already: `base` stays empty, so a --print_config output (or the saved config.yaml)
    # is complete on its own and can be used as a --config from any directory
    return out + ["--base", "null"] if expanded else out


class RunConfigCallback(SaveConfigCallback):
    """Save the merged config into the run directory and send it, flattened, to W&B and the local record.

    ``config.yaml`` for ``fit``, ``config_<stage>.yaml`` for the other subcommands (so testing a run does
    not overwrite how it was trained). The W&B run config is ``videonorm.train.logger.run_config``: every CLI key
    flattened, world size, effective batch size and the datamodule's dataset fingerprint.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # TrainerFn -> "fit", "validate", "test", "predict"
        self.config_filename = "config.yaml" if stage == "fit" else f"config_{stage}.yaml"
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not trainer.loggers:
            return
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False, skip_link_targets=False))
        config["model"]["net"]["num_classes"] = pl_module.net.num_classes  # linked at instantiation
        datamodule = trainer.datamodule
        fingerprint = datamodule.fingerprint() if hasattr(datamodule, "fingerprint") else None
        params = run_config(config, trainer.world_size, fingerprint)
        for logger in trainer.loggers:  # W&B and the local record get the same config
            logger.log_hyperparams(params)


class _NoAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger" line, printed at every Trainer's start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


_LIGHTNING_INFO = logging.getLogger("pytorch_lightning.utilities.rank_zero")  # where rank_zero_info logs
if not any(isinstance(f, _NoAdverts) for f in _LIGHTNING_INFO.filters):
    _LIGHTNING_INFO.addFilter(_NoAdverts())


class VideonormCLI(LightningCLI):
    """LightningCLI with the data -> model ``num_classes`` link, checkpointing, precise BN and run dirs."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--base",
            type=str | None,
            default=None,
            help="Base config this experiment file extends, relative to the file (expanded before parsing).",
        )
        parser.link_arguments("data.num_classes", "model.net.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": keys.VAL_TOP1,
                "checkpoint.mode": "max",
                "checkpoint.save_last": False,  # see last_checkpoint
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "best",  # one best.ckpt, replaced when val/top1 improves
            }
        )
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.filename": "last",  # one last.ckpt, replaced after every epoch
                "last_checkpoint.enable_version_counter": False,  # never last-v1.ckpt beside an old last.ckpt
                # at the end of every training epoch (after its validation, if any): a monitor-less checkpoint saves
                # only when validation runs otherwise, so check_val_every_n_epoch > 1 left epochs without last.ckpt
                "last_checkpoint.save_on_train_epoch_end": True,
            }
        )
        parser.add_lightning_class_args(PreciseBN, "precise_bn")
        parser.add_lightning_class_args(CpuThreads, "cpu_threads")
        parser.add_lightning_class_args(DataWait, "data_wait")

    def before_instantiate_classes(self) -> None:
        """Fill in the run name, run directory, W&B run id and checkpoint directory from the config."""
        subcommand = self.subcommand
        cfg = self.config[subcommand] if subcommand else self.config
        # a bad manifest line (a video listed twice, a label outside classes.txt) stops the run here, in one line
        # (videonorm.cli: exit 2), before its directory and W&B files are made
        self.datamodule_class(**cfg.data.as_dict()).check_manifests(subcommand or "fit")
        if cfg.trainer.get("sync_batchnorm"):
            raise ValueError(
                "trainer.sync_batchnorm would silently turn every BN into SyncBN; choose the norm with model.net.norm "
                "(BN statistics are per device unless the model's norm says otherwise)"
            )
        setting = run_setting(flatten({"model": cfg.model.as_dict(), "data": cfg.data.as_dict()}))
        name = run_name(setting, seed=cfg.get("seed_everything"))
        loggers = _wandb_logger_configs(cfg.trainer.get("logger"))
        group = next((_logger_arg(lg, "group") for lg in loggers if _logger_arg(lg, "group")), None)
        name = next((_logger_arg(lg, "name") for lg in loggers if _logger_arg(lg, "name")), name)
        tags = next((_logger_arg(lg, "tags") for lg in loggers if _logger_arg(lg, "tags")), None) or []
        directory = run_dir(cfg.trainer.get("default_root_dir") or "runs", group, name)
        ckpt_dir = Path(cfg.checkpoint.get("dirpath") or directory / CHECKPOINT_DIR)
        cfg.checkpoint.dirpath = str(ckpt_dir)
        cfg.last_checkpoint.dirpath = cfg.last_checkpoint.get("dirpath") or str(ckpt_dir)
        ckpt_path = cfg.get("ckpt_path")
        if subcommand == "fit":
            _check_fit_target(directory, ckpt_dir, ckpt_path)
        elif ckpt_path in ("best", "last"):
            found = sorted(ckpt_dir.glob(f"{ckpt_path}*.ckpt"), key=lambda p: p.stat().st_mtime)
            if not found:
                raise SystemExit(f"error: --ckpt_path {ckpt_path}: no {ckpt_path}*.ckpt in {ckpt_dir}")
            cfg.ckpt_path = str(found[-1])
        trained = (directory / "config.yaml").is_file()  # a fit ran here: validate/test continue its W&B run
        run_id = resolve_run_id(directory, reuse=subcommand != "fit" or ckpt_path is not None)
        for logger in loggers:
            init = logger.init_args
            init.name = init.get("name") or name
            if init.get("save_dir") in (None, "."):
                init.save_dir = str(directory)
            if init.get("id") is None and init.get("version") is None:
                init.id = run_id
            if init.get("job_type") is None:
                init.job_type = JOB_TYPES["fit" if trained else subcommand or "fit"]
        cfg.base = None  # the saved config.yaml is complete; a relative base would not resolve from there
        self.run_dir = directory
        self.record = dict(run_dir=directory, run_id=run_id, name=name, stage=subcommand or "fit", group=group,
                           tags=tags)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with the run's guards and reports as callbacks and the local record as one more logger."""
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        callbacks = trainer_cfg.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        callbacks += [DivergenceGuard(), SkippedVideos(), BestValidation(), TestReport(), CheckpointMetadata()]
        if trainer_cfg.get("enable_progress_bar") is not False and not any(
                isinstance(c, AnyProgressBar) for c in callbacks):
            callbacks.append(ProgressBar())
        # The trainer's own files (SLURM requeue's hpc_ckpt_*.ckpt, profiler output) go into the run directory,
        # never into a root shared by concurrent runs; the config keeps the user's root.
        trainer = super().instantiate_trainer(default_root_dir=str(self.run_dir), callbacks=callbacks, **kwargs)
        trainer.loggers = [*trainer.loggers, RunRecordLogger(**self.record)]  # after W&B: it stays trainer.logger
        return trainer

    def _parse_ckpt_path(self) -> None:
        """Lightning's step that lays a checkpoint's hyperparameters over the model config, for checkpoints of any
        videonorm version: spec fields stored flat (before ``model.net`` existed) are moved under ``net`` first."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return
        hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters") or {}
        hparams.pop("_instantiator", None)
        if hparams:
            self.config = self.parser.parse_object({subcommand: {"model": lift_legacy(hparams)}}, self.config)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit, validate, test (Lightning's predict is ``videonorm predict``, which writes the predictions)."""
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}


def _check_fit_target(directory: Path, ckpt_dir: Path, ckpt_path: str | None) -> None:
    """Refuse a fit that would overwrite a run (no ``--ckpt_path``) or continue a diverged one.

    Starting over in the same directory would replace its checkpoints and W&B id and mix two runs' histories in
    its record; a new versioned directory instead would put the same setting twice into ``compare``'s mean as if
    they were two seeds. So the user chooses: resume, or name another run.
    """
    new_name = ("start a separate run under another name (--trainer.logger.init_args.name NAME, or another "
                "--trainer.default_root_dir), or delete the directory")
    info = diverged(directory / RECORD_FILE)
    if info is not None:
        raise SystemExit(
            f"error: {directory} holds a run that diverged (loss {info.get('loss')} at step {info.get('step')}, "
            f"epoch {info.get('epoch')}); resuming it replays the same steps. To train this setting again, "
            f"{new_name}; to continue from its last checkpoint with other settings, pass that file to a fit "
            f"under another name (--ckpt_path {ckpt_dir / 'last.ckpt'})."
        )
    found = existing_run(directory, ckpt_dir) if ckpt_path is None else []
    if found:
        raise SystemExit(
            f"error: {directory} already holds a run ({', '.join(found)}); a new fit would overwrite it. "
            f"Resume it with --ckpt_path last, or {new_name}."
        )


def _wandb_logger_configs(logger: Any) -> list[Namespace]:
    """The W&B logger entries (class_path/init_args namespaces) of ``trainer.logger``."""
    entries = logger if isinstance(logger, list) else [logger]
    out = []
    for entry in entries:
        if isinstance(entry, Namespace) and "class_path" in entry:
            module, _, cls = entry.class_path.rpartition(".")
            klass = getattr(importlib.import_module(module), cls)
            if issubclass(klass, WandbLogger):
                if entry.get("init_args") is None:
                    entry.init_args = Namespace()
                out.append(entry)
    return out


def _logger_arg(entry: Namespace, key: str) -> Any:
    value = entry.init_args.get(key)
    if value is None and entry.get("dict_kwargs"):
        value = entry.dict_kwargs.get(key)
    return value


def run_lightning_cli(argv: list[str], run: bool = True) -> VideonormCLI:
    """Run ``fit``/``validate``/``test`` (``argv`` starts with the subcommand).

    Args:
        argv: Arguments after the program name, e.g. ``["fit", "--config", "demo/b4_8x2.yaml"]``.
        run: ``False`` parses and instantiates without running (``argv`` then has no subcommand).

    Returns:
        The CLI object (``.trainer``, ``.model``, ``.datamodule``, ``.config``, ``.run_dir``).
    """
    with warnings.catch_warnings():
        # we pass args explicitly (expanded configs); Lightning warns whenever sys.argv also has arguments
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return VideonormCLI(
            VideoClassifier,
            KineticsDataModule,
            save_config_callback=RunConfigCallback,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            auto_configure_optimizers=False,  # the module owns its optimizer and epoch-based schedule
            args=expand_base_configs(list(argv)),
            run=run,
        )
