"""The reference rows `dard demo` prints beside its student (issue 12, item 8).

Writes ``dard_plugin/cli/demo_reference.json``: the shipped teacher and a SAT student
trained on the demo's budget (the demo's training images, epochs and validation split; SAT's
learning rate chosen on the validation split by ``experiments/demo_tuning.py --method
sat``), each evaluated exactly as the demo evaluates its student (same test images, attacks,
eps, batch size and seed), through the same ``dard`` commands. Recomputing these inside the
demo would double its time; a test checks the teacher's stored clean and FGSM numbers
against a fresh evaluation.

Compute (2 cores): SAT training about 1.5 minutes, three evaluations of 500 images about
1 minute each.

    python experiments/demo_reference.py --sat-lr 0.05
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_runner import command_line, provenance

from dard_plugin.cli import demo, main
from dard_plugin.training.checkpointing import write_json


def _run(argv: list[str]) -> None:
    status = main(argv)
    if status != 0:
        raise SystemExit(f"dard {' '.join(argv)} failed with status {status}")


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sat-lr", type=float, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    attacks = ",".join(demo.ATTACKS)
    common = ["--eps", f"{demo.EPS:g}", "--quiet", "--device", args.device]
    with tempfile.TemporaryDirectory() as scratch:
        teacher_out, sat_out = Path(scratch) / "teacher", Path(scratch) / "sat"
        _run(
            [
                "evaluate",
                demo.DEMO_TEACHER,
                *("--dataset", "fashion-mnist", "--attacks", attacks),
                *("--n-examples", str(demo.N_EVAL), "--batch-size", "256", "--seed", "0"),
                *("--out", str(teacher_out), *common),
            ]
        )
        sat_argv = [
            "distill",
            *("--method", "sat", "--arch", "small-cnn", "--dataset", "fashion-mnist"),
            *("--n-train", str(demo.N_TRAIN), "--epochs", str(demo.EPOCHS)),
            *("--lr", f"{args.sat_lr:g}", "--val-split", str(demo.VAL_SPLIT)),
            *("--n-val", str(demo.N_VAL), "--n-eval", str(demo.N_EVAL)),
            *("--eval-attacks", attacks, "--out", str(sat_out), *common),
        ]
        _run(sat_argv)
        reports = [
            json.loads((folder / "report.json").read_text())["dard_plugin"]
            for folder in (teacher_out, sat_out)
        ]
    for report in reports:
        report.pop("per_sample", None)
    write_json(
        demo.REFERENCE_FILE,
        {
            "about": "dard demo's reference rows: see experiments/demo_reference.py",
            "command": command_line(),
            "sat_command": "dard " + " ".join(sat_argv),
            "n_examples": demo.N_EVAL,
            "eps": demo.EPS,
            "seed": 0,
            "attacks": [a for a in demo.ATTACKS if a != "clean"],
            "rows": [
                {"label": f"teacher ({demo.DEMO_TEACHER}, 4x the size)", "report": reports[0]},
                {
                    "label": f"SAT, same budget (lr {args.sat_lr:g})",
                    "budget": {"n_train": demo.N_TRAIN, "epochs": demo.EPOCHS},
                    "report": reports[1],
                },
            ],
            "provenance": provenance(),
        },
    )


if __name__ == "__main__":
    main_()
