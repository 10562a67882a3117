"""The GPU smoke benchmark's settings and timing helpers (``gpu_smoke.py`` beside this file
runs them): the GPU and CPU-smoke sizes, the configurations measured, the bf16 peaks by
card, and the timers, FLOP counter and cuDNN switch they use."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

CIFAR_TRAIN_IMAGES = 50_000
# Dense bf16 tensor-core TFLOP/s by card name, longest name first, from NVIDIA's datasheets (which
# list twice these numbers "with sparsity"): H100 SXM and H200 SXM 989.4; H100 NVL and H200 NVL
# 835.5; H100 PCIe 756.5; A100 312. The 790 TFLOP/s issue 24 used is the bf16 8192^3 GEMM rate
# measured on this workplace's H200s (769 to 798), the practical ceiling; the JSON gives both
# fractions (fraction_of_datasheet_peak, fraction_of_measured_gemm).
BF16_PEAK_TFLOPS = {
    "H200 NVL": 835.5,
    "H100 NVL": 835.5,
    "H100 PCIe": 756.5,
    "H200": 989.4,
    "H100": 989.4,
    "A100": 312.0,
}
METHODS = {
    "sat": ("sat", {}),
    "ard": ("ard", {}),
    "rslad": ("rslad", {}),
    "dard_online": ("dard", {"teacher_targets": "online"}),
    "dard_cached": ("dard", {"teacher_targets": "cached"}),
}


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the GPU run and the CPU smoke run."""

    student: tuple[str, dict[str, int]]
    teacher: tuple[str, dict[str, int]]
    autoattack_model: tuple[str, dict[str, int]]
    steps: int
    batch_size: int
    n_train: int
    large_batches: tuple[int, ...]
    teacher_batches: tuple[int, ...]
    n_cache: int
    flop_batch: int
    profile_steps: int
    aa_images: int
    aa_first_chunk: int  # measures the rate
    aa_chunk: int  # at most, after the first
    aa_attack: str
    budget_s: float
    aa_share: float  # of the budget, at most
    gemm_size: int


GPU = Sizes(
    student=("resnet18", {}),
    teacher=("wide-resnet", {"depth": 34, "width": 10}),
    autoattack_model=("wide-resnet", {"depth": 28, "width": 10}),
    steps=10,
    batch_size=256,
    n_train=2560,
    large_batches=(512, 1024),
    teacher_batches=(256, 1024, 2048),
    n_cache=4096,
    flop_batch=16,
    profile_steps=3,
    aa_images=1000,
    aa_first_chunk=50,
    aa_chunk=250,
    aa_attack="autoattack",
    budget_s=420.0,
    aa_share=0.25,
    gemm_size=8192,
)
SMOKE = Sizes(
    student=("wide-resnet", {"depth": 10, "width": 1}),
    teacher=("wide-resnet", {"depth": 10, "width": 1}),
    autoattack_model=("wide-resnet", {"depth": 10, "width": 1}),
    steps=2,
    batch_size=4,
    n_train=8,
    large_batches=(8,),
    teacher_batches=(4, 8),
    n_cache=8,
    flop_batch=2,
    profile_steps=1,
    aa_images=4,
    aa_first_chunk=2,
    aa_chunk=2,
    aa_attack="apgd-ce",  # AutoAttack's first part: the same code path, seconds on CPU
    budget_s=120.0,
    aa_share=0.25,
    gemm_size=256,
)


@dataclass
class Configuration:
    """One throughput measurement: a method and the options that make its fast path."""

    name: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    cudnn_benchmark: bool = False
    compiles: bool = False  # torch.compile: skipped in --smoke, needs a larger budget share
    plain: str | None = None  # the row it is compared against


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - started


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


class _NoModuleTracking:
    """Stands in for FlopCounterMode's module tracker, whose hooks on every module's inputs
    break ``torch.autograd.grad`` on a leaf input (the attacks' adversarial images): the
    counts are the same, only the per-module breakdown is lost."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _NoModuleTracking:
        return self

    def __exit__(self, *args: object) -> None:
        return None


def flop_counter() -> Any:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _NoModuleTracking()
    return counter


def command_output(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def fast_path_configurations(sizes: Sizes) -> tuple[list[Configuration], list[Configuration]]:
    """The fast-path rows, each against its plain row: the cheap ones (larger batches, cuDNN
    autotuning), then the compiled ones and the ablations, most telling first."""
    online = METHODS["dard_online"][1]
    # the cheap rows first (larger batches, cuDNN autotuning, the cache builds), then
    # the compiled ones (minutes of compilation each at this size), most telling first
    cheap = [
        *[
            Configuration(
                f"dard_online_batch_{b}",
                "dard",
                dict(online),
                batch_size=b,
                plain="dard_online",
            )
            for b in sizes.large_batches
        ],
        Configuration(
            "dard_online_cudnn_benchmark",
            "dard",
            dict(online),
            cudnn_benchmark=True,
            plain="dard_online",
        ),
    ]
    later = [
        Configuration(
            "dard_online_compiled",
            "dard",
            {**online, "compile_attack": True},
            compiles=True,
            plain="dard_online",
        ),
        Configuration(
            "dard_online_no_channels_last",
            "dard",
            {**online, "channels_last": False},
            plain="dard_online",
        ),
        Configuration("dard_online_fp32", "dard", {**online, "amp": False}, plain="dard_online"),
        Configuration("sat_compiled", "sat", {"compile_attack": True}, compiles=True, plain="sat"),
        Configuration(
            "dard_online_compiled_cuda_graphs",
            "dard",
            {**online, "compile_attack": True, "compile_mode": "reduce-overhead"},
            compiles=True,
            plain="dard_online",
        ),
        Configuration("sat_cudnn_benchmark", "sat", {}, cudnn_benchmark=True, plain="sat"),
        Configuration(
            "dard_cached_compiled",
            "dard",
            {"teacher_targets": "cached", "compile_attack": True},
            compiles=True,
            plain="dard_cached",
        ),
        Configuration("ard_compiled", "ard", {"compile_attack": True}, compiles=True, plain="ard"),
        Configuration(
            "rslad_compiled", "rslad", {"compile_attack": True}, compiles=True, plain="rslad"
        ),
    ]
    return cheap, later
