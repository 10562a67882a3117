"""A RobustBench-style AutoAttack evaluation: clean accuracy and AutoAttack (standard version:
APGD-CE, APGD-T, FAB-T, Square; the original algorithm) on the first test images, written as
a JSON report with RobustBench's model_info names (``clean_acc``, ``autoattack_acc``,
``eps`` as ``"8/255"``) and printed as a markdown table.

The default model is the teacher shipped with the package, ``dard-fmnist-teacher``
(Fashion-MNIST, L-inf eps 0.1): offline, no file needed. AutoAttack is resumable: run the
same command again after an interruption and the finished chunks are skipped.

    python examples/autoattack_report.py --n-examples 1000 --out runs/aa
    python examples/autoattack_report.py --model Wong2020Fast --dataset cifar10 \\
        --model-dir ./models --eps 0.03137254901960784 --device cuda --out runs/aa-wong
    python examples/autoattack_report.py --checkpoint student.pt --arch small-cnn --out runs/aa-s
    python examples/autoattack_report.py --fast --out runs/aa-fast   # AutoAttack on 2 images

RobustBench's leaderboard evaluates the 10,000 test images; AutoAttack costs seconds per
robust image on a CPU (about 6 s for the shipped teacher here), so size ``--n-examples``
to your machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _common import parse_args
from torch import nn

from dard_plugin import evaluate, load_teacher
from dard_plugin.data import DATASETS, load_dataset
from dard_plugin.models import list_models
from dard_plugin.teachers import SHIPPED_TEACHERS, load_checkpoint


def load_model(args: argparse.Namespace) -> tuple[nn.Module, str]:
    if args.model_dir is not None and (args.checkpoint or args.model in SHIPPED_TEACHERS):
        raise SystemExit("--model-dir is where a RobustBench name's file is looked up: drop it")
    args.model_dir = args.model_dir or "./models"
    if args.checkpoint is not None:
        if args.arch is None:
            raise SystemExit("--checkpoint needs --arch (one of: " + ", ".join(list_models()) + ")")
        model = load_checkpoint(args.checkpoint, args.arch, dataset=args.dataset)
        return model, Path(args.checkpoint).stem
    # --norm chooses a RobustBench entry; a shipped teacher has its own (any norm attacks it)
    shipped = SHIPPED_TEACHERS.get(args.model)
    teacher = load_teacher(
        args.model,
        dataset=args.dataset,
        threat_model=shipped.threat_model if shipped is not None else args.norm,
        model_dir=args.model_dir,
        device=args.device,
    )
    return teacher, args.model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="dard-fmnist-teacher", help="a teacher name")
    parser.add_argument("--checkpoint", help="evaluate this checkpoint instead (with --arch)")
    parser.add_argument("--arch", help="the checkpoint's architecture (dard_plugin.models)")
    parser.add_argument("--dataset", default="fashion-mnist", choices=list(DATASETS))
    parser.add_argument(
        "--model-dir", help="RobustBench's model folder (default ./models; RobustBench names only)"
    )
    parser.add_argument("--data-root", help="dataset folder (default: the loader's)")
    parser.add_argument("--norm", default="Linf", choices=["Linf", "L2"])
    parser.add_argument(
        "--eps",
        type=float,
        help="budget (default: L-inf 0.1 for Fashion-MNIST, 8/255 for CIFAR; L2 1.5 and 0.5)",
    )
    parser.add_argument("--n-examples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/autoattack_report")
    args = parse_args(parser, fast={"n_examples": 2})

    if args.eps is None:
        grey = args.dataset == "fashion-mnist"
        args.eps = (0.1 if grey else 8 / 255) if args.norm == "Linf" else (1.5 if grey else 0.5)
    model, name = load_model(args)
    model.to(args.device)
    images, labels = load_dataset(
        args.dataset, train=False, root=args.data_root, n_examples=args.n_examples
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = evaluate(
        model,
        images,
        labels,
        eps=args.eps,
        norm=args.norm,
        attacks=("clean", "autoattack"),
        batch_size=args.batch_size,
        seed=args.seed,
        device=torch.device(args.device),
        state_path=out / "autoattack-state.json",
        model_name=name,
        verbose=False,
    )
    report.to_json(out / "report.json")
    (out / "report.md").write_text(report.to_markdown())
    # the report is written: AutoAttack's resumable state (kept while it ran, so that an
    # interrupted run resumes) goes, as `dard evaluate` removes it; a rerun starts afresh
    for state in out.glob("autoattack-state*.json"):
        state.unlink()
    if args.fast:
        print(f"SMOKE RUN (--fast): AutoAttack on {args.n_examples} images only")
    print(report.to_markdown())
    model_info = json.loads((out / "report.json").read_text())
    print(
        "RobustBench model_info fields:",
        {k: v for k, v in model_info.items() if k != "dard_plugin"},
    )
    print(f"written: {out / 'report.json'}, {out / 'report.md'}")


if __name__ == "__main__":
    main()
