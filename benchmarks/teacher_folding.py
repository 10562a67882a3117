"""What folding a frozen teacher's BatchNorm (``training.models.fold_batch_norm``, on by
default in every trainer) saves: the teacher's forward and input-gradient pass, the unit of
AdaAD's and online DARD's attack steps, and whole AdaAD epochs of ``tiny-cnn`` under the
shipped Fashion-MNIST teacher, with the teacher as given (``fold_teacher=False``) against
folded.

Same process, same data, interleaved rounds, medians; channels-last as the trainers use it
on CPU.

    OMP_NUM_THREADS=1 python benchmarks/teacher_folding.py --threads 1 \\
        --out benchmarks/results/teacher_folding.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _provenance import provenance  # benchmarks/_provenance.py, beside this script

from dard_plugin.models import create
from dard_plugin.teachers import load_teacher
from dard_plugin.training import AdaADTrainer
from dard_plugin.training.models import fold_batch_norm


def seconds(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def teacher_pass(model: torch.nn.Module, x: torch.Tensor) -> None:
    x = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    torch.autograd.grad(model(x).logsumexp(1).sum(), x)


def adaad_epoch(folded: bool, x: torch.Tensor, y: torch.Tensor, steps: int) -> Callable[[], Any]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        student = create("tiny-cnn", dataset="fashion-mnist")
    teacher = load_teacher("dard-fmnist-teacher", dataset="fashion-mnist")
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    attack = {"eps": 0.1, "alpha": 0.025, "steps": steps}
    trainer = AdaADTrainer(
        student, teacher, optimizer=optimizer, attack=attack, fold_teacher=folded, verbose=False
    )
    return lambda: trainer.fit(x, y, batch_size=128, nb_epochs=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=512, help="images per AdaAD epoch")
    parser.add_argument("--steps", type=int, default=10, help="attack steps")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher_folding.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.n_train, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (args.n_train,), generator=generator)
    teacher = load_teacher("dard-fmnist-teacher").to(memory_format=torch.channels_last)
    folded = fold_batch_norm(teacher).to(memory_format=torch.channels_last)
    rows: dict[str, Callable[[], Any]] = {
        "teacher_pass_given": lambda: teacher_pass(teacher, x[:128]),
        "teacher_pass_folded": lambda: teacher_pass(folded, x[:128]),
        "adaad_epoch_given": adaad_epoch(False, x, y, args.steps),
        "adaad_epoch_folded": adaad_epoch(True, x, y, args.steps),
    }
    for row in rows.values():  # warm-up
        row()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, row in rows.items():
            times[name].append(seconds(row))
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "benchmark": "teacher_folding",
        "settings": vars(args) | {"out": str(args.out), "batch_size": 128},
        "median_seconds": medians,
        "folded_over_given": {
            "teacher_pass": medians["teacher_pass_folded"] / medians["teacher_pass_given"],
            "adaad_epoch": medians["adaad_epoch_folded"] / medians["adaad_epoch_given"],
        },
        "seconds": times,
        "provenance": provenance(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["folded_over_given"], indent=2))


if __name__ == "__main__":
    main()
