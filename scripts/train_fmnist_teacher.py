"""Train the shipped Fashion-MNIST teacher: PGD adversarial training (SATTrainer) of the
registry's ``teacher-cnn`` at L-inf eps 0.1, then evaluation on the test set.

    python scripts/train_fmnist_teacher.py --out runs/fmnist-teacher

Resumable: rerun the same command after an interruption. Writes ``<out>/teacher.pt``
(state dict), ``<out>/checkpoint/`` and ``<out>/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from dard_plugin.attacks.pgd import cross_entropy_objective, pgd_linf
from dard_plugin.data import load_dataset, standard_augment
from dard_plugin.models import create
from dard_plugin.training import SATTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/fmnist-teacher"))
    parser.add_argument("--n-train", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)

    x, y = load_dataset("fashion-mnist", n_examples=args.n_train)
    x_test, y_test = load_dataset("fashion-mnist", train=False)
    generator = torch.Generator().manual_seed(args.seed)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        model = create("teacher-cnn", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    milestones = [int(args.epochs * 0.6), int(args.epochs * 0.8)]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    trainer = SATTrainer(
        model, optimizer=optimizer, seed=args.seed, device=args.device,
        attack={"eps": args.eps, "alpha": args.eps / 4, "steps": args.steps},
        checkpoint_dir=args.out / "checkpoint", resume=True, verbose=True,
    )
    started = time.time()
    history = trainer.fit(x, y, validation_data=(x_test[:1000], y_test[:1000]),
                          batch_size=args.batch_size, nb_epochs=args.epochs,
                          scheduler=scheduler, augment=standard_augment("fashion-mnist",
                                                                        seed=args.seed))
    model.eval()
    clean = robust = 0
    for start in range(0, len(x_test), 500):
        xb, yb = x_test[start : start + 500], y_test[start : start + 500]
        adversarial = pgd_linf(model, xb, yb, cross_entropy_objective, eps=args.eps,
                               alpha=args.eps / 4, steps=20, random_start=True,
                               generator=torch.Generator().manual_seed(start))
        with torch.no_grad():
            clean += int((model(xb).argmax(1) == yb).sum())
            robust += int((model(adversarial).argmax(1) == yb).sum())
    metrics = {
        "command": "python scripts/train_fmnist_teacher.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "n_test": len(x_test), "clean_accuracy": clean / len(x_test),
        "pgd20_accuracy": robust / len(x_test), "eps": args.eps,
        "train_seconds_this_run": time.time() - started, "history": history,
    }
    torch.save(model.state_dict(), args.out / "teacher.pt")
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    logging.info("test: clean %.4f, PGD-20 %.4f", metrics["clean_accuracy"],
                 metrics["pgd20_accuracy"])


if __name__ == "__main__":
    main()
