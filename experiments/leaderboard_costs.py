"""The leaderboard's compute plan, measured: each method's training cost per batch on each
student at reduced size (a few batches of 128, one CPU thread, in CPU seconds of this
process, which a shared machine hardly changes), extrapolated to an epoch of ``N_TRAIN``
images, and the per-epoch validation, into ``costs/<this machine>.json``. ``leaderboard.py
plan`` reads the file of the machine it runs on (ratios to SAT on the same student), and
the report the file of a row's machine where no SAT final ran on it.

    OMP_NUM_THREADS=1 nice -n 15 python experiments/leaderboard_costs.py --threads 1

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
    started = time.process_time()
    for start in range(0, n, 500):
        xb, yb = x[start : start + 500], y[start : start + 500]
        adversarial = pgd_linf(
            model, xb, yb, cross_entropy_objective, eps=EPS, alpha=EPS / 4, steps=10
        )
        with torch.no_grad():
            model(adversarial), model(xb)
    return time.process_time() - started


def cpu_seconds(
    method: str, options: dict[str, Any], student: str, batches: int, epochs: int
) -> float:
    """This process's CPU time for a whole ``distill`` call: on a shared machine CPU time,
    unlike wall time, hardly depends on what else runs."""
    teacher = load_teacher(TEACHER, dataset="fashion-mnist")
    extra: dict[str, Any] = {}
    if method == "mtard":
        name = NATURAL_TEACHER if NATURAL_TEACHER in SHIPPED_TEACHERS else TEACHER
        extra["natural_teacher"] = load_teacher(name, dataset="fashion-mnist")
    started = time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        distill(
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
    return time.process_time() - started


def measure(method: str, options: dict[str, Any], student: str, batches: int) -> dict[str, Any]:
    """Two epochs less one: the CPU seconds of a steady epoch of ``batches`` batches; what
    the one-epoch run took beyond it (the fixed costs, and a target cache) is ``first``."""
    one = cpu_seconds(method, options, student, batches, 1)
    steady = cpu_seconds(method, options, student, batches, 2) - one
    return {
        "batch_seconds": steady / batches,
        "epoch_seconds": steady / batches * math.ceil(N_TRAIN / BATCH),
        "first_epoch_extra_seconds": max(0.0, one - steady),
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
            cpu_seconds("sat", {}, student, 1, 1)  # the first call's one-time costs
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
        "what": f"{args.batches} batches of {BATCH}, 2 epochs, extrapolated to {N_TRAIN}; "
        f"the least of {args.rounds} rounds",
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
