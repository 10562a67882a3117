"""GPU smoke check at CIFAR shape, one prepared run for a lent GPU machine.

Sections (each one timed and written to the JSON as soon as it ends, so a run cut short
still reports what finished; an error in one section is recorded and the next one runs):

1. ``cuda``: the card, bf16 support, a bf16 autocast forward.
2. ``attacks``: DPGD and torchattacks.PGD images per second on a ResNet-18 (fp32, bf16),
   the paired ratio DPGD / PGD, and the epsilon ball checked on the output.
3. ``trainers``: images per second of SAT and DARD (online and cached targets), fp32 and
   bf16, ResNet-18 student and PreActResNet-18 teacher (random weights: throughput only),
   synthetic 3x32x32 data.
4. ``recipe``: the CIFAR-10 recipe's configuration, ResNet-18 student and WRN-34-10 teacher
   (RSLAD's teacher architecture), bf16: DARD online and cached, ARD, RSLAD and SAT, and the
   cache build; from these, seconds per 50,000-image epoch.
5. ``art_madry``: ART's AdversarialTrainerMadryPGD against our SATTrainer on the GPU (fp32,
   same ResNet-18, same steps).

    python benchmarks/gpu_smoke.py --out $OUT/gpu_smoke.json

It also runs on CPU at tiny sizes, to check the script itself:

    python benchmarks/gpu_smoke.py --device cpu --batch-size 4 --n-train 8 --tiny --out /tmp/s.json
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

import numpy as np
import torch
import torchattacks
from torch import nn

from dard_plugin.attacks.dpgd import dpgd
from dard_plugin.models import create
from dard_plugin.training import TRAINERS

CIFAR_TRAIN_IMAGES = 50_000


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - started


def build(name: str, device: torch.device, seed: int = 0, **kwargs: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return create(name, num_classes=10, **kwargs).to(device)


class Smoke:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(args.n_train, 3, 32, 32, generator=generator)
        self.labels = torch.randint(0, 10, (args.n_train,), generator=generator)
        self.result: dict[str, Any] = {
            "benchmark": "gpu_smoke",
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "device": str(self.device),
            "torch": torch.__version__,
            "platform": platform.platform(),
        }

    def save(self) -> None:
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        self.args.out.write_text(json.dumps(self.result, indent=2))

    def section(self, name: str, function: Callable[[], dict[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            values = function()
        except Exception:  # recorded, and the next section still runs
            values = {"error": traceback.format_exc()}
        values["section_seconds"] = time.perf_counter() - started
        self.result[name] = values
        self.save()
        print(name, json.dumps(values, indent=2), flush=True)

    # ------------------------------------------------------------------ sections
    def cuda(self) -> dict[str, Any]:
        values: dict[str, Any] = {"cuda_available": torch.cuda.is_available()}
        if self.device.type == "cuda":
            values["gpu"] = torch.cuda.get_device_name(self.device)
            values["bf16_supported"] = torch.cuda.is_bf16_supported()
            values["capability"] = list(torch.cuda.get_device_capability(self.device))
        model = build("resnet18", self.device).eval()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16):
            logits = model(self.images[:8].to(self.device))
        values["bf16_autocast_logits_dtype"] = str(logits.dtype)
        values["bf16_logits_finite"] = bool(torch.isfinite(logits).all())
        return values

    def attacks(self) -> dict[str, Any]:
        args, device = self.args, self.device
        model = build("resnet18", device).eval()
        batch = self.images[: args.batch_size].to(device)
        labels = self.labels[: args.batch_size].to(device)
        eps, alpha = 8 / 255, 2 / 255
        values: dict[str, Any] = {}
        for precision in ("fp32", "bf16"):
            amp = precision == "bf16"
            pgd = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=10, random_start=False)

            def run_dpgd(amp: bool = amp) -> torch.Tensor:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    return dpgd(model, batch, labels, eps=eps, alpha=alpha, steps=10)

            def run_pgd(amp: bool = amp, pgd: Any = pgd) -> torch.Tensor:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    return pgd(batch, labels)

            run_dpgd(), run_pgd()  # warm-up
            pairs = [(timed(run_dpgd, device), timed(run_pgd, device)) for _ in range(args.repeats)]
            values[f"dpgd_images_per_second_{precision}"] = args.batch_size / statistics.median(
                p[0] for p in pairs
            )
            values[f"pgd_images_per_second_{precision}"] = args.batch_size / statistics.median(
                p[1] for p in pairs
            )
            values[f"dpgd_over_pgd_{precision}"] = statistics.median(p[0] / p[1] for p in pairs)
            adversarial = run_dpgd()
            values[f"dpgd_max_perturbation_{precision}"] = float((adversarial - batch).abs().max())
            values[f"dpgd_in_unit_range_{precision}"] = bool(
                adversarial.min() >= 0 and adversarial.max() <= 1
            )
        values["eps"] = eps
        return values

    def _throughput(
        self,
        method: str,
        student_arch: str,
        teacher: nn.Module | None,
        amp: bool,
        n_epochs: int = 1,
        **options: Any,
    ) -> dict[str, float]:
        args, device = self.args, self.device
        student = build(student_arch, device, seed=1)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
        cls = TRAINERS[method]
        positional = (student,) if teacher is None else (student, teacher)
        trainer = cls(
            *positional, optimizer=optimizer, device=device, amp=amp, verbose=False, **options
        )
        first = timed(
            lambda: trainer.fit(self.images, self.labels, batch_size=args.batch_size, nb_epochs=1),
            device,
        )
        times = []
        for _ in range(n_epochs):  # each fit runs one more epoch; a cache is built once
            times.append(
                timed(
                    lambda: trainer.fit(
                        self.images, self.labels, batch_size=args.batch_size, nb_epochs=1
                    ),
                    device,
                )
            )
        steady = statistics.median(times)
        return {
            "images_per_second": args.n_train / steady,
            "first_epoch_seconds": first,
            "steady_epoch_seconds": steady,
            "channels_last": trainer.channels_last,
        }

    def trainers(self) -> dict[str, Any]:
        teacher = build("preact-resnet18", self.device, seed=2).eval()
        values: dict[str, Any] = {}
        for precision in ("fp32", "bf16"):
            amp = precision == "bf16"
            values[f"sat_{precision}"] = self._throughput("sat", "resnet18", None, amp)
            for mode in ("online", "cached"):
                values[f"dard_{mode}_{precision}"] = self._throughput(
                    "dard", "resnet18", teacher, amp, teacher_targets=mode
                )
        return values

    def recipe(self) -> dict[str, Any]:
        teacher_kwargs = {"depth": 16, "width": 2} if self.args.tiny else {"depth": 34, "width": 10}
        teacher = build("wide-resnet", self.device, seed=2, **teacher_kwargs).eval()
        values: dict[str, Any] = {
            "teacher": f"wide-resnet {teacher_kwargs}",
            "student": "resnet18",
            "precision": "bf16",
        }
        runs = {
            "sat": ("sat", None, {}),
            "ard": ("ard", teacher, {}),
            "rslad": ("rslad", teacher, {}),
            "dard_online": ("dard", teacher, {"teacher_targets": "online"}),
            "dard_cached": ("dard", teacher, {"teacher_targets": "cached"}),
        }
        for key, (method, model, options) in runs.items():
            measured = self._throughput(method, "resnet18", model, True, **options)
            measured["seconds_per_cifar10_epoch"] = (
                CIFAR_TRAIN_IMAGES / measured["images_per_second"]
            )
            if key == "dard_cached":
                build_seconds = measured["first_epoch_seconds"] - measured["steady_epoch_seconds"]
                measured["cache_build_seconds_per_cifar10"] = (
                    build_seconds * CIFAR_TRAIN_IMAGES / self.args.n_train
                )
            values[key] = measured
        return values

    def art_madry(self) -> dict[str, Any]:
        from art.defences.trainer import AdversarialTrainerMadryPGD
        from art.estimators.classification import PyTorchClassifier

        args, device = self.args, self.device
        n = args.n_train
        ours = self._throughput(
            "sat",
            "resnet18",
            None,
            False,
            n_epochs=args.repeats,
            attack={"eps": 8 / 255, "alpha": 2 / 255, "steps": 10},
        )
        student = build("resnet18", device, seed=1)
        classifier = PyTorchClassifier(
            model=student,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9),
            input_shape=(3, 32, 32),
            nb_classes=10,
            clip_values=(0.0, 1.0),
            device_type="gpu" if device.type == "cuda" else "cpu",
        )
        madry = AdversarialTrainerMadryPGD(
            classifier,
            nb_epochs=1,
            batch_size=args.batch_size,
            eps=8 / 255,
            eps_step=2 / 255,
            max_iter=10,
            num_random_init=1,
        )
        x = self.images.numpy()
        y = np.eye(10, dtype=np.float32)[self.labels.numpy()]
        madry.fit(x, y)  # warm-up
        art_seconds = statistics.median(
            timed(lambda: madry.fit(x, y), device) for _ in range(args.repeats)
        )
        return {
            "our_sat_images_per_second": ours["images_per_second"],
            "art_madry_images_per_second": n / art_seconds,
            "art_madry_over_our_sat": art_seconds / ours["steady_epoch_seconds"],
            "our_sat_channels_last": ours["channels_last"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=2560)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a WRN-16-2 teacher in the recipe section (script check on CPU)",
    )
    parser.add_argument("--sections", default="cuda,attacks,trainers,recipe,art_madry")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_smoke.json"))
    args = parser.parse_args()
    smoke = Smoke(args)
    for name in args.sections.split(","):
        smoke.section(name, getattr(smoke, name))
    if smoke.device.type == "cuda":
        smoke.result["max_memory_allocated_gib"] = (
            torch.cuda.max_memory_allocated(smoke.device) / 2**30
        )
    smoke.save()


if __name__ == "__main__":
    main()
