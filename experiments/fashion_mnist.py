"""The paper's comparison on Fashion-MNIST (L-inf eps 0.1), reproducible and resumable.

Teacher: the shipped ``dard-fmnist-teacher``. Students: ``small-cnn``, each trained with the
same data, epochs, optimizer (SGD, momentum 0.9, weight decay 5e-4), schedule (x0.1 at 60%
and 80% of the epochs), augmentation and seed, by ``dard_plugin.recipes.distill``:

- SAT (PGD-AT), ARD, RSLAD, DARD with online targets, DARD with cached targets;
- a second seed of SAT and DARD (online);
- learning-rate controls: SAT at 0.01, DARD (online) at 0.02 and 0.05;
- DARD ablations: adv_weight 0.75 and 1.0 (0.5 is the paper's), PGD-CE instead of DPGD for
  the student's adversarial examples, and the original scripts' teacher softmax
  (``legacy_teacher_softmax=True``).

The learning rate is each method's default in ``distill`` (0.05 for SAT, 0.01 for the
distillation methods, whose KL terms carry a tau^2 factor; see docs/training.md).

Evaluation, every student and the teacher, on the first test images: clean, FGSM, PGD-20,
T-PGD, BIM, DPGD, APGD-CE and APGD-T on ``n_eval``; AutoAttack standard on ``n_aa``. And the
DPGD vs PGD-CE strength study: teacher and SAT student, 1/5/10/20/50 steps of eps/4, no
random start, on ``n_steps_eval`` images.

Each unit of work writes one JSON file into ``--out`` when it ends (atomically); a rerun
skips finished units and resumes a killed training run from its checkpoint (``--work``).
After every unit the report (``--report``) is rewritten from the JSON files present.

    python experiments/fashion_mnist.py                      # preset "standard", CPU
    python experiments/fashion_mnist.py --preset full --device cuda

Presets: ``standard`` (10,000 training images, 5 epochs; sized for about 2 hours on the
project's 2-core CPU machine) and ``full`` (60,000 images, 10 epochs, 10,000 test images;
for a GPU); ``smoke`` is a minutes-long check of the script itself.

Files: the runs and presets in ``fashion_mnist_runs.py``, the report in
``fashion_mnist_report.py`` (shared pieces from ``study_runner/``), the units here. Its
results (``docs/results/fashion_mnist/standard-*``) are frozen: the study superseded it;
``--report-only`` regenerates their section of ``docs/results.md`` byte for byte.
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from fashion_mnist_report import result_folders, write_report
from fashion_mnist_runs import (
    EPS,
    PRESETS,
    RUNS,
    RUNS_BY_NAME,
    STEP_COUNTS,
    STUDENT_ARCH,
    SUITE_ATTACKS,
    TEACHER,
    Run,
)
from torch import nn

from dard_plugin.attacks.dpgd import dpgd
from dard_plugin.attacks.pgd import cross_entropy_objective, pgd_linf
from dard_plugin.data import load_dataset
from dard_plugin.evaluation import evaluate
from dard_plugin.recipes import distill, load_model
from dard_plugin.teachers import load_teacher
from dard_plugin.training.checkpointing import write_json

logger = logging.getLogger("experiments.fashion_mnist")


def command_line() -> str:
    return " ".join(
        shlex.quote(a) for a in ["python", "experiments/fashion_mnist.py", *sys.argv[1:]]
    )


class Experiment:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.preset = PRESETS[args.preset]
        self.out = Path(args.out or f"docs/results/fashion_mnist/{args.preset}")
        self.work = Path(args.work or f"runs/fashion_mnist/{args.preset}")
        self.device = torch.device(args.device)
        self._teacher: nn.Module | None = None
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None
        self.eval_batch = args.eval_batch_size

    # ------------------------------------------------------------------ helpers
    @property
    def teacher(self) -> nn.Module:
        if self._teacher is None:
            self._teacher = load_teacher(TEACHER, dataset="fashion-mnist", device=self.device)
        return self._teacher

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._test is None:
            self._test = load_dataset("fashion-mnist", train=False)
        return self._test

    def unit_path(self, kind: str, name: str) -> Path:
        return self.out / f"{kind}-{name}.json"

    def done(self, kind: str, name: str) -> bool:
        return self.unit_path(kind, name).is_file()

    def record(self, kind: str, name: str, payload: dict[str, Any], seconds: float) -> None:
        payload = {
            "unit": f"{kind}/{name}",
            "preset": self.args.preset,
            "preset_sizes": asdict(self.preset),
            "command": command_line(),
            "device": str(self.device),
            "device_name": (
                torch.cuda.get_device_name(self.device)
                if self.device.type == "cuda"
                else platform.processor() or "cpu"
            ),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "seconds": seconds,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            **payload,
        }
        write_json(self.unit_path(kind, name), payload)
        logger.info("%s/%s done in %.0f s", kind, name, seconds)

    def student_path(self, name: str) -> Path:
        return self.work / name / "student.pt"

    def model(self, name: str) -> nn.Module:
        if name == "teacher":
            return self.teacher
        if not self.student_path(name).is_file():
            self.train(RUNS_BY_NAME[name])
        return load_model(str(self.student_path(name)), device=self.device)

    # ------------------------------------------------------------------ units
    def train(self, run: Run) -> None:
        if self.student_path(run.name).is_file():
            return
        p = self.preset
        options = dict(run.options)
        started = time.perf_counter()
        result = distill(
            method=run.method,
            dataset="fashion-mnist",
            teacher=None if run.method == "sat" else self.teacher,
            student_arch=STUDENT_ARCH,
            n_train=p.n_train,
            n_val=p.n_val,
            validate_on_test=True,  # the first look's validation, kept as it ran
            epochs=p.epochs,
            batch_size=p.batch_size,
            eps=EPS,
            seed=run.seed,
            device=str(self.device),
            out_dir=self.work / run.name,
            resume=True,
            verbose=self.args.verbose,
            amp=self.args.amp,
            **options,
        )
        self.record(
            "train",
            run.name,
            {"run": asdict(run), "history": result.history, "training_seconds": result.seconds},
            time.perf_counter() - started,
        )

    def evaluate_suite(self, name: str) -> None:
        model = self.model(name)
        x, y = self.test
        started = time.perf_counter()
        report = evaluate(
            model,
            x,
            y,
            eps=EPS,
            attacks=SUITE_ATTACKS,
            n_examples=self.preset.n_eval,
            batch_size=self.eval_batch,
            device=self.device,
            verbose=self.args.verbose,
            model_name=name,
        )
        self.record("suite", name, {"report": report.to_dict()}, time.perf_counter() - started)

    def evaluate_autoattack(self, name: str) -> None:
        model = self.model(name)
        x, y = self.test
        started = time.perf_counter()
        report = evaluate(
            model,
            x,
            y,
            eps=EPS,
            attacks=["clean", "autoattack"],
            n_examples=self.preset.n_aa,
            batch_size=self.eval_batch,
            device=self.device,
            verbose=self.args.verbose,
            model_name=name,
            state_path=self.work / f"aa-state-{name}.json",
        )
        self.record("autoattack", name, {"report": report.to_dict()}, time.perf_counter() - started)

    def step_study(self, name: str) -> None:
        model = self.model(name)
        x, y = self.test
        n = self.preset.n_steps_eval
        x, y = x[:n], y[:n]
        started = time.perf_counter()
        attacks: dict[str, Callable[..., torch.Tensor]] = {
            "dpgd": lambda m, xb, yb, steps: dpgd(m, xb, yb, eps=EPS, alpha=EPS / 4, steps=steps),
            "pgd-ce": lambda m, xb, yb, steps: pgd_linf(
                m, xb, yb, cross_entropy_objective, eps=EPS, alpha=EPS / 4, steps=steps
            ),
        }
        accuracy: dict[str, dict[str, float]] = {}
        for attack_name, attack in attacks.items():
            accuracy[attack_name] = {}
            for steps in STEP_COUNTS:
                correct = 0
                for start in range(0, n, self.eval_batch):
                    xb = x[start : start + self.eval_batch].to(self.device)
                    yb = y[start : start + self.eval_batch].to(self.device)
                    adversarial = attack(model, xb, yb, steps)
                    with torch.no_grad():
                        correct += int((model(adversarial).argmax(1) == yb).sum())
                accuracy[attack_name][str(steps)] = correct / n
        self.record(
            "steps",
            name,
            {
                "n_examples": n,
                "eps": EPS,
                "alpha": EPS / 4,
                "random_start": False,
                "accuracy": accuracy,
            },
            time.perf_counter() - started,
        )

    def plan(self) -> list[tuple[str, str, Callable[[], None]]]:
        """Units in order of importance: a run cut short leaves the main comparison first.
        Each student's units (train, suite, AutoAttack) run together."""
        units: list[tuple[str, str, Callable[[], None]]] = []
        selected = [run for run in RUNS if self.args.runs is None or run.name in self.args.runs]
        teacher = not self.args.no_teacher

        chosen = {run.name for run in selected}

        def add_run(name: str) -> None:
            if name not in chosen:
                return
            run = RUNS_BY_NAME[name]
            units.append(("train", name, lambda: self.train(run)))
            units.append(("suite", name, lambda: self.evaluate_suite(name)))
            # right after its suite, so that no student must be trained again in a later
            # session (only finished units' JSON is kept)
            units.append(("autoattack", name, lambda: self.evaluate_autoattack(name)))

        def group(name: str) -> list[str]:
            return [run.name for run in RUNS if run.group == name]

        # the question first (SAT against DARD, and the learning-rate control), then the
        # other baselines, the teacher, the ablations, the step study and the second seeds
        first = [
            "sat-s0",
            "dard-online-s0",
            "sat-lr0.01-s0",
            "dard-online-lr0.05-s0",
            "dard-online-lr0.02-s0",
            "ard-s0",
            "rslad-s0",
            "dard-cached-s0",
        ]
        for name in first:
            add_run(name)
        if teacher:
            units.append(("suite", "teacher", lambda: self.evaluate_suite("teacher")))
        for name in group("ablation"):
            add_run(name)
        if teacher:
            units.append(("steps", "teacher", lambda: self.step_study("teacher")))
        if "sat-s0" in chosen:
            units.append(("steps", "sat-s0", lambda: self.step_study("sat-s0")))
        for name in group("seed"):
            add_run(name)
        if teacher:
            units.append(("autoattack", "teacher", lambda: self.evaluate_autoattack("teacher")))
        return units

    def run(self) -> list[str]:
        """Run every unit not finished yet; returns the units run."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        units = self.plan()
        ran = []
        for index, (kind, name, work) in enumerate(units, start=1):
            if kind == "train":
                # trained already, or every unit needing the student is done
                needed = [k for k, n, _ in units if n == name and k != "train"]
                if self.done("train", name) and all(self.done(k, name) for k in needed):
                    continue
                if self.student_path(name).is_file():
                    continue
            elif self.done(kind, name):
                continue
            logger.info("unit %d/%d: %s/%s", index, len(units), kind, name)
            work()
            ran.append(f"{kind}/{name}")
            write_report(self.args.report, result_folders(self.out))
        write_report(self.args.report, result_folders(self.out))
        return ran


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=list(PRESETS), default="standard")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="JSON folder (default docs/results/fashion_mnist/PRESET)")
    parser.add_argument(
        "--work", help="checkpoints and students (default runs/fashion_mnist/PRESET)"
    )
    parser.add_argument(
        "--report",
        default="docs/results.md",
        help="markdown file whose generated part is rewritten after every "
        "unit, from OUT and its sibling folders (default: %(default)s; "
        "'' for none)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the report from the JSON present, and run nothing",
    )
    parser.add_argument(
        "--runs",
        type=lambda text: text.split(","),
        default=None,
        help=f"comma-separated subset of: {', '.join(RUNS_BY_NAME)}",
    )
    parser.add_argument(
        "--no-teacher", action="store_true", help="skip the teacher's evaluation units"
    )
    parser.add_argument("--eval-batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--amp",
        action="store_true",
        help="bf16 autocast in training (default: fp32 everywhere, so that "
        "CPU and GPU runs compute the same thing)",
    )
    parser.add_argument("--verbose", action="store_true", help="progress bars")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.runs is not None:
        unknown = sorted(set(args.runs) - set(RUNS_BY_NAME))
        if unknown:
            parser.error(f"--runs: unknown run(s) {unknown}; choose from {list(RUNS_BY_NAME)}")
    experiment = Experiment(args)
    if args.report_only:
        write_report(args.report, result_folders(experiment.out))
        return
    experiment.run()


if __name__ == "__main__":
    main()
