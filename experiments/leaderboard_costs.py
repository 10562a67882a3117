"""The leaderboard's compute plan, measured: each method's training cost per batch on each
student at reduced size (a few batches of 128, one CPU thread), extrapolated to an epoch of
``N_TRAIN`` images, and the per-epoch validation, into ``costs/<this machine>.json``.
``leaderboard.py plan`` reads the file of the machine it runs on (ratios to SAT on the same
student), and the report the file of a row's machine where no SAT final ran on it.

An epoch's cost is the trainer's own epoch timer (``history[i]["seconds"]``, the quantity
every leaderboard unit records), the least over the steady epochs after the first: no
set-up cost is subtracted out, so a few batches suffice. It is wall time: measure on a
quiet machine (pause the leaderboard's workers).

    OMP_NUM_THREADS=1 python experiments/leaderboard_costs.py --threads 1 --rounds 3

Methods this installation lacks are reported as such. MTARD's natural teacher is
``dard-fmnist-teacher-natural`` where it is shipped, else the adversarial teacher stands in
(the same architecture: the same cost).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from leaderboard_design import (
    EPS,
    METHODS,
    N_TRAIN,
    N_VAL_CURVE,
    N_VALIDATION,
    NATURAL_TEACHER,
    STUDENTS,
    TEACHER,
    available_methods,
    cost_file_name,
)
from study_runner import command_line, provenance

from dard_plugin.attacks.pgd import cross_entropy_objective, pgd_linf
from dard_plugin.models import create
from dard_plugin.recipes import distill
from dard_plugin.teachers import load_teacher
from dard_plugin.teachers.shipped import SHIPPED_TEACHERS

OUT = Path("docs/results/fashion_mnist/leaderboard/costs")  # <this machine>.json inside
BATCH = 128


def validation_seconds(student: str, n: int) -> float:
    """PGD-10 (eps/4 steps, random start) and a clean pass on ``n`` images, as the
    per-epoch validation runs it."""
    model = create(student, dataset="fashion-mnist").eval()
    x, y = torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,))
    started = time.perf_counter()
    for start in range(0, n, 500):
        xb, yb = x[start : start + 500], y[start : start + 500]
        adversarial = pgd_linf(
            model, xb, yb, cross_entropy_objective, eps=EPS, alpha=EPS / 4, steps=10
        )
        with torch.no_grad():
            model(adversarial), model(xb)
    return time.perf_counter() - started


def timed_epochs(
    method: str, options: dict[str, Any], student: str, batches: int, epochs: int
) -> list[float]:
    """The trainer's timer for each epoch of a ``distill`` run of ``batches`` batches."""
    teacher = load_teacher(TEACHER, dataset="fashion-mnist")
    extra: dict[str, Any] = {}
    if method == "mtard":
        name = NATURAL_TEACHER if NATURAL_TEACHER in SHIPPED_TEACHERS else TEACHER
        extra["natural_teacher"] = load_teacher(name, dataset="fashion-mnist")
    with tempfile.TemporaryDirectory() as folder:
        result = distill(
            method=method,
            dataset="fashion-mnist",
            teacher=None if method == "sat" else teacher,
            student_arch=student,
            n_train=batches * BATCH,
            val_split=N_VALIDATION,
            n_val=32,
            epochs=epochs,
            lr=0.01,
            eps=EPS,
            out_dir=folder,
            verbose=False,
            **extra,
            **options,
        )
    return [float(record["seconds"]) for record in result.history]


def measure(method: str, options: dict[str, Any], student: str, batches: int) -> dict[str, Any]:
    """Three epochs: the least of the second and third is a steady epoch of ``batches``
    batches; what the first took beyond it (a target cache, first-call costs) is
    ``first``."""
    first, *steady_epochs = timed_epochs(method, options, student, batches, 3)
    steady = min(steady_epochs)
    return {
        "batch_seconds": steady / batches,
        "epoch_seconds": steady / batches * math.ceil(N_TRAIN / BATCH),
        "first_epoch_extra_seconds": max(0.0, first - steady),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="measure each this often")
    parser.add_argument(
        "--out", default=None, help=f"default {OUT}/<this machine>.json (the report reads them)"
    )
    parser.add_argument("--note", default="", help="recorded as is: e.g. where the code came from")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    have = available_methods()
    costs: dict[str, Any] = {}
    for _ in range(args.rounds):  # the least of the rounds: a shared machine only slows
        for student in STUDENTS:
            timed_epochs("sat", {}, student, 1, 1)  # the first call's one-time costs
            n = 256
            seconds = validation_seconds(student, n) * N_VAL_CURVE / n
            costs[f"validation/{student}"] = min(
                costs.get(f"validation/{student}", seconds), seconds
            )
            for row, (method, options) in METHODS.items():
                key = f"{row}/{student}"
                if method not in have:
                    costs[key] = {"unavailable": f"method {method!r} not installed"}
                    continue
                found = measure(method, options, student, args.batches)
                costs[key] = {k: min(v, costs.get(key, found)[k]) for k, v in found.items()}
                print(key, found, flush=True)
    payload = {
        "what": f"{args.batches} batches of {BATCH}; the trainer's epoch timer, the least of "
        f"epochs 2 and 3 and of {args.rounds} rounds, extrapolated to {N_TRAIN} images",
        "command": command_line(),
        "note": args.note,
        "provenance": provenance(),
        "costs": costs,
    }
    out = Path(args.out) if args.out else OUT / cost_file_name(payload)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
