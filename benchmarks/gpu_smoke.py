"""GPU speed at CIFAR scale (issue 24): one prepared run for a lent GPU machine.

Within a global time budget (``--budget-s``, default 420 s: the run ends inside 8 minutes
on one H200), in this order, each part written to the JSON as soon as it ends (a run cut
short still reports what finished; an error in one configuration is recorded and the next
runs; what the budget leaves no time for is listed under ``skipped``, with the reason):

1. ``environment``: the card, its driver, the torch / CUDA / cuDNN build, the commit, the
   card's dense bf16 peak from the datasheet table below, and a measured bf16 GEMM rate
   (8192^3 products), the practical ceiling.
2. ``flops``: FLOPs per training image of each method, measured with
   ``torch.utils.flop_counter.FlopCounterMode`` over one training step (DARD cached: the
   step, and the cache build's teacher FLOPs per image separately).
3. ``configurations`` (plain): SAT, ARD, RSLAD, DARD online and DARD cached; ResNet-18
   student, WideResNet-34-10 teacher, synthetic 3x32x32 data, random weights (throughput
   only), the trainers' defaults on CUDA (bf16 autocast, channels-last): images/s, seconds
   per 50,000-image epoch, achieved TFLOP/s, fraction of the bf16 peak, peak memory.
4. ``autoattack``: AutoAttack standard through ``dard_plugin.evaluation.evaluate`` on a
   WideResNet-28-10 (random weights; labels are its own clean predictions, so every image
   is attacked), up to 1,000 images: a first chunk of 50 measures the rate, then chunks
   of up to 250 as long as its share of the budget (a quarter) allows (the JSON says how
   many ran).
5. ``profile``: ``torch.profiler`` over a few DARD-online steps: the top operators by
   device time, and the fraction of the wall time the device was busy.
6. ``configurations`` (fast paths), each against its plain row, cheap ones first: larger
   batches, cuDNN autotuning (``torch.backends.cudnn.benchmark``), the cache build at
   larger ``teacher_batch_size`` (``cache_builds``); then the compiled attack step
   (``compile_attack=True``; ``compile_mode="reduce-overhead"`` adds CUDA graphs), and
   without channels-last and without bf16 (what those two give).

Run on the device (docs/performance.md, "GPU measurement pending", has the full command
with the wheels it needs)::

    python3 benchmarks/gpu_smoke.py --out $OUT/gpu_smoke.json

A CPU check of the script itself, tiny models, a few seconds (``tests/test_gpu_smoke.py``
runs it)::

    python benchmarks/gpu_smoke.py --smoke --out /tmp/gpu_smoke.json

The bf16 peaks by card, and where they come from: ``_gpu_setup.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _gpu_parts  # benchmarks/_gpu_parts.py, beside this script
import torch
from _gpu_setup import (  # benchmarks/_gpu_setup.py, beside this script
    BF16_PEAK_TFLOPS,
    CIFAR_TRAIN_IMAGES,
    GPU,
    METHODS,
    SMOKE,
    Configuration,
    command_output,
    cudnn_benchmark,
    fast_path_configurations,
    flop_counter,
    timed,
)
from torch import nn

from dard_plugin.attacks._fast import compiled_step_calls
from dard_plugin.models import create
from dard_plugin.training import TRAINERS
from dard_plugin.training.batches import Batch


class Benchmark:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = SMOKE if args.smoke else GPU
        budget = args.budget_s if args.budget_s is not None else self.sizes.budget_s
        self.budget = budget
        self.deadline = time.perf_counter() + budget
        self.device = torch.device(args.device)
        generator = torch.Generator().manual_seed(0)
        n = max(self.sizes.n_train, self.sizes.n_cache, max(self.sizes.large_batches) * 2)
        self.images = torch.rand(n, 3, 32, 32, generator=generator)
        self.labels = torch.randint(0, 10, (n,), generator=generator)
        self.teacher: nn.Module | None = None
        self.peak: float | None = None
        self.gemm_tflops: float | None = None
        self.flops: dict[str, dict[str, float]] = {}
        self.compiled_row_seconds: list[float] = []
        self.result: dict[str, Any] = {
            "benchmark": "gpu_smoke",
            "issue": 24,
            "smoke": bool(args.smoke),
            "budget_s": budget,
            "sizes": {k: v for k, v in vars(self.sizes).items()},
            "configurations": {},
            "skipped": [],
        }

    # ------------------------------------------------------------------ bookkeeping
    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def save(self) -> None:
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        self.args.out.write_text(json.dumps(self.result, indent=2, default=str))

    def skip(self, name: str, reason: str) -> None:
        self.result["skipped"].append({"name": name, "reason": reason})
        self.save()
        print(f"skipped {name}: {reason}", flush=True)

    def part(self, name: str, function: Callable[[], dict[str, Any]], needs_s: float) -> None:
        if needs_s > 0 and self.remaining() < needs_s:
            self.skip(name, f"{self.remaining():.0f} s of the budget left, needs ~{needs_s:.0f}")
            return
        started = time.perf_counter()
        try:
            values = function()
        except Exception:  # recorded; the next part still runs
            values = {"error": traceback.format_exc()}
        values["seconds"] = time.perf_counter() - started
        self.result[name] = values
        self.save()
        print(name, json.dumps(values, indent=2, default=str)[:3000], flush=True)

    def build(self, spec: tuple[str, dict[str, int]], seed: int) -> nn.Module:
        name, options = spec
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return create(name, num_classes=10, **options).to(self.device)

    def shared_teacher(self) -> nn.Module:
        if self.teacher is None:  # one teacher object: its compiled graphs are reused
            self.teacher = self.build(self.sizes.teacher, seed=2).eval()
        return self.teacher

    def trainer(self, method: str, options: dict[str, Any]) -> Any:
        student = self.build(self.sizes.student, seed=1)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
        cls = TRAINERS[method]
        positional = (student,) if not cls.needs_teacher else (student, self.shared_teacher())
        attack = {"steps": self.sizes.steps}
        return cls(
            *positional,
            optimizer=optimizer,
            device=self.device,
            attack=attack,
            verbose=False,
            **options,
        )

    # ------------------------------------------------------------------ parts
    def environment(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()
            if torch.backends.cudnn.is_available()
            else None,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "device": str(self.device),
            "commit": self.args.commit
            or command_output(["git", "rev-parse", "HEAD"])
            or "unknown (pass --commit)",
        }
        if self.device.type == "cuda":
            properties = torch.cuda.get_device_properties(self.device)
            name = torch.cuda.get_device_name(self.device)
            values.update(
                {
                    "gpu": name,
                    "memory_gib": properties.total_memory / 2**30,
                    "multiprocessors": properties.multi_processor_count,
                    "capability": list(torch.cuda.get_device_capability(self.device)),
                    "bf16_supported": torch.cuda.is_bf16_supported(),
                    "driver": command_output(
                        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
                    ),
                }
            )
            self.peak = next((p for key, p in BF16_PEAK_TFLOPS.items() if key in name), None)
            values["bf16_datasheet_peak_tflops"] = self.peak
        # the practical ceiling: a large bf16 matrix product on random data
        n = self.sizes.gemm_size
        a = torch.randn(n, n, device=self.device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=self.device, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        seconds = statistics.median(timed(lambda: a @ b, self.device) for _ in range(10))
        self.gemm_tflops = 2 * n**3 / seconds / 1e12
        values["bf16_gemm_tflops_measured"] = self.gemm_tflops
        values["bf16_gemm_size"] = n
        return values

    def count_flops(self) -> dict[str, Any]:
        size = self.sizes.flop_batch
        x, y = self.images[:size], self.labels[:size]
        for name, (method, options) in METHODS.items():
            trainer = self.trainer(method, options)
            trainer.fit(x, y, batch_size=size, nb_epochs=1)  # set-up (and DARD's cache)
            batch = Batch(trainer._to_device(x), y.to(self.device), torch.arange(size))
            with flop_counter() as counter:
                trainer._step(batch)
            counted = {"step": counter.get_total_flops() / size}
            if name == "dard_cached":
                with flop_counter() as counter, trainer._step_settings():
                    trainer.teacher_outputs(batch.images, batch.labels)
                counted["cache_build"] = counter.get_total_flops() / size
            self.flops[name] = counted
        return {
            name: {f"{k}_gflops_per_image": v / 1e9 for k, v in c.items()}
            for name, c in self.flops.items()
        }

    def throughput(self, config: Configuration) -> dict[str, Any]:
        batch_size = config.batch_size or self.sizes.batch_size
        n = max(self.sizes.n_train, 2 * batch_size)
        x, y = self.images[:n], self.labels[:n]
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        with cudnn_benchmark(config.cudnn_benchmark):
            trainer = self.trainer(config.method, config.options)
            fit = lambda: trainer.fit(x, y, batch_size=batch_size, nb_epochs=1)  # noqa: E731
            first = timed(fit, self.device)  # warm-up, compilation, the cache build
            steady = statistics.median(timed(fit, self.device) for _ in range(self.args.repeats))
        images_per_second = n / steady
        values: dict[str, Any] = {
            "method": config.method,
            "options": config.options,
            "batch_size": batch_size,
            "cudnn_benchmark": config.cudnn_benchmark,
            "amp": trainer.amp,
            "channels_last": trainer.channels_last,
            "compile_attack": trainer.compile_attack,
            "images": n,
            "images_per_second": images_per_second,
            "first_epoch_seconds": first,
            "steady_epoch_seconds": steady,
            "seconds_per_cifar10_epoch": CIFAR_TRAIN_IMAGES / images_per_second,
        }
        if trainer.compile_attack:  # did the compiled step run (or fall back)?
            values["compiled_step_calls_student"] = compiled_step_calls(trainer.student)
            if trainer.teacher is not None:  # the shared teacher's, over all rows so far
                values["compiled_step_calls_teacher"] = compiled_step_calls(trainer.teacher)
        if self.device.type == "cuda":
            values["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        key = next(
            (
                k
                for k, (m, o) in METHODS.items()
                if m == config.method
                and o.get("teacher_targets") == config.options.get("teacher_targets")
            ),
            None,
        )
        step_flops = self.flops.get(key or "", {}).get("step")
        if step_flops is not None:
            achieved = step_flops * images_per_second / 1e12
            values["tflops_achieved"] = achieved
            if self.peak:
                values["fraction_of_datasheet_peak"] = achieved / self.peak
            if self.gemm_tflops:
                values["fraction_of_measured_gemm"] = achieved / self.gemm_tflops
        if config.plain and config.plain in self.result["configurations"]:
            plain = self.result["configurations"][config.plain]
            if "images_per_second" in plain:
                values["speed_up_over_" + config.plain] = (
                    images_per_second / plain["images_per_second"]
                )
        return values

    def run_configuration(self, config: Configuration, needs_s: float) -> None:
        if config.compiles and self.args.smoke and not self.args.smoke_compiled:
            self.skip(
                config.name,
                "--smoke: compiling takes tens of seconds on CPU "
                "(tests/test_fast_paths.py checks the compiled step)",
            )
            return
        if self.remaining() < needs_s:
            self.skip(
                config.name, f"{self.remaining():.0f} s of the budget left, needs ~{needs_s:.0f}"
            )
            return
        started = time.perf_counter()
        try:
            values = self.throughput(config)
        except Exception:  # out of memory, a compiler error: recorded, the next row runs
            values = {"error": traceback.format_exc()}
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        values["seconds"] = time.perf_counter() - started
        self.result["configurations"][config.name] = values
        if config.compiles:
            self.compiled_row_seconds.append(values["seconds"])
        self.save()
        shown = {k: v for k, v in values.items() if k not in ("options",)}
        print(config.name, json.dumps(shown, default=str)[:1500], flush=True)

    def cache_builds(self) -> dict[str, Any]:
        return _gpu_parts.cache_builds(self)

    def autoattack(self) -> dict[str, Any]:
        return _gpu_parts.autoattack(self)

    def profile(self) -> dict[str, Any]:
        return _gpu_parts.profile(self)

    # ------------------------------------------------------------------ the plan
    def run(self) -> None:
        self.started = time.perf_counter()
        sizes = self.sizes

        def needs(seconds: float) -> float:  # the least budget a part needs to start
            return 1.0 if self.args.smoke else seconds

        self.part("environment", self.environment, needs_s=0)
        self.part("flops", self.count_flops, needs_s=needs(15))
        for name, (method, options) in METHODS.items():
            self.run_configuration(Configuration(name, method, dict(options)), needs_s=needs(10))
        self.part("autoattack", self.autoattack, needs_s=needs(20))
        self.part("profile", self.profile, needs_s=needs(10))

        cheap, later = fast_path_configurations(sizes)
        for config in cheap:
            self.run_configuration(config, needs_s=needs(15))
        self.part("cache_builds", self.cache_builds, needs_s=needs(20))
        for config in later:
            # a compiled row needs at least what the longest compiled row took (compilation)
            compiled_row = max([90.0, *(1.2 * t for t in self.compiled_row_seconds)])
            self.run_configuration(config, needs_s=needs(compiled_row if config.compiles else 25))
        if self.device.type == "cuda":
            self.result["max_memory_allocated_gib"] = (
                torch.cuda.max_memory_allocated(self.device) / 2**30
            )
        self.result["total_seconds"] = time.perf_counter() - self.started
        self.save()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU, seconds")
    parser.add_argument(
        "--smoke-compiled",
        action="store_true",
        help="--smoke with the compiled rows too (about two minutes of compiling on CPU)",
    )
    parser.add_argument("--budget-s", type=float, default=None, help="default 420 (smoke 120)")
    parser.add_argument("--repeats", type=int, default=2, help="steady epochs per row (median)")
    parser.add_argument("--top-ops", type=int, default=25)
    parser.add_argument("--commit", default=None, help="recorded (default: git rev-parse HEAD)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_smoke.json"))
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    benchmark = Benchmark(args)
    benchmark.run()
    return benchmark.result


if __name__ == "__main__":
    main()
