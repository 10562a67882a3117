"""The robust-distillation leaderboard on Fashion-MNIST (issue 23): every method measured
the same way, on two students, with one command to rerun it.

Setting (the study's, ``fashion_mnist_study.py``): L-inf eps 0.1; teacher
``dard-fmnist-teacher`` (MTARD also the natural teacher ``dard-fmnist-teacher-natural``);
students ``small-cnn`` (171k parameters) and ``tiny-cnn`` (22.5k, an eighth); the first
10,000 images of the 55,000-image training pool; every choice made on the validation split
(training images 55,000..56,999, PGD-10 every epoch).

Methods (rows): SAT, ARD, RSLAD, DARD with cached targets, IAD, AdaAD, MTARD, AdaAD + IGDM,
and DARD with online targets last (a teacher query at every attack step: several times
SAT's cost). A method is named by its string in dard_plugin's methods registry and built by
``dard_plugin.recipes.distill`` at run time: units of a method this installation lacks stay
in the plan and the report as "not available".

Units, per student and row (``leaderboard_design.py`` holds the rules):

- ``train/grid-<row>-<student>-lr<lr>``: the study's grid (0.005, 0.015, 0.04, 0.1; 15
  epochs, seed 0), extended by one value past the edge (the same ratio) where the best is
  on it; selection = the best final validation PGD-10 (clean, then the larger lr, breaks
  ties), per student. A run that stays at chance is reported as such, not dropped (a
  run that diverges too: its NaN student counts 0 correct, in a grid as in a final's test).
- ``test/final-<row>-<student>-s<seed>``: 30 epochs at the selected lr (the study found 30
  better than 15 by 1.5-2.5 points; the report shows each row's validation gain over its
  last 10 epochs to check flatness), seeds 0, 1, 2; the study's six rows (clean and five
  attacks) on the first 1,000 test images, worst case per sample (it trains the student
  first where ``--work`` lacks it and records ``train/final-...``).
- ``autoattack/final-<row>-<student>-s0``: AutoAttack standard on the first 500.

Reused: the study's units with identical settings (small-cnn, shipped teacher: the grid of
SAT, ARD, RSLAD, DARD cached and the two online-DARD grid points; the finals at 30 epochs
and seeds 0-2 where the selected lr is the study's) are read from its folder, not rerun; a
unit is reused only where its recorded settings equal the leaderboard's.

Each row of the report: clean and worst case (mean ± sample std over seeds), AutoAttack,
the epoch cost relative to SAT on the same machine, and the call against SAT and against
the best row, by the study's rule (a difference is called only where it exceeds the sum of
the two seed spreads). The plan and its compute are in ``docs/leaderboard.md``.

    python experiments/leaderboard.py plan                     # units and minutes
    python experiments/leaderboard.py run [--device cuda]      # resumable, shareable
    python experiments/leaderboard.py run --only test/final-sat-tiny-cnn-s0
    python experiments/leaderboard.py report       # docs/leaderboard.md, README's summary
    python experiments/leaderboard.py collect --from OTHER_CHECKOUT/docs/results/...
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from leaderboard_design import (
    EPS,
    FINAL_EPOCHS,
    LABELS,
    LRS,
    METHODS,
    N_AA,
    N_EVAL,
    N_TRAIN,
    N_VAL_CURVE,
    N_VALIDATION,
    NATURAL_TEACHER,
    SEEDS,
    STUDENTS,
    STUDY_OUT,
    STUDY_STUDENT,
    STUDY_WORK,
    SUITE_ATTACKS,
    TEACHER,
    Run,
    available_methods,
    diverged_history,
    final_name,
    final_runs,
    grid_runs,
    load_costs,
    selected_lr,
)
from leaderboard_report import COSTS, write_report
from leaderboard_store import LinkedStore
from leaderboard_summary import write_summary
from study_runner import Runner, Unit, add_arguments, main_for
from study_runner.provenance import cpu_model
from study_runner.report import machine_label, replace_generated
from torch import nn

from dard_plugin.training import TrainingDivergedError

logger = logging.getLogger("experiments.leaderboard")
COMPUTE_MARKERS = ("<!-- leaderboard-compute:begin -->", "<!-- leaderboard-compute:end -->")
# Plan minutes on one CPU thread: SAT's epoch of 10,000 images and its validation as the
# study recorded them for small-cnn (18.5 s and 3 s), the final suite on 1,000 images and
# AutoAttack on 500 (the study: 240 s, and 232 s per 200 images).
# DARD's target cache (the teacher's DPGD on 10,000 images, once per run): 130 s.
SAT_EPOCH_SECONDS, VALIDATION_SECONDS, SUITE_MINUTES, AA_MINUTES = 18.5, 3.0, 4.0, 10.0
CACHE_SECONDS = 130.0


class Leaderboard:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.store = LinkedStore(
            Path(args.out), Path(args.work), Path(args.study_out), str(self.device)
        )
        self.runner = Runner(
            store=self.store, plan=self.plan, report=self.write_report, script=str(Path(__file__)),
            only=args.only, threads=args.threads, prefer=getattr(args, "prefer", None),
        )  # fmt: skip
        self.available = available_methods()
        # the plan's estimates: the costs measured on this kind of machine, else any
        measured = load_costs(Path(args.out).parent / COSTS)
        gpu = None
        if self.device.type == "cuda":  # float32 as on the CPU: no TF32 matmuls or convolutions
            gpu = torch.cuda.get_device_name(self.device)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        here = machine_label({"cuda": gpu, "cpu_model": cpu_model(), "torch_threads": 1})
        label = here if here in measured else next(iter(measured), None)
        self.costs = measured[label].get("costs", {}) if label else {}
        self.costs_here = here in measured  # then its seconds are this machine's own
        self.cost_basis = f"on one thread of {label} (its cost file)" if label else "(no cost file)"
        self._models: dict[str, nn.Module] = {}
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ plumbing
    def teacher(self, name: str) -> nn.Module:
        from dard_plugin.teachers import load_teacher

        if name not in self._models:
            self._models[name] = load_teacher(name, dataset="fashion-mnist", device=self.device)
        return self._models[name]

    def unavailable(self, row: str) -> str | None:
        method = METHODS[row][0]
        if method not in self.available:
            return f"method {method!r} is not in this installation"
        if method == "mtard":
            from dard_plugin.teachers.shipped import SHIPPED_TEACHERS

            if NATURAL_TEACHER not in SHIPPED_TEACHERS:
                return f"teacher {NATURAL_TEACHER!r} is not shipped"
        return None

    def unavailable_rows(self) -> dict[str, str]:
        return {row: why for row in METHODS if (why := self.unavailable(row)) is not None}

    def trained_student(self, run: Run) -> Path | None:
        """The finished student of ``run``: its own (trained with ``run``'s settings, as its
        train unit records; other settings are refused), else the study's where the train
        unit is reused; None when it must be trained."""
        own = self.store.trained_student(run.name, asdict(run))
        if own is not None or self.store.rerunning:
            return own
        study = Path(self.args.study_work) / f"final-shipped-{run.row}-s{run.seed}" / "student.pt"
        untrained = not (self.store.work_path(run.name) / "student.pt").is_file()
        if untrained and study.is_file() and self.store.linked("train", run.name):
            return study
        return None

    # ------------------------------------------------------------------ units
    def train(self, run: Run) -> dict[str, Any]:
        from dard_plugin.recipes import distill

        extra: dict[str, Any] = {}
        if self.device.type == "cuda":  # float32 as on the CPU: no bf16 autocast
            extra["amp"] = False
        if run.method == "mtard":
            extra["natural_teacher"] = self.teacher(NATURAL_TEACHER)
        started = time.perf_counter()
        try:
            result = distill(
                method=run.method, dataset="fashion-mnist", student_arch=run.student,
                teacher=None if run.method == "sat" else self.teacher(TEACHER),
                n_train=N_TRAIN, val_split=N_VALIDATION, n_val=N_VAL_CURVE,
                epochs=run.epochs, lr=run.lr, eps=EPS, seed=run.seed,
                device=str(self.device), out_dir=self.store.folder_to_train(run.name),
                resume=True, verbose=self.args.verbose, **extra, **run.options,
            )  # fmt: skip
        except TrainingDivergedError as error:  # at chance, not dropped; no student saved
            history, seconds = diverged_history(error), time.perf_counter() - started
        else:
            history, seconds = result.history, result.seconds
        payload = {
            "run": {**asdict(run), "method": run.method, "teacher": "shipped"},
            "history": history,
            "training_seconds": seconds,
        }
        # a student trained again for an evaluation (its file not at hand) is recorded
        # beside the committed train unit (retrain-), not over it
        self.store.record_training(run.name, payload, time.perf_counter() - started)
        return payload

    def train_unit(self, run: Run) -> None:
        self.train(run)  # records itself: a test unit's training does too

    def student(self, run: Run) -> tuple[nn.Module | None, bool]:
        """The run's trained student (trained first where it is missing), None where its
        training diverged (recorded so, or now: no student, which counts 0 correct); and
        whether it was trained again here although its train unit exists."""
        from dard_plugin.recipes import load_model

        path, retrained = self.trained_student(run), False
        if path is None:  # a run recorded diverged is not trained again (it would diverge)
            done = None if self.store.rerunning else self.store.load("train", run.name)
            if done is None or not done["history"][-1].get("diverged"):
                retrained = done is not None  # its committed unit is another training
                done = self.train(run)
            if done["history"][-1].get("diverged"):
                return None, retrained
        path = path or self.store.work_path(run.name) / "student.pt"
        return load_model(str(path), device=self.device), retrained

    @property
    def test_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        from dard_plugin.data import load_dataset

        if self._test is None:
            self._test = load_dataset("fashion-mnist", train=False)
        return self._test

    def evaluate(self, run: Run, attacks: list[str], n: int) -> dict[str, Any]:
        from dard_plugin.evaluation import evaluate

        key = "autoattack" if "autoattack" in attacks else "suite"
        student, retrained = self.student(run)
        if student is None:  # diverged: reported at 0 correct, not dropped (and no crash)
            zero = {"clean_accuracy": 0.0, "robust_accuracy": 0.0, "n_examples": n}
            return {"run": {**asdict(run), "method": run.method}, key: {**zero, "diverged": True}}
        x, y = self.test_images
        report = evaluate(
            student, x, y, eps=EPS, attacks=attacks, n_examples=n, batch_size=500,
            device=self.device, model_name=run.name,
            state_path=self.store.evaluation_state(f"aa-{run.name}.json", "autoattack", run.name)
            if n == N_AA else None,
        )  # fmt: skip
        again = {"retrained_student": True} if retrained else {}  # the report marks it
        return {"run": {**asdict(run), "method": run.method}, key: report.to_dict(), **again}

    def write_report(self) -> None:
        """The tables and plots (``leaderboard_report.py``), and what is still to run."""
        write_report(self.args.report, self.store, self.unavailable_rows())
        if self.args.report:
            replace_generated(Path(self.args.report), *COMPUTE_MARKERS, self.projection())
            write_summary(getattr(self.args, "readme", None), self.store)

    # ------------------------------------------------------------------ the plan
    def size(self, student: str, what: str = "sat") -> float:
        """A student's cost relative to small-cnn's (SAT epochs or the validation)."""
        here, small = (self.costs.get(f"{what}/{s}") for s in (student, STUDY_STUDENT))
        if isinstance(here, dict) and isinstance(small, dict):
            here, small = here.get("epoch_seconds"), small.get("epoch_seconds")
        return here / small if isinstance(here, float) and isinstance(small, float) else 1.0

    def minutes(self, run: Run, what: str) -> float:
        """Estimated minutes on one CPU thread. With this machine's cost file: its measured
        epoch and validation seconds, and the study's suite and AutoAttack minutes scaled
        by its SAT epoch against the study's. Else the cost file's ratios to SAT, anchored
        on the study's recorded SAT epoch. A test unit includes its training where not
        at hand."""
        sat = self.costs.get(f"sat/{run.student}", {}).get("epoch_seconds")
        own = self.costs.get(f"{run.row}/{run.student}", {})
        ratio = own["epoch_seconds"] / sat if sat and "epoch_seconds" in own else 1.0
        anchor = SAT_EPOCH_SECONDS * self.size(run.student)  # this student's SAT epoch
        validation = VALIDATION_SECONDS * self.size(run.student, "validation")
        speed = 1.0  # this machine's time for the study's work, relative
        small_sat = self.costs.get(f"sat/{STUDY_STUDENT}", {}).get("epoch_seconds")
        if self.costs_here and sat and small_sat:
            anchor, speed = sat, small_sat / SAT_EPOCH_SECONDS
            validation = self.costs.get(f"validation/{run.student}", validation)
        one_off = CACHE_SECONDS * speed * (run.options.get("teacher_targets") == "cached")
        train = (run.epochs * (anchor * ratio + validation) + one_off) / 60
        if what == "train":
            return train
        # an evaluation trains its student first where it is not at hand (counted once: in
        # the test unit while that is unfinished)
        try:
            trained = 0.0 if self.trained_student(run) else train
        except ValueError:  # trained with other settings: it is to be trained again
            trained = train
        if what == "autoattack":
            trained *= self.store.load("test", run.name) is not None
            return trained + AA_MINUTES * speed * self.size(run.student)
        return trained + SUITE_MINUTES * speed * self.size(run.student)

    def projection(self) -> str:
        """What is committed, and the compute still to run per row and student: the grid as
        planned now (an extension counts once it is planned), three finals at the selected
        lr (the grid's second lr where none is selected yet) and AutoAttack at seed 0."""
        load = self.store.load
        lines = [
            "| method | student | grid | 3 finals | AutoAttack | total (min) |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        done, planned = {"grid": 0, "test": 0, "AutoAttack": 0}, {"grid": 0, "test": 0}
        total = {"all": 0.0, "online": 0.0}
        for row, (_, options) in METHODS.items():
            for student in STUDENTS:
                runs = grid_runs(load, row, student)
                left = [r for r in runs if load("train", r.name) is None]
                grid = sum(self.minutes(r, "train") for r in left)
                lr = selected_lr(load, row, student) or LRS[1]
                finals = [
                    Run(final_name(row, student, s), row, student, lr, FINAL_EPOCHS, s, options)
                    for s in SEEDS
                ]
                tests = sum(self.minutes(r, "test") for r in finals if not load("test", r.name))
                aa_done = load("autoattack", finals[0].name) is not None
                aa = 0.0 if aa_done else self.minutes(finals[0], "autoattack")
                done["grid"] += len(runs) - len(left)
                done["test"] += sum(load("test", r.name) is not None for r in finals)
                done["AutoAttack"] += aa_done
                planned["grid"] += len(runs)
                planned["test"] += len(finals)
                total["all"] += grid + tests + aa
                total["online"] += (grid + tests + aa) * (row == "dard-online")
                if grid + tests + aa:
                    lines.append(
                        f"| {LABELS[row]} | {student} | {grid:.0f} | {tests:.0f} | {aa:.0f} | "
                        f"{grid + tests + aa:.0f} |"
                    )
        hours = total["all"] / 60, (total["all"] - total["online"]) / 60
        lines.append(
            f"| all | | | | | {total['all']:,.0f} ({hours[0]:.0f} hours on one CPU thread; "
            f"{hours[1]:.0f} without online DARD) |"
        )
        planned["AutoAttack"] = len(METHODS) * len(STUDENTS)
        counts = ", ".join(f"{done[k]} of {planned[k]} {k} units" for k in done)
        return f"Committed: {counts}. Still to run, in minutes {self.cost_basis}:\n\n" + "\n".join(
            lines
        )

    def plan(self) -> list[Unit]:
        load = self.store.load
        units: list[Unit] = []
        rows = [row for row in METHODS if row != "dard-online"]
        for group in (rows, ["dard-online"]):  # online DARD last: it costs the most
            for phase in ("grid", *SEEDS):
                for student in STUDENTS:
                    for row in group:
                        units += self.units(phase, row, student, load)
        return units

    def units(self, phase: str | int, row: str, student: str, load: Any) -> list[Unit]:
        why = self.unavailable(row)
        if phase == "grid":
            return [
                Unit("train", r.name, lambda r=r: self.train_unit(r),
                     self.minutes(r, "train"), why)
                for r in grid_runs(load, row, student)
            ]  # fmt: skip
        units = []
        for r in final_runs(load, row, student):
            if r.seed != phase:
                continue
            units.append(
                Unit("test", r.name, lambda r=r: self.evaluate(r, SUITE_ATTACKS, N_EVAL),
                     self.minutes(r, "test"), why, r.name)
            )  # fmt: skip
            if r.seed == 0:
                units.append(
                    Unit("autoattack", r.name,
                         lambda r=r: self.evaluate(r, ["clean", "autoattack"], N_AA),
                         self.minutes(r, "autoattack"), why, r.name)
                )  # fmt: skip
        return units


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(
        parser,
        out="docs/results/fashion_mnist/leaderboard/units",
        work="runs/fashion_mnist/leaderboard",
        report="docs/leaderboard.md",
    )
    parser.add_argument("--study-out", default=STUDY_OUT, help="the study's unit files")
    parser.add_argument("--study-work", default=STUDY_WORK, help="the study's students")
    parser.add_argument(
        "--readme", default="README.md", help="its summary's markers are rewritten with --report"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    leaderboard = Leaderboard(args)
    main_for(args, leaderboard.runner)
    if args.action == "plan":
        print("\nThe whole leaderboard, projected:\n\n" + leaderboard.projection())


if __name__ == "__main__":
    main()
