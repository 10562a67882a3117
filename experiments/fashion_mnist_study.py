"""The Fashion-MNIST study: validation-selected, converged, seeded (issue 12).

Question: at its best settings, on a validation-selected budget, does DARD beat SAT, ARD and
RSLAD on Fashion-MNIST (L-inf eps 0.1, small-cnn students), with which teacher, and why or
why not?

Data. The 60,000 training images are split once: the first 55,000 are the training pool,
the last 5,000 the validation split. Every choice (learning rate, epochs) is made on the
validation split (its first ``N_VAL_CURVE`` images, PGD-10 with random start, every
epoch). The 10,000 test images are used only by the ``final`` and ``ablation`` phases'
evaluations, after every choice is made. Students train on the first ``N_TRAIN`` images of
the pool; the strong teacher on the whole pool.

Phases, in order (each unit writes one JSON file when it ends; a rerun skips finished units
and resumes a killed training run from its checkpoint):

0. ``teacher``: the strong teacher, teacher-cnn by PGD-AT (eps 0.1, PGD-10 of eps/4) on the
   whole 55,000-image pool for 6 epochs (lr 0.05, x0.1 after epochs 3 and 4), seed 0: about
   two core-hours on the CPU machine. Evaluated on the test set (clean and PGD-20 on all
   10,000, AutoAttack standard on the first 200) for its model card. Until it is shipped in
   the package as ``dard-fmnist-teacher-strong`` the later phases load it from ``--work``.
1. ``grid``: SAT, ARD, RSLAD and DARD (cached targets) at each learning rate of ``LRS``
   (log-spaced, 0.005 to 0.1), ``GRID_EPOCHS`` epochs, seed 0, shipped teacher; plus DARD
   with online targets at two grid points, to check that cached and online rank the
   learning rates the same (the issue's condition for letting cached stand in).
2. ``epochs``: each method at its selected learning rate for ``LONG_EPOCHS`` epochs. The
   longer budget is kept only where it raises the final validation PGD-10 accuracy by at
   least ``LONGER_IS_BETTER`` (one point); the curves are in the report.
3. ``final``: each method at its selected settings, seeds 0, 1, 2, with both teachers
   (``dard-fmnist-teacher`` and ``dard-fmnist-teacher-strong``); evaluated on the first
   ``N_EVAL`` test images (clean, FGSM, PGD-20, DPGD, APGD-CE, APGD-T; worst case per
   sample) and AutoAttack standard on the first ``N_AA``; both teachers on the same
   images and attacks. Last in the plan: DARD with online targets (the paper's) at the lr
   the online grid points prefer, shipped teacher, seed 0 and then seeds 1 and 2, since
   the two online grid points did not rank the learning rates as the cached ones did.
4. ``diagnosis``: what separates DARD from SAT, one change at a time from DARD's selected
   grid run (cached targets, validation only): tau 1, alpha 0 (no teacher), adv weight 1.
5. ``ablation``: where DARD's adversarial soft labels come from (online targets, seed 0,
   shipped teacher): the teacher on its own DPGD example (the paper), on the natural image,
   on the student's adversarial example, and the paper's with the true one-hot where the
   teacher is fooled; with the fooled fraction per epoch.

Compute plan, 2-core CPU, first written from unit costs measured with 2 threads (SAT 12 s
per epoch of 10,000 images, DARD cached 20 s plus 25 s per cache build, ARD and RSLAD about
18 s, DARD online about 75 s; the final suite on 1,000 images about 150 s, AutoAttack
standard on 200 about 120 s per student):

    phase      units                         minutes each   total (min)
    teacher    1 (55,000 images, 6 epochs)   ~60            60
    grid       16 + 2 online                 3-6 / 20       ~75 + 40
    epochs     4 (30 epochs)                 6-12           ~35
    final      21 + 2 teachers + 1 online    5-9 + 4.5      ~290
    diagnosis  3 (cached, 15 epochs)         ~5             ~15
    ablation   4 (online)                    ~20 + 4.5      ~100
    total                                                   ~10 hours

That is more than the six hours the issue allows, so the plan is cut where it costs least:
the final phase evaluates AutoAttack for seed 0 only (the suite, with APGD-T, for every
seed), which saves about 80 minutes, and the ablation uses 12 epochs. On a GPU the whole
study takes well under an hour (``--device cuda``).

Measured since (two processes of one thread each on the 2 cores, wall time per unit, as
recorded in the JSON files): 30-epoch training SAT 661-1,149 s, RSLAD 800 s, ARD 1,475 s,
DARD cached 1,374 s (of which the target cache 130 s); DARD online 170-190 s per epoch
(2,855 s for 15 epochs); the final evaluation of a student 472 s (suite 240 s, of which
APGD-T 201 s; AutoAttack on 200 images 232 s). The study's CPU cost is therefore about
twice the first plan: about 20 core-hours in all, spread over several sessions.

The study is a definition on the runner (``experiments/study_runner/``): its design and
selection rules in ``fashion_mnist_study_design.py``, its report in
``fashion_mnist_study_report.py``, its units and plan here.

    python experiments/fashion_mnist_study.py plan                # units and compute
    python experiments/fashion_mnist_study.py --phase grid        # CPU, resumable
    python experiments/fashion_mnist_study.py report              # rewrite the report
    python experiments/fashion_mnist_study.py run --only train/grid-sat-lr0.04

Every unit's JSON records (``command``) the command that reruns exactly that unit alone;
a unit already finished in ``--out`` is then run again into ``<work>/rerun/``, beside its
committed result, never over it (a test unit trains its student first where ``--work``
lacks it). Several processes may run the same command at once (one thread each is the best
use of a small CPU machine): each unit is claimed with a lock file in ``--work``, and every
process re-plans after each unit, so they share the units without running one twice.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from fashion_mnist_study_design import (
    EPS,
    N_AA,
    N_EVAL,
    N_POOL,
    N_TRAIN,
    N_VAL_CURVE,
    N_VALIDATION,
    PHASES,
    SEEDS,
    STUDENT_ARCH,
    SUITE_ATTACKS,
    TEACHER_EPOCHS,
    TEACHERS,
    Run,
    ablation_runs,
    diagnosis_runs,
    epochs_runs,
    final_runs,
    grid_runs,
    online_final_runs,
    selected_epochs,
    selected_lr,
)
from fashion_mnist_study_report import write_report
from study_runner import ResultStore, Runner, Unit, add_arguments, main_for
from torch import nn

from dard_plugin.data import load_dataset
from dard_plugin.evaluation import evaluate
from dard_plugin.recipes import distill, load_model
from dard_plugin.teachers import load_teacher
from dard_plugin.teachers.shipped import SHIPPED_TEACHERS

logger = logging.getLogger("experiments.fashion_mnist_study")

# Minutes per epoch of 10,000 images on one CPU thread, from the recorded units (for the
# plan only), and per final evaluation (suite, and AutoAttack on N_AA images).
EPOCH_MINUTES = {"sat": 0.5, "ard": 0.8, "rslad": 0.45, "dard": 0.75, "dard-online": 3.1}
SUITE_MINUTES, AUTOATTACK_MINUTES = 4.0, 4.0


def train_minutes(run: Run) -> float:
    online = run.options.get("teacher_targets") == "online"
    return run.epochs * EPOCH_MINUTES["dard-online" if online else run.method]


class Study:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.work = Path(args.work)
        self.device = torch.device(args.device)
        self.store = ResultStore(self.out, self.work, device=str(self.device))
        self.runner = Runner(
            store=self.store,
            plan=self.plan,
            report=lambda: write_report(args.report, self.out),
            script=str(Path(__file__)),
            only=args.only,
            threads=args.threads,
            prefer=getattr(args, "prefer", None),
        )
        self._teachers: dict[str, nn.Module] = {}
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ plumbing
    def teacher(self, key: str) -> nn.Module:
        if key not in self._teachers:
            trained = self.work / "teacher-strong" / "student.pt"
            if key == "strong" and TEACHERS[key] not in SHIPPED_TEACHERS:
                if not trained.is_file():
                    raise FileNotFoundError(
                        f"the strong teacher is neither shipped nor trained ({trained}): "
                        "run --phase teacher first"
                    )
                self._teachers[key] = load_model(str(trained), device=self.device)
            else:
                self._teachers[key] = load_teacher(
                    TEACHERS[key], dataset="fashion-mnist", device=self.device
                )
        return self._teachers[key]

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._test is None:
            self._test = load_dataset("fashion-mnist", train=False)
        return self._test

    def load(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.store.load(kind, name)

    def claim(self, kind: str, name: str) -> Path | None:
        return self.store.claim(kind, name)

    def student_path(self, name: str) -> Path:
        return self.store.work_path(name) / "student.pt"

    # ------------------------------------------------------------------ units
    def train(self, run: Run, *, for_test: bool = False) -> None:
        """Train ``run`` (resuming its checkpoint in ``--work``) and record it. For a test
        unit (``for_test``) a finished run whose train unit recorded ``run``'s settings is
        kept (one with other settings is refused)."""
        if for_test and self.store.trained_student(run.name, asdict(run)) is not None:
            return
        started = time.perf_counter()
        result = distill(
            method=run.method,
            dataset="fashion-mnist",
            teacher=None if run.method == "sat" else self.teacher(run.teacher),
            student_arch=STUDENT_ARCH,
            n_train=N_TRAIN,
            val_split=N_VALIDATION,
            n_val=N_VAL_CURVE,
            epochs=run.epochs,
            lr=run.lr,
            eps=EPS,
            seed=run.seed,
            device=str(self.device),
            out_dir=self.store.folder_to_train(run.name),
            resume=True,
            verbose=self.args.verbose,
            **run.options,
        )
        payload = {
            "run": asdict(run),
            "history": result.history,
            "training_seconds": result.seconds,
            "data": {
                "train": f"training images 0..{N_TRAIN - 1}",
                "validation": f"training images {N_POOL}..{N_POOL + N_VAL_CURVE - 1}",
            },
        }
        self.store.record_training(run.name, payload, time.perf_counter() - started)

    def test_suite(self, model: nn.Module, name: str, *, autoattack: bool) -> dict[str, Any]:
        """The final evaluation: the suite on the first ``N_EVAL`` test images and, if
        asked, AutoAttack standard on the first ``N_AA``."""
        x, y = self.test
        common: dict[str, Any] = {
            "eps": EPS,
            "batch_size": 500,
            "device": self.device,
            "model_name": name,
        }
        suite = evaluate(model, x, y, attacks=SUITE_ATTACKS, n_examples=N_EVAL, **common)
        payload: dict[str, Any] = {"suite": suite.to_dict()}
        if autoattack:
            aa = evaluate(
                model,
                x,
                y,
                attacks=["clean", "autoattack"],
                n_examples=N_AA,
                state_path=self.store.evaluation_state(f"aa-{name}.json", "test", name),
                **common,
            )
            payload["autoattack"] = aa.to_dict()
        return payload

    def evaluate(self, run: Run, *, autoattack: bool) -> None:
        self.train(run, for_test=True)
        model = load_model(str(self.student_path(run.name)), device=self.device)
        started = time.perf_counter()
        payload = {"run": asdict(run), **self.test_suite(model, run.name, autoattack=autoattack)}
        self.store.record("test", run.name, payload, time.perf_counter() - started)

    def evaluate_teacher(self, key: str) -> dict[str, Any]:
        """A teacher on the students' test images and attacks: the reference the students
        are distilled from, and the teacher-to-SAT gap."""
        return {
            "teacher": TEACHERS[key],
            **self.test_suite(self.teacher(key), f"teacher-{key}", autoattack=True),
        }

    def train_teacher(self) -> dict[str, Any]:
        """The strong teacher (phase 0) and its test-set numbers for the model card."""
        started = time.perf_counter()
        result = distill(
            method="sat",
            dataset="fashion-mnist",
            student_arch="teacher-cnn",
            n_train=N_POOL,
            val_split=N_VALIDATION,
            n_val=N_VAL_CURVE,
            epochs=TEACHER_EPOCHS,
            lr=0.05,
            eps=EPS,
            steps=10,
            seed=0,
            device=str(self.device),
            out_dir=self.store.folder_to_train("teacher-strong"),
            resume=True,
            verbose=self.args.verbose,
        )
        trained = time.perf_counter() - started
        x, y = self.test
        name = "dard-fmnist-teacher-strong"
        common: dict[str, Any] = {"eps": EPS, "batch_size": 500, "device": self.device}
        suite = evaluate(
            result.student, x, y, attacks=["clean", "pgd"], n_examples=x.shape[0],
            model_name=name, **common,
        )  # fmt: skip
        aa = evaluate(
            result.student, x, y, attacks=["clean", "autoattack"], n_examples=N_AA,
            model_name=name, **common,
            state_path=self.store.evaluation_state("aa-teacher-strong.json", "teacher", "strong"),
        )  # fmt: skip
        return {
            "history": result.history,
            "training_seconds": trained,
            "test_suite": suite.to_dict(),
            "autoattack": aa.to_dict(),
        }

    # ------------------------------------------------------------------ selection
    def selected_lr(self, method: str) -> float | None:
        return selected_lr(self.load, method)

    def selected_epochs(self, method: str) -> int | None:
        return selected_epochs(self.load, method)

    def final_runs(self) -> list[Run]:
        return final_runs(self.load)

    def online_final_runs(self) -> list[Run]:
        return online_final_runs(self.load)

    def diagnosis_runs(self) -> list[Run]:
        return diagnosis_runs(self.load)

    def ablation_runs(self) -> list[Run]:
        return ablation_runs(self.load)

    # ------------------------------------------------------------------ the plan
    def plan(self) -> list[Unit]:
        phases = self.args.phase
        units: list[Unit] = []

        def train_unit(run: Run) -> Unit:
            return Unit("train", run.name, lambda: self.train(run), train_minutes(run))

        def test_unit(run: Run, autoattack: bool) -> Unit:
            minutes = train_minutes(run) + SUITE_MINUTES + AUTOATTACK_MINUTES * autoattack
            return Unit(
                "test", run.name, lambda: self.evaluate(run, autoattack=autoattack), minutes
            )

        if "teacher" in phases:
            units.append(Unit("teacher", "strong", self.train_teacher, 120.0))
        if "grid" in phases:
            units += [train_unit(run) for run in grid_runs()]
        if "epochs" in phases:
            units += [train_unit(run) for run in epochs_runs(self.load)]
        # The final phase's first seed, then the ablation, then the other seeds: the
        # ablation answers "why" and should not wait for the third seed.
        finals = self.final_runs() if "final" in phases else []
        units += [test_unit(run, run.seed == 0) for run in finals if run.seed == SEEDS[0]]
        if "final" in phases:
            units += [
                Unit("test", f"teacher-{key}", lambda key=key: self.evaluate_teacher(key), 8.0)
                for key in TEACHERS
            ]
        if "diagnosis" in phases:
            units += [train_unit(run) for run in self.diagnosis_runs()]
        if "ablation" in phases:
            units += [test_unit(run, True) for run in self.ablation_runs()]
        units += [test_unit(run, run.seed == 0) for run in finals if run.seed != SEEDS[0]]
        if "final" in phases:  # AutoAttack at seed 0, as for the others
            units += [test_unit(run, run.seed == 0) for run in self.online_final_runs()]
        return units

    def run(self) -> list[str]:
        return self.runner.run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(
        parser,
        out="docs/results/fashion_mnist/study",
        work="runs/fashion_mnist/study",
        report="docs/results.md",
    )
    parser.add_argument(
        "--phase",
        type=lambda s: s.split(","),
        default=list(PHASES),
        help="comma-separated phases to plan (default: all, in order)",
    )
    parser.add_argument("--report-only", action="store_true", help="the same as 'report'")
    args = parser.parse_args()
    unknown = sorted(set(args.phase) - set(PHASES))
    if unknown:
        parser.error(f"--phase: unknown phase(s) {unknown}")
    if args.report_only:
        args.action = "report"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main_for(args, Study(args).runner)


if __name__ == "__main__":
    main()
