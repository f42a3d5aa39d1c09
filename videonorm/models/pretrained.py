"""2D ImageNet ResNets for ``model.pretrained_2d``: a source spec -> a torchvision-named 2D state dict.

Every source ends as a state dict with torchvision's ResNet names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer1.0.downsample.0``, ``fc``) that :func:`videonorm.models.inflate.inflate_2d` inflates into the 3D model.

Specs (``model.pretrained_2d``):

    path/to/resnet50.pth                         ``torch.save``d state dict, torchvision/timm names
    caffe2-rgb:path/r50_..._clean.pkl            Caffe2 pickle of a network trained on RGB input
    caffe2-bgr:path/R-50-GN.pkl                  Caffe2 pickle of a network trained on BGR input
    torchvision:ResNet50_Weights.IMAGENET1K_V1   torchvision's weights API (downloads into torch's hub cache)
    timm:resnet50_gn                             timm (``pip install 'videonorm[timm]'``; Hugging Face cache)

A Caffe2 pickle does not say which channel order its first convolution was trained on, so the spec must; the
configs feed each file the order its stem was trained on. Detectron's ImageNet models (``R-50-GN.pkl``, the
Group Normalization paper's GN ResNet-50) take BGR input (Detectron's ``PIXEL_MEANS`` are "BGR order",
detectron/core/config.py; detectron2 feeds the same file BGR). video-nonlocal-net's
``r50_pretrain_c2_model_iter450450_clean.pkl`` comes from the trainer whose defaults are its lib/core/config.py
(``MODEL.USE_BGR = False  # default is False for historical reason``, mean 114.75, std 57.375;
``SOLVER.STEP_SIZES`` 3 x 150150 = the file's iteration 450450), i.e. RGB, and that trainer fed it RGB frames
(RGB24 decoding, the input op's "rgb as is" unless ``use_bgr``) into conv1 as stored (lib/utils/checkpoints.py
only inflates). The Non-local converter's "the input conv1_w to this function is always BGR"
(process_data/convert_models/convert_to_finetune.py) belongs to ``absorb_std_to_conv1``, which that converter
leaves commented out after "no need to revert rgb": it describes the Detectron-bound conversion, which reverts an
RGB classifier to BGR first, not the video trainer's input. ``caffe2-bgr:`` turns the stem to RGB (our clips are
RGB), what ``MODEL.USE_BGR: True`` does in the Non-local code. Whether the GN paper fed R-50-GN.pkl through the
Non-local code's RGB default unchanged is not published; ``caffe2-rgb:`` on it would reproduce that.

Input scale is not converted: clips are normalized with ``model.mean`` / ``model.std``, by default
``(x / 255 - 0.45) / 0.225``, the Non-local trainer's own normalization; torchvision/timm models saw ImageNet's
per-channel mean/std (at most 0.035 and 2 % away; set ``model.mean``/``model.std`` to match them exactly) and
Detectron's GN model raw BGR pixels minus the mean. BN (batch statistics in training) and GN (per group)
normalize right after the stem convolution, so fine-tuning is insensitive to the scale.

Failures are errors that say what to do: an unknown scheme, a missing file (with its download address when
it is a known file), no network (with where to put the file instead), Caffe2 blobs that map to nothing, and a
checkpoint whose norm (BN with running statistics vs GN) or group count differs from the model's; unmatched or
mis-shaped tensors are listed by ``inflate_2d``.

:func:`describe` gives the identity of an initialization (``source``, ``sha256`` of the converted 2D weights,
``norm``, ``groups``); ``{"source": "scratch", ...}`` without ``pretrained_2d``.
"""

from __future__ import annotations

import codecs
import hashlib
import pickle
import re
import urllib.error
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from videonorm.models.inflate import inflate_2d
from videonorm.models.norm.schemes import SCHEMES, get_scheme
from videonorm.models.registry import BACKBONES, get_backbone
from videonorm.models.spec import ModelSpec

SOURCES = ("caffe2-bgr", "caffe2-rgb", "torchvision", "timm", "file")  # the prefixes of a source spec
_SOURCE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)$", re.DOTALL)  # two letters at least: "C:\..." is a path
BN_EPS = 1e-5  # the eps of every BN here (and Caffe2's SpatialBN in Detectron / Non-local, 1e-5)

# Files the paper's code used, by name: where to get them (for the missing-file error) and what they are.
KNOWN_FILES = {
    "R-50-GN.pkl": "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/47261647/R-50-GN.pkl "
    "(Detectron projects/GN: GN ResNet-50, 24.0% ImageNet top-1 error, center crop); use caffe2-bgr:",
    "R-101-GN.pkl": "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/47592356/R-101-GN.pkl "
    "(Detectron projects/GN: GN ResNet-101, 22.6% top-1 error); use caffe2-bgr:",
    "r50_pretrain_c2_model_iter450450_clean.pkl": "pretrained_model/ in "
    "https://s3.amazonaws.com/video-nonlocal/pretrained_model.tar.gz (video-nonlocal-net README; FAIR's S3 "
    "files moved to https://dl.fbaipublicfiles.com/video-nonlocal/, try there if S3 refuses); use caffe2-rgb:",
}


@dataclass(frozen=True)
class Pretrained2D:
    """A 2D ImageNet ResNet ready for :func:`inflate_2d`.

    Attributes:
        spec: the ``model.pretrained_2d`` string it came from.
        source: its scheme (``file``, ``caffe2-bgr``, ``caffe2-rgb``, ``torchvision``, ``timm``).
        state_dict: torchvision-named tensors (stem in RGB order).
        norm: ``"bn"`` (BN statistics, or Caffe2 AffineChannel) or ``"gn"`` (affine only, no statistics).
        groups: GN's group count where the source says it, else None.
    """

    spec: str
    source: str
    state_dict: dict[str, torch.Tensor]
    norm: str
    groups: int | None = None

    def describe(self) -> dict[str, Any]:
        """Identity of this initialization: source, spec, sha256 (12 hex) of the 2D weights, norm, groups."""
        return {"source": self.source, "spec": self.spec, "sha256": state_dict_sha256(self.state_dict),
                "norm": self.norm, "groups": self.groups}


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor], digits: int = 12) -> str:
    """Hash of a state dict's canonical bytes: sorted names, dtypes, shapes and values.

    The same weights give the same hash whatever file held them (a ``.pkl`` and its ``.pth`` conversion); a
    BGR stem read as RGB does not.

    Args:
        state_dict: name -> tensor.
        digits: hex digits kept.
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:digits]


def describe(spec: str | None) -> dict[str, Any]:
    """Identity of the initialization ``model.pretrained_2d = spec``: loads the source (as a fit would).

    Args:
        spec: a source spec (module docstring), or None for training from scratch.

    Returns:
        ``{"source", "spec", "sha256", "norm", "groups"}``; ``source="scratch"`` and the rest None for None.
    """
    if not spec:
        return {"source": "scratch", "spec": None, "sha256": None, "norm": None, "groups": None}
    return load_2d(spec).describe()


# ---------------------------------------------------------------------------------------------------- specs


def load_2d(spec: str) -> Pretrained2D:
    """Read the 2D ResNet that ``spec`` names (module docstring) into torchvision names.

    Args:
        spec: ``path``, ``file:path``, ``caffe2-bgr:path``, ``caffe2-rgb:path``, ``torchvision:<WeightsEnum>``
            or ``timm:<model name>``.

    Raises:
        ValueError: unknown scheme, a bare ``.pkl`` (channel order unknown), unknown weights/model name,
            Caffe2 blobs that map to nothing, a file that holds no state dict.
        FileNotFoundError: a missing file (with its download address when it is a known file).
        RuntimeError: a download that failed (no network), with where to put the file instead.
        ImportError: ``timm:`` without timm installed.
        pickle.UnpicklingError: a Caffe2 pickle that asks for anything but dicts, strings, numbers, arrays.
    """
    match = _SOURCE.match(spec)
    source, rest = (match.group(1).lower(), match.group(2)) if match else ("file", spec)
    if source not in SOURCES:
        raise ValueError(f"model.pretrained_2d {spec!r}: unknown source {source!r}; use a file path or one of "
                         f"{', '.join(s + ':' for s in SOURCES)}")
    if source == "torchvision":
        return _from_torchvision(spec, rest)
    if source == "timm":
        return _from_timm(spec, rest)
    path = _existing_file(spec, rest)
    if source == "file" and path.suffix == ".pkl":
        raise ValueError(
            f"model.pretrained_2d {spec!r}: a Caffe2 .pkl does not say its input channel order; write "
            f"caffe2-bgr:{rest} (Detectron's ImageNet models, e.g. R-50-GN.pkl) or caffe2-rgb:{rest} "
            "(video-nonlocal-net's r50_pretrain_c2_model_iter450450_clean.pkl)")
    if source == "file":
        state = _torch_state_dict(path)
        return Pretrained2D(spec, "file", state, _norm_of_state_dict(state))
    state, norm, groups = caffe2_to_torchvision(read_caffe2_pickle(path), bgr=source == "caffe2-bgr", where=spec)
    return Pretrained2D(spec, source, state, norm, groups)


def _existing_file(spec: str, rest: str) -> Path:
    path = Path(rest).expanduser()
    if path.is_file():
        return path
    hint = f"; download it from {KNOWN_FILES[path.name]}" if path.name in KNOWN_FILES else ""
    raise FileNotFoundError(f"model.pretrained_2d {spec!r}: no such file: {path}{hint}")


def _torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and containers only
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"model.pretrained_2d {str(path)!r}: not a state dict (name -> tensor)")
    return dict(state)


def _norm_of_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """``bn`` when the checkpoint has BN running statistics, else ``gn`` (affine norm weights only)."""
    return "bn" if any(k.endswith("running_mean") for k in state) else "gn"


# ---------------------------------------------------------------------------------------------------- caffe2


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickles only containers, strings, bytes, numbers and numpy arrays: a crafted file cannot run code.

    A pickle runs code only through the globals it names (``find_class``); Caffe2's weights pickles (Python 2
    ``cPickle`` of ``{"blobs": {name: ndarray}}``, Detectron's ``save_object`` / Non-local's
    ``save_model_params``) need numpy's array and scalar reconstructors, and the same files written by Python 3
    at protocol 2 (Detectron's ``save_object`` default, "so Python 2 can load it") name ``_codecs.encode``, the
    only way that protocol has to rebuild ``bytes`` (the arrays' raw data); torch's own weights-only unpickler
    allows it too. It turns a string into bytes and runs nothing. Every other global is refused.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a Caffe2 weights pickle holds only dicts, strings, numbers and "
                "numpy arrays (this file would run code when loaded)")
        if module == "collections":
            return OrderedDict
        if module == "_codecs":
            return codecs.encode
        if name in ("ndarray", "dtype"):
            return getattr(np, name)
        multiarray = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
        return getattr(multiarray, name)


# Training state that Caffe2 trainers save beside the weights, skipped by name: the step count and lr (Non-local
# save_model_params: ``model_iter``, ``lr``) and the epoch of the classification trainers' files (the Non-local
# converter drops exactly these three, ``remove_non_param_fields`` in process_data/convert_models/
# convert_to_finetune.py), and each parameter's SGD momentum (``<param>_momentum``, which Detectron's
# save_model_to_weights_file writes too; the Non-local loader leaves it out for a pretrained file,
# ``load_momentum=False`` in lib/utils/checkpoints.py).
TRAINING_STATE_BLOBS = ("epoch", "lr", "model_iter")
TRAINING_STATE_SUFFIX = "_momentum"


def read_caffe2_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """The weight blobs of a Caffe2 pickle: ``{"blobs": {...}}`` or the blob dict itself (Python 2's cPickle, or
    Python 3 at protocol 2 and up; other top-level keys, such as Detectron's ``cfg``, are not read).

    Training state is dropped by name (``TRAINING_STATE_BLOBS``: ``epoch``, ``lr``, ``model_iter``; and every
    ``*_momentum``): it is not weights.

    Args:
        path: the ``.pkl`` file.

    Raises:
        pickle.UnpicklingError: the file names a global other than numpy's array/scalar reconstructors.
        ValueError: not a dict of arrays.
    """
    with open(path, "rb") as f:
        # latin1: Python 2 str (the raw bytes of the arrays) -> str without decoding errors (numpy's advice)
        data = _WeightsUnpickler(f, encoding="latin1").load()
    if isinstance(data, dict) and isinstance(data.get("blobs"), dict):
        data = data["blobs"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a Caffe2 weights pickle (a dict of blobs), got {type(data).__name__}")
    blobs = {}
    for name, value in data.items():
        name = name.decode("latin1") if isinstance(name, bytes) else str(name)
        if name in TRAINING_STATE_BLOBS or name.endswith(TRAINING_STATE_SUFFIX):
            continue
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            raise ValueError(f"{path}: blob {name!r} is not a numeric array ({type(value).__name__})")
        blobs[name] = value
    return blobs


# Caffe2 ResNet blob names (Detectron modeling/ResNet.py, Non-local lib/models/resnet_helper.py) -> torchvision:
# res{stage}_{block}_branch2{a,b,c}_* are the bottleneck's three convs and norms, res{s}_{b}_branch1_* the
# projection shortcut, conv1 / res_conv1_bn (BN) or conv1_gn (Detectron's GN stem) the stem, pred the classifier.
_BLOCK = re.compile(r"res(\d+)_(\d+)_branch(1|2[abc])(?:_(bn|gn))?_(w|b|s|rm|riv)")
_STEM_NORM = re.compile(r"(?:res_conv1_bn|conv1_gn)_(s|b|rm|riv)")
# riv is a variance despite its name ("riv is actually running var", Non-local lib/utils/bn_helper.py)
_SUFFIX = {"w": "weight", "s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}


def _torchvision_name(blob: str) -> str | None:
    if blob == "conv1_w":
        return "conv1.weight"
    if blob in ("pred_w", "pred_b"):
        return f"fc.{_SUFFIX[blob[-1]]}"
    stem = _STEM_NORM.fullmatch(blob)
    if stem:
        return f"bn1.{_SUFFIX[stem.group(1)]}"
    block = _BLOCK.fullmatch(blob)
    if block is None:
        return None
    stage, index, branch, norm, suffix = block.groups()
    if (norm is None) != (suffix == "w"):
        return None  # a conv has only _w (no bias); a norm _s, _b, _rm, _riv
    layer = f"layer{int(stage) - 1}.{index}"
    if branch == "1":
        return f"{layer}.downsample.{0 if norm is None else 1}.{_SUFFIX[suffix]}"
    part = "conv" if norm is None else "bn"
    return f"{layer}.{part}{'abc'.index(branch[1]) + 1}.{_SUFFIX[suffix]}"


def caffe2_to_torchvision(
    blobs: Mapping[str, np.ndarray], bgr: bool, where: str = "caffe2"
) -> tuple[dict[str, torch.Tensor], str, int | None]:
    """Rename Caffe2 ResNet blobs to torchvision's names, stem in RGB order, BN/GN kind and group count.

    BN blobs with scale and bias only (Detectron's AffineChannel: BN folded into ``y = s x + b``) get
    ``running_mean = 0`` and ``running_var = 1 - eps``, so an eval-mode BatchNorm computes exactly ``s x + b``.
    GN models are Detectron's ``ConvGN`` with 32 groups (``GROUP_NORM.NUM_GROUPS``; projects/GN: G=32).

    Args:
        blobs: Caffe2 blob name -> array (:func:`read_caffe2_pickle`).
        bgr: the stem was trained on BGR input: reverse its input channels.
        where: named in errors (the spec).

    Raises:
        ValueError: blobs that map to no torchvision name (listed), or BN and GN blobs in one file.
    """
    state: dict[str, torch.Tensor] = {}
    unmatched = []
    for blob, value in blobs.items():
        name = _torchvision_name(blob)
        if name is None:
            unmatched.append(f"{blob} {tuple(value.shape)}")
            continue
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if name == "fc.weight" and tensor.dim() > 2:  # a 1x1 conv classifier (N, C, 1, 1)
            tensor = tensor.flatten(1)
        if name == "conv1.weight" and bgr:
            tensor = tensor.flip(1)  # (64, 3, 7, 7): input channels B, G, R -> R, G, B
        state[name] = tensor
    if unmatched:
        raise ValueError(f"model.pretrained_2d {where!r}: {len(unmatched)} Caffe2 blob(s) match no ResNet "
                         "layer:\n  " + "\n  ".join(sorted(unmatched)))
    kinds = {"gn" if "_gn_" in b else "bn" for b in blobs if "_gn_" in b or "_bn_" in b}
    if len(kinds) > 1:
        raise ValueError(f"model.pretrained_2d {where!r}: both BN and GN blobs in one file")
    norm = kinds.pop() if kinds else "bn"
    if norm == "bn":
        for name in [k for k in state if k.endswith(".weight") and ("bn" in k or "downsample.1" in k)]:
            prefix = name[: -len("weight")]
            if prefix + "running_mean" not in state and prefix + "running_var" not in state:
                state[prefix + "running_mean"] = torch.zeros_like(state[name])
                state[prefix + "running_var"] = torch.full_like(state[name], 1 - BN_EPS)
    return state, norm, (32 if norm == "gn" else None)


# ---------------------------------------------------------------------------------------------------- libraries


def _from_torchvision(spec: str, name: str) -> Pretrained2D:
    import torchvision

    try:
        weights = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError) as err:
        raise ValueError(f"model.pretrained_2d {spec!r}: unknown torchvision weights {name!r} ({err}); e.g. "
                         "torchvision:ResNet50_Weights.IMAGENET1K_V1") from None
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, OSError) as err:
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise RuntimeError(
            f"model.pretrained_2d {spec!r}: could not download {weights.url} ({err}). Without network, fetch that "
            f"file elsewhere and put it at {target} (torchvision's cache; TORCH_HOME moves it), or save it anywhere "
            "and set model.pretrained_2d to its path") from None
    return Pretrained2D(spec, "torchvision", dict(state), _norm_of_state_dict(state))


def _from_timm(spec: str, name: str) -> Pretrained2D:
    try:
        import timm
    except ImportError:
        raise ImportError(f"model.pretrained_2d {spec!r}: timm is not installed; pip install 'videonorm[timm]'") \
            from None
    if not timm.is_model(name.split(".")[0]):
        close = timm.list_models(f"*{name.split('.')[0]}*")[:10]
        raise ValueError(f"model.pretrained_2d {spec!r}: timm has no model {name!r}"
                         + (f"; similar: {', '.join(close)}" if close else ""))
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as err:  # huggingface_hub / urllib raise many types for "no network"; the message says which
        cfg = timm.models.get_pretrained_cfg(name.split(".")[0])
        where = f"Hugging Face hub {cfg.hf_hub_id}" if cfg and cfg.hf_hub_id else (cfg.url if cfg else "its source")
        raise RuntimeError(
            f"model.pretrained_2d {spec!r}: timm could not load its pretrained weights from {where} "
            f"({type(err).__name__}: {err}). Without network, run timm.create_model({name!r}, pretrained=True) "
            "where there is one and copy the Hugging Face cache (~/.cache/huggingface/hub, HF_HUB_CACHE), or "
            "torch.save its state_dict() and set model.pretrained_2d to that file") from None
    groups = {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)}
    state = model.state_dict()
    return Pretrained2D(spec, "timm", dict(state), _norm_of_state_dict(state),
                        groups.pop() if len(groups) == 1 else None)


# ---------------------------------------------------------------------------------------------------- inflate


def initialize_from(model3d: nn.Module, spec: str, net: ModelSpec, skip_classifier: bool = True) -> Pretrained2D:
    """Load the 2D ResNet that ``spec`` names, check it fits the network's norm, and inflate it into the model.

    Args:
        model3d: the network ``net`` describes (``build_model(net)``), modified in place.
        spec: a source spec (module docstring).
        net: what the network is: its backbone must take 2D inflation, its norm scheme the checkpoint's norm
            tensors (``Scheme.checkpoint``), with the same group count.
        skip_classifier: keep the model's own classifier (ImageNet's 1000 classes are not ours).

    Returns:
        What was loaded (``.describe()`` is the initialization's identity).

    Raises:
        ValueError: a backbone without a 2D counterpart, a BN checkpoint into a GN/LN/IN model or the reverse, any
            checkpoint into a scheme no 2D source has (gn_ws, FRN, EvoNorm), GN group counts that differ, and
            every unmatched or mis-shaped tensor (from ``inflate_2d``); the errors of :func:`load_2d`.
    """
    if not get_backbone(net.arch).inflate:
        raise ValueError(f"model.pretrained_2d {spec!r}: arch {net.arch!r} has no 2D ImageNet ResNet to inflate "
                         f"(inflatable: {', '.join(a for a, b in BACKBONES.items() if b.inflate)})")
    loaded = load_2d(spec)
    takes = get_scheme(net.norm).checkpoint
    if loaded.norm != takes:
        kind = {"bn": "a BN checkpoint (running statistics)", "gn": "a GN checkpoint (no running statistics)"}
        schemes = {k: ", ".join(n for n, s in SCHEMES.items() if s.checkpoint == k) for k in kind}
        model_kind = {"bn": f"BN-type ({schemes['bn']})", "gn": f"group-type ({schemes['gn']})",
                      None: f"{net.norm!r}, whose layers no 2D ImageNet source has"}[takes]
        raise ValueError(f"model.pretrained_2d {spec!r} is {kind[loaded.norm]}, but the model's norm is "
                         f"{model_kind}: use a checkpoint trained with the model's norm, change model.net.norm, or "
                         "train from scratch (model.pretrained_2d null)")
    groups = {m.num_groups for m in model3d.modules() if isinstance(m, nn.GroupNorm)}
    if loaded.groups is not None and groups and groups != {loaded.groups}:
        raise ValueError(f"model.pretrained_2d {spec!r} was trained with GN groups={loaded.groups}, the model has "
                         f"groups={sorted(groups)}: use model.net.norm gn with model.net.norm_groups {loaded.groups}")
    try:
        inflate_2d(model3d, loaded.state_dict, skip_classifier=skip_classifier)
    except ValueError as err:
        raise ValueError(f"model.pretrained_2d {spec!r}: {err}") from None
    return loaded
