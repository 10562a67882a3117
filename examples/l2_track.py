"""The L2 track: DARD trained against an L2 attack and evaluated at an L2 budget, on
Fashion-MNIST (offline: the IDX files of Debian's dataset-fashion-mnist, which
scripts/install.sh installs).

The student (the small CNN) learns from the shipped teacher ``dard-fmnist-teacher``;
``attack={"norm": "L2", ...}`` makes the student's DPGD and the teacher's DPGD L2 (step
eps / 4; a ``validation_data`` given to ``fit``, which this script does not give, would be
attacked in L2 too), and ``evaluate(..., norm="L2")`` runs the L2 form of every
row (FGM, PGD-L2, DPGD-L2, APGD-CE L2). The budget 1.5 is the package's L2 default for 28x28
grey images (docs/training.md); the teacher was trained for L-inf eps 0.1 and is evaluated
beside the student at the same L2 budget.

    python examples/l2_track.py --n-train 10000 --epochs 5 --n-test 500 --out runs/l2
    python examples/l2_track.py --fast --out runs/l2-fast   # 256 images, 1 epoch, 2 steps

The learning rate and epochs are the L-inf demo's, not tuned for L2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _common import parse_args

from dard_plugin import DARDTrainer, evaluate, load_teacher
from dard_plugin.data import load_dataset, standard_augment
from dard_plugin.models import create


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--eps", type=float, default=1.5, help="L2 budget")
    parser.add_argument("--steps", type=int, default=10, help="DPGD steps in training")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/l2_track")
    args = parse_args(parser, fast={"n_train": 256, "n_test": 32, "epochs": 1, "steps": 2})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    teacher = load_teacher("dard-fmnist-teacher")
    torch.manual_seed(args.seed)  # the student's initial weights
    student = create("small-cnn", dataset="fashion-mnist")
    optimizer = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    trainer = DARDTrainer(
        student,
        teacher,
        optimizer=optimizer,
        attack={"norm": "L2", "eps": args.eps, "steps": args.steps},
        teacher_targets="cached",
        seed=args.seed,
        verbose=not args.fast,
    )
    x_train, y_train = load_dataset("fashion-mnist", n_examples=args.n_train)
    history = trainer.fit(
        x_train,
        y_train,
        batch_size=128,
        nb_epochs=args.epochs,
        augment=standard_augment("fashion-mnist", seed=args.seed),
    )
    print(f"trained {args.epochs} epoch(s); last epoch: {json.dumps(history[-1])}")
    student.eval()  # the trainer leaves the student in train mode

    x_test, y_test = load_dataset("fashion-mnist", train=False, n_examples=args.n_test)
    models = {
        "student": (student, f"DARD small-cnn student (L2 {args.eps:g})"),
        "teacher": (teacher, "dard-fmnist-teacher"),
    }
    for file_stem, (model, model_name) in models.items():
        report = evaluate(
            model,
            x_test,
            y_test,
            eps=args.eps,
            norm="L2",
            attacks=("clean", "fgsm", "pgd", "dpgd", "apgd-ce"),
            seed=args.seed,
            model_name=model_name,
            verbose=False,
        )
        report.to_json(out / f"{file_stem}.json")
        print(report.to_markdown())
    print(f"written: {out / 'student.json'}, {out / 'teacher.json'}")


if __name__ == "__main__":
    main()
