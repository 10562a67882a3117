"""Compare robust distillation methods on one student, the leaderboard's way in miniature:
every method named on the command line is trained by ``dard_plugin.recipes.distill`` from
the shipped Fashion-MNIST teachers (``dard-fmnist-teacher``; MTARD also
``dard-fmnist-teacher-natural``), validated on held-out training images, then evaluated the
same way: clean accuracy and the worst case per sample over FGSM, PGD, DPGD and APGD-CE at
L-inf eps 0.1. It prints a markdown table and writes ``results.json``.

    python examples/compare_methods.py --methods sat,ard,rslad,dard,iad,mtard \\
        --student tiny-cnn --n-train 10000 --epochs 15 --out runs/compare
    python examples/compare_methods.py --fast --out runs/compare-fast  # seconds, 3 methods

Every method runs at its own learning rate from ``--lr METHOD=LR,...`` (default: the
learning rates the leaderboard selected on validation for ``--student``, where known,
else the method's default), since one shared rate favours whichever method it happens to
suit. A tiny student may stay at chance under plain SAT; ``--eps-warmup-epochs`` ramps the
attack budget (docs/leaderboard.md). The numbers of a short run mean little: for the
measured comparison, three seeds and AutoAttack, see docs/leaderboard.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import parse_args

from dard_plugin import evaluate, load_teacher
from dard_plugin.data import load_dataset
from dard_plugin.recipes import default_lr, distill
from dard_plugin.training.registry import METHODS

EPS = 0.1
# the leaderboard's validation-selected learning rates (docs/leaderboard.md, 15-epoch grids
# on 10,000 images), per student, where its grid is complete; tests/test_examples.py holds
# them to the committed unit files
# (rows left at chance at every rate, plain SAT and IAD on tiny-cnn, keep the defaults)
SELECTED_LR = {
    "small-cnn": {
        "sat": 0.04, "ard": 0.015, "rslad": 0.04, "dard": 0.015, "iad": 0.04, "adaad": 0.04,
        "mtard": 0.1,
    },
    "tiny-cnn": {"ard": 0.015, "rslad": 0.1, "dard": 0.015, "adaad": 0.04, "mtard": 0.1},
}  # fmt: skip


def learning_rates(text: str, student: str) -> dict[str, float]:
    """``--lr`` as ``{method: lr}`` over the leaderboard's selections for ``student``."""
    rates = dict(SELECTED_LR.get(student, {}))
    for item in filter(None, (part.strip() for part in text.split(","))):
        method, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--lr takes METHOD=LR pairs, got {item!r}")
        rates[method.strip()] = float(value)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", default="sat,ard,rslad,dard,iad,mtard")
    parser.add_argument("--student", default="tiny-cnn")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10, help="attack steps in training")
    parser.add_argument("--lr", default="", help="METHOD=LR,... over the defaults")
    parser.add_argument("--eps-warmup-epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/compare_methods")
    args = parse_args(
        parser,
        fast={"methods": "sat,iad,mtard", "n_train": 128, "n_test": 16, "epochs": 1, "steps": 2},
    )
    if args.eps_warmup_epochs is not None and args.eps_warmup_epochs > args.epochs:
        raise SystemExit(
            f"--eps-warmup-epochs {args.eps_warmup_epochs} is longer than --epochs {args.epochs}"
            " (--fast trains 1): the attack would never reach its budget"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    rates = learning_rates(args.lr, args.student)
    teacher = load_teacher("dard-fmnist-teacher")
    natural = None
    if any(METHODS[m].needs_natural_teacher for m in methods):
        natural = load_teacher("dard-fmnist-teacher-natural")
    x_test, y_test = load_dataset("fashion-mnist", train=False, n_examples=args.n_test)

    results = {}
    for method in methods:
        result = distill(
            method=method,
            teacher=teacher if METHODS[method].needs_teacher else None,
            **({"natural_teacher": natural} if METHODS[method].needs_natural_teacher else {}),
            student_arch=args.student,
            n_train=args.n_train,
            n_val=min(1000, args.n_train),
            epochs=args.epochs,
            lr=rates.get(method),
            eps=EPS,
            steps=args.steps,
            seed=args.seed,
            eps_warmup_epochs=args.eps_warmup_epochs,
            out_dir=out / method,
            overwrite=True,
            verbose=not args.fast,
        )
        report = evaluate(
            result.student,
            x_test,
            y_test,
            eps=EPS,
            attacks=["fgsm", "pgd", "dpgd", "apgd-ce"],
            verbose=False,
            model_name=f"{method} {args.student}",
        )
        results[method] = {
            # the rate that ran: the selection or --lr, else distill's default for the method
            "lr": rates.get(method, default_lr(method)),
            "lr_is_default": method not in rates,
            "clean_accuracy": report.clean_accuracy,
            "worst_case": report.robust_accuracy,
            "per_attack": report.per_attack,
            "training_seconds": result.seconds,
            "validation_pgd_last_epoch": result.history[-1].get("pgd_accuracy"),
        }

    print(f"{args.student}, {args.n_train} training images, {args.epochs} epoch(s), seed "
          f"{args.seed}; {args.n_test} test images, L-inf eps {EPS:g}:")  # fmt: skip
    print(
        "\n| method | lr | clean | worst case | training (s) |\n| --- | ---: | ---: | ---: | ---: |"
    )
    for method, row in results.items():
        lr = f"{row['lr']:g}" + (" (default)" if row["lr_is_default"] else "")
        print(
            f"| {method} | {lr} | {100 * row['clean_accuracy']:.1f} | "
            f"{100 * row['worst_case']:.1f} | {row['training_seconds']:.1f} |"
        )
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {out / 'results.json'}")


if __name__ == "__main__":
    main()
