"""experiments/fashion_mnist_study.py (a definition on experiments/study_runner/) without
training: how processes share units (lock files), the order of the final phase, the
selection rules and the report's verdicts, on synthetic unit files."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, hold_lock

sys.path.insert(0, str(REPO_ROOT / "experiments"))
import fashion_mnist_study as study
import fashion_mnist_study_design as design
import fashion_mnist_study_report as report


def make_study(tmp_path: Path, phases: str = "grid,epochs,final,diagnosis,ablation") -> Any:
    args = argparse.Namespace(
        action="run",
        threads=None,
        phase=phases.split(","),
        out=str(tmp_path / "out"),
        work=str(tmp_path / "work"),
        device="cpu",
        report="",
        only=None,
        verbose=False,
    )
    s = study.Study(args)
    s.out.mkdir(parents=True, exist_ok=True)
    s.work.mkdir(parents=True, exist_ok=True)
    return s


PROVENANCE = {
    "git_commit": "0" * 40,
    "git_dirty": False,
    "machine": {"cuda": None, "torch_threads": 1},
}


def write_unit(out: Path, kind: str, name: str, **payload: Any) -> None:
    body = {"unit": f"{kind}/{name}", "provenance": PROVENANCE, **payload}
    (out / f"{kind}-{name}.json").write_text(json.dumps(body))


def history(pgd: list[float], clean: float = 0.8) -> list[dict[str, float]]:
    return [{"epoch": i + 1, "pgd_accuracy": p, "clean_accuracy": clean} for i, p in enumerate(pgd)]


def complete_grid(out: Path, best: dict[str, float]) -> None:
    """Every grid unit; ``best[method]`` gets PGD 0.6, the others 0.5."""
    for method in design.METHODS:
        for lr in design.LRS:
            value = 0.6 if lr == best[method] else 0.5
            write_unit(out, "train", f"grid-{method}-lr{lr:g}", history=history([0.4, value]))


def test_a_unit_is_claimed_once_and_released(tmp_path: Path) -> None:
    first, second = make_study(tmp_path), make_study(tmp_path)
    lock = first.claim("train", "grid-sat-lr0.04")
    assert lock is not None and lock.read_text().strip() == str(os.getpid())
    assert second.claim("train", "grid-sat-lr0.04") is None  # held
    assert second.claim("train", "grid-ard-lr0.04") is not None  # other units are free
    first.store.release(lock)
    taken = second.claim("train", "grid-sat-lr0.04")
    assert taken is not None and taken.read_text().strip() == str(os.getpid())


def test_selection_and_the_final_phase_is_seed_major_with_the_ablation_after_seed_0(
    tmp_path: Path,
) -> None:
    s = make_study(tmp_path)
    early = [unit.name for unit in s.plan()]  # no grid yet: only what needs no selection
    assert not [n for n in early if n.startswith(("epochs-", "final-", "diag-", "ablation-"))]
    best = {"sat": 0.04, "ard": 0.015, "rslad": 0.1, "dard": 0.005}
    complete_grid(s.out, best)
    assert [s.selected_lr(m) for m in design.METHODS] == [best[m] for m in design.METHODS]
    assert s.final_runs() == []  # no epochs check yet: the final phase is not known
    for method, long_final in (("sat", 0.62), ("ard", 0.605), ("rslad", 0.7), ("dard", 0.5)):
        lr = best[method]
        write_unit(s.out, "train", f"epochs-{method}-lr{lr:g}", history=history([0.4, long_final]))
    # +2 points -> 30 epochs; +0.5 -> 15; +10 -> 30; -10 -> 15
    assert [s.selected_epochs(m) for m in design.METHODS] == [30, 15, 30, 15]
    names = [unit.name for unit in s.plan()]
    finals = [n for n in names if n.startswith(("final-", "ablation-", "teacher-"))]
    seed0 = [n for n in finals if n.endswith("-s0")]
    assert len(seed0) == 7  # SAT once, the three distillers with both teachers
    assert finals[:7] == seed0
    assert finals[7:9] == ["teacher-shipped", "teacher-strong"]
    assert [n for n in names if n.startswith("diag-")] == [
        f"diag-dard-{key}-lr0.005" for key in design.DIAGNOSES
    ]
    assert names.index("teacher-strong") < names.index("diag-dard-tau1-lr0.005")
    assert names.index("diag-dard-w1-lr0.005") < names.index("ablation-teacher-adv")
    assert finals[9:13] == [f"ablation-{v}" for v in design.ADV_TARGETS]
    assert [n[-3:] for n in finals[13:]] == ["-s1"] * 7 + ["-s2"] * 7
    for lr, value in zip(design.ONLINE_CHECK_LRS, (0.61, 0.62), strict=True):
        write_unit(s.out, "train", f"grid-dard-online-lr{lr:g}", history=history([0.4, value]))
    last = [unit.name for unit in s.plan()[-3:]]
    online = s.online_final_runs()
    assert last == [run.name for run in online]
    assert last == [f"final-shipped-dard-online-s{seed}" for seed in design.SEEDS]
    assert [run.seed for run in online] == list(design.SEEDS)
    assert {(run.lr, run.epochs) for run in online} == {(design.ONLINE_CHECK_LRS[1], 15)}
    assert all(run.options == {"teacher_targets": "online"} for run in online)
    diag = {r.name: r for r in s.diagnosis_runs()}
    assert diag["diag-dard-alpha0-lr0.005"].options == {"teacher_targets": "cached", "alpha": 0.0}
    runs = {r.name: r for r in s.final_runs()}
    assert runs["final-strong-rslad-s2"].epochs == 30
    assert runs["final-strong-rslad-s2"].lr == 0.1
    assert runs["final-shipped-dard-s1"].options == {"teacher_targets": "cached"}


def test_run_skips_units_another_process_holds_and_stops(tmp_path: Path) -> None:
    s = make_study(tmp_path, phases="grid")
    complete_grid(s.out, {m: 0.04 for m in design.METHODS})
    # the two online units are held by another process
    held = [
        hold_lock(s.work / f"train-grid-dard-online-lr{lr:g}.lock")
        for lr in design.ONLINE_CHECK_LRS
    ]
    try:
        s.run()  # returns at once: nothing to train
    finally:
        for fd in held:
            os.close(fd)
    assert not list(s.out.glob("train-grid-dard-online*"))


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [
        ([0.60, 0.61, 0.62], [0.50, 0.51, 0.52], "higher"),  # 10 points, spreads 1 + 1
        ([0.50, 0.51, 0.52], [0.60, 0.61, 0.62], "lower"),
        ([0.60, 0.61, 0.62], [0.595, 0.60, 0.605], "within the spread"),
        ([0.60], [0.50, 0.51, 0.52], "not called (1 seed)"),
    ],
)
def test_a_difference_is_called_only_beyond_the_seed_spread(
    a: list[float], b: list[float], verdict: str
) -> None:
    diff, said = report.compare(a, b)
    assert diff == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert said == verdict


def test_report_tables_from_units(tmp_path: Path) -> None:
    s = make_study(tmp_path)
    complete_grid(s.out, {m: 0.04 for m in design.METHODS})

    def suite(clean: float, robust: float) -> dict[str, Any]:
        return {
            "clean_accuracy": clean,
            "robust_accuracy": robust,
            "per_attack": {"pgd": robust + 0.01, "apgd-t": robust},
        }

    for seed, (sat, dard) in enumerate([(0.60, 0.50), (0.61, 0.51), (0.62, 0.52)]):
        extra = {"autoattack": {"robust_accuracy": sat}} if seed == 0 else {}
        write_unit(s.out, "test", f"final-shipped-sat-s{seed}", suite=suite(0.78, sat), **extra)
        write_unit(s.out, "test", f"final-shipped-dard-s{seed}", suite=suite(0.80, dard))
    write_unit(
        s.out,
        "test",
        "teacher-shipped",
        suite=suite(0.81, 0.71),
        autoattack={"robust_accuracy": 0.72},
    )
    write_unit(s.out, "train", "diag-dard-tau1-lr0.04", history=history([0.4, 0.65], clean=0.79))
    text = report.report_section(s.out)
    assert "| tau 1 instead of 3 (sharper soft labels) | 79.0 | 65.0 | +5.0 |" in text
    assert "| SAT at its selected lr 0.04 | 80.0 | 60.0 | +0.0 |" in text
    assert "| none | SAT (PGD-AT) | 78.0 ± 0.0 | 62.0 ± 1.0 | 61.0 ± 1.0 | 61.0 ± 1.0 |" in text
    assert "61.0 ± 1.0 | 60.0 (1 seed) | 3 |" in text
    assert "| shipped | SAT (PGD-AT) | +2.0 | higher | -10.0 | lower | 3 vs 3 |" in text
    assert "against SAT 61.0: a gap of 10.0" in text
    assert "| shipped | teacher `dard-fmnist-teacher` | 81.0 | 72.0 | 71.0 | 71.0 | 72.0 |" in text
    report.write_report(str(tmp_path / "results.md"), s.out)
    assert (s.out.parent / "study-curves.png").stat().st_size > 0


def test_the_committed_report_is_regenerated_byte_for_byte_from_the_committed_units() -> None:
    """docs/results.md's generated part is what the runner's definition writes from the
    committed unit files (the re-expression on the runner changed no number or line)."""
    out = Path("docs/results/fashion_mnist/study")  # as the report names it
    text = (REPO_ROOT / "docs" / "results.md").read_text()
    begin, end = text.index(report.BEGIN), text.index(report.END)
    committed = text[begin + len(report.BEGIN) : end]
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        generated = report.report_section(out)
    finally:
        os.chdir(cwd)
    assert committed == "\n\n" + generated + "\n"


def test_a_units_rerun_command_finds_that_unit_alone_in_the_committed_results(
    tmp_path: Path,
) -> None:
    """The command a new unit file records (``run --only kind/name``, default folders)
    plans exactly that unit, from the committed results, and would rerun it into
    ``<work>/rerun/``: here only planned (no training)."""
    args = argparse.Namespace(
        action="plan",
        threads=None,
        phase=list(design.PHASES),
        out=str(REPO_ROOT / "docs" / "results" / "fashion_mnist" / "study"),
        work=str(tmp_path / "work"),
        device="cpu",
        report="",
        only=["test/final-shipped-sat-s1"],
        verbose=False,
    )
    s = study.Study(args)
    final = next(u for u in s.plan() if u.id == "test/final-shipped-sat-s1")
    command = s.runner.rerun_command(final)
    assert (
        command == "python experiments/fashion_mnist_study.py run --only test/final-shipped-sat-s1"
    )
    table = s.runner.plan_table()
    assert [line for line in table.splitlines() if line.startswith("| `")] == [
        f"| `test/final-shipped-sat-s1` | finished | "
        f"{json.loads((s.out / 'test-final-shipped-sat-s1.json').read_text())['seconds'] / 60:.0f}"
        " (measured) |"
    ]
