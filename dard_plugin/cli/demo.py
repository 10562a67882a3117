"""``dard demo``: the README's main job. It distils the shipped robust Fashion-MNIST teacher
into a small CNN with DARD, evaluates the student on test images, and prints it beside the
teacher and a SAT student trained on the same budget.

The settings were chosen on the validation split (``experiments/demo_tuning.py``, training
images 55,000..59,999; no test image), and the demo validates on that split too. The
teacher's and SAT's rows are read from ``demo_reference.json``, written by
``experiments/demo_reference.py`` with exactly this evaluation (same images, attacks, eps,
batch size and seed): recomputing them would double the demo's time. They are shown only
when the demo evaluates the images they were measured on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from dard_plugin.cli.common import DEFAULT_TEACHER

DEMO_TEACHER = DEFAULT_TEACHER
REFERENCE_FILE = Path(__file__).with_name("demo_reference.json")


# The demo's settings (chosen on the validation split, experiments/demo_tuning.py)
N_TRAIN, EPOCHS, LR = 10_000, 5, 0.02
VAL_SPLIT, N_VAL, N_EVAL, EPS = 5_000, 500, 500, 0.1
ATTACKS = ("clean", "fgsm", "pgd", "dpgd", "apgd-ce")


def add_parsers(commands: Any) -> None:
    demo: argparse.ArgumentParser = commands.add_parser(
        "demo", help="distil the shipped Fashion-MNIST teacher with DARD, then evaluate"
    )
    demo.add_argument("--out", type=Path, default=Path("results/demo"))
    demo.add_argument("--n-train", type=int, default=N_TRAIN, help="training images")
    demo.add_argument("--epochs", type=int, default=EPOCHS)
    demo.add_argument("--n-eval", type=int, default=N_EVAL, help="first N test images")
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run with other settings in --out (by default a finished run with "
        "these settings is shown again, an unfinished one continued, another refused)",
    )


def distill_argv(args: argparse.Namespace) -> list[str]:
    """The ``dard distill`` command the demo is: every other option keeps its default."""
    return [
        "distill",
        *("--method", "dard", "--teacher", DEMO_TEACHER, "--teacher-targets", "cached"),
        *("--arch", "small-cnn", "--dataset", "fashion-mnist"),
        *("--n-train", str(args.n_train), "--epochs", str(args.epochs), "--lr", f"{LR:g}"),
        *("--val-split", str(VAL_SPLIT), "--n-val", str(N_VAL)),
        *("--n-eval", str(args.n_eval), "--eps", f"{EPS:g}", "--eval-attacks", ",".join(ATTACKS)),
        *("--out", str(args.out), "--overwrite" if args.overwrite else "--resume"),
    ]


def load_reference() -> dict[str, Any]:
    """The stored teacher and SAT rows (``experiments/demo_reference.py``)."""
    reference: dict[str, Any] = json.loads(REFERENCE_FILE.read_text())
    return reference


def comparison_table(
    report: dict[str, Any], reference: dict[str, Any], budget: dict[str, int] | None = None
) -> str | None:
    """Markdown: the stored rows and this student's, or None when the student was not
    evaluated exactly as the stored rows were (other images, eps or attacks). A stored row
    trained on a budget (SAT's ``budget``: ``n_train``, ``epochs``) is shown only beside a
    student trained on the same ``budget`` (the demo's default when None)."""
    budget = budget or {"n_train": N_TRAIN, "epochs": EPOCHS}
    same = (
        report["n_examples"] == reference["n_examples"]
        and abs(report["eps"] - reference["eps"]) < 1e-12
        and report["seed"] == reference["seed"]
        and sorted(report["per_attack"]) == sorted(reference["attacks"])
    )
    if not same:
        return None
    names = [a for a in ATTACKS if a != "clean"]
    header = "| model | clean | " + " | ".join(names) + " | worst case |"
    lines = [header, "| --- |" + " ---: |" * (len(names) + 2)]
    rows = [
        (row["label"], row["report"])
        for row in reference["rows"]
        if row.get("budget") in (None, budget)
    ]
    rows.append(("this student (DARD)", report))  # trained now, or the run in --out
    for label, values in rows:
        cells = [values["clean_accuracy"], *(values["per_attack"][n] for n in names)]
        cells.append(values["robust_accuracy"])
        lines.append(f"| {label} | " + " | ".join(f"{100 * v:.1f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    import dard_plugin.cli.training as training_commands
    from dard_plugin.cli.common import build_command_parser

    started = time.perf_counter()
    if not args.json and not args.quiet:  # the banner is progress; the results print anyway
        print(
            f"dard demo: distilling the shipped robust Fashion-MNIST teacher ({DEMO_TEACHER}) "
            f"into small-cnn with DARD (cached teacher targets): {args.n_train} training "
            f"images, {args.epochs} epochs, L-inf eps {EPS:g}; then evaluating on "
            f"{args.n_eval} test images. Results in {args.out}"
        )
    demo_args = build_command_parser(training_commands).parse_args(distill_argv(args))
    demo_args.quiet, demo_args.json, demo_args.device = args.quiet, args.json, args.device
    result = training_commands.run_distill(demo_args)
    result["seconds"] = time.perf_counter() - started
    reference = load_reference()
    table = comparison_table(
        result["report"], reference, {"n_train": args.n_train, "epochs": args.epochs}
    )
    result["comparison"] = table
    if not args.json:
        if table is None:
            print(
                f"(the teacher and SAT reference rows were measured on the first "
                f"{reference['n_examples']} test images: not shown for --n-eval {args.n_eval})"
            )
        else:
            shown = "the teacher and SAT rows are stored measurements"
            if "| SAT" not in table:  # its row was trained on another budget than this run's
                shown = (
                    "the teacher row is a stored measurement (SAT's stored row, trained on "
                    f"{N_TRAIN:,} images for {EPOCHS} epochs, is not shown beside "
                    f"{args.n_train:,} images and {args.epochs} epoch"
                    f"{'s' if args.epochs != 1 else ''})"
                )
            print(
                f"Accuracy (%) on the first {reference['n_examples']} test images, L-inf eps "
                f"{EPS:g}; {shown} ({REFERENCE_FILE.name}, commit "
                f"{reference['provenance']['git_commit'][:7]}):\n"
            )
            print(table)
        print(f"done in {result['seconds']:.0f} s; report: {args.out}/report.md")
    return result


COMMANDS = {"demo": run_demo}
