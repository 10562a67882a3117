"""GPU smoke check at CIFAR shape: CUDA present, bf16 autocast works, DPGD and trainer
throughput (images per second) for DARD online and cached, in fp32 and bf16.

ResNet-18 student, PreActResNet-18 teacher (random weights: throughput only), synthetic
3x32x32 data. One prepared run for a lent GPU machine:

    python benchmarks/gpu_smoke.py --out $OUT/gpu_smoke.json

It also runs on CPU with tiny sizes, to check the script itself:

    python benchmarks/gpu_smoke.py --device cpu --batch-size 4 --n-train 8 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from dard_plugin.attacks.dpgd import dpgd
from dard_plugin.models import create
from dard_plugin.training import DARDTrainer, SATTrainer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(function: Any, device: torch.device, repeats: int) -> float:
    function()  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=2560)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_smoke.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    result: dict[str, Any] = {"device": str(device), "torch": torch.__version__,
                              "platform": platform.platform()}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
        result["bf16_supported"] = torch.cuda.is_bf16_supported()

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.n_train, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (args.n_train,), generator=generator)
    batch = images[: args.batch_size].to(device)
    batch_labels = labels[: args.batch_size].to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        student = create("resnet18", num_classes=10).to(device).eval()
        teacher = create("preact-resnet18", num_classes=10).to(device).eval()

    for precision in ("fp32", "bf16"):
        amp = precision == "bf16"

        def attack(amp: bool = amp) -> torch.Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                return dpgd(student, batch, batch_labels, eps=8 / 255, alpha=2 / 255,
                            steps=10)

        seconds = time_call(attack, device, args.repeats)
        result[f"dpgd_images_per_second_{precision}"] = args.batch_size / seconds
        adversarial = attack()
        result[f"dpgd_max_perturbation_{precision}"] = float((adversarial - batch).abs().max())

        for mode in ("online", "cached"):
            model = create("resnet18", num_classes=10).to(device)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            trainer = DARDTrainer(model, teacher, optimizer=optimizer, teacher_targets=mode,
                                  device=device, amp=amp, verbose=False)
            trainer.fit(images, labels, batch_size=args.batch_size, nb_epochs=1)  # warm-up
            synchronize(device)
            started = time.perf_counter()
            trainer.fit(images, labels, batch_size=args.batch_size, nb_epochs=1)
            synchronize(device)
            result[f"dard_{mode}_images_per_second_{precision}"] = (
                args.n_train / (time.perf_counter() - started))
        model = create("resnet18", num_classes=10).to(device)
        sat = SATTrainer(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                         device=device, amp=amp, verbose=False)
        sat.fit(images, labels, batch_size=args.batch_size, nb_epochs=1)
        synchronize(device)
        started = time.perf_counter()
        sat.fit(images, labels, batch_size=args.batch_size, nb_epochs=1)
        synchronize(device)
        result[f"sat_images_per_second_{precision}"] = args.n_train / (
            time.perf_counter() - started)
    if device.type == "cuda":
        result["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
