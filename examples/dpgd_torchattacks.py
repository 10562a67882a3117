"""DPGD in a torchattacks workflow: beside PGD, in MultiAttack, targeted, and saved with
torchattacks' save(), on a small CNN trained for a moment on Fashion-MNIST (offline).

    python examples/dpgd_torchattacks.py --n-train 5000 --n-test 500
    python examples/dpgd_torchattacks.py --fast     # seconds: 2000 training, 64 test images
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torchattacks
from _common import accuracy, parse_args, quick_model, test_slice
from torch.utils.data import DataLoader, TensorDataset

import dard_plugin


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eps", type=float, default=0.1)
    args = parse_args(parser, fast={"n_train": 2000, "n_test": 64, "epochs": 1})

    model = quick_model(args.n_train, args.epochs)
    images, labels = test_slice(args.n_test)
    alpha = args.eps / 4

    attacks = {
        "DPGD": dard_plugin.DPGD(model, eps=args.eps, alpha=alpha, steps=10),
        "PGD (CE)": torchattacks.PGD(model, eps=args.eps, alpha=alpha, steps=10),
    }
    attacks["MultiAttack(DPGD, PGD)"] = torchattacks.MultiAttack(list(attacks.values()))

    print(f"clean accuracy: {accuracy(model, images, labels):.3f} on {args.n_test} test images")
    for name, attack in attacks.items():
        adversarial = attack(images, labels)
        print(
            f"{name:>24}: robust accuracy {accuracy(model, adversarial, labels):.3f} "
            f"at eps {args.eps}"
        )

    targeted = dard_plugin.DPGD(model, eps=args.eps, alpha=alpha, steps=10)
    targeted.set_mode_targeted_by_label(quiet=True)
    targets = (labels + 1) % 10
    success = accuracy(model, targeted(images, targets), targets)
    print(f"targeted DPGD (label -> label + 1): success rate {success:.3f}")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dpgd.pt"
        loader = DataLoader(TensorDataset(images, labels), batch_size=256)
        attacks["DPGD"].save(loader, save_path=str(path), verbose=False)
        print(f"saved adversarial examples with torchattacks' save(): {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
