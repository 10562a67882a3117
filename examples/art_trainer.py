"""DARD as an ART trainer, in ART's own types: a PyTorchClassifier student, numpy arrays
with one-hot labels to ``fit``, an ART ``PyTorchDataGenerator`` to ``fit_generator``, a run
interrupted and resumed from its checkpoint, SAT with an ART ``ProjectedGradientDescent``
object as its attack (as ART's own trainers take one), and ``get_classifier()`` attacked by
ART's PGD and by ``DicePGD`` (offline, the shipped Fashion-MNIST teacher).

    python examples/art_trainer.py --n-train 5000 --epochs 4 --out runs/art-trainer
    python examples/art_trainer.py --fast     # seconds: 512 training, 64 test images
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import parse_args
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.data_generators import PyTorchDataGenerator
from art.estimators.classification import PyTorchClassifier
from torch import nn

from dard_plugin import DARDTrainer, SATTrainer, load_teacher
from dard_plugin.art import DicePGD
from dard_plugin.data import load_dataset
from dard_plugin.models import create


def art_student(lr: float, seed: int) -> PyTorchClassifier:
    """A fresh ``small-cnn`` wrapped as ART wraps a PyTorch model (the trainer takes the
    model, the optimizer and the clip values from it)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = create("small-cnn", num_classes=10)
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )


def robust_accuracy(classifier: PyTorchClassifier, x: np.ndarray, y: np.ndarray, eps: float) -> str:
    """Clean, ART PGD-10 and DicePGD-10 accuracy of an ART classifier, as one line."""

    def accuracy(inputs: np.ndarray) -> float:
        return float((classifier.predict(inputs).argmax(1) == y).mean())

    common = {"eps": eps, "eps_step": eps / 4, "max_iter": 10, "verbose": False}
    pgd = ProjectedGradientDescentPyTorch(classifier, num_random_init=0, **common)
    dice = DicePGD(classifier, **common)
    return (
        f"clean {accuracy(x):.3f}, ART PGD-10 {accuracy(pgd.generate(x, y)):.3f}, "
        f"DicePGD-10 {accuracy(dice.generate(x, y)):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each run (at least 2)")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=0.015, help="the leaderboard's DARD rate")
    parser.add_argument("--out", type=Path, help="checkpoints here (default: a temporary folder)")
    args = parse_args(parser, fast={"n_train": 512, "n_test": 64, "epochs": 2})
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the run is interrupted after the first)")
    out = args.out or Path(tempfile.mkdtemp(prefix="art-trainer-"))

    x, labels = (t.numpy() for t in load_dataset("fashion-mnist", n_examples=args.n_train))
    y = np.eye(10, dtype=np.float32)[labels]  # one-hot rows, as ART's own trainers take them
    x_test, y_test = (
        t.numpy() for t in load_dataset("fashion-mnist", train=False, n_examples=args.n_test)
    )
    teacher = load_teacher("dard-fmnist-teacher")
    settings = {
        "attack": {"eps": args.eps, "alpha": args.eps / 4, "steps": 10},
        "teacher_targets": "cached",  # the teacher's DPGD examples, built once per run
        "checkpoint_dir": out / "dard",
        "resume": True,
        "verbose": False,
    }

    # 1. fit on numpy arrays, stopped after one epoch as if the job had been killed ...
    # (a rerun with the same --out finds the run there and resumes it instead)
    if not (out / "dard" / "checkpoint.pt").exists():
        first = DARDTrainer(art_student(args.lr, seed=0), teacher, **settings)
        first.fit(x, y, batch_size=128, nb_epochs=1)
    # ... and resumed by a new trainer, as a new process would: it loads the checkpoint (weights,
    # optimizer, cached targets, history) and trains only the epochs left
    student = art_student(args.lr, seed=0)
    resumed = DARDTrainer(student, teacher, **settings)
    history = resumed.fit(x, y, batch_size=128, nb_epochs=args.epochs)
    print(
        f"DARD: resumed after epoch {len(history) - resumed.epochs_run} of {args.epochs}, "
        f"trained {resumed.epochs_run} more; history of {len(history)} epochs in {out / 'dard'}"
    )
    print(f"  DARD student: {robust_accuracy(resumed.get_classifier(), x_test, y_test, args.eps)}")

    # 2. SAT, the baseline, from an ART DataGenerator (a torch DataLoader behind it), with
    # an ART attack object built on the classifier being trained, as ART's trainers take one
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
        batch_size=128,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    generator = PyTorchDataGenerator(loader, size=len(x), batch_size=128)
    sat_student = art_student(0.04, seed=0)
    art_pgd = ProjectedGradientDescentPyTorch(
        sat_student, eps=args.eps, eps_step=args.eps / 4, max_iter=10, num_random_init=1,
        batch_size=128, verbose=False,
    )  # fmt: skip
    sat = SATTrainer(sat_student, attack=art_pgd, verbose=False)
    sat.fit_generator(generator, nb_epochs=args.epochs)
    print(f"  SAT student: {robust_accuracy(sat.get_classifier(), x_test, y_test, args.eps)}")
    print(f"(first {args.n_test} test images, eps {args.eps}, {args.n_train} training images)")


if __name__ == "__main__":
    main()
