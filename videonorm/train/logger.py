"""Weights & Biases for training runs: the logger, run directories and ids, and the logged run config.

Every run lives in one directory that is a pure function of its config, so ``--ckpt_path last`` finds the
checkpoint of an interrupted run and the resumed run continues the same W&B run id::

    <trainer.default_root_dir>/<group>/<run_name>/
        config.yaml            merged CLI config of the last ``fit`` (config_test.yaml etc. for other subcommands)
        wandb_run_id           the W&B run id, reused by resumed fits and by validate/test on this run
        wandb/offline-run-*/   offline runs (``wandb sync`` them later); online runs keep their local copy here too
        checkpoints/last.ckpt, checkpoints/best.ckpt   (best by val/top1)

The run name comes from :func:`videonorm.identity.run_name` (e.g. ``i3d_r50-gn-b4-32x2``).

W&B run config: the merged CLI config flattened to dot-separated keys (``model.norm``, ``data.batch_size``,
``trainer.devices``, ``seed_everything``...) plus ``world_size``, ``effective_batch_size`` (clips per optimizer
step over all devices) and the dataset fingerprint (``dataset.hash``, ``dataset.<manifest>.<field>``).
"""

from __future__ import annotations

import netrc
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import wandb
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from videonorm.files import write_text_atomic
from videonorm.identity import flatten

RUN_ID_FILE = "wandb_run_id"
CHECKPOINT_DIR = "checkpoints"


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

    Differences from the parent, all about never breaking a run for lack of a W&B account:
    ``offline=None`` (the default) means offline unless credentials are found (see ``wandb_mode``);
    ``log_model`` is dropped (with a message) when offline, where artifacts cannot be uploaded; at the end the
    run is finished and, when offline, the ``wandb sync`` command that uploads it is printed. ``group``,
    ``tags``, ``entity``, ``notes`` and ``job_type`` are named arguments (the parent takes them through
    ``**kwargs``, which ``--print_config`` and ``--help`` cannot show).

    ``name`` and ``save_dir`` are normally filled in by the CLI from the experiment config (see the module
    docstring); set them to override.

    Args:
        name: Run name; ``None`` lets the CLI derive it (``run_name``).
        save_dir: Run directory; W&B writes under ``save_dir/wandb``.
        project: W&B project.
        entity: W&B entity (user or team); ``None`` uses the account default.
        group: W&B group, one per experiment grid (e.g. ``kinetics400``, ``demo``); also the run directory's
            parent.
        tags: W&B tags.
        notes: W&B notes.
        job_type: W&B job type.
        offline: ``True``/``False`` force the mode; ``None`` picks it from ``WANDB_MODE`` and credentials.
        log_model: Upload checkpoints as W&B artifacts (``True``: at the end; ``"all"``: as they are saved).
            Ignored offline.
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
        log_model: Literal["all"] | bool = False,
        id: str | None = None,  # noqa: A002 - W&B's own name for it
        **kwargs: Any,
    ) -> None:
        mode = wandb_mode() if offline is None else ("offline" if offline else "online")
        if os.environ.get("WANDB_MODE", "").lower() == "disabled":
            mode = "disabled"
        if mode != "online" and log_model:
            rank_zero_info(f"W&B is {mode}: log_model={log_model!r} ignored (artifacts need an online run).")
            log_model = False
        if save_dir is not None:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
        extra = {"entity": entity, "group": group, "tags": tags, "notes": notes, "job_type": job_type}
        kwargs.update({k: v for k, v in extra.items() if v is not None})
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

    def finalize(self, status: str) -> None:
        """Upload pending artifacts (online), finish the W&B run, and say how to sync an offline run."""
        super().finalize(status)
        run = self._experiment
        if run is None or not hasattr(run, "finish"):
            return
        run_dir = Path(run.dir).parent if getattr(run, "dir", None) else None
        run.finish(exit_code=0 if status == "success" else 1)
        # finish() can return before wandb-core has written the end of an offline .wandb file; teardown waits
        # for it, so a `videonorm compare` right after (same process, e.g. the demo) reads complete runs.
        wandb.teardown()
        # the next fit/validate/test in this process starts (or resumes) a run instead of logging to a finished one
        self._experiment = None
        if self.mode == "offline" and run_dir is not None:
            print(f"W&B run saved offline in {run_dir}\n  upload it later with: wandb sync {run_dir}")


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
