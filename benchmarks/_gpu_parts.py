"""The GPU smoke benchmark's cache-build, AutoAttack and profiler parts, functions of the running
``gpu_smoke.Benchmark`` (passed as ``self``)."""

from __future__ import annotations

import time
import traceback
from typing import Any

import torch
from _gpu_setup import CIFAR_TRAIN_IMAGES, METHODS, synchronize, timed

from dard_plugin.training.batches import Batch


def autoattack(self: Any) -> dict[str, Any]:
    """AutoAttack's throughput in chunks sized to the budget's share (the module docstring
    of gpu_smoke.py, part 4)."""
    from dard_plugin.evaluation import evaluate

    sizes = self.sizes
    budget = min(sizes.aa_share * self.budget, self.remaining() - 5)
    ends = time.perf_counter() + budget
    model = self.build(sizes.autoattack_model, seed=3).eval()
    images = self.images[: sizes.aa_images]
    with torch.no_grad():  # its own predictions as labels: every image is attacked
        labels = torch.cat(
            [
                model(images[i : i + 256].to(self.device)).argmax(1).cpu()
                for i in range(0, len(images), 256)
            ]
        )
    # a small first chunk measures the rate; later chunks are sized to fit what is left
    chunks: list[dict[str, Any]] = []
    start, size, rate = 0, sizes.aa_first_chunk, 0.0
    while start < len(images):
        if chunks:
            fits = int(rate * (ends - time.perf_counter()) / 1.2)
            size = min(sizes.aa_chunk, fits, len(images) - start)
            if size < min(sizes.aa_first_chunk, len(images) - start):
                break
        part = slice(start, start + size)
        started = time.perf_counter()
        report = evaluate(
            model,
            images[part],
            labels[part],
            eps=8 / 255,
            attacks=["clean", sizes.aa_attack],
            batch_size=size,
            device=self.device,
            verbose=False,
        )
        last = time.perf_counter() - started
        start += size
        rate = start / (sum(c["seconds"] for c in chunks) + last)
        chunks.append(
            {
                "images": size,
                "seconds": last,
                "seconds_by_attack": report.seconds,
                "robust_accuracy": report.robust_accuracy,
            }
        )
    done = sum(c["images"] for c in chunks)
    seconds = sum(c["seconds"] for c in chunks)
    return {
        "model": f"{sizes.autoattack_model[0]} {sizes.autoattack_model[1]} (random weights)",
        "attack": sizes.aa_attack,
        "eps": 8 / 255,
        "precision": "fp32 (TF32 convolutions where cuDNN allows, torch's default)",
        "images_asked": len(images),
        "images_done": done,
        "fewer_than_asked": done < len(images),
        "images_per_second": done / seconds if seconds else None,
        "robust_accuracy": sum(c["robust_accuracy"] * c["images"] for c in chunks) / done,
        "chunks": chunks,
        "note": "throughput depends on how many images survive each attack (every "
        "survivor goes through the next); robust_accuracy says how many did here",
    }


def profile(self: Any) -> dict[str, Any]:
    """torch.profiler over a few DARD-online steps (gpu_smoke.py, part 5)."""
    from torch.profiler import ProfilerActivity, profile

    method, options = METHODS["dard_online"]
    trainer = self.trainer(method, options)
    size = self.sizes.batch_size
    x, y = self.images[:size], self.labels[:size]
    trainer.fit(x, y, batch_size=size, nb_epochs=1)  # warm-up
    batch = Batch(trainer._to_device(x), y.to(self.device), torch.arange(size))
    cuda = self.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    synchronize(self.device)
    started = time.perf_counter()
    with profile(activities=activities) as profiler:
        for _ in range(self.sizes.profile_steps):
            trainer._step(batch)
        synchronize(self.device)
    wall = time.perf_counter() - started

    def device_self(event: Any) -> float:
        for name in ("self_device_time_total", "self_cuda_time_total"):
            if hasattr(event, name):
                return float(getattr(event, name))
        return 0.0

    events = list(profiler.key_averages())
    key = device_self if cuda else (lambda e: float(e.self_cpu_time_total))
    top = sorted(events, key=key, reverse=True)[: self.args.top_ops]
    values: dict[str, Any] = {
        "configuration": "dard_online (plain)",
        "steps": self.sizes.profile_steps,
        "batch_size": size,
        "wall_seconds": wall,
        "sorted_by": "self device time" if cuda else "self CPU time",
        "top_ops": [
            {
                "name": e.key,
                "calls": e.count,
                "self_device_ms": device_self(e) / 1e3,
                "self_cpu_ms": e.self_cpu_time_total / 1e3,
            }
            for e in top
        ],
    }
    if cuda:  # kernels only (operators' device time includes their kernels)
        try:
            kernels = [e for e in events if str(getattr(e, "device_type", "")).endswith("CUDA")]
            busy = sum(device_self(e) for e in kernels) / 1e6
            values["device_busy_seconds"] = busy
            values["device_busy_fraction"] = busy / wall if wall else None
        except Exception:  # the table above is the main result
            values["device_busy_error"] = traceback.format_exc()
    return values


def cache_builds(self: Any) -> dict[str, Any]:
    """The DARD cache build alone, at each ``teacher_batch_size``."""
    x, y = self.images[: self.sizes.n_cache], self.labels[: self.sizes.n_cache]
    values: dict[str, Any] = {"images": len(x)}
    for size in self.sizes.teacher_batches:
        if self.remaining() < 15:
            values[f"teacher_batch_{size}"] = "skipped: budget"
            continue
        try:
            values[f"teacher_batch_{size}"] = _cache_build(self, x, y, size)
        except Exception:  # out of memory, say: recorded, and the next size runs
            values[f"teacher_batch_{size}"] = {"error": traceback.format_exc()}
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
    return values


def _cache_build(self: Any, x: torch.Tensor, y: torch.Tensor, size: int) -> dict[str, Any]:
    trainer = self.trainer("dard", {"teacher_targets": "cached", "teacher_batch_size": size})
    # warm-up: a cache of one teacher batch, then training at the usual batch size
    trainer.fit(x[:size], y[:size], batch_size=self.sizes.batch_size, nb_epochs=1)
    if self.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(self.device)
    seconds = timed(lambda: trainer._build_cache(x, y, epoch=0, key={"build": size}), self.device)
    values = {
        "images_per_second": len(x) / seconds,
        "seconds_per_cifar10_build": CIFAR_TRAIN_IMAGES * seconds / len(x),
    }
    if self.device.type == "cuda":
        values["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
    return values
