"""videonorm.models.pretrained: every 2D source kind, built here from real libraries, inflates to a network that
gives the 2D network's logits on a still video; every failure is a clear error; a resume never needs the 2D file.

The files are made in the test (no download): torchvision's ``resnet50(weights=None)`` (BN) and timm's
``resnet50_gn`` (GN) with random weights, saved as state dicts, renamed to Caffe2 blob names with the stem in BGR
order and pickled the way Python 2's cPickle wrote Caffe2's files, or put into torchvision's and Hugging Face's
caches where the ``torchvision:`` and ``timm:`` sources look.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
import yaml

from tests.videos import make_dataset
from tests.wandb_files import find_offline_runs, read_offline_run
from videonorm.cli import main
from videonorm.models import ModelSpec, build_model
from videonorm.models.inflate import _BLOCK_PARTS, _name_map
from videonorm.models.pretrained import (
    BN_EPS,
    describe,
    initialize_from,
    load_2d,
    TRAINING_STATE_BLOBS,
    read_caffe2_pickle,
    state_dict_sha256,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- source files


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial norm affine parameters and BN statistics, so every tensor's place matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _two_d_state(model3d: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision-named 2D weights whose inflation is ``model3d``, a C2D (every kernel has T = 1)."""
    prefixes, head = _name_map(model3d)
    module_2d = {v: k for k, v in prefixes.items()}
    part_2d = {v: k for k, v in _BLOCK_PARTS.items()}
    state = {}
    for key, value in model3d.state_dict().items():
        module, _, tensor = key.rpartition(".")
        if module == head:
            name = f"fc.{tensor}"
        elif module in module_2d:
            name = f"{module_2d[module]}.{tensor}"
        else:
            stage, block, part = re.fullmatch(r"(blocks\.\d+\.res_blocks)\.(\d+)\.(.+)", module).groups()
            name = f"{module_2d[stage]}.{block}.{part_2d[part]}.{tensor}"
        state[name] = value.squeeze(2) if value.dim() == 5 else value
    return state


def _tiny_2d(norm: str = "bn") -> dict[str, torch.Tensor]:
    """2D weights (torchvision names) of a width-8 ResNet-50, for checks that need no full-size network."""
    torch.manual_seed(5)
    model = build_model(arch="c2d_resnet", width=8, norm=norm, norm_groups=4, num_classes=3)
    return _two_d_state(_randomize_norms(model))


@pytest.fixture(scope="module")
def bn2d() -> nn.Module:
    torch.manual_seed(0)
    return _randomize_norms(torchvision.models.resnet50(weights=None))


@pytest.fixture(scope="module")
def gn2d() -> nn.Module:
    timm = pytest.importorskip("timm")
    torch.manual_seed(1)
    model = timm.create_model("resnet50_gn", pretrained=False)
    assert {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)} == {32}
    return _randomize_norms(model, seed=1)


# torchvision name -> Caffe2 blob name, written from the conventions (Detectron modeling/ResNet.py and
# detector.py ConvGN; Non-local lib/models/resnet_helper.py), independently of the code under test
_C2_SUFFIX = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}


def _caffe2_name(name: str, norm: str) -> str | None:
    module, _, tensor = name.rpartition(".")
    if tensor == "num_batches_tracked":
        return None
    if name == "conv1.weight":
        return "conv1_w"
    if module == "fc":
        return f"pred_{tensor[0]}"
    if module == "bn1":
        return f"res_conv1_bn_{_C2_SUFFIX[tensor]}" if norm == "bn" else f"conv1_gn_{_C2_SUFFIX[tensor]}"
    layer, block, part = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", module).groups()
    prefix = f"res{int(layer) + 1}_{block}_branch"
    if part.startswith("conv"):
        return f"{prefix}2{'abc'[int(part[-1]) - 1]}_w"
    if part == "downsample.0":
        return f"{prefix}1_w"
    branch = "1" if part == "downsample.1" else "2" + "abc"[int(part[-1]) - 1]
    return f"{prefix}{branch}_{norm}_{_C2_SUFFIX[tensor]}"


def _caffe2_blobs(
    model2d: nn.Module | dict, norm: str, bgr: bool, affine_only: bool = False
) -> dict[str, np.ndarray]:
    """A 2D model's (or torchvision-named state dict's) weights as Caffe2 blobs; ``affine_only``: BN folded
    into scale and bias (Detectron's AffineChannel)."""
    state = model2d if isinstance(model2d, dict) else model2d.state_dict()
    state = {k: v.detach().clone() for k, v in state.items()}
    if affine_only:
        for name in [k for k in state if k.endswith("running_mean")]:
            prefix = name[: -len("running_mean")]
            scale = state[prefix + "weight"] / torch.sqrt(state[prefix + "running_var"] + BN_EPS)
            state[prefix + "bias"] = state[prefix + "bias"] - state[prefix + "running_mean"] * scale
            state[prefix + "weight"] = scale
            del state[prefix + "running_mean"], state[prefix + "running_var"]
    if bgr:
        state["conv1.weight"] = state["conv1.weight"][:, [2, 1, 0]]
    blobs = {}
    for name, value in state.items():
        c2 = _caffe2_name(name, norm)
        if c2 is not None:
            blobs[c2] = value.numpy()
    return blobs


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as cPickle wrote the Caffe2 files (Python 3's protocol 2
    would go through ``_codecs.encode`` instead)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else
                   pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _write_caffe2_pickle(path: Path, blobs: dict, wrap: bool = True) -> Path:
    """``{"blobs": ..., "lr", "model_iter"}`` with a momentum blob, Python 2 style (``numpy.core`` globals)."""
    data = dict(blobs)
    data["conv1_w_momentum"] = np.zeros_like(blobs["conv1_w"])  # optimizer state, as checkpoints carry it
    content = {"blobs": data, "lr": np.array(0.1, dtype=np.float32), "model_iter": 450450} if wrap else data
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(content)
    data = f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data and b"_codecs" not in data  # as Python 2 wrote them
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def bn_pkl(bn2d, tmp_path_factory) -> Path:
    """The BN ResNet-50 as a Caffe2 pickle with BN statistics, stem in BGR."""
    return _write_caffe2_pickle(tmp_path_factory.mktemp("c2") / "r50.pkl", _caffe2_blobs(bn2d, "bn", bgr=True))


@pytest.fixture(scope="module")
def gn_pkl(gn2d, tmp_path_factory) -> Path:
    """The GN ResNet-50 as a Caffe2 pickle (Detectron's GN names), stem in BGR."""
    return _write_caffe2_pickle(tmp_path_factory.mktemp("c2") / "R-50-GN.pkl", _caffe2_blobs(gn2d, "gn", bgr=True))


# ---------------------------------------------------------------------------------------------- still video


@functools.lru_cache(maxsize=2)
def _c2d(norm: str) -> nn.Module:
    """A full-size C2D ResNet-50 per norm, built once: every inflation overwrites all its tensors (strict)."""
    return build_model(arch="c2d_resnet", norm=norm, num_classes=1000)


def _still_video_difference(model2d: nn.Module, spec: str, norm: str) -> float:
    """Max |logit difference| between the 2D network on an image and the inflated C2D on 3 copies of it,
    relative to the largest logit."""
    model3d = _c2d(norm)
    initialize_from(model3d, spec, ModelSpec(arch="c2d_resnet", norm=norm, num_classes=1000), skip_classifier=False)
    model3d.eval()
    frame = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model2d(frame)
        logits = model3d(frame.unsqueeze(2).expand(1, 3, 3, 32, 32))
    assert expected.abs().max() > 1.0  # logits worth comparing
    difference = (logits - expected).abs().max().item()
    print(f"still video, {spec.split(':')[0] if ':' in spec else 'file'} ({norm}): max |logit difference| "
          f"{difference:.2e} of max |logit| {expected.abs().max().item():.1f}")
    return difference / expected.abs().max().item()


TOLERANCE = 1e-5  # float32 rounding through 50 layers; a misplaced tensor or a swapped channel gives > 1e-2


def test_state_dict_files_bn_and_gn(bn2d, gn2d, tmp_path):
    torch.save(bn2d.state_dict(), tmp_path / "resnet50.pth")
    torch.save({"state_dict": gn2d.state_dict()}, tmp_path / "resnet50_gn.pth")  # a wrapped one too
    assert _still_video_difference(bn2d, str(tmp_path / "resnet50.pth"), "bn") < TOLERANCE
    assert _still_video_difference(gn2d, f"file:{tmp_path / 'resnet50_gn.pth'}", "gn") < TOLERANCE


def test_caffe2_bn_pickles_in_bgr(bn2d, bn_pkl, tmp_path):
    assert _still_video_difference(bn2d, f"caffe2-bgr:{bn_pkl}", "bn") < TOLERANCE
    affine = _write_caffe2_pickle(tmp_path / "affine.pkl", _caffe2_blobs(bn2d, "bn", bgr=True, affine_only=True))
    assert _still_video_difference(bn2d, f"caffe2-bgr:{affine}", "bn") < TOLERANCE
    # read as RGB, the stem keeps its BGR order: input channels swapped, everything else the same
    as_bgr, as_rgb = load_2d(f"caffe2-bgr:{bn_pkl}").state_dict, load_2d(f"caffe2-rgb:{bn_pkl}").state_dict
    assert torch.equal(as_rgb["conv1.weight"], bn2d.conv1.weight[:, [2, 1, 0]])
    assert all(torch.equal(as_rgb[k], v) for k, v in as_bgr.items() if k != "conv1.weight")


def test_caffe2_gn_pickles_in_bgr_and_rgb(gn2d, gn_pkl, tmp_path):
    assert _still_video_difference(gn2d, f"caffe2-bgr:{gn_pkl}", "gn") < TOLERANCE
    # the same network stored with an RGB stem and without the {"blobs": ...} wrapper reads the same
    rgb = _write_caffe2_pickle(tmp_path / "rgb.pkl", _caffe2_blobs(gn2d, "gn", bgr=False), wrap=False)
    loaded, reference = load_2d(f"caffe2-rgb:{rgb}"), load_2d(f"caffe2-bgr:{gn_pkl}")
    assert (loaded.norm, loaded.groups) == ("gn", 32) and loaded.state_dict.keys() == reference.state_dict.keys()
    assert all(torch.equal(v, reference.state_dict[k]) for k, v in loaded.state_dict.items())


def test_caffe2_pickles_written_by_python3_at_protocol_2_with_training_state(gn2d, gn_pkl, tmp_path):
    """Detectron's ``save_object`` under Python 3 (protocol 2: the arrays' bytes go through ``_codecs.encode``),
    its ``cfg`` beside the blobs, and training state among them: epoch, lr, step count, momentum."""
    blobs = _caffe2_blobs(gn2d, "gn", bgr=True)
    state = {"epoch": np.array(90), "lr": np.array(0.1, dtype=np.float32), "model_iter": np.array(450450),
             "conv1_w_momentum": np.zeros_like(blobs["conv1_w"]), "pred_b_momentum": np.zeros_like(blobs["pred_b"])}
    data = pickle.dumps({"blobs": {**blobs, **state}, "cfg": "MODEL:\n  TYPE: generalized_rcnn\n"}, protocol=2)
    assert b"c_codecs\nencode\n" in data and b"numpy" in data  # Python 3's protocol 2, not cPickle's str opcodes
    path = tmp_path / "R-50-GN-py3.pkl"
    path.write_bytes(data)
    read = read_caffe2_pickle(path)
    assert read.keys() == blobs.keys() and all(np.array_equal(read[k], v) for k, v in blobs.items())
    assert set(TRAINING_STATE_BLOBS) == {"epoch", "lr", "model_iter"}  # the documented list
    py3, py2 = load_2d(f"caffe2-bgr:{path}").state_dict, load_2d(f"caffe2-bgr:{gn_pkl}").state_dict
    assert py3.keys() == py2.keys() and all(torch.equal(v, py2[k]) for k, v in py3.items())
    # a blob that is neither weight nor listed training state still matches no layer and is named
    path.write_bytes(pickle.dumps({"blobs": {**blobs, "iteration": np.array(3)}}, protocol=2))
    with pytest.raises(ValueError, match=r"1 Caffe2 blob\(s\) match no ResNet layer:\n  iteration \(\)"):
        load_2d(f"caffe2-bgr:{path}")


def test_torchvision_weights_from_torchvisions_cache(bn2d, tmp_path, monkeypatch):
    """``torchvision:`` goes through torchvision's weights API; a file already in torch's hub cache is used."""
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.save(bn2d.state_dict(), cached)
    assert _still_video_difference(bn2d, "torchvision:ResNet50_Weights.IMAGENET1K_V1", "bn") < TOLERANCE


def test_timm_weights_from_the_hugging_face_cache_and_without_network(gn2d, tmp_path):
    """``timm:`` through timm.create_model(pretrained=True), offline, from a Hugging Face cache made here; a model
    missing from the cache is a clear error.

    A separate process: huggingface_hub reads HF_HUB_CACHE and HF_HUB_OFFLINE when it is imported.
    """
    safetensors = pytest.importorskip("safetensors.torch")
    repo = tmp_path / "hub" / "models--timm--resnet50_gn.a1h_in1k"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    state = {k: v.contiguous() for k, v in gn2d.state_dict().items()}
    safetensors.save_file(state, repo / "snapshots" / commit / "model.safetensors")
    out = _run_python(
        "import json\n"
        "from videonorm.models.pretrained import describe\n"
        "print(json.dumps(describe('timm:resnet50_gn')))\n"
        "try:\n"
        "    describe('timm:resnet18')\n"
        "except RuntimeError as err:\n"
        "    print(json.dumps(str(err)))\n",
        HF_HUB_CACHE=tmp_path / "hub", https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    assert out.returncode == 0, out.stderr
    info, error = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert info == {"source": "timm", "spec": "timm:resnet50_gn", "sha256": state_dict_sha256(state),
                    "norm": "gn", "groups": 32}
    assert "timm could not load its pretrained weights from Hugging Face hub timm/resnet18.a1_in1k" in error
    assert "torch.save its state_dict() and set model.pretrained_2d to that file" in error


def _run_python(code: str, **env: object) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **{k: str(v) for k, v in env.items()}}
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------------------------------- identity


def test_describe_names_the_initialization(bn2d, bn_pkl, tmp_path):
    assert describe(None) == {"source": "scratch", "spec": None, "sha256": None, "norm": None, "groups": None}
    no_counters = {k: v for k, v in bn2d.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(no_counters, tmp_path / "r50.pth")  # Caffe2 files have no batch counters
    as_file, as_bgr, as_rgb = (describe(spec) for spec in
                               (str(tmp_path / "r50.pth"), f"caffe2-bgr:{bn_pkl}", f"caffe2-rgb:{bn_pkl}"))
    assert (as_file["source"], as_bgr["source"], as_rgb["source"]) == ("file", "caffe2-bgr", "caffe2-rgb")
    assert as_file["norm"] == as_bgr["norm"] == "bn" and len(as_file["sha256"]) == 12
    # the same weights, whatever the container ...
    assert as_bgr["sha256"] == as_file["sha256"] == state_dict_sha256(no_counters)
    # ... but a stem read in the other channel order is another initialization
    assert as_rgb["sha256"] != as_bgr["sha256"]


# ---------------------------------------------------------------------------------------------- errors


def test_a_crafted_pickle_cannot_run_code(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    for i, content in enumerate([Payload(), {"blobs": {"conv1_w": Payload()}}]):
        path = tmp_path / f"evil{i}.pkl"
        path.write_bytes(pickle.dumps(content, protocol=2))
        with pytest.raises(pickle.UnpicklingError, match=r"refused global (posix|nt)\.system"):
            read_caffe2_pickle(path)
        with pytest.raises(pickle.UnpicklingError, match="holds only dicts, strings, numbers and numpy arrays"):
            load_2d(f"caffe2-bgr:{path}")
    # _codecs.encode is allowed (Python 3's protocol 2 needs it for bytes), the rest of the file is still checked
    mixed = tmp_path / "mixed.pkl"
    mixed.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.ones((2, 3), np.float32)}, "x": Payload()}, protocol=2))
    assert b"c_codecs\nencode\n" in mixed.read_bytes()
    with pytest.raises(pickle.UnpicklingError, match=r"refused global (posix|nt)\.system"):
        read_caffe2_pickle(mixed)
    decode = tmp_path / "decode.pkl"  # exactly encode: not its neighbours in _codecs
    decode.write_bytes(b"c_codecs\ndecode\n(C\x01aX" + struct.pack("<I", 6) + b"latin1tR.")
    assert pickle.loads(decode.read_bytes()) == "a"  # a real pickle, refused for its global alone
    with pytest.raises(pickle.UnpicklingError, match=r"refused global _codecs\.decode"):
        read_caffe2_pickle(decode)
    builtins_eval = tmp_path / "eval.pkl"
    builtins_eval.write_bytes(b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode()
                              + b"')\ntR.")
    with pytest.raises(pickle.UnpicklingError, match=r"refused global builtins\.eval"):
        read_caffe2_pickle(builtins_eval)
    assert not marker.exists()
    pickle.loads(builtins_eval.read_bytes())  # the payload is real: an ordinary unpickler runs it
    assert marker.exists()


@pytest.mark.parametrize(("spec", "error", "message"), [
    ("imagenet:resnet50", ValueError, r"unknown source 'imagenet'; use a file path or one of caffe2-bgr:"),
    ("/nowhere/resnet50.pth", FileNotFoundError, r"no such file: /nowhere/resnet50\.pth"),
    ("caffe2-bgr:/nowhere/R-50-GN.pkl", FileNotFoundError,
     r"download it from https://dl\.fbaipublicfiles\.com/detectron/ImageNetPretrained/47261647/R-50-GN\.pkl"),
    ("caffe2-rgb:/nowhere/r50_pretrain_c2_model_iter450450_clean.pkl", FileNotFoundError,
     r"video-nonlocal/pretrained_model\.tar\.gz"),
    ("torchvision:ResNet50_Weights.NOPE", ValueError, r"unknown torchvision weights"),
    ("timm:resnet50_nonexistent", ValueError, r"timm has no model 'resnet50_nonexistent'"),
])
def test_bad_specs(spec, error, message):
    if spec.startswith("timm:"):
        pytest.importorskip("timm")
    with pytest.raises(error, match=message):
        load_2d(spec)


def test_a_bare_pkl_must_say_its_channel_order(bn_pkl):
    with pytest.raises(ValueError, match=rf"write caffe2-bgr:{re.escape(str(bn_pkl))} .* or caffe2-rgb:"):
        load_2d(str(bn_pkl))


def _offline_env(monkeypatch, tmp_path) -> None:
    """No network for sure: every download goes through a proxy port where nothing listens."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def test_no_network_says_where_to_put_the_file(tmp_path, monkeypatch):
    _offline_env(monkeypatch, tmp_path)
    target = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(RuntimeError, match=rf"could not download .*put it at {re.escape(str(target))}"):
        load_2d("torchvision:ResNet50_Weights.IMAGENET1K_V1")


def test_unmatched_and_misshaped_tensors_are_listed(tmp_path):
    blobs = _caffe2_blobs(_tiny_2d(), "bn", bgr=True)
    blobs["nonlocal_conv3_1_theta_w"] = np.zeros((16, 32, 1, 1, 1), np.float32)  # a video model's block
    blobs["res2_0_branch2a_b"] = np.zeros(8, np.float32)  # a conv bias the ResNet has no place for
    path = _write_caffe2_pickle(tmp_path / "extra.pkl", blobs)
    with pytest.raises(ValueError, match=r"2 Caffe2 blob\(s\) match no ResNet layer:\n  nonlocal_conv3_1_theta_w "
                                         r"\(16, 32, 1, 1, 1\)\n  res2_0_branch2a_b \(8,\)"):
        load_2d(f"caffe2-bgr:{path}")
    blobs = _caffe2_blobs(_tiny_2d(), "bn", bgr=True)
    blobs["res3_1_branch2b_w"] = blobs["res3_1_branch2b_w"][:, :, :1, :1]  # (16, 16, 1, 1) for a 3x3
    del blobs["res5_2_branch2c_bn_riv"]
    path = _write_caffe2_pickle(tmp_path / "misshaped.pkl", blobs)
    with pytest.raises(ValueError) as info:
        initialize_from(build_model(width=8, num_classes=3), f"caffe2-bgr:{path}", ModelSpec(width=8, num_classes=3))
    assert str(info.value).splitlines()[1:] == [
        "  shape mismatch: layer2.1.conv2.weight (16, 16, 1, 1) -> blocks.3.res_blocks.1.branch2.conv_b.weight "
        "(16, 16, 1, 3, 3)",
        "  missing 3D key: blocks.3.res_blocks.1.branch2.conv_b.weight",
        "  missing 3D key: blocks.5.res_blocks.2.branch2.norm_c.running_var",
    ]


def test_bn_checkpoint_into_gn_model_and_back(tmp_path):
    torch.save(_tiny_2d("bn"), tmp_path / "bn.pth")
    torch.save(_tiny_2d("gn"), tmp_path / "gn.pth")
    gn_pkl = _write_caffe2_pickle(tmp_path / "gn.pkl", _caffe2_blobs(_tiny_2d("gn"), "gn", bgr=True))
    def tiny(source: str, **fields) -> None:
        net = ModelSpec(width=8, num_classes=3, **fields)
        initialize_from(build_model(net), source, net)

    with pytest.raises(ValueError, match=r"is a BN checkpoint \(running statistics\), but the model's norm is "
                                         r"group-type"):
        tiny(str(tmp_path / "bn.pth"), norm="gn", norm_groups=4)
    for spec in (str(tmp_path / "gn.pth"), f"caffe2-bgr:{gn_pkl}"):
        with pytest.raises(ValueError, match=r"is a GN checkpoint \(no running statistics\), but the model's norm "
                                             r"is BN-type"):
            tiny(spec, norm="frozenbn")
    # Detectron's GN files have 32 groups
    with pytest.raises(ValueError, match=r"trained with GN groups=32, the model has groups=\[4\]"):
        tiny(f"caffe2-bgr:{gn_pkl}", norm="gn", norm_groups=4)
    with pytest.raises(ValueError, match=r"groups=32, the model has groups=\[1\]"):
        tiny(f"caffe2-bgr:{gn_pkl}", norm="ln")
    # weight-standardized GN, FRN and EvoNorm layers exist in no 2D source: refused, not inflated into
    for norm in ("gn_ws", "frn", "evonorm_s0"):
        with pytest.raises(ValueError, match=rf"the model's norm is '{norm}', whose layers no 2D ImageNet source "):
            tiny(f"caffe2-bgr:{gn_pkl}", norm=norm, norm_groups=4)
    with pytest.raises(ValueError, match="is a BN checkpoint .* the model's norm is 'frn'"):
        tiny(str(tmp_path / "bn.pth"), norm="frn")


# ---------------------------------------------------------------------------------------------- configs


def _print_config(path: Path, capsys) -> dict:
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(path), "--data.root", "/nonexistent", "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("path", sorted((REPO / "videonorm" / "configs" / "kinetics400").glob("i3d_r50_*.yaml")),
                         ids=lambda p: p.name)
def test_paper_configs_start_from_their_norms_imagenet_model(path, capsys):
    model = _print_config(path, capsys)["model"]
    expected = {"bn": "caffe2-rgb:pretrained/r50_pretrain_c2_model_iter450450_clean.pkl",
                "gn": "caffe2-bgr:pretrained/R-50-GN.pkl"}[model["net"]["norm"]]
    assert model["pretrained_2d"] == expected
    assert model["net"]["stem_pool_padding"] == 0 and model["nesterov"] is True


# ---------------------------------------------------------------------------------------------- resume (CLI)


def test_resume_does_not_need_the_2d_file(tmp_path, wandb_offline):
    """A fit inflates the 2D file; ``--ckpt_path last`` resumes after the file is gone (issue 13 item 15)."""
    dataset = tmp_path / "data"
    make_dataset(dataset, num_classes=3, per_class=2, num_frames=24)
    pth = tmp_path / "tiny_r50.pth"
    torch.save(_tiny_2d(), pth)
    fit = functools.partial(_fit, dataset, tmp_path / "runs", "--model.pretrained_2d", str(pth), "--model.lr", "0")
    fit("--trainer.max_epochs", "1")
    ckpt_dir = tmp_path / "runs" / "demo" / "i3d_r50-bn-w8-b4-8x2-in1k" / "checkpoints"
    first = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    # lr 0: the weights are the inflated 2D ones (the stem's 2D kernel spread over its 5 frames)
    stem = first["state_dict"]["model.blocks.0.conv.weight"]  # (8, 3, 5, 7, 7)
    torch.testing.assert_close(stem, _tiny_2d()["conv1.weight"].unsqueeze(2).expand_as(stem) / 5)
    assert first["pretrained_2d"] == describe(str(pth))

    pth.unlink()
    fit("--trainer.max_epochs", "2", "--ckpt_path", "last")  # raised FileNotFoundError before the fix
    resumed = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 2 * first["global_step"] > 0
    assert resumed["pretrained_2d"] == first["pretrained_2d"]  # what the run started from, still known
    # ... and in the W&B config of both parts of the run (what compare groups runs by)
    parts = [read_offline_run(p).config for p in find_offline_runs(ckpt_dir.parent)]
    assert len(parts) == 2
    assert all((c["init.source"], c["init.sha256"]) == ("file", first["pretrained_2d"]["sha256"]) for c in parts)
    # a fresh fit does need it, and says so
    with pytest.raises(FileNotFoundError, match=rf"no such file: {re.escape(str(pth))}"):
        _fit(dataset, tmp_path / "other_runs", "--model.pretrained_2d", str(pth), "--trainer.max_epochs", "1")


def _fit(dataset: Path, runs: Path, *extra: str) -> None:
    # the demo config at depth 50 and width 8: the tiny 2D ResNet-50 above inflates into it
    config = REPO / "videonorm" / "configs" / "demo" / "b4_8x2.yaml"
    args = ["fit", "--config", str(config), "--data.root", str(dataset),
            "--model.net.depth", "50", "--model.net.width", "8", "--trainer.default_root_dir", str(runs),
            "--trainer.enable_progress_bar", "false", "--precise_bn.num_batches", "1", *extra]
    assert main(args) == 0
