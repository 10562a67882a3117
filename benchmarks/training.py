"""Training cost: seconds per epoch of every method of the registry (SAT, ARD, RSLAD,
DARD with cached and online teacher targets, IAD, AdaAD, AdaAD + IGDM, MTARD; online
targets unless said) and ART's AdversarialTrainerMadryPGD at equal attack steps, each
also relative to SAT.

Same process, same student architecture and data, interleaved rounds, medians. Each
trainer object is created once; every round runs one more epoch of each, so the cached
targets are built once (reported separately) and the steady-state epoch is timed.

    python benchmarks/training.py --out benchmarks/results/training.json
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _provenance import provenance  # benchmarks/_provenance.py, beside this script
from art.defences.trainer import AdversarialTrainerMadryPGD
from art.estimators.classification import PyTorchClassifier
from torch import nn

from dard_plugin.data import load_dataset
from dard_plugin.models import create
from dard_plugin.training import METHODS, DARDTrainer, SATTrainer, build_trainer


def fresh_student(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        student = create("small-cnn", num_classes=10)
    return student, torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--teacher",
        default="dard-fmnist-teacher",
        help="teacher name (shipped) or 'random' for a random teacher-cnn",
    )
    parser.add_argument(
        "--natural-teacher",
        default="random",
        help="MTARD's natural teacher: a name load_teacher knows, or 'random' for a random "
        "teacher-cnn (the cost does not depend on its weights)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x, y = load_dataset("fashion-mnist", n_examples=args.n_train)
    if args.teacher == "random":
        teacher = create("teacher-cnn", num_classes=10).eval()
    else:
        from dard_plugin import load_teacher

        teacher = load_teacher(args.teacher)
    attack = {"eps": args.eps, "alpha": args.eps / 4, "steps": args.steps}
    common = {"attack": attack, "verbose": False, "seed": 0}

    runners: dict[str, Callable[[], object]] = {}
    student, optimizer = fresh_student()
    sat = SATTrainer(student, optimizer=optimizer, **common)
    runners["SATTrainer"] = lambda: sat.fit(x, y, batch_size=args.batch_size, nb_epochs=1)
    student, optimizer = fresh_student()
    cached = DARDTrainer(student, teacher, optimizer=optimizer, teacher_targets="cached", **common)
    started = time.perf_counter()
    cached.fit(x, y, batch_size=args.batch_size, nb_epochs=1)  # builds the cache, once
    first_cached_epoch = time.perf_counter() - started
    runners["DARDTrainer (cached)"] = lambda: cached.fit(
        x, y, batch_size=args.batch_size, nb_epochs=1
    )
    student, optimizer = fresh_student()
    online = DARDTrainer(student, teacher, optimizer=optimizer, teacher_targets="online", **common)
    runners["DARDTrainer (online)"] = lambda: online.fit(
        x, y, batch_size=args.batch_size, nb_epochs=1
    )
    if args.natural_teacher == "random":
        with torch.random.fork_rng():
            torch.manual_seed(1)
            natural = create("teacher-cnn", num_classes=10).eval()
    else:
        from dard_plugin import load_teacher

        natural = load_teacher(args.natural_teacher)
    for name, spec in METHODS.items():
        if name in ("sat", "dard") or not spec.needs_teacher:
            continue  # SAT and DARD above (both kinds of targets); natural: no attack
        student, optimizer = fresh_student()
        trainer = build_trainer(
            name,
            student,
            teacher,
            natural_teacher=natural if spec.needs_natural_teacher else None,
            optimizer=optimizer,
            **common,
        )
        runners[f"{spec.trainer.__name__} ({name})"] = functools.partial(
            trainer.fit, x, y, batch_size=args.batch_size, nb_epochs=1
        )
    student, optimizer = fresh_student()
    classifier = PyTorchClassifier(
        model=student,
        loss=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    madry = AdversarialTrainerMadryPGD(
        classifier,
        nb_epochs=1,
        batch_size=args.batch_size,
        eps=args.eps,
        eps_step=args.eps / 4,
        max_iter=args.steps,
        num_random_init=1,
    )
    y_onehot = np.eye(10, dtype=np.float32)[y.numpy()]
    x_numpy = x.numpy()
    runners["ART AdversarialTrainerMadryPGD"] = lambda: madry.fit(x_numpy, y_onehot)
    # Our trainers put the models in channels-last format; ART leaves the format to the
    # user. This row gives ART the same model format, to separate the two effects.
    student, optimizer = fresh_student()
    student = student.to(memory_format=torch.channels_last)
    classifier_cl = PyTorchClassifier(
        model=student,
        loss=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    madry_cl = AdversarialTrainerMadryPGD(
        classifier_cl,
        nb_epochs=1,
        batch_size=args.batch_size,
        eps=args.eps,
        eps_step=args.eps / 4,
        max_iter=args.steps,
        num_random_init=1,
    )
    runners["ART AdversarialTrainerMadryPGD (channels-last model)"] = lambda: madry_cl.fit(
        x_numpy, y_onehot
    )

    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():  # interleaved
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    sat_time = medians["SATTrainer"]
    ratios = {
        "DARD cached / SAT": medians["DARDTrainer (cached)"] / sat_time,
        "DARD online / SAT": medians["DARDTrainer (online)"] / sat_time,
        **{
            f"{name.split('(')[1].rstrip(')')} / SAT": median / sat_time
            for name, median in medians.items()
            if "(" in name and not name.startswith(("DARD", "ART"))
        },
        "ART Madry / our SAT": medians["ART AdversarialTrainerMadryPGD"] / sat_time,
        "ART Madry (channels-last model) / our SAT": medians[
            "ART AdversarialTrainerMadryPGD (channels-last model)"
        ]
        / sat_time,
    }
    result = {
        "benchmark": "training",
        "settings": vars(args)
        | {"out": str(args.out), "student": "small-cnn", "dataset": "fashion-mnist train slice"},
        "provenance": provenance(),
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "seconds_per_epoch_median": medians,
        "seconds_per_epoch_all": times,
        "images_per_second": {n: args.n_train / m for n, m in medians.items()},
        "ratios": ratios,
        "cached_first_epoch_seconds_including_cache_build": first_cached_epoch,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for name, median in medians.items():
        print(f"{name:<32} {median:7.2f} s/epoch  {args.n_train / median:7.1f} img/s")
    for name, ratio in ratios.items():
        print(f"{name:<32} x{ratio:.3f}")
    print(f"cached: first epoch with the cache build {first_cached_epoch:.2f} s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
