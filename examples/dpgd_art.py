"""DPGD in an ART workflow: DicePGD on a PyTorchClassifier beside ART's PGD, then as the
attack of ART's own AdversarialTrainer, on a small Fashion-MNIST CNN (offline).

    python examples/dpgd_art.py --n-train 5000 --n-test 500
    python examples/dpgd_art.py --fast     # seconds: 2000 training, 64 test images
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import parse_args, quick_model, test_slice
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.defences.trainer import AdversarialTrainer
from art.estimators.classification import PyTorchClassifier
from torch import nn

from dard_plugin.art import DicePGD
from dard_plugin.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument(
        "--n-adv-train", type=int, default=2000, help="images for ART's AdversarialTrainer"
    )
    args = parse_args(parser, fast={"n_train": 2000, "n_test": 64, "epochs": 1, "n_adv_train": 256})

    model = quick_model(args.n_train, args.epochs)
    classifier = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    images, labels = test_slice(args.n_test)
    x, y = images.numpy(), labels.numpy()

    def accuracy(inputs: np.ndarray) -> float:
        return float((classifier.predict(inputs).argmax(1) == y).mean())

    dice = DicePGD(classifier, eps=args.eps, eps_step=args.eps / 4, max_iter=10, verbose=False)
    pgd = ProjectedGradientDescentPyTorch(
        classifier,
        eps=args.eps,
        eps_step=args.eps / 4,
        max_iter=10,
        num_random_init=0,
        verbose=False,
    )
    print(f"clean accuracy: {accuracy(x):.3f} on {args.n_test} test images")
    print(f"  ART DicePGD: robust accuracy {accuracy(dice.generate(x, y)):.3f} at eps {args.eps}")
    print(f"  ART PGD (CE): robust accuracy {accuracy(pgd.generate(x, y)):.3f} at eps {args.eps}")

    # DicePGD as the attack of ART's own adversarial trainer (one short epoch)
    train_x, train_y = load_dataset("fashion-mnist", n_examples=args.n_adv_train)
    trainer = AdversarialTrainer(
        classifier,
        attacks=DicePGD(classifier, eps=args.eps, eps_step=args.eps / 4, max_iter=3),
        ratio=0.5,
    )
    trainer.fit(
        train_x.numpy(), np.eye(10, dtype=np.float32)[train_y.numpy()], nb_epochs=1, batch_size=128
    )
    print(
        f"after 1 epoch of ART AdversarialTrainer with DicePGD: clean {accuracy(x):.3f}, "
        f"DicePGD {accuracy(dice.generate(x, y)):.3f}"
    )


if __name__ == "__main__":
    main()
