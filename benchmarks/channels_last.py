"""Channels-last memory format against the default (NCHW): seconds per SAT epoch of the
trainers with ``channels_last=True`` and ``False``, per architecture, and their ratio.

Same process, same student weights, data and seed, interleaved rounds, medians. The
Fashion-MNIST students train on the first ``--n-train`` training images; the CIFAR
architectures (``--arch resnet18`` ...) on random 3x32x32 images (throughput only).

    python benchmarks/channels_last.py --out benchmarks/results/channels_last.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from _provenance import provenance  # benchmarks/_provenance.py, beside this script

from dard_plugin.data import load_dataset
from dard_plugin.models import create
from dard_plugin.training import SATTrainer

FASHION = ("small-cnn", "tiny-cnn", "teacher-cnn")


def trainer(arch: str, channels_last: bool, eps: float, steps: int) -> SATTrainer:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        student = create(arch, num_classes=10)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    attack = {"eps": eps, "alpha": eps / 4, "steps": steps}
    return SATTrainer(
        student,
        optimizer=optimizer,
        attack=attack,
        channels_last=channels_last,
        verbose=False,
        seed=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default=",".join(FASHION), help="comma-separated")
    parser.add_argument("--n-train", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/channels_last.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    fashion = load_dataset("fashion-mnist", n_examples=args.n_train)
    generator = torch.Generator().manual_seed(0)
    cifar = (
        torch.rand(args.n_train, 3, 32, 32, generator=generator),
        torch.randint(0, 10, (args.n_train,), generator=generator),
    )
    load_at_start = os.getloadavg()
    results = {}
    for arch in archs:
        x, y = fashion if arch in FASHION else cifar
        runs = {cl: trainer(arch, cl, args.eps, args.steps) for cl in (False, True)}
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for cl, run in runs.items():  # interleaved
                started = time.perf_counter()
                run.fit(x, y, batch_size=args.batch_size, nb_epochs=1)
                times[cl].append(time.perf_counter() - started)
        nchw, last = statistics.median(times[False]), statistics.median(times[True])
        results[arch] = {
            "seconds_per_epoch_median": {"nchw": nchw, "channels_last": last},
            "seconds_per_epoch_all": {"nchw": times[False], "channels_last": times[True]},
            "speedup_channels_last": nchw / last,
            "channels_last_used": runs[True].channels_last,
        }
        print(f"{arch:<16} NCHW {nchw:6.2f} s  channels-last {last:6.2f} s  x{nchw / last:.2f}")
    result = {
        "benchmark": "channels_last",
        "settings": vars(args) | {"out": str(args.out)},
        "provenance": provenance(),
        "machine": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
