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

    python experiments/fashion_mnist_study.py --phase grid        # CPU, resumable
    python experiments/fashion_mnist_study.py --report-only       # rewrite the report

Several processes may run the same command at once (one thread each is the best use of a
small CPU machine): each unit is claimed with a lock file in ``--work``, and every process
re-plans after each unit, so they share the units without running one twice.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dard_plugin.data import load_dataset
from dard_plugin.evaluation import evaluate
from dard_plugin.evaluation.report import write_text_atomically
from dard_plugin.recipes import distill, load_model
from dard_plugin.teachers import load_teacher
from dard_plugin.teachers.shipped import SHIPPED_TEACHERS
from dard_plugin.training.checkpointing import write_json

logger = logging.getLogger("experiments.fashion_mnist_study")

REPO = Path(__file__).resolve().parents[1]
EPS = 0.1
STUDENT_ARCH = "small-cnn"
N_POOL, N_VALIDATION = 55_000, 5_000
N_TRAIN = 10_000
N_VAL_CURVE = 2_000
N_EVAL, N_AA = 1_000, 200
LRS = (0.005, 0.015, 0.04, 0.1)
GRID_EPOCHS, LONG_EPOCHS = 15, 30
LONGER_IS_BETTER = 0.01
ABLATION_EPOCHS = 12
TEACHER_EPOCHS = 6
SEEDS = (0, 1, 2)
ONLINE_CHECK_LRS = (0.015, 0.04)
TEACHERS = {"shipped": "dard-fmnist-teacher", "strong": "dard-fmnist-teacher-strong"}
METHODS = ("sat", "ard", "rslad", "dard")
PHASES = ("teacher", "grid", "epochs", "final", "diagnosis", "ablation")
# What separates DARD from SAT, one change at a time from DARD's grid run at its selected lr
# (cached targets, GRID_EPOCHS, seed 0; validation only): sharper soft labels, no teacher
# (alpha 0: one-hot CE on x and x_S), and the adversarial term alone (no natural half).
DIAGNOSES = {
    "tau1": ({"temperature": 1.0}, "tau 1 instead of 3 (sharper soft labels)"),
    "alpha0": ({"alpha": 0.0}, "alpha 0: no teacher, one-hot CE on x and x_S"),
    "w1": ({"adv_weight": 1.0}, "adv weight 1: the adversarial term only"),
}
METHOD_LABELS = {
    "sat": "SAT (PGD-AT)",
    "ard": "ARD",
    "rslad": "RSLAD",
    "dard": "DARD (cached targets)",
    "dard-online": "DARD (online targets)",
}
SUITE_ATTACKS = ["clean", "fgsm", "pgd", "dpgd", "apgd-ce", "apgd-t"]
ADV_TARGETS = {
    "teacher-adv": "teacher on its own DPGD example x_T (the paper)",
    "teacher-nat": "teacher on the natural image x",
    "student-adv": "teacher on the student's adversarial example x_S",
    "teacher-adv-corrected": "x_T, with the true one-hot where the teacher is fooled",
}


# ---------------------------------------------------------------------- provenance
def provenance() -> dict[str, Any]:
    """The code version, packages and machine behind a result file."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    versions = {}
    for name in (
        "dard-plugin",
        "torch",
        "torchattacks",
        "adversarial-robustness-toolbox",
        "robustbench",
        "pyautoattack",
        "numpy",
    ):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": status not in ("", "unknown"),
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "python": platform.python_version(),
    }


def command_line() -> str:
    """The command that is running, with the script's path relative to the repository
    (this study or another experiment script importing this function)."""
    script = Path(sys.argv[0]).resolve()
    shown = str(script.relative_to(REPO)) if script.is_relative_to(REPO) else sys.argv[0]
    return " ".join(shlex.quote(a) for a in ["python", shown, *sys.argv[1:]])


# ---------------------------------------------------------------------- the runs
@dataclass(frozen=True)
class Run:
    """One student training: the method, its settings, and where it is used."""

    name: str
    method: str
    lr: float
    epochs: int
    seed: int = 0
    teacher: str = "shipped"
    options: dict[str, Any] = field(default_factory=dict)


def grid_runs() -> list[Run]:
    runs = [
        Run(
            f"grid-{m}-lr{lr:g}",
            m,
            lr,
            GRID_EPOCHS,
            options={"teacher_targets": "cached"} if m == "dard" else {},
        )
        for lr in LRS
        for m in METHODS
    ]
    runs += [
        Run(
            f"grid-dard-online-lr{lr:g}",
            "dard",
            lr,
            GRID_EPOCHS,
            options={"teacher_targets": "online"},
        )
        for lr in ONLINE_CHECK_LRS
    ]
    return runs


def final_value(history: list[dict[str, Any]], key: str = "pgd_accuracy") -> float:
    return float(history[-1][key])


# ---------------------------------------------------------------------- selection
Loader = Callable[[str, str], "dict[str, Any] | None"]


def selected_lr(load: Loader, method: str) -> float | None:
    """The grid's learning rate with the best final validation PGD-10 accuracy (clean
    accuracy breaks ties); None until the method's grid is complete."""
    scores = []
    for lr in LRS:
        unit = load("train", f"grid-{method}-lr{lr:g}")
        if unit is None:
            return None
        history = unit["history"]
        scores.append((final_value(history), final_value(history, "clean_accuracy"), lr))
    return max(scores)[2]


def longer_gain(load: Loader, method: str) -> float | None:
    """Final validation PGD-10 after ``LONG_EPOCHS`` minus after ``GRID_EPOCHS``, at the
    selected learning rate; None until both runs exist."""
    lr = selected_lr(load, method)
    if lr is None:
        return None
    short = load("train", f"grid-{method}-lr{lr:g}")
    long = load("train", f"epochs-{method}-lr{lr:g}")
    if short is None or long is None:
        return None
    return final_value(long["history"]) - final_value(short["history"])


def selected_epochs(load: Loader, method: str) -> int | None:
    """``LONG_EPOCHS`` where it gains at least ``LONGER_IS_BETTER``, else ``GRID_EPOCHS``."""
    gain = longer_gain(load, method)
    if gain is None:
        return None
    return LONG_EPOCHS if gain >= LONGER_IS_BETTER else GRID_EPOCHS


class Study:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.work = Path(args.work)
        self.device = torch.device(args.device)
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

    def unit_path(self, kind: str, name: str) -> Path:
        return self.out / f"{kind}-{name}.json"

    def load(self, kind: str, name: str) -> dict[str, Any] | None:
        path = self.unit_path(kind, name)
        return json.loads(path.read_text()) if path.is_file() else None

    def record(self, kind: str, name: str, payload: dict[str, Any], seconds: float) -> None:
        write_json(
            self.unit_path(kind, name),
            {
                "unit": f"{kind}/{name}",
                "command": command_line(),
                "device": str(self.device),
                "seconds": seconds,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "provenance": provenance(),
                **payload,
            },
        )
        logger.info("%s/%s done in %.0f s", kind, name, seconds)

    def student_path(self, name: str) -> Path:
        return self.work / name / "student.pt"

    # ------------------------------------------------------------------ units
    def train(self, run: Run) -> dict[str, Any]:
        done = self.load("train", run.name)
        if done is not None:
            return done
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
            out_dir=self.work / run.name,
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
        self.record("train", run.name, payload, time.perf_counter() - started)
        return self.load("train", run.name) or payload

    def test_suite(self, model: nn.Module, name: str, *, autoattack: bool) -> dict[str, Any]:
        """The final evaluation: the suite on the first ``N_EVAL`` test images and, if
        asked, AutoAttack standard on the first ``N_AA``."""
        x, y = self.test
        suite = evaluate(
            model,
            x,
            y,
            eps=EPS,
            attacks=SUITE_ATTACKS,
            n_examples=N_EVAL,
            batch_size=500,
            device=self.device,
            model_name=name,
        )
        payload: dict[str, Any] = {"suite": suite.to_dict()}
        if autoattack:
            aa = evaluate(
                model,
                x,
                y,
                eps=EPS,
                attacks=["clean", "autoattack"],
                n_examples=N_AA,
                batch_size=500,
                device=self.device,
                model_name=name,
                state_path=self.work / f"aa-{name}.json",
            )
            payload["autoattack"] = aa.to_dict()
        return payload

    def evaluate(self, run: Run, *, autoattack: bool) -> None:
        if self.load("test", run.name) is not None:
            return
        self.train(run)
        model = load_model(str(self.student_path(run.name)), device=self.device)
        started = time.perf_counter()
        payload = {"run": asdict(run), **self.test_suite(model, run.name, autoattack=autoattack)}
        self.record("test", run.name, payload, time.perf_counter() - started)

    def evaluate_teacher(self, key: str) -> None:
        """A teacher on the students' test images and attacks: the reference the students
        are distilled from, and the teacher-to-SAT gap."""
        if self.load("test", f"teacher-{key}") is not None:
            return
        started = time.perf_counter()
        payload = {
            "teacher": TEACHERS[key],
            **self.test_suite(self.teacher(key), f"teacher-{key}", autoattack=True),
        }
        self.record("test", f"teacher-{key}", payload, time.perf_counter() - started)

    def train_teacher(self) -> None:
        """The strong teacher (phase 0) and its test-set numbers for the model card."""
        if self.load("teacher", "strong") is not None:
            return
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
            out_dir=self.work / "teacher-strong",
            resume=True,
            verbose=self.args.verbose,
        )
        trained = time.perf_counter() - started
        x, y = self.test
        suite = evaluate(
            result.student,
            x,
            y,
            eps=EPS,
            attacks=["clean", "pgd"],
            n_examples=x.shape[0],
            batch_size=500,
            device=self.device,
            model_name="dard-fmnist-teacher-strong",
        )
        aa = evaluate(
            result.student,
            x,
            y,
            eps=EPS,
            attacks=["clean", "autoattack"],
            n_examples=N_AA,
            batch_size=500,
            device=self.device,
            model_name="dard-fmnist-teacher-strong",
            state_path=self.work / "aa-teacher-strong.json",
        )
        self.record(
            "teacher",
            "strong",
            {
                "history": result.history,
                "training_seconds": trained,
                "test_suite": suite.to_dict(),
                "autoattack": aa.to_dict(),
            },
            time.perf_counter() - started,
        )

    # ------------------------------------------------------------------ selection
    def selected_lr(self, method: str) -> float | None:
        return selected_lr(self.load, method)

    def selected_epochs(self, method: str) -> int | None:
        return selected_epochs(self.load, method)

    def final_runs(self) -> list[Run]:
        """Seed-major: every method and teacher at seed 0, then at seed 1, ..., so that a
        study stopped part-way has a complete comparison at the seeds it reached."""
        runs = []
        for seed in SEEDS:
            for method in METHODS:
                lr, epochs = self.selected_lr(method), self.selected_epochs(method)
                if lr is None or epochs is None:
                    continue
                options = {"teacher_targets": "cached"} if method == "dard" else {}
                for teacher in TEACHERS if method != "sat" else ("shipped",):
                    runs.append(
                        Run(
                            f"final-{teacher}-{method}-s{seed}",
                            method,
                            lr,
                            epochs,
                            seed=seed,
                            teacher=teacher,
                            options=options,
                        )
                    )
        return runs

    def online_final_runs(self) -> list[Run]:
        """DARD with online targets (the paper's) at the learning rate the online grid
        points prefer, DARD's selected epochs, shipped teacher, seeds 0, 1, 2: is the cached
        stand-in's verdict the online one's? Last in the plan (about 75 minutes a seed on 1
        CPU thread)."""
        epochs = self.selected_epochs("dard")
        if epochs is None:
            return []
        scores = []
        for lr in ONLINE_CHECK_LRS:
            unit = self.load("train", f"grid-dard-online-lr{lr:g}")
            if unit is None:
                return []
            scores.append((final_value(unit["history"]), lr))
        best_lr = max(scores)[1]
        return [
            Run(
                f"final-shipped-dard-online-s{seed}",
                "dard",
                best_lr,
                epochs,
                seed=seed,
                options={"teacher_targets": "online"},
            )
            for seed in SEEDS
        ]

    def dard_variants(self, options: dict[str, dict[str, Any]], epochs: int) -> list[Run]:
        """DARD at its selected learning rate, seed 0, shipped teacher, one run per
        ``name: trainer options``; empty until DARD's grid is complete."""
        lr = self.selected_lr("dard")
        if lr is None:
            return []
        return [Run(name, "dard", lr, epochs, options=o) for name, o in options.items()]

    def ablation_runs(self) -> list[Run]:
        return self.dard_variants(
            {
                f"ablation-{variant}": {"teacher_targets": "online", "adv_targets": variant}
                for variant in ADV_TARGETS
            },
            ABLATION_EPOCHS,
        )

    def diagnosis_runs(self) -> list[Run]:
        lr = self.selected_lr("dard")
        if lr is None:
            return []
        return self.dard_variants(
            {
                f"diag-dard-{key}-lr{lr:g}": {"teacher_targets": "cached", **options}
                for key, (options, _) in DIAGNOSES.items()
            },
            GRID_EPOCHS,
        )

    # ------------------------------------------------------------------ the plan
    def plan(self) -> list[tuple[str, str, Callable[[], Any]]]:
        phases = self.args.phase
        units: list[tuple[str, str, Callable[[], Any]]] = []

        def train_unit(run: Run) -> tuple[str, str, Callable[[], Any]]:
            return ("train", run.name, lambda: self.train(run))

        if "teacher" in phases:
            units.append(("teacher", "strong", self.train_teacher))
        if "grid" in phases:
            units += [train_unit(run) for run in grid_runs()]
        if "epochs" in phases:
            for method in METHODS:
                lr = self.selected_lr(method)
                if lr is not None:
                    options = {"teacher_targets": "cached"} if method == "dard" else {}
                    units.append(
                        train_unit(
                            Run(
                                f"epochs-{method}-lr{lr:g}",
                                method,
                                lr,
                                LONG_EPOCHS,
                                options=options,
                            )
                        )
                    )

        # The final phase's first seed, then the ablation, then the other seeds: the
        # ablation answers "why" and should not wait for the third seed.
        def final_unit(run: Run) -> tuple[str, str, Callable[[], Any]]:
            return ("test", run.name, lambda: self.evaluate(run, autoattack=run.seed == 0))

        finals = self.final_runs() if "final" in phases else []
        units += [final_unit(run) for run in finals if run.seed == SEEDS[0]]
        if "final" in phases:
            units += [
                ("test", f"teacher-{key}", lambda key=key: self.evaluate_teacher(key))
                for key in TEACHERS
            ]
        if "diagnosis" in phases:
            units += [train_unit(run) for run in self.diagnosis_runs()]
        if "ablation" in phases:
            for run in self.ablation_runs():
                units.append(
                    ("test", run.name, lambda run=run: self.evaluate(run, autoattack=True))
                )
        units += [final_unit(run) for run in finals if run.seed != SEEDS[0]]
        if "final" in phases:  # AutoAttack at seed 0, as for the others
            units += [final_unit(run) for run in self.online_final_runs()]
        return units

    def claim(self, kind: str, name: str) -> Path | None:
        """Take a unit for this process: a lock file in ``--work`` made with O_EXCL, so that
        several processes running the same plan share its units. A lock whose process is
        gone (killed, machine restarted) is taken over. None when another live process
        holds the unit."""
        lock = self.work / f"{kind}-{name}.lock"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    holder = int(lock.read_text().strip() or "0")
                except (OSError, ValueError):
                    holder = 0
                if holder and _alive(holder):
                    return None
                lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return lock
        return None

    def run(self) -> None:
        """Run the plan's units in order, re-planning after each one (a finished grid or
        epochs unit makes later units known), skipping finished units and units another
        process holds."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        only = set(self.args.only or [])
        while True:
            for kind, name, work in self.plan():
                if self.load(kind, name) is not None or (only and name not in only):
                    continue
                lock = self.claim(kind, name)
                if lock is None:
                    continue
                try:
                    if self.load(kind, name) is None:  # another process may have ended it
                        logger.info("unit %s/%s (pid %d)", kind, name, os.getpid())
                        work()
                        write_report(self.args.report, self.out)
                finally:
                    lock.unlink(missing_ok=True)
                break  # re-plan
            else:
                break
        write_report(self.args.report, self.out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------- the report
BEGIN, END = "<!-- fashion_mnist_study:begin -->", "<!-- fashion_mnist_study:end -->"


def _cpu_label(threads: int) -> str:
    return f"CPU ({threads} torch thread{'' if threads == 1 else 's'} per process)"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _units(out: Path) -> dict[str, dict[str, Any]]:
    units = (json.loads(p.read_text()) for p in sorted(out.glob("*.json")))
    return {unit["unit"]: unit for unit in units}


def _loader(units: dict[str, dict[str, Any]]) -> Loader:
    """``Study.load`` over units already read."""
    return lambda kind, name: units.get(f"{kind}/{name}")


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _mean_spread(values: list[float]) -> str:
    if not values:
        return "—"
    mean, std = _mean_std(values)
    if std is None:
        return f"{100 * mean:.1f} (1 seed)"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def compare(a: list[float], b: list[float]) -> tuple[float, str]:
    """``mean(a) - mean(b)`` and the verdict the report may state: a difference is called
    only where it exceeds the sum of the two seed spreads (sample standard deviations);
    with fewer than two seeds on either side nothing is called."""
    mean_a, std_a = _mean_std(a)
    mean_b, std_b = _mean_std(b)
    diff = mean_a - mean_b
    if std_a is None or std_b is None:
        return diff, "not called (1 seed)"
    if abs(diff) > std_a + std_b:
        return diff, "higher" if diff > 0 else "lower"
    return diff, "within the spread"


def _final_tests(units: dict[str, dict[str, Any]], teacher: str, method: str) -> list[Any]:
    prefix = f"test/final-{teacher}-{method}-s"
    return [u for name, u in sorted(units.items()) if name.startswith(prefix)]


CURVE_EPOCHS = (1, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30)


def _curve_runs(units: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The validation curves behind the choice of epochs: each method's selected grid run
    and its ``LONG_EPOCHS`` run, and the online-targets checks."""
    load = _loader(units)
    runs = []
    for method in METHODS:
        lr = selected_lr(load, method)
        if lr is None:
            continue
        for kind, epochs in (("grid", GRID_EPOCHS), ("epochs", LONG_EPOCHS)):
            unit = load("train", f"{kind}-{method}-lr{lr:g}")
            if unit is not None:
                runs.append((f"{METHOD_LABELS[method]}, lr {lr:g}, {epochs} epochs", unit))
    for lr in ONLINE_CHECK_LRS:
        unit = load("train", f"grid-dard-online-lr{lr:g}")
        if unit is not None:
            runs.append((f"DARD (online targets), lr {lr:g}, {GRID_EPOCHS} epochs", unit))
    return runs


def plot_curves(units: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Validation PGD-10 accuracy per epoch of the runs behind the choice of epochs."""
    runs = _curve_runs(units)
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for label, unit in runs:
        history = unit["history"]
        axes.plot(
            [h["epoch"] for h in history],
            [100 * h["pgd_accuracy"] for h in history],
            linestyle="--" if len(history) <= GRID_EPOCHS else "-",
            label=label,
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation PGD-10 accuracy (%)")
    axes.legend(fontsize=6)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def report_section(out: Path, units: dict[str, dict[str, Any]] | None = None) -> str:
    """The generated tables from the unit files in ``out`` (or ``units`` already read)."""
    units = _units(out) if units is None else units
    load = _loader(units)
    lines = [
        "### Validation grid (final-epoch accuracy on the validation split, %)",
        "",
        f"clean / PGD-10 after the last of {GRID_EPOCHS} epochs, seed 0, shipped teacher; "
        "selected = best PGD-10 (clean breaks ties).",
        "",
        "| method | " + " | ".join(f"lr {lr:g}" for lr in LRS) + " | selected |",
        "| --- | " + " | ".join("---:" for _ in LRS) + " | ---: |",
    ]
    for method in (*METHODS, "dard-online"):
        cells = []
        for lr in LRS:
            unit = units.get(f"train/grid-{method}-lr{lr:g}")
            cells.append(
                "—"
                if unit is None
                else f"{_pct(final_value(unit['history'], 'clean_accuracy'))} / "
                f"{_pct(final_value(unit['history']))}"
            )
        label = METHOD_LABELS[method]
        lr = selected_lr(load, method) if method in METHODS else None
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {'—' if lr is None else f'{lr:g}'} |"
        )

    lines += [
        "",
        "### Epochs (validation PGD-10 accuracy per epoch, %, at the selected learning rate)",
        "",
        f"The {LONG_EPOCHS}-epoch budget is kept where its final validation PGD-10 exceeds "
        f"the {GRID_EPOCHS}-epoch run's by at least {100 * LONGER_IS_BETTER:g} point. "
        "The lr drops x0.1 at 60% and 80% of the epochs. Plot: `study-curves.png`.",
        "",
        "| run | " + " | ".join(f"ep {e}" for e in CURVE_EPOCHS) + " |",
        "| --- | " + " | ".join("---:" for _ in CURVE_EPOCHS) + " |",
    ]
    for label, unit in _curve_runs(units):
        by_epoch = {h["epoch"]: h["pgd_accuracy"] for h in unit["history"]}
        lines.append(
            f"| {label} | "
            + " | ".join(_pct(by_epoch[e]) if e in by_epoch else "" for e in CURVE_EPOCHS)
            + " |"
        )
    lines += [
        "",
        "| method | lr | gain of 30 over 15 epochs | epochs used |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method in METHODS:
        lr, gain = selected_lr(load, method), longer_gain(load, method)
        epochs = selected_epochs(load, method)
        lines.append(
            f"| {METHOD_LABELS[method]} | {'—' if lr is None else f'{lr:g}'} | "
            f"{'—' if gain is None else f'{100 * gain:+.1f}'} | "
            f"{'—' if epochs is None else epochs} |"
        )

    lines += [
        "",
        "### Final comparison (test images; mean ± sample std over seeds, %)",
        "",
        f"Suite on the first {N_EVAL} test images (clean, FGSM, PGD-20, DPGD, APGD-CE, "
        f"APGD-T; worst case per sample); AutoAttack standard on the first {N_AA}, seed 0 "
        "only. Teachers: one model each, same images and attacks.",
        "",
        "| teacher | model | clean | PGD-20 | APGD-T | worst case (suite) "
        "| AutoAttack (seed 0) | seeds |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, name in TEACHERS.items():
        unit = load("test", f"teacher-{key}")
        if unit is not None:
            suite = unit["suite"]
            lines.append(
                f"| {key} | teacher `{name}` | {_pct(suite['clean_accuracy'])} | "
                f"{_pct(suite['per_attack']['pgd'])} | {_pct(suite['per_attack']['apgd-t'])} | "
                f"{_pct(suite['robust_accuracy'])} | "
                f"{_pct(unit['autoattack']['robust_accuracy'])} | — |"
            )
    for teacher in TEACHERS:
        for method in (*METHODS, "dard-online"):
            if method in ("sat", "dard-online") and teacher != "shipped":
                continue
            tests = _final_tests(units, teacher, method)
            if not tests:
                continue
            aa = [t["autoattack"]["robust_accuracy"] for t in tests if "autoattack" in t]
            lines.append(
                f"| {'none' if method == 'sat' else teacher} | {METHOD_LABELS[method]} | "
                + " | ".join(
                    _mean_spread(values)
                    for values in (
                        [t["suite"]["clean_accuracy"] for t in tests],
                        [t["suite"]["per_attack"]["pgd"] for t in tests],
                        [t["suite"]["per_attack"]["apgd-t"] for t in tests],
                        [t["suite"]["robust_accuracy"] for t in tests],
                        aa,
                    )
                )
                + f" | {len(tests)} |"
            )

    lines += [
        "",
        "### DARD against each method (test; difference of seed means, points)",
        "",
        "A difference is called only where it exceeds the sum of the two seed spreads.",
        "",
        "| teacher | DARD minus | clean | verdict | worst case | verdict | seeds |",
        "| --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    for teacher in TEACHERS:
        dard = _final_tests(units, teacher, "dard")
        if not dard:
            continue
        for other in ("sat", "ard", "rslad"):
            tests = _final_tests(units, "shipped" if other == "sat" else teacher, other)
            if not tests:
                continue
            row = [f"| {teacher} | {METHOD_LABELS[other]}"]
            for key in ("clean_accuracy", "robust_accuracy"):
                diff, verdict = compare(
                    [t["suite"][key] for t in dard], [t["suite"][key] for t in tests]
                )
                row.append(f"{100 * diff:+.1f} | {verdict}")
            lines.append(" | ".join(row) + f" | {len(dard)} vs {len(tests)} |")
    sat = _final_tests(units, "shipped", "sat")
    gaps = []
    for key in TEACHERS:
        unit = load("test", f"teacher-{key}")
        if unit is not None and sat:
            mean, _ = _mean_std([t["suite"]["robust_accuracy"] for t in sat])
            gaps.append(
                f"`{TEACHERS[key]}` {_pct(unit['suite']['robust_accuracy'])} against SAT "
                f"{_pct(mean)}: a gap of {100 * (unit['suite']['robust_accuracy'] - mean):.1f}"
            )
    if gaps:
        lines += ["", "Teacher-to-SAT gap (worst case, test): " + "; ".join(gaps) + "."]

    lines += [
        "",
        "### Where DARD's adversarial soft labels come from (test images, %)",
        "",
        f"DARD, online targets, shipped teacher, selected lr, {ABLATION_EPOCHS} epochs, "
        "seed 0. Fooled: the share of training images whose teacher DPGD example x_T the "
        "teacher misclassifies (mean over the last epoch's batches).",
        "",
        "| variant | teacher fooled on x_T | clean | worst case | AutoAttack |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for variant, label in ADV_TARGETS.items():
        test = units.get(f"test/ablation-{variant}")
        train = units.get(f"train/ablation-{variant}")
        fooled = train["history"][-1].get("teacher_fooled") if train else None
        lines.append(
            f"| {label} | {_pct(fooled)} | "
            f"{_pct(test['suite']['clean_accuracy']) if test else '—'} | "
            f"{_pct(test['suite']['robust_accuracy']) if test else '—'} | "
            f"{_pct(test['autoattack']['robust_accuracy']) if test else '—'} |"
        )
    dard_lr = selected_lr(load, "dard")
    if dard_lr is not None:
        base = load("train", f"grid-dard-lr{dard_lr:g}")
        sat_lr = selected_lr(load, "sat")
        sat = load("train", f"grid-sat-lr{sat_lr:g}") if sat_lr is not None else None
        lines += [
            "",
            "### What separates DARD from SAT (validation split, %)",
            "",
            f"One change at a time from DARD's selected grid run (cached targets, lr "
            f"{dard_lr:g}, {GRID_EPOCHS} epochs, seed 0); final-epoch clean / PGD-10 on the "
            "validation images, difference in PGD-10 from DARD.",
            "",
            "| run | clean | PGD-10 | PGD-10 minus DARD |",
            "| --- | ---: | ---: | ---: |",
        ]
        rows = [("DARD (tau 3, alpha 0.7, adv weight 0.5)", base)]
        rows += [
            (label, load("train", f"diag-dard-{key}-lr{dard_lr:g}"))
            for key, (_, label) in DIAGNOSES.items()
        ]
        if sat is not None:
            rows.append((f"SAT at its selected lr {sat_lr:g}", sat))
        for label, unit in rows:
            if unit is None or base is None:
                lines.append(f"| {label} | — | — | — |")
                continue
            pgd = final_value(unit["history"])
            lines.append(
                f"| {label} | {_pct(final_value(unit['history'], 'clean_accuracy'))} | "
                f"{_pct(pgd)} | {100 * (pgd - final_value(base['history'])):+.1f} |"
            )

    commits = sorted(
        {(u["provenance"]["git_commit"][:10], u["provenance"]["git_dirty"]) for u in units.values()}
    )
    machines = sorted(
        {
            u["provenance"]["machine"]["cuda"]
            or _cpu_label(u["provenance"]["machine"]["torch_threads"])
            for u in units.values()
        }
    )
    lines += [
        "",
        f"Units finished: {len(units)}. Code: "
        + ", ".join(f"`{c}`{' (dirty tree)' if d else ''}" for c, d in commits)
        + f". Machines: {', '.join(machines)}. Raw JSON: `{out}/`.",
        "",
    ]
    return "\n".join(lines)


def write_report(report_path: str | None, out: Path) -> None:
    """Rewrite the generated part of ``report_path`` (between the markers)."""
    if not report_path or not any(out.glob("*.json")):
        return
    units = _units(out)
    block = "\n".join([BEGIN, "", report_section(out, units), END])
    plot_curves(units, out.parent / "study-curves.png")
    path = Path(report_path)
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = (text + "\n" if text else "") + block + "\n"
    write_text_atomically(path, text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--phase",
        type=lambda s: s.split(","),
        default=list(PHASES),
        help="comma-separated phases to run (default: all, in order)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="docs/results/fashion_mnist/study")
    parser.add_argument("--work", default="runs/fashion_mnist/study")
    parser.add_argument("--report", default="docs/results.md")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=None,
        help="comma-separated unit names (e.g. grid-dard-online-lr0.04): run only these, "
        "so that a second process can take units the first will not reach for a while",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    unknown = sorted(set(args.phase) - set(PHASES))
    if unknown:
        parser.error(f"--phase: unknown phase(s) {unknown}")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    study = Study(args)
    if args.report_only:
        write_report(args.report, study.out)
        return
    study.run()


if __name__ == "__main__":
    main()
