"""``videonorm bench model``: training-step time, memory and FLOP/s of a backbone, per normalization layer.

    videonorm bench model [--arch i3d_resnet] [--depth 50] [--width 64] [--frames 8] [--size 112] [--batch 2]
                          [--norms bn,gn,frn,...] [--steps 5] [--device cpu|cuda]
                          [--precision fp32,bf16] [--memory-format contiguous,channels_last] [--out bench_out]

For each norm scheme (default: every one in ``videonorm.models.norm.NORM_NAMES``; and on CUDA each precision and
memory format) the network of ``--arch`` (default the I3D ResNet; ``build_model(ModelSpec(...))``)
in train mode takes SGD steps (momentum 0.9) on random ``(batch, 3, frames, size, size)`` clips. The models are
built up front and stepped round-robin, one step each in turn, so load from elsewhere on the machine hits all
norms alike; the table gives medians over ``--steps`` timed steps (after ``--warmup``):

  * ``step_ms_per_clip`` and its split ``fwd_ms`` / ``bwd_ms`` / ``opt_ms`` (per step, not per clip). CPU:
    wall clock; CUDA: CUDA events around each phase, synchronized at the end of the step.
  * ``peak_mb``: memory one steady-state training step (after a first step has made the momentum buffers)
    takes above what the process holds before it: gradients, activations, workspace. CUDA:
    ``torch.cuda.max_memory_allocated`` (exact). CPU: growth of the peak resident set size during one step
    (``VmHWM`` reset through ``/proc/self/clear_refs``, after ``malloc_trim`` returns freed heap to the OS),
    an upper bound that includes allocator slack; without ``/proc`` the ``ru_maxrss`` growth (a lower bound:
    zero when an earlier peak was higher). ``saved_mb``: tensors autograd saves for backward (counted with
    ``saved_tensors_hooks``, each storage once, parameters excluded): the activation memory, exact and
    device independent. ``state_mb``: parameters + gradients + momentum.
  * ``gflop_step``: forward + backward FLOPs of one step (``torch.utils.flop_counter.FlopCounterMode``:
    convolutions and matmuls; normalization and elementwise work are not counted), ``gflop_s`` achieved over
    the forward + backward time, and ``pct_peak`` of the ``peak`` table: a large 3x3x3 conv3d (forward)
    through the same backend, precision and memory format.
  * ``syncbn`` on one device: without a process group of more than one process our ``SyncBatchNorm3d`` runs
    plain batch norm (world size 1 skips the sync), so its row measures the module's overhead over ``bn``, not
    the all-reduce.

Ratios (``ratios`` table): every norm's step, forward and backward time, and its activation memory (``saved_mb``)
and step peak (``peak_mb``), over ``bn``'s at the same settings; the data issue's target is GN <= 1.1x BN on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from videonorm.bench.common import Row, machine_info, median, report
from videonorm.models import BACKBONES, NORM_NAMES, ModelSpec, build_model, num_parameters
from videonorm.models.norm.schemes import GROUP_RULES
from videonorm.models.spec import DEFAULTS

STEP_COLUMNS = [
    "norm", "precision", "memory_format", "batch", "step_ms_per_clip", "fwd_ms", "bwd_ms", "opt_ms", "clips_per_s",
    "spread_pct", "gflop_step", "gflop_s", "pct_peak", "peak_mb", "saved_mb", "state_mb", "params_m",
]  # fmt: skip
PEAK_COLUMNS = ["precision", "memory_format", "shape", "gflop", "ms", "gflop_s"]
RATIO_COLUMNS = ["precision", "memory_format", "norm", "step_vs_bn", "fwd_vs_bn", "bwd_vs_bn", "saved_vs_bn",
                 "peak_vs_bn", "target", "met"]  # fmt: skip
GN_TARGET_CPU = 1.1  # GN step time <= 1.1x BN step time on CPU (the data issue's target)

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last_3d}


# ---- clocks and memory --------------------------------------------------------------------------------------
class _Clock:
    """Marks on the host clock (CPU) or CUDA events (recorded in stream order, read after a synchronize)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals(self) -> list[float]:
        """Seconds between consecutive marks."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.marks, self.marks[1:])]
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def _proc_status(field_name: str) -> int | None:
    """A ``/proc/self/status`` memory field in bytes (None where unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _release_free_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc: give freed heap pages back, so RSS = live memory


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


@contextlib.contextmanager
def _count_saved(exclude: set[int]):
    """Sum the bytes of the tensors autograd saves for backward (each storage once, ``exclude`` pointers not)."""
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield seen


# ---- one configuration --------------------------------------------------------------------------------------
@dataclass
class _Run:
    norm: str
    precision: str
    memory_format: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    times: list[tuple[float, float, float]] = field(default_factory=list)  # (fwd, bwd, opt) seconds per step
    row: Row = field(default_factory=dict)


def _autocast(device: torch.device, precision: str):
    dtype = _DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _step(run: _Run, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[float, float, float]:
    """One SGD step; returns (forward, backward, optimizer) seconds."""
    clock = _Clock(device)
    run.optimizer.zero_grad(set_to_none=True)
    clock.mark()
    with _autocast(device, run.precision):
        loss = F.cross_entropy(run.model(x), y)
    clock.mark()
    loss.backward()
    clock.mark()
    run.optimizer.step()
    clock.mark()
    fwd, bwd, opt = clock.intervals()
    return fwd, bwd, opt


def _flops(run: _Run, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> int:
    """Forward + backward FLOPs of one step (torch's counter: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    run.optimizer.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        with _autocast(device, run.precision):
            loss = F.cross_entropy(run.model(x), y)
        loss.backward()
    run.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _memory(run: _Run, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> dict[str, float | None]:
    """peak_mb (one step above the resting state), saved_mb (activations saved for backward), state_mb."""
    params = list(run.model.parameters())
    state = sum(p.numel() * p.element_size() for p in params if p.requires_grad) * 3  # weights, grads, momentum
    run.optimizer.zero_grad(set_to_none=True)
    exclude = {p.untyped_storage().data_ptr() for p in params} | {
        b.untyped_storage().data_ptr() for b in run.model.buffers()
    }
    peak = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        _release_free_memory()
        exact = _reset_peak_rss()
        before = _proc_status("VmRSS") if exact else _max_rss_bytes()
    with _count_saved(exclude) as saved, _autocast(device, run.precision):
        loss = F.cross_entropy(run.model(x), y)
    loss.backward()
    run.optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        after = _proc_status("VmHWM") if exact else _max_rss_bytes()
        peak = None if after is None or before is None else max(after - before, 0)
    del loss
    return {
        "peak_mb": None if peak is None else peak / 2**20,
        "saved_mb": sum(saved.values()) / 2**20,
        "state_mb": state / 2**20,
    }


def measure_peak(device: torch.device, precision: str, memory_format: str, shape: Sequence[int], reps: int) -> Row:
    """GFLOP/s of a large 3x3x3 conv3d forward (``shape`` = N, C, T, H, W; C -> C channels, stride 1, padding 1),
    median of ``reps``.

    Args:
        device: Where to run.
        precision: ``fp32`` or an autocast dtype name.
        memory_format: ``contiguous`` or ``channels_last``.
        shape: Input shape.
        reps: Timed repetitions (after one warm-up).
    """
    n, c, t, h, w = shape
    dtype = _DTYPES[precision] or torch.float32  # weights and input in the compute dtype: no casts timed
    conv = nn.Conv3d(c, c, 3, padding=1, bias=False).to(device, dtype, memory_format=_FORMATS[memory_format])
    x = torch.randn(n, c, t, h, w, device=device, dtype=dtype).to(memory_format=_FORMATS[memory_format])
    flop = 2 * n * c * t * h * w * c * 27
    times = []
    with torch.no_grad():
        for i in range(reps + 1):
            clock = _Clock(device)
            clock.mark()
            conv(x)
            clock.mark()
            if i:
                times.append(clock.intervals()[0])
    seconds = median(times)
    return {"precision": precision, "memory_format": memory_format, "shape": "x".join(map(str, shape)),
            "gflop": flop / 1e9, "ms": 1000 * seconds, "gflop_s": flop / 1e9 / seconds}  # fmt: skip


# ---- the benchmark ------------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench model`` options to ``parser``."""
    parser.add_argument("--arch", default=DEFAULTS.arch, choices=sorted(BACKBONES), help="backbone (model.net.arch)")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--width", type=int, default=64, help="stem channels (64 in the paper)")
    parser.add_argument("--frames", type=int, default=8, help="clip length T")
    parser.add_argument("--size", type=int, default=112, help="clip height = width")
    parser.add_argument("--batch", type=int, default=2, help="clips per step")
    parser.add_argument("--norms", default=",".join(NORM_NAMES), help="norms to compare")
    parser.add_argument("--groups", type=int, help="GN groups (default: 32, or gcd(32, width) for narrow models)")
    parser.add_argument("--group-rule", default=DEFAULTS.norm_group_rule, choices=sorted(GROUP_RULES),
                        help="model.net.norm_group_rule: largest_divisor for widths G does not divide (X3D, SlowFast)")
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--precision", help="fp32,bf16,fp16 (autocast); default fp32 on CPU, fp32,bf16 on CUDA")
    parser.add_argument("--memory-format", help="contiguous,channels_last (channels_last_3d); "
                        "default contiguous on CPU, both on CUDA")  # fmt: skip
    parser.add_argument("--peak-shape", help="N,C,T,H,W of the peak conv3d (default 2,128,8,28,28 on CPU, "
                        "8,256,16,56,56 on CUDA)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_out", help="folder for model_*.csv and model.json")


def _choices(text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise SystemExit(f"error: bad {what} {text!r}; choose from {', '.join(allowed)}")
    return names


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The network the options describe (its norm is set per measured scheme)."""
    return ModelSpec(arch=args.arch, depth=args.depth, width=args.width, num_classes=args.classes,
                     norm_groups=args.groups or math.gcd(32, args.width), norm_group_rule=args.group_rule)


def _build(args, norm: str, precision: str, memory_format: str, device: torch.device) -> _Run:
    torch.manual_seed(args.seed)
    model = build_model(model_spec(args), norm=norm)
    model = model.to(device, memory_format=_FORMATS[memory_format]).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)  # small lr: stays finite for any norm
    return _Run(norm, precision, memory_format, model, optimizer)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None  # CPU peaks can be 0 (an earlier peak was higher)


def ratios(rows: list[Row], device: str) -> list[Row]:
    """Each norm's step/forward/backward time and memory over ``bn``'s at the same precision and memory format."""
    out = []
    for row in rows:
        base = next((r for r in rows if r["norm"] == "bn" and r["precision"] == row["precision"]
                     and r["memory_format"] == row["memory_format"]), None)  # fmt: skip
        if base is None or row["norm"] == "bn":
            continue
        step = row["step_ms_per_clip"] / base["step_ms_per_clip"]
        target = GN_TARGET_CPU if row["norm"] == "gn" and device == "cpu" else None
        out.append({
            "precision": row["precision"], "memory_format": row["memory_format"], "norm": row["norm"],
            "step_vs_bn": step, "fwd_vs_bn": row["fwd_ms"] / base["fwd_ms"],
            "bwd_vs_bn": row["bwd_ms"] / base["bwd_ms"], "saved_vs_bn": _ratio(row["saved_mb"], base["saved_mb"]),
            "peak_vs_bn": _ratio(row["peak_mb"], base["peak_mb"]),
            "target": None if target is None else f"<= {target:g}",
            "met": None if target is None else "yes" if step <= target else "no",
        })  # fmt: skip
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``bench model`` with parsed ``args``; returns the exit status."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    norms = _choices(args.norms, NORM_NAMES, "--norms")
    precisions = _choices(args.precision or ("fp32,bf16" if cuda else "fp32"), tuple(_DTYPES), "--precision")
    formats = _choices(args.memory_format or ("contiguous,channels_last" if cuda else "contiguous"), tuple(_FORMATS),
                       "--memory-format")  # fmt: skip
    peak_shape = [int(v) for v in (args.peak_shape or ("8,256,16,56,56" if cuda else "2,128,8,28,28")).split(",")]
    if cuda:
        torch.backends.cudnn.benchmark = True
    meta = {"machine": machine_info(), "args": vars(args), "device": str(device)}
    print(f"[bench model] {meta['machine'].get('gpu', meta['machine']['cpu'])}, torch threads "
          f"{torch.get_num_threads()}, load {meta['machine']['load_average_1min']}; "
          f"{BACKBONES[args.arch].title.format(depth=args.depth)} width "
          f"{args.width}, {args.batch} x 3 x {args.frames} x {args.size}^2, {args.steps} steps",
          flush=True)  # fmt: skip

    peak_rows = [measure_peak(device, p, f, peak_shape, reps=3 if not cuda else 10)
                 for p in precisions for f in formats]  # fmt: skip
    runs = [_build(args, n, p, f, device) for p in precisions for f in formats for n in norms]
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, generator=generator)
    y = torch.randint(0, args.classes, (args.batch,), generator=generator)
    inputs = {f: (x.to(device, memory_format=_FORMATS[f]), y.to(device)) for f in formats}
    for r in runs:  # before timing: one step (momentum buffers, cuDNN autotuning), memory, FLOPs; then warm-up
        xs, ys = inputs[r.memory_format]
        _step(r, xs, ys, device)
        r.row = {**_memory(r, xs, ys, device), "gflop_step": _flops(r, xs, ys, device) / 1e9}
    for _ in range(args.warmup):
        for r in runs:
            _step(r, *inputs[r.memory_format], device)
    for _ in range(args.steps):
        for r in runs:
            r.times.append(_step(r, *inputs[r.memory_format], device))
    peaks = {(p["precision"], p["memory_format"]): p["gflop_s"] for p in peak_rows}
    rows = []
    for r in runs:
        fwd, bwd, opt = (median(t[i] for t in r.times) for i in range(3))
        steps = [sum(t) for t in r.times]
        rates = [args.batch / s for s in steps]
        gflop_s = r.row["gflop_step"] / (fwd + bwd)
        rows.append({
            "norm": r.norm, "precision": r.precision, "memory_format": r.memory_format, "batch": args.batch,
            "step_ms_per_clip": 1000 * median(steps) / args.batch, "fwd_ms": 1000 * fwd, "bwd_ms": 1000 * bwd,
            "opt_ms": 1000 * opt, "clips_per_s": median(rates),
            "spread_pct": 100 * (max(rates) - min(rates)) / median(rates) if len(rates) > 1 else None,
            "gflop_step": r.row["gflop_step"], "gflop_s": gflop_s,
            "pct_peak": 100 * gflop_s / peaks[(r.precision, r.memory_format)],
            "peak_mb": r.row["peak_mb"], "saved_mb": r.row["saved_mb"], "state_mb": r.row["state_mb"],
            "params_m": num_parameters(r.model) / 1e6,
        })  # fmt: skip
    meta["load_average_1min_end"] = machine_info()["load_average_1min"]
    tables = {"steps": (rows, STEP_COLUMNS), "peak": (peak_rows, PEAK_COLUMNS),
              "ratios": (ratios(rows, device.type), RATIO_COLUMNS)}  # fmt: skip
    report(args.out, "model", tables, {
        "steps": f"training steps on {device.type} (medians over {args.steps} steps; fwd/bwd/opt ms per step)",
        "peak": "peak: one large 3x3x3 conv3d forward",
        "ratios": "each norm vs bn (step, forward, backward time; activation memory, step peak)",
    }, meta)  # fmt: skip
    return 0
