"""Attack cost and strength: DPGD (torchattacks and ART faces) against PGD (torchattacks, ART).

Same process, same model, same batch, equal steps; the four attacks are timed in
interleaved rounds and the median per attack is reported, with ratios to torchattacks' PGD
(``--norm L2``: DPGDL2, DicePGD(norm=2), ART's PGD norm=2, against torchattacks' PGDL2).
Robust accuracy of each attack is measured on a normally trained Fashion-MNIST CNN.

    python benchmarks/attacks.py --out benchmarks/results/attacks.json
    python benchmarks/attacks.py --norm L2 --eps 1.5 --out benchmarks/results/attacks_l2.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torchattacks
from _provenance import provenance  # benchmarks/_provenance.py, beside this script
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.estimators.classification import PyTorchClassifier
from torch import nn

import dard_plugin
from dard_plugin.art import DicePGD
from dard_plugin.attacks import DPGDL2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _common import accuracy, quick_model, test_slice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-eval", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--norm", choices=("Linf", "L2"), default="Linf")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/attacks.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()  # other work on the machine, for reading the timings

    model = quick_model(args.n_train, epochs=2)
    classifier = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0, 1),
    )
    alpha = args.eps / 4
    steps = args.steps
    l2 = args.norm == "L2"
    art_norm = 2 if l2 else float("inf")
    art_common = {
        "eps": args.eps,
        "eps_step": alpha,
        "max_iter": steps,
        "batch_size": args.batch_size,
        "verbose": False,
    }
    reference_name = "torchattacks.PGDL2" if l2 else "torchattacks.PGD"
    dpgd_face = (
        DPGDL2(model, eps=args.eps, alpha=alpha, steps=steps)
        if l2
        else dard_plugin.DPGD(model, eps=args.eps, alpha=alpha, steps=steps)
    )
    reference = (torchattacks.PGDL2 if l2 else torchattacks.PGD)(
        model, eps=args.eps, alpha=alpha, steps=steps, random_start=False
    )
    attacks = {
        "dard_plugin.attacks.DPGDL2" if l2 else "dard_plugin.DPGD": dpgd_face,
        "dard_plugin.art.DicePGD": DicePGD(classifier, norm=art_norm, **art_common),
        reference_name: reference,
        "art.ProjectedGradientDescentPyTorch": ProjectedGradientDescentPyTorch(
            classifier, norm=art_norm, num_random_init=0, **art_common
        ),
    }

    def run(name: str, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        attack = attacks[name]
        if name.startswith("dard_plugin.art") or name.startswith("art."):
            return torch.from_numpy(attack.generate(images.numpy(), labels.numpy()))
        return attack(images, labels)

    images, labels = test_slice(args.n_eval)
    batch, batch_labels = images[: args.batch_size], labels[: args.batch_size]
    for name in attacks:  # warm-up
        run(name, batch, batch_labels)
    times: dict[str, list[float]] = {name: [] for name in attacks}
    for _ in range(args.repeats):
        for name in attacks:  # interleaved: drifts in machine load hit every attack alike
            start = time.perf_counter()
            run(name, batch, batch_labels)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    reference_median = medians[reference_name]
    # paired: the ratio within each round, then the median over rounds (robust to drift)
    paired = {
        name: statistics.median(a / b for a, b in zip(values, times[reference_name], strict=True))
        for name, values in times.items()
    }

    robust = {}
    for name in attacks:
        adversarial = torch.cat(
            [
                run(name, images[i : i + args.batch_size], labels[i : i + args.batch_size])
                for i in range(0, len(images), args.batch_size)
            ]
        )
        robust[name] = accuracy(model, adversarial, labels)

    result = {
        "benchmark": "attacks",
        "settings": vars(args)
        | {
            "out": str(args.out),
            "model": "small-cnn (registry)",
            "dataset": "fashion-mnist test",
            "alpha": alpha,
        },
        "provenance": provenance(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_1_5_15_min_at_start": load_at_start,
        },
        "clean_accuracy": accuracy(model, images, labels),
        "seconds_per_call_median": medians,
        "reference": reference_name,
        "ratio_to_torchattacks_pgd": paired,
        "ratio_of_medians": {n: m / reference_median for n, m in medians.items()},
        "seconds_per_call_all": times,
        "robust_accuracy": robust,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    width = max(map(len, attacks))
    print(f"clean accuracy {result['clean_accuracy']:.3f} on {args.n_eval} images, eps {args.eps}")
    for name in attacks:
        print(
            f"{name:<{width}}  {1000 * medians[name]:8.1f} ms  "
            f"x{paired[name]:5.3f}  robust acc {robust[name]:.3f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
