"""Distil a RobustBench teacher, by name, into a small student with DARD, then evaluate the
student with AutoAttack (standard version, the original algorithm) as RobustBench does.

Online, the teacher's weights and CIFAR-10 are downloaded on first use:

    python examples/distill_robustbench.py --teacher Wong2020Fast --student mobilenetv2 \\
        --n-train 50000 --epochs 10 --n-test 1000 --device cuda --out runs/wong-dard

Offline, RobustBench reads the teacher from ``<model-dir>/<dataset>/<threat-model>/<name>.pt``
(e.g. ``./models/cifar10/Linf/Wong2020Fast.pt``: put the file there; without it, and
offline, the script stops with one line naming that path) and CIFAR-10 from
``--data-root``; ``--synthetic`` replaces CIFAR by random CIFAR-shaped images (a smoke run:
its accuracies mean nothing). ``--fast`` is such a smoke run of a few seconds (16 random
training images, 1 epoch, 2 attack steps, AutoAttack on 4 images), what the tests run (with
a teacher file of random weights in the expected place); it too needs the teacher's file:

    python examples/distill_robustbench.py --model-dir ./models --fast --out runs/smoke

The settings (SGD at lr 0.05 with a cosine schedule, 10 epochs, DPGD of 10 steps at 8/255,
step 2/255) are untuned starting points; experiments/cifar10.md has a GPU recipe.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _common import parse_args

from dard_plugin import DARDTrainer, evaluate, load_teacher
from dard_plugin.data import DatasetNotFoundError, dataset_info, load_dataset, standard_augment
from dard_plugin.models import create, list_models
from dard_plugin.teachers import TeacherNotFoundError


def synthetic(n: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random CIFAR-shaped images in [0, 1] with random labels: for a smoke run only."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 32, 32, generator=generator)
    return images, torch.randint(0, num_classes, (n,), generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", default="Wong2020Fast", help="a RobustBench model name")
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100"])
    parser.add_argument("--threat-model", default="Linf", choices=["Linf", "L2"])
    parser.add_argument("--model-dir", default="./models", help="RobustBench's model folder")
    parser.add_argument("--data-root", help="where CIFAR is (or is downloaded to)")
    parser.add_argument("--synthetic", action="store_true", help="random images: a smoke run")
    parser.add_argument("--student", default="mobilenetv2", choices=list(list_models()))
    parser.add_argument("--eps", type=float, help="default: 8/255 (Linf) or 0.5 (L2)")
    parser.add_argument("--steps", type=int, default=10, help="DPGD steps in training")
    parser.add_argument("--n-train", type=int, default=50000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--teacher-targets", default="online", choices=["online", "cached"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/distill_robustbench")
    args = parse_args(
        parser,
        fast={"synthetic": True, "n_train": 16, "n_test": 4, "epochs": 1, "steps": 2},
    )
    eps = args.eps or (8 / 255 if args.threat_model == "Linf" else 0.5)
    num_classes = dataset_info(args.dataset).num_classes
    out = Path(args.out)

    # the teacher first: a missing file is one line naming the expected path, before any work
    # (and before --out exists)
    try:
        teacher = load_teacher(
            args.teacher,
            dataset=args.dataset,
            threat_model=args.threat_model,
            model_dir=args.model_dir,
            device=args.device,
        )
    except TeacherNotFoundError as error:
        raise SystemExit(f"distill_robustbench.py: {error}") from None
    out.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        print("SMOKE RUN on random images: the accuracies below mean nothing")
        x_train, y_train = synthetic(args.n_train, num_classes, seed=args.seed)
        x_test, y_test = synthetic(args.n_test, num_classes, seed=args.seed + 1)
        augment = None
    else:
        try:
            x_train, y_train = load_dataset(
                args.dataset, root=args.data_root, n_examples=args.n_train
            )
            x_test, y_test = load_dataset(
                args.dataset, train=False, root=args.data_root, n_examples=args.n_test
            )
        except DatasetNotFoundError as error:
            raise SystemExit(
                f"{error}\nOffline without {args.dataset}? --synthetic runs on random images."
            ) from None
        augment = standard_augment(args.dataset, seed=args.seed)

    torch.manual_seed(args.seed)  # the student's initial weights
    student = create(args.student, dataset=args.dataset).to(args.device)
    optimizer = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    trainer = DARDTrainer(
        student,
        teacher,
        optimizer=optimizer,
        attack={"norm": args.threat_model, "eps": eps, "alpha": eps / 4, "steps": args.steps},
        teacher_targets=args.teacher_targets,
        seed=args.seed,
        device=args.device,
        history_path=out / "history.json",
        verbose=not args.fast,
    )
    history = trainer.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        nb_epochs=args.epochs,
        scheduler=scheduler,
        augment=augment,
    )
    print(f"trained {args.epochs} epoch(s); last epoch: {json.dumps(history[-1])}")
    torch.save(student.state_dict(), out / "student.pt")
    student.eval()  # the trainer leaves the student in train mode

    report = evaluate(
        student,
        x_test,
        y_test,
        eps=eps,
        norm=args.threat_model,
        attacks=("clean", "dpgd", "autoattack"),
        seed=args.seed,
        device=args.device,
        model_name=f"DARD {args.student} student of {args.teacher}",
        verbose=not args.fast,
    )
    report.to_json(out / "report.json")
    print(report.to_markdown())
    print(f"written: {out / 'student.pt'}, {out / 'report.json'}, {out / 'history.json'}")


if __name__ == "__main__":
    main()
