"""experiments/leaderboard.py without training: the plan (unit count, order, reuse of the
study's units), the grid's extension and selection, and the report's calls, on synthetic
unit files."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "experiments"))
import leaderboard
import leaderboard_design as design
import leaderboard_report as report
import leaderboard_rows as board_rows
import leaderboard_summary
from study_runner.execute import ReusedUnitError

PROVENANCE = {
    "git_commit": "1" * 40,
    "git_dirty": False,
    "machine": {"cuda": None, "torch_threads": 1},
}
ROWS, STUDENTS = len(design.METHODS), len(design.STUDENTS)


def make(tmp_path: Path, available: bool = True) -> Any:
    args = argparse.Namespace(
        action="plan",
        out=str(tmp_path / "lb" / "units"),
        work=str(tmp_path / "work"),
        study_out=str(tmp_path / "study"),
        study_work=str(tmp_path / "study-work"),
        report="",
        device="cpu",
        only=None,
        threads=None,
        verbose=False,
    )
    (tmp_path / "study").mkdir(exist_ok=True)
    board = leaderboard.Leaderboard(args)
    if available:
        board.unavailable = lambda row: None  # as if every method were installed
    return board


def history(pgd: float, clean: float = 0.8, epochs: int = 2, seconds: float = 10.0) -> list[Any]:
    return [
        {"epoch": e + 1, "pgd_accuracy": pgd, "clean_accuracy": clean, "seconds": seconds}
        for e in range(epochs)
    ]


def write(folder: Path, kind: str, name: str, **payload: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = {"unit": f"{kind}/{name}", "seconds": 60.0, "provenance": PROVENANCE, **payload}
    (folder / f"{kind}-{name}.json").write_text(json.dumps(body))


def grid(board: Any, row: str, student: str, scores: dict[float, float]) -> None:
    for lr, pgd in scores.items():
        write(board.store.out, "train", design.grid_name(row, student, lr), history=history(pgd))


def test_the_plan_starts_with_every_grid_and_knows_finals_only_after_selection(
    tmp_path: Path,
) -> None:
    board = make(tmp_path)
    units = board.plan()
    assert len(units) == ROWS * STUDENTS * len(design.LRS)  # 9 rows x 2 students x 4 lrs
    assert {u.kind for u in units} == {"train"}
    assert units[0].id == "train/grid-sat-small-cnn-lr0.005"
    assert units[-1].id == "train/grid-dard-online-tiny-cnn-lr0.1"  # online DARD last
    grid(board, "sat", "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    names = [u.id for u in board.plan()]
    finals = [n for n in names if "final-sat-tiny-cnn" in n]
    assert finals == [
        "test/final-sat-tiny-cnn-s0",
        "autoattack/final-sat-tiny-cnn-s0",
        "test/final-sat-tiny-cnn-s1",
        "test/final-sat-tiny-cnn-s2",
    ]
    assert names.index(finals[0]) > names.index("train/grid-adaad-igdm-tiny-cnn-lr0.1")
    assert names.index(finals[-1]) < names.index("train/grid-dard-online-small-cnn-lr0.005")

    # every grid complete with an interior best: 4 grid + 3 tests + 1 AutoAttack per row
    for row in design.METHODS:
        for student in design.STUDENTS:
            grid(board, row, student, {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    assert len(board.plan()) == ROWS * STUDENTS * (len(design.LRS) + 4)
    finals = {
        r.lr for row in design.METHODS for r in design.final_runs(board.store.load, row, "tiny-cnn")
    }
    assert finals == {0.015}
    assert all(
        r.epochs == design.FINAL_EPOCHS
        for r in design.final_runs(board.store.load, "ard", "small-cnn")
    )


@pytest.mark.parametrize(
    ("scores", "extra", "chosen"),
    [
        ({0.005: 0.4, 0.015: 0.5, 0.04: 0.55, 0.1: 0.6}, 0.25, 0.25),  # best on the top edge
        ({0.005: 0.6, 0.015: 0.5, 0.04: 0.45, 0.1: 0.4}, 0.00167, 0.005),  # bottom edge
    ],
)
def test_a_grid_whose_best_is_on_its_edge_is_extended_once(
    tmp_path: Path, scores: dict[float, float], extra: float, chosen: float
) -> None:
    board = make(tmp_path)
    grid(board, "ard", "tiny-cnn", scores)
    load = board.store.load
    assert design.grid_lrs(load, "ard", "tiny-cnn") == (sorted([*scores, extra]), False)
    assert design.selected_lr(load, "ard", "tiny-cnn") is None  # the extension is missing
    planned = [u.name for u in board.plan() if "ard-tiny" in u.name]
    assert design.grid_name("ard", "tiny-cnn", extra) in planned
    # the extension beats the edge where the trend goes on, else the edge stays chosen
    grid(board, "ard", "tiny-cnn", {extra: 0.65 if chosen == extra else 0.3})
    assert design.grid_lrs(load, "ard", "tiny-cnn")[1] is True
    assert design.selected_lr(load, "ard", "tiny-cnn") == chosen
    assert {r.lr for r in design.final_runs(load, "ard", "tiny-cnn")} == {chosen}


def test_the_studys_units_are_reused_only_where_their_settings_are_identical(
    tmp_path: Path,
) -> None:
    board = make(tmp_path)
    study = tmp_path / "study"
    same = {
        "method": "sat",
        "lr": 0.04,
        "epochs": 15,
        "seed": 0,
        "teacher": "shipped",
        "options": {},
    }
    write(
        study,
        "train",
        "grid-sat-lr0.04",
        run={"name": "grid-sat-lr0.04", **same},
        history=history(0.6),
    )
    other = {**same, "lr": 0.015, "epochs": 10}  # another budget: not the leaderboard's unit
    write(study, "train", "grid-sat-lr0.015", run=other, history=history(0.7))
    load = board.store.load
    linked = load("train", "grid-sat-small-cnn-lr0.04")
    assert linked is not None and linked["linked_from"].endswith("train-grid-sat-lr0.04.json")
    assert load("train", "grid-sat-small-cnn-lr0.015") is None
    assert load("train", "grid-sat-tiny-cnn-lr0.04") is None  # the study had small-cnn only
    states = board.runner.plan_table()
    assert "| `train/grid-sat-small-cnn-lr0.04` | reused: " in states
    assert "| `train/grid-sat-small-cnn-lr0.015` | to run |" in states
    # asked to rerun a reused unit: refused before any work, naming where to rerun it
    board.runner.only = ["train/grid-sat-small-cnn-lr0.04"]
    command = "python experiments/fashion_mnist_study.py run --only train/grid-sat-lr0.04"
    unit = {"run": {"name": "grid-sat-lr0.04", **same}, "history": history(0.6)}
    write(study, "train", "grid-sat-lr0.04", command=command, **unit)
    where = r"reused from .*train-grid-sat-lr0\.04\.json, not run here; rerun it there: "
    with pytest.raises(ReusedUnitError, match=where + re.escape(command)):
        board.runner.run()
    assert not (tmp_path / "work").exists()  # nothing started


def suite(clean: float, robust: float) -> dict[str, Any]:
    return {"clean_accuracy": clean, "robust_accuracy": robust}


def test_the_report_calls_differences_beyond_the_seed_spreads(tmp_path: Path) -> None:
    board = make(tmp_path, available=False)
    out = board.store.out
    finals = {"sat": (0.78, [0.60, 0.61, 0.62]), "ard": (0.80, [0.50, 0.51, 0.52]),
              "rslad": (0.79, [0.61, 0.62, 0.63]), "dard": (0.10, [0.10, 0.10, 0.10])}  # fmt: skip
    for row, (clean, robust) in finals.items():
        grid(board, row, "small-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
        for seed, value in enumerate(robust):
            name = design.final_name(row, "small-cnn", seed)
            write(out, "test", name, suite=suite(clean, value))
            cost = 30.0 if row == "rslad" else 10.0
            write(out, "train", name, history=history(value, clean, epochs=11, seconds=cost))
    write(out, "autoattack", "final-sat-small-cnn-s0", autoattack={"robust_accuracy": 0.58})
    unavailable = {"iad": "method 'iad' is not in this installation"}
    text = report.report_section(board.store.load, out, [], unavailable)
    lines: dict[str, str] = {}  # the first table's rows (the grid's come after)
    for line in text.splitlines():
        if line.startswith("| "):
            lines.setdefault(line.split(" | ")[0], line)
    assert "Best = the highest mean worst case: RSLAD." in text
    # ARD: clean +2.0 (spreads 0 + 0: called), worst case -10.0 against SAT
    assert (
        "| 0.015 | 80.0 ± 0.0 | 51.0 ± 1.0 | — | 1.0x (wall) | +2.0 better / -10.0 worse |"
        in lines["| ARD"]
    )
    assert "+1.0 better / +1.0 within the spread | — |" in lines["| RSLAD"]  # against SAT
    assert "| 3.0x (wall) |" in lines["| RSLAD"]  # three times SAT's epoch on the same machine
    assert lines["| SAT (PGD-AT)"].split(" | ")[4] == "58.0"  # AutoAttack at seed 0
    assert lines["| DARD (cached targets) (at chance)"]  # reported, not dropped
    assert "method not available: method 'iad' is not in this installation" in lines["| IAD"]
    assert "| +0.0 | 3 |" in lines["| SAT (PGD-AT)"]  # flat over the last 10 epochs


def test_a_report_is_written_with_its_plot(tmp_path: Path) -> None:
    board = make(tmp_path)
    for seed, value in enumerate([0.60, 0.61, 0.62]):
        write(
            board.store.out,
            "test",
            design.final_name("sat", "tiny-cnn", seed),
            suite=suite(0.7, value),
        )
    grid(board, "sat", "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    target = tmp_path / "leaderboard.md"
    target.write_text("# Leaderboard\n\nWritten by hand.\n")
    board.args.report = str(target)
    board.runner.report()
    text = target.read_text()
    assert text.startswith("# Leaderboard\n\nWritten by hand.\n") and report.BEGIN in text
    assert "| SAT (PGD-AT) | 0.015 | 70.0 ± 0.0 | 61.0 ± 1.0 |" in text
    begin, end = leaderboard.COMPUTE_MARKERS  # and what is still to run
    compute = text[text.index(begin) + len(begin) : text.index(end)]
    assert compute.strip() == board.projection()
    assert "Committed: 4 of " in compute and ", 3 of " in compute
    assert (tmp_path / "lb" / "leaderboard-tiny-cnn.png").stat().st_size > 0


def test_a_grid_unit_and_a_final_evaluation_run_end_to_end_at_reduced_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real pieces (distill, the evaluation suite) through the leaderboard's units, on
    128 training images, one epoch, 32 test images."""
    for name, value in (("N_TRAIN", 128), ("N_VAL_CURVE", 32), ("N_EVAL", 32)):
        monkeypatch.setattr(leaderboard, name, value)
    monkeypatch.setattr(design, "GRID_EPOCHS", 1)
    board = make(tmp_path)
    board.runner.only = ["train/grid-sat-tiny-cnn-lr0.04"]
    assert board.runner.run() == ["train/grid-sat-tiny-cnn-lr0.04"]
    unit = json.loads((board.store.out / "train-grid-sat-tiny-cnn-lr0.04.json").read_text())
    assert (
        unit["command"]
        == "python experiments/leaderboard.py run --only train/grid-sat-tiny-cnn-lr0.04"
    )
    assert unit["run"]["student"] == "tiny-cnn" and unit["run"]["method"] == "sat"
    assert len(unit["history"]) == 1 and unit["provenance"]["machine"]["cpu_model"]
    run = design.Run("final-sat-tiny-cnn-s0", "sat", "tiny-cnn", 0.04, 1, 0, {})
    result = board.evaluate(run, design.SUITE_ATTACKS, leaderboard.N_EVAL)
    suite = result["suite"]
    assert suite["n_examples"] == 32 and set(suite["per_attack"]) == set(design.SUITE_ATTACKS[1:])
    assert suite["robust_accuracy"] <= min(suite["per_attack"].values()) <= suite["clean_accuracy"]
    assert (tmp_path / "work" / "final-sat-tiny-cnn-s0" / "student.pt").is_file()  # trained first
    moved = design.Run("final-sat-tiny-cnn-s0", "sat", "tiny-cnn", 0.015, 1, 0, {})
    with pytest.raises(ValueError, match=r"lr: 0\.04 recorded, 0\.015 now"):
        board.evaluate(moved, design.SUITE_ATTACKS, leaderboard.N_EVAL)  # not that student

    # Its recorded command run again: the unit trains again, into work/rerun/, and the
    # committed unit and student are left as they were.
    committed = (board.store.out / "train-grid-sat-tiny-cnn-lr0.04.json").read_text()
    student = (tmp_path / "work" / "grid-sat-tiny-cnn-lr0.04" / "student.pt").read_bytes()
    assert board.runner.run() == ["train/grid-sat-tiny-cnn-lr0.04"]
    rerun = json.loads((tmp_path / "work/rerun/train-grid-sat-tiny-cnn-lr0.04.json").read_text())
    assert (tmp_path / "work/rerun/grid-sat-tiny-cnn-lr0.04/student.pt").is_file()
    assert rerun["training_seconds"] > 0 and rerun["history"][0]["seconds"] > 0
    assert rerun["history"][0]["clean_accuracy"] == unit["history"][0]["clean_accuracy"]
    assert (board.store.out / "train-grid-sat-tiny-cnn-lr0.04.json").read_text() == committed
    assert (tmp_path / "work/grid-sat-tiny-cnn-lr0.04/student.pt").read_bytes() == student


def tiny_finals(board: Any, finals: dict[str, tuple[float, list[float]]]) -> None:
    """Each row's grid on ``tiny-cnn`` and its finals: (clean, worst case per seed)."""
    for row, (clean, robust) in finals.items():
        grid(board, row, "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
        for seed, value in enumerate(robust):
            name = design.final_name(row, "tiny-cnn", seed)
            write(board.store.out, "test", name, suite=suite(clean, value))
            write(board.store.out, "train", name, history=history(value, clean, epochs=11))


def test_calls_are_against_the_stronger_sat_row_and_the_summary_says_them(
    tmp_path: Path,
) -> None:
    """On a student that plain SAT leaves at chance, "vs SAT" is the warm-up row: a call
    against a stalled baseline would say nothing."""
    board = make(tmp_path, available=False)
    out = board.store.out
    finals = {"sat": (0.10, [0.10, 0.10, 0.10]), "sat-warmup": (0.78, [0.60, 0.61, 0.62]),
              "ard": (0.80, [0.50, 0.51, 0.52]), "rslad": (0.79, [0.61, 0.62, 0.63]),
              "dard": (0.79, [0.70, 0.71, 0.72])}  # fmt: skip
    tiny_finals(board, finals)
    text = report.report_section(board.store.load, out, [], {})
    section = text[text.index("### `tiny-cnn`") :]
    assert (
        "vs SAT = against the SAT row with the higher mean worst case (SAT, eps warm-up" in section
    )
    ard = next(line for line in section.splitlines() if line.startswith("| ARD |"))
    assert "+2.0 better / -10.0 worse" in ard  # against the warm-up row, not chance
    assert "highest mean: DARD (cached targets) (71.0 ± 1.0); the other rows against it: " in (
        section
    )
    against_sat = section[section.index("Distillation rows against") :].split("\n")[0]
    assert "better: DARD (cached targets)" in against_sat and "worse: ARD" in against_sat
    assert "within the spread: RSLAD" in against_sat


def test_the_readme_summary_puts_both_students_side_by_side_and_rewrites_only_its_block(
    tmp_path: Path,
) -> None:
    """The README's summary: per student clean, worst case (the best in bold), AutoAttack
    and the call against that student's SAT baseline, from the same rows as the page;
    rewritten between its markers only, and a file without them is left as it is."""
    board = make(tmp_path, available=False)
    finals = {"sat": (0.10, [0.10, 0.10, 0.10]), "sat-warmup": (0.78, [0.60, 0.61, 0.62]),
              "ard": (0.80, [0.50, 0.51, 0.52]), "dard": (0.79, [0.70, 0.71])}  # fmt: skip
    tiny_finals(board, finals)
    text = leaderboard_summary.summary_table(board.store.load)
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| method")}  # fmt: skip
    assert "`tiny-cnn`: SAT, eps warm-up over 5 epochs" in text  # the baseline, named
    small, tiny = slice(0, 4), slice(4, 8)
    assert rows["| ARD"][tiny] == ["80.0 ± 0.0", "51.0 ± 1.0", "—", "-10.0 worse |"]
    assert rows["| SAT (PGD-AT)"][tiny][3] == "at chance |"
    assert rows["| SAT, eps warm-up over 5 epochs"][tiny][3] == "baseline |"
    # the best mean worst case in bold; a row short of its seeds says how many it has
    assert rows["| DARD (cached targets)"][tiny][:2] == ["79.0 ± 0.0 (2 seeds)",
                                                        "**70.5 ± 0.7 (2 seeds)**"]  # fmt: skip
    assert rows["| RSLAD"][small] == ["—", "—", "—", "not run yet"]
    # a student with distillation finals and no SAT final: no call, no crash
    (tmp_path / "lone").mkdir()
    lone = make(tmp_path / "lone", available=False)
    tiny_finals(lone, {"ard": (0.80, [0.50, 0.51, 0.52])})
    ard = next(line for line in leaderboard_summary.summary_table(lone.store.load).splitlines()
               if line.startswith("| ARD |"))  # fmt: skip
    assert ard.endswith("| 80.0 ± 0.0 | **51.0 ± 1.0** | — | — |")
    readme = tmp_path / "README.md"
    plain = "# Title\n\nNo summary here.\n"
    readme.write_text(plain)
    assert not leaderboard_summary.write_summary(readme, board.store)
    assert readme.read_text() == plain  # no markers: left alone
    begin, end = leaderboard_summary.MARKERS
    readme.write_text(f"# Title\n\n{begin}\nold\n{end}\n\nAfter.\n")
    assert leaderboard_summary.write_summary(readme, board.store)
    assert readme.read_text() == f"# Title\n\n{begin}\n\n{text}\n{end}\n\nAfter.\n"


def test_the_committed_readme_summary_is_regenerated_from_the_committed_units() -> None:
    """README.md's leaderboard summary is what the report writes from the committed unit
    files (a unit collected without the README's summary would show here)."""
    text = (REPO_ROOT / "README.md").read_text()
    begin, end = leaderboard_summary.MARKERS
    committed = text[text.index(begin) + len(begin) : text.index(end)]
    args = argparse.Namespace(
        action="report", out="docs/results/fashion_mnist/leaderboard/units",
        work="runs/fashion_mnist/leaderboard", study_out=leaderboard.STUDY_OUT,
        study_work=leaderboard.STUDY_WORK, report="", device="cpu", only=None, threads=None,
        verbose=False,
    )  # fmt: skip
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        store = leaderboard.Leaderboard(args).store
        generated = leaderboard_summary.summary_table(store.load, store.linked)
    finally:
        os.chdir(cwd)
    assert committed == "\n\n" + generated + "\n"


def study_sat_seed0(tmp_path: Path, train_history: list[Any]) -> tuple[Any, str]:
    """A board whose small-cnn SAT grid (best lr 0.015) and seed-0 final (train unit with
    ``train_history``, test unit) are the study's; returns it and the final's name."""
    board = make(tmp_path, available=False)
    study = tmp_path / "study"
    for lr, pgd in {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4}.items():
        run = design.Run(design.grid_name("sat", "small-cnn", lr), "sat", "small-cnn", lr,
                         design.GRID_EPOCHS, 0, design.METHODS["sat"][1])  # fmt: skip
        write(study, "train", f"grid-sat-lr{lr:g}", history=history(pgd),
              run=run.study_settings())  # fmt: skip
    name = design.final_name("sat", "small-cnn", 0)
    final = design.Run(name, "sat", "small-cnn", 0.015, design.FINAL_EPOCHS, 0,
                       design.METHODS["sat"][1])  # fmt: skip
    write(study, "train", "final-shipped-sat-s0", history=train_history,
          run=final.study_settings())  # fmt: skip
    write(study, "test", "final-shipped-sat-s0", suite=suite(0.78, 0.61),
          run=final.study_settings())  # fmt: skip
    return board, name


def test_autoattack_on_a_retrained_reused_student_is_marked_with_its_gap(
    tmp_path: Path,
) -> None:
    """A reused (study) test unit whose AutoAttack student was retrained here: the AutoAttack
    cell is marked and the footnote gives the largest gap between the two runs' validation
    histories."""
    board, name = study_sat_seed0(tmp_path, history(0.61))
    out = board.store.out
    write(out, "train", name, history=history(0.613))  # retrained: 0.3 points off
    write(out, "autoattack", name, autoattack={"robust_accuracy": 0.58})
    text = report.report_section(board.store.load, out, [], {}, board.store.linked)
    sat = next(line for line in text.splitlines() if line.startswith("| SAT (PGD-AT) |"))
    assert "| 58.0 † |" in sat
    assert "validation accuracies, in points: SAT (PGD-AT) 0.3" in text
    # without the study's record at hand nothing is marked
    plain = report.report_section(board.store.load, out, [], {})
    assert "†" not in plain


def test_autoattack_on_a_retrained_own_student_is_recorded_beside_it_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row of the leaderboard's own whose seed-0 student was not at hand: AutoAttack's
    retraining once overwrote the train unit of the student the test measured, and the
    AutoAttack cell was not marked. It is recorded as retrain/ beside it, and marked."""
    board = make(tmp_path)
    grid(board, "iad", "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    out, name = board.store.out, design.final_name("iad", "tiny-cnn", 0)
    run = {"lr": 0.015, "epochs": 30, "seed": 0}
    write(out, "train", name, run=run, history=history(0.61))
    write(out, "test", name, run=run, suite=suite(0.7, 0.6))
    trained = {"history": history(0.65), "seconds": 1.0}
    monkeypatch.setattr(
        "dard_plugin.recipes.distill", lambda **kwargs: argparse.Namespace(**trained)
    )
    r = next(r for r in design.final_runs(board.store.load, "iad", "tiny-cnn") if r.seed == 0)
    board.train(r)  # as the AutoAttack unit does where the student is not at hand
    assert (out / f"retrain-{name}.json").is_file()
    assert (
        json.loads((out / f"train-{name}.json").read_text())["history"][0]["pgd_accuracy"] == 0.61
    )
    write(out, "autoattack", name, autoattack={"robust_accuracy": 0.58})
    text = report.report_section(board.store.load, out, [], {}, board.store.linked)
    tiny = text[text.index("### `tiny-cnn`") :]
    iad = next(line for line in tiny.splitlines() if line.startswith("| IAD |"))
    assert "| 58.0 † |" in iad and "in points: IAD 4.0" in tiny


def test_epoch_cost_on_a_machine_without_sat_finals_uses_that_machines_cost_file(
    tmp_path: Path,
) -> None:
    """SAT's finals ran on one CPU model, AdaAD's on another: its epoch cost is not their
    wall-clock ratio (two machines) but the one-process ratio measured on its own machine
    (costs/<cpu>.json), marked ‡; rows on SAT's machine keep the wall-clock ratio."""
    board = make(tmp_path, available=False)
    out = board.store.out
    amd = {**PROVENANCE, "machine": {"cuda": None, "torch_threads": 1, "cpu_model": "AMD EPYC"}}
    for row, seconds, provenance in (
        ("sat", 10.0, PROVENANCE),  # no CPU model recorded: the earlier machines
        ("ard", 15.0, PROVENANCE),
        ("adaad", 400.0, amd),
    ):
        grid(board, row, "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
        for seed in design.SEEDS:
            name = design.final_name(row, "tiny-cnn", seed)
            write(out, "test", name, suite=suite(0.8, 0.6), provenance=provenance)
            write(out, "train", name, history=history(0.6, seconds=seconds), provenance=provenance)
    costs = out.parent / report.COSTS
    costs.mkdir(parents=True)
    measured = {"sat/tiny-cnn": {"epoch_seconds": 20.0}, "adaad/tiny-cnn": {"epoch_seconds": 150.0}}
    payload = {"provenance": amd, "costs": measured}
    (costs / design.cost_file_name(payload)).write_text(json.dumps(payload))
    assert design.cost_file_name(payload) == "amd-epyc-1-torch-thread-per-process.json"
    loaded = design.load_costs(costs)
    assert list(loaded) == ["AMD EPYC, 1 torch thread per process"]
    text = "\n".join(report.student_section(board.store.load, "tiny-cnn", {}, None, loaded))
    rows: dict[str, str] = {}  # the first table's rows (the grid's come after)
    for line in text.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0], line)
    assert "| 7.5x ‡ |" in rows["| AdaAD"]  # 150 / 20, not 400 / 10
    assert "| 1.5x (wall) |" in rows["| ARD"]  # 15 / 10 on the same machine
    assert "‡ No SAT final ran on this row's machine" in text
    where = costs / "amd-epyc-1-torch-thread-per-process.json"  # as the repository names it
    assert f"AMD EPYC, 1 torch thread per process: `{where}`" in text
    # a cost file that could not measure SAT (or AdaAD) there: no ratio, no crash
    for broken in ({"unavailable": "not installed"}, {"epoch_seconds": 0.0}):
        loaded[next(iter(loaded))]["costs"]["sat/tiny-cnn"] = broken
        section = "\n".join(report.student_section(board.store.load, "tiny-cnn", {}, None, loaded))
        row = next(line for line in section.splitlines() if line.startswith("| AdaAD |"))
        assert row.split(" | ")[5] == "—"
    without = "\n".join(report.student_section(board.store.load, "tiny-cnn", {}, None, {}))
    first = next(line for line in without.splitlines() if line.startswith("| AdaAD |"))
    assert first.split(" | ")[5] == "—"  # no cost file: no ratio across machines


def test_the_plan_estimates_with_this_machines_cost_file(tmp_path: Path, monkeypatch) -> None:
    costs = tmp_path / "lb" / report.COSTS
    costs.mkdir(parents=True)
    for model, seconds in (("Other CPU", 99.0), ("This CPU", 7.0)):
        machine = {"cuda": None, "torch_threads": 1, "cpu_model": model}
        payload = {"provenance": {"machine": machine}, "costs": {"sat/tiny-cnn": seconds}}
        (costs / design.cost_file_name(payload)).write_text(json.dumps(payload))
    monkeypatch.setattr(leaderboard, "cpu_model", lambda: "This CPU")
    assert make(tmp_path).costs == {"sat/tiny-cnn": 7.0}
    monkeypatch.setattr(leaderboard, "cpu_model", lambda: "A third CPU")
    assert make(tmp_path).costs == {"sat/tiny-cnn": 99.0}  # none of its own: the first file


def test_the_plan_takes_this_machines_measured_seconds_as_they_are(
    tmp_path: Path, monkeypatch
) -> None:
    """A cost file of this machine gives its own epoch and validation seconds (AdaAD's
    epoch measured here, not SAT's study epoch times a ratio from elsewhere)."""
    costs = tmp_path / "lb" / report.COSTS
    costs.mkdir(parents=True)
    measured = {
        "sat/small-cnn": {"epoch_seconds": 37.0},
        "sat/tiny-cnn": {"epoch_seconds": 12.0},
        "adaad/tiny-cnn": {"epoch_seconds": 180.0},
        "validation/tiny-cnn": 6.0,
    }
    machine = {"cuda": None, "torch_threads": 1, "cpu_model": "This CPU"}
    payload = {"provenance": {"machine": machine}, "costs": measured}
    (costs / design.cost_file_name(payload)).write_text(json.dumps(payload))
    monkeypatch.setattr(leaderboard, "cpu_model", lambda: "This CPU")
    board = make(tmp_path)
    run = design.Run("grid-adaad-tiny-cnn-lr0.04", "adaad", "tiny-cnn", 0.04, 15)
    assert board.minutes(run, "train") == pytest.approx(15 * (180.0 + 6.0) / 60)
    speed = 37.0 / leaderboard.SAT_EPOCH_SECONDS  # the study's suite, at this machine's pace
    small = design.Run("final-sat-small-cnn-s0", "sat", "small-cnn", 0.04, 30)
    aa = leaderboard.AA_MINUTES * speed
    assert board.minutes(small, "autoattack") == pytest.approx(aa)  # the test unit trains it
    # test units done, the student not at hand: the AutoAttack unit retrains it first
    write(board.store.out, "test", small.name, run={})
    train = board.minutes(small, "train")
    assert train > 30 * 37.0 / 60 and board.minutes(small, "autoattack") == pytest.approx(
        aa + train
    )
    student = tmp_path / "work" / small.name / "student.pt"
    student.parent.mkdir(parents=True)
    student.write_bytes(b"weights")
    write(board.store.out, "train", small.name, run={**dataclasses.asdict(small)})
    assert board.minutes(small, "autoattack") == pytest.approx(aa)  # at hand: evaluated

    # the projection the report writes into the page: what is committed, what is left
    text = board.projection()
    rows = len(design.METHODS) * len(design.STUDENTS)
    grids = rows * len(design.LRS)
    assert text.startswith(
        f"Committed: 0 of {grids} grid units, 1 of {rows * 3} test units, "
        f"0 of {rows} AutoAttack units. Still to run, in minutes on one thread of This CPU"
    )
    total = text.splitlines()[-1]
    assert total.startswith("| all |") and "without online DARD" in total
    assert len(text.splitlines()) == 2 + 3 + rows  # the header, the table: every row left


def test_on_a_gpu_the_units_train_in_float32_as_on_the_cpu(tmp_path: Path, monkeypatch) -> None:
    """The trainers default to bf16 autocast on CUDA and torch to TF32 convolutions: a row
    trained on a GPU would not be measured as the CPU rows are."""
    import torch

    import dard_plugin.recipes

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [flag.allow_tf32 for flag in flags]
    for flag in flags:
        flag.allow_tf32 = True
    seen: dict[str, Any] = {}

    def distill(**kwargs: Any) -> None:
        seen.update(kwargs)
        raise RuntimeError("stop before training")

    monkeypatch.setattr(dard_plugin.recipes, "distill", distill)
    board = make(tmp_path)
    board.args.device = "cuda"
    try:
        board.__init__(board.args)  # as built for --device cuda
        tf32 = [flag.allow_tf32 for flag in flags]
    finally:
        for flag, value in zip(flags, before, strict=True):
            flag.allow_tf32 = value
    assert tf32 == [False, False]
    run = design.Run("grid-sat-tiny-cnn-lr0.04", "sat", "tiny-cnn", 0.04, 15)
    with pytest.raises(RuntimeError, match="stop before training"):
        board.train(run)
    assert seen["amp"] is False and seen["device"] == "cuda"


def test_cost_measurement_reads_the_trainers_epoch_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """``leaderboard_costs.measure`` takes a steady epoch from the run's own history (the
    least of epochs 2 and 3) and the first epoch's excess, and scales to an epoch of
    ``N_TRAIN`` images: checked on a real one-batch SAT run of tiny-cnn, then on a given
    history (a slow first epoch, an uneven second and third)."""
    import leaderboard_costs as costs

    seconds = costs.timed_epochs("sat", {}, "tiny-cnn", batches=1, epochs=2)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
    monkeypatch.setattr(costs, "timed_epochs", lambda *args: [9.0, 2.5, 2.0])
    found = costs.measure("sat", {}, "tiny-cnn", batches=4)
    batches = -(-design.N_TRAIN // 128)
    assert found == pytest.approx(
        {"batch_seconds": 0.5, "epoch_seconds": 0.5 * batches, "first_epoch_extra_seconds": 7.0}
    )


def test_a_reused_test_unit_keeps_the_studys_training_run_and_the_footnote_needs_autoattack(
    tmp_path: Path,
) -> None:
    """Seed 0 reused from the study and retrained here for AutoAttack: the row's validation
    curve and epoch cost are the tested (study's) student's; the † footnote appears only
    once that AutoAttack unit exists; its evaluation alone counts as the unit's work."""
    rising = [{**h, "pgd_accuracy": 0.50 + 0.01 * i} for i, h in enumerate(history(0, epochs=11))]
    board, name = study_sat_seed0(tmp_path, rising)
    out = board.store.out
    write(out, "train", name, history=history(0.60, epochs=11))  # retrained, flat
    text = report.report_section(board.store.load, out, [], {}, board.store.linked)
    sat = next(line for line in text.splitlines() if line.startswith("| SAT (PGD-AT) |"))
    assert "| +10.0 (not flat) | 1 |" in sat  # the study's rising curve, not the flat retrain
    assert "†" not in text  # no AutoAttack unit yet: nothing to footnote
    aa = {"robust_accuracy": 0.58, "seconds": {"clean": 1.0, "autoattack": 400.0}}
    write(out, "autoattack", name, autoattack=aa)  # the unit's own 60 s include the retrain
    text = report.report_section(board.store.load, out, [], {}, board.store.linked)
    assert "| 58.0 † |" in text and "in points: SAT (PGD-AT) 10.0" in text
    unit = board.store.load("autoattack", name)
    assert board_rows.work_seconds({**unit, "seconds": 1000.0}) == 401.0


def test_finals_at_a_learning_rate_no_longer_selected_are_not_the_rows(tmp_path: Path) -> None:
    board = make(tmp_path, available=False)
    out = board.store.out
    grid(board, "ard", "small-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    for seed, lr in enumerate([0.015, 0.04, 0.015]):  # seed 1 ran at an earlier selection
        name = design.final_name("ard", "small-cnn", seed)
        write(out, "test", name, suite=suite(0.8, 0.6), run={"lr": lr})
        write(out, "train", name, history=history(0.6, epochs=11), run={"lr": lr})
    row = board_rows.Row(board.store.load, "ard", "small-cnn")
    assert row.lr == 0.015 and len(row.tests) == 2 and len(row.trains) == 2


def test_a_final_that_recorded_other_settings_than_the_plan_is_refused(tmp_path: Path) -> None:
    """Checked on its learning rate alone, a test unit of 3 epochs at seed 7 (collected from
    elsewhere, or left from an earlier design) was shown as the row's result."""
    board = make(tmp_path, available=False)
    out = board.store.out
    grid(board, "ard", "small-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    name = design.final_name("ard", "small-cnn", 1)
    planned = {"lr": 0.015, "epochs": design.FINAL_EPOCHS, "seed": 1, "options": {}}
    write(out, "test", name, suite=suite(0.8, 0.6), run=planned)
    assert len(board_rows.Row(board.store.load, "ard", "small-cnn").tests) == 1
    write(out, "test", name, suite=suite(0.8, 0.6), run={**planned, "epochs": 3, "seed": 7})
    refusal = (
        r"test/final-ard-small-cnn-s1 is not this plan's run "
        r"\(epochs: 3 recorded, 30 planned; seed: 7 recorded, 1 planned\)"
    )
    with pytest.raises(ValueError, match=refusal):
        board_rows.Row(board.store.load, "ard", "small-cnn")


def test_a_falling_validation_curve_is_not_flat(tmp_path: Path) -> None:
    board = make(tmp_path, available=False)
    grid(board, "ard", "small-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    name = design.final_name("ard", "small-cnn", 0)
    falling = [{**h, "pgd_accuracy": 0.65 - 0.005 * i} for i, h in enumerate(history(0, epochs=11))]
    write(board.store.out, "train", name, history=falling)
    assert board_rows.Row(board.store.load, "ard", "small-cnn").last_gain() == "-5.0 (not flat)"


def test_grid_accuracies_stored_as_float32_tie_with_exact_ones(tmp_path: Path) -> None:
    """1197/2000 stored through float32 (as some study units are) ties with the exact value:
    the tie goes to the larger learning rate, not to the float32 rounding."""
    board = make(tmp_path)
    grid(board, "ard", "tiny-cnn", {0.005: 0.5, 0.015: 0.5985000133514404, 0.04: 0.5985, 0.1: 0.4})
    assert design.selected_lr(board.store.load, "ard", "tiny-cnn") == 0.04


def test_the_one_process_cost_line_shows_timer_measured_files_only() -> None:
    timed = {"what": "4 batches of 128; the trainer's epoch timer, ...", "file": "a.json",
             "costs": {"sat/tiny-cnn": {"epoch_seconds": 14.0},
                       "adaad/tiny-cnn": {"epoch_seconds": 140.0},
                       "iad/tiny-cnn": {"unavailable": "not installed"}}}  # fmt: skip
    older = {**timed, "what": "4 batches of 128, 2 epochs, extrapolated", "file": "b.json"}
    (line,) = design.one_process_costs("tiny-cnn", {"AMD": timed, "Intel": older})
    assert "on AMD (`a.json`; a steady epoch, SAT's 14 s;" in line
    assert line.endswith("SAT (PGD-AT) 1.0x, AdaAD 10.0x.")
    assert design.one_process_costs("small-cnn", {"AMD": timed}) == []  # no SAT measured


def test_a_row_is_at_chance_from_its_test_units_alone(tmp_path: Path) -> None:
    board = make(tmp_path, available=False)
    grid(board, "iad", "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    name = design.final_name("iad", "tiny-cnn", 0)
    write(board.store.out, "test", name, suite=suite(0.31, 0.2))
    assert not board_rows.Row(board.store.load, "iad", "tiny-cnn").at_chance()
    write(board.store.out, "test", name, suite=suite(0.1, 0.1))  # no train unit at hand
    assert board_rows.Row(board.store.load, "iad", "tiny-cnn").at_chance()


def test_the_epoch_cost_is_the_one_process_measurement_where_there_is_one(
    tmp_path: Path,
) -> None:
    """The finals' wall-clock ratio mixed processes sharing the cores and machines assumed
    alike: a cost file measured with the trainer's epoch timer gives every row's cost."""
    board = make(tmp_path, available=False)
    for row, seconds in (("sat", 10.0), ("ard", 15.0)):
        grid(board, row, "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
        for seed in design.SEEDS:
            name = design.final_name(row, "tiny-cnn", seed)
            write(board.store.out, "test", name, suite=suite(0.8, 0.6))
            write(board.store.out, "train", name, history=history(0.6, seconds=seconds))
    timed = {"what": "the trainer's epoch timer", "file": "a.json",
             "costs": {"sat/tiny-cnn": {"epoch_seconds": 14.0},
                       "ard/tiny-cnn": {"epoch_seconds": 21.7}}}  # fmt: skip
    section = report.student_section(board.store.load, "tiny-cnn", {}, None, {"AMD": timed})
    ard = next(line for line in section if line.startswith("| ARD |"))
    assert ard.split(" | ")[5] == "1.6x"  # 21.7 / 14 measured, not the finals' 15 / 10


def test_a_row_with_some_seeds_at_chance_says_how_many_and_counts_them(tmp_path: Path) -> None:
    """One seed at chance once labelled the whole row "(at chance)" (two of three seeds at
    about 63%), kept it out of the plot and uncalled in the README."""
    board = make(tmp_path, available=False)
    grid(board, "rslad", "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    for seed, clean in enumerate([0.76, 0.77, 0.1]):
        name = design.final_name("rslad", "tiny-cnn", seed)
        write(board.store.out, "test", name, suite=suite(clean, clean - 0.13 * (clean > 0.5)))
    row = board_rows.Row(board.store.load, "rslad", "tiny-cnn")
    assert not row.at_chance() and row.chance_note() == " (1 of 3 seeds at chance)"
    assert row.values("clean_accuracy") == [0.76, 0.77, 0.1]  # counted, not dropped
    name = design.final_name("rslad", "tiny-cnn", 2)
    diverged = {"clean_accuracy": 0.0, "robust_accuracy": 0.0, "diverged": True}
    write(board.store.out, "test", name, suite=diverged)
    row = board_rows.Row(board.store.load, "rslad", "tiny-cnn")
    assert row.chance_note() == " (1 of 3 seeds at chance, 1 diverged)"
    section = "\n".join(report.student_section(board.store.load, "tiny-cnn", {}))
    assert "| RSLAD (1 of 3 seeds at chance, 1 diverged) | 0.015 |" in section


def test_the_plot_names_rows_at_chance_instead_of_drawing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    board = make(tmp_path, available=False)
    for row, clean in {"sat": 0.1, "ard": 0.8}.items():
        grid(board, row, "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
        for seed in design.SEEDS:
            name = design.final_name(row, "tiny-cnn", seed)
            write(board.store.out, "test", name, suite=suite(clean, clean - 0.1 * (clean > 0.5)))
    drawn: dict[str, Any] = {}
    monkeypatch.setattr(report, "errorbar_scatter", lambda points, path, **kw: drawn.update(
        labels=[p[0] for p in points], **kw) or path)  # fmt: skip
    report.plot(board.store.load, "tiny-cnn", tmp_path / "plot.png")
    assert drawn["labels"] == ["ARD"]
    assert drawn["title"].endswith("at chance, not drawn (see the table): SAT (PGD-AT)")


def test_a_retrained_student_of_other_epochs_is_noted_not_a_crash(tmp_path: Path) -> None:
    """Two histories of different lengths have no gap: the † note said so by raising
    ``decimal.InvalidOperation`` (half_up of infinity)."""
    board = make(tmp_path, available=False)
    out = board.store.out
    grid(board, "ard", "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    name = design.final_name("ard", "tiny-cnn", 0)
    write(out, "test", name, suite=suite(0.8, 0.6))
    write(out, "train", name, history=history(0.6, epochs=3))
    write(out, "retrain", name, history=history(0.6, epochs=2))
    write(out, "autoattack", name, autoattack={"robust_accuracy": 0.6})
    section = "\n".join(report.student_section(board.store.load, "tiny-cnn", {}))
    assert "ARD n/a (other epochs)" in section


def test_a_test_that_measured_a_retrained_student_is_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test unit whose student file was not at hand trains it again (recorded as
    retrain-): the row's curve and cost read the first training, and nothing said that the
    test measured another."""
    board = make(tmp_path, available=False)
    grid(board, "ard", "tiny-cnn", {0.005: 0.5, 0.015: 0.6, 0.04: 0.55, 0.1: 0.4})
    final = design.Run(design.final_name("ard", "tiny-cnn", 1), "ard", "tiny-cnn", 0.015, 30, 1)
    write(board.store.out, "train", final.name, history=history(0.6))  # committed, no file
    trained = board.store.work_path(final.name) / "student.pt"

    def train(run: Any) -> dict[str, Any]:
        from dard_plugin.models import create
        from dard_plugin.recipes import save_model

        save_model(trained, create("tiny-cnn", num_classes=10), "tiny-cnn", 10)
        return {"history": history(0.6)}

    monkeypatch.setattr(board, "train", train)
    monkeypatch.setattr(board, "trained_student", lambda run: None)
    payload = board.evaluate(final, ["clean"], 8)
    assert payload["retrained_student"] is True
    write(board.store.out, "test", final.name, suite=suite(0.8, 0.6), retrained_student=True)
    section = "\n".join(report.student_section(board.store.load, "tiny-cnn", {}))
    assert "| 1 § |" in section and "by row: ARD 1." in section


def test_retraining_gaps_are_rounded_half_up_from_their_exact_value() -> None:
    """A gap of 21 images in 2,000 (1.05 points) was shown 1.0 and one of 129 (6.45) 6.5:
    ``100 * (0.7905 - 0.78)`` is 1.0499999... in binary."""
    from study_runner.report import half_up

    def run(clean: float) -> list[dict[str, float]]:
        return [{"clean_accuracy": clean, "pgd_accuracy": 0.5}]

    gaps = [board_rows.history_gap(run(0.78 + k / 2000), run(0.78)) for k in (21, 13, 129)]
    assert gaps == [1.05, 0.65, 6.45]
    assert [half_up(g) for g in gaps] == ["1.1", "0.7", "6.5"]
    assert board_rows.history_gap(run(0.5), run(0.5) * 2) == float("inf")  # other epochs


def test_a_diverged_run_is_recorded_at_zero_in_a_grid_and_in_a_final(
    tmp_path: Path, monkeypatch
) -> None:
    """A run whose training diverges (``TrainingDivergedError``) is a grid point at 0
    accuracy, not dropped and not a crash; the grid selects among the others. A diverged
    final has no student: its test and AutoAttack count 0 correct."""
    import dard_plugin.recipes
    from dard_plugin.training import TrainingDivergedError

    finite = history(0.5, epochs=2)

    def distill(**kwargs: Any) -> None:
        record = {"epoch": 3, "loss": float("nan"), "lr": kwargs["lr"], "seconds": 5.0}
        raise TrainingDivergedError("diverged", finite, record)

    monkeypatch.setattr(dard_plugin.recipes, "distill", distill)
    board = make(tmp_path)
    grid(board, "ard", "tiny-cnn", {0.005: 0.3, 0.015: 0.45, 0.04: 0.5})
    name = design.grid_name("ard", "tiny-cnn", 0.1)
    payload = board.train(design.Run(name, "ard", "tiny-cnn", 0.1, 15))
    recorded = board.store.load("train", name)
    assert recorded is not None and recorded["history"] == payload["history"]
    last = payload["history"][-1]
    assert last["diverged"] is True and last["epoch"] == 3 and last["seconds"] == 5.0
    assert last["loss"] == "nan"  # JSON has no NaN
    assert (last["clean_accuracy"], last["pgd_accuracy"]) == (0.0, 0.0)
    assert payload["history"][:2] == finite
    assert design.selected_lr(board.store.load, "ard", "tiny-cnn") == 0.04
    # a diverged final has no student: its test counts 0 correct (it once stopped every
    # worker that reached it, and the row's mean left the seed out)
    final = design.Run(design.final_name("ard", "tiny-cnn", 1), "ard", "tiny-cnn", 0.04, 30, 1)
    assert board.student(final) == (None, False)  # diverged, trained here for the first time
    assert board.store.load("train", final.name)["history"][-1]["diverged"] is True
    trainings: list[Any] = []
    monkeypatch.setattr(board, "train", lambda run: trainings.append(run))
    tested = board.evaluate(final, ["clean", "fgsm"], 1000)["suite"]
    assert tested == {"clean_accuracy": 0.0, "robust_accuracy": 0.0, "n_examples": 1000,
                      "diverged": True}  # fmt: skip
    # recorded diverged: its test and AutoAttack do not train it again (each once did,
    # at the diverging epoch's cost, and recorded a retrain/ unit that read as a † note)
    assert board.evaluate(final, ["autoattack"], 500)["autoattack"]["diverged"] is True
    assert trainings == [] and board.store.load("retrain", final.name) is None
