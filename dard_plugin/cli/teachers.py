"""``dard teachers``: RobustBench's published teachers and the shipped ones, measured."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(commands: Any) -> None:
    teachers = commands.add_parser("teachers", help="list RobustBench teachers and accuracies")
    teachers.add_argument(
        "--dataset",
        default="cifar10",
        choices=("cifar10", "cifar100", "imagenet", "fashion-mnist"),
        help="fashion-mnist lists the teachers shipped with dard-plugin",
    )
    teachers.add_argument("--threat-model", default="Linf", choices=("Linf", "L2"))


def run_teachers(args: argparse.Namespace) -> list[dict[str, Any]]:
    from dard_plugin.teachers import list_teachers

    rows = [
        {**vars(t), "robust_acc": t.robust_acc}
        for t in list_teachers(args.dataset, args.threat_model)
    ]
    if not args.json:
        print(f"{'name':<46} {'clean':>6} {'robust':>6}  {'source':<46} architecture")
        for row in rows:
            clean = "-" if row["clean_acc"] is None else f"{row['clean_acc']:.2f}"
            robust = "-" if row["robust_acc"] is None else f"{row['robust_acc']:.2f}"
            if row["source"] == "dard-plugin":
                source = (  # clean there: the robust number's pair (clean is on all images)
                    f"measured (AutoAttack, first {row['autoattack_examples']}: clean "
                    f"{row['autoattack_clean_acc']:.2f})"
                )
            elif row["unreliable"]:
                source = "RobustBench: AA unreliable"  # an adaptive attack found it lower
            elif row["robust_acc"] != row["autoattack_acc"]:
                source = f"RobustBench: adaptive (AA {row['autoattack_acc']:.2f})"
            else:
                source = "RobustBench: AutoAttack"
            print(
                f"{row['name']:<46} {clean:>6} {robust:>6}  {source:<46} "
                f"{row['architecture'] or ''}"
            )
        shipped = sum(row["source"] == "dard-plugin" for row in rows)
        others = (
            "; the others RobustBench's published numbers, robust = the lower of AutoAttack's "
            "and an adaptive attack's, as its leaderboard ranks"
            if shipped < len(rows)
            else ""
        )
        where = (
            ", clean on the whole test set and robust on the first images the source names"
            if shipped
            else ""
        )
        print(
            f"{len(rows)} {args.dataset}/{args.threat_model} teachers ({shipped} shipped with "
            f"dard-plugin, measured{where}{others}); accuracies in percent."
        )
    return rows


COMMANDS = {"teachers": run_teachers}
