"""`dard demo`'s stored reference rows: they are what the demo's own evaluation gives
(checked afresh for the teacher's clean and FGSM rows), and they are shown only beside a
student evaluated the same way."""

from __future__ import annotations

import copy

import pytest

from dard_plugin.cli import demo
from dard_plugin.data import load_dataset
from dard_plugin.evaluation import evaluate
from dard_plugin.teachers import load_teacher


@pytest.fixture(scope="module")
def reference() -> dict:
    return demo.load_reference()


def test_the_reference_was_measured_with_the_demos_evaluation(reference) -> None:
    assert reference["n_examples"] == demo.N_EVAL
    assert reference["eps"] == demo.EPS
    assert reference["attacks"] == [a for a in demo.ATTACKS if a != "clean"]
    assert len(reference["provenance"]["git_commit"]) == 40
    for row in reference["rows"]:
        report = row["report"]
        assert report["n_examples"] == demo.N_EVAL and report["eps"] == demo.EPS
        assert sorted(report["per_attack"]) == sorted(reference["attacks"])
        worst = min(report["clean_accuracy"], *report["per_attack"].values())
        assert report["robust_accuracy"] <= worst


def test_the_stored_teacher_row_is_reproduced(reference) -> None:
    """The teacher's clean and FGSM accuracies, recomputed exactly as the demo evaluates
    (first 500 test images, batch 256, seed 0), equal the stored ones (stored as float32
    means before 2026-12-03, reports now give exact shares: equal to float32 precision)."""
    stored = reference["rows"][0]["report"]
    teacher = load_teacher(demo.DEMO_TEACHER, dataset="fashion-mnist")
    x, y = load_dataset("fashion-mnist", train=False, n_examples=demo.N_EVAL)
    fresh = evaluate(teacher, x, y, eps=demo.EPS, attacks=["clean", "fgsm"], batch_size=256, seed=0)
    assert fresh.clean_accuracy == pytest.approx(stored["clean_accuracy"], abs=1e-7)
    assert fresh.per_attack["fgsm"] == pytest.approx(stored["per_attack"]["fgsm"], abs=1e-7)


def test_the_comparison_needs_the_same_evaluation(reference) -> None:
    student = copy.deepcopy(reference["rows"][1]["report"])
    table = demo.comparison_table(student, reference)
    assert table is not None
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(reference["rows"]) + 1
    assert lines[-1].startswith("| this student")
    worst = f"{100 * student['robust_accuracy']:.1f}"
    assert lines[-1].rstrip(" |").endswith(worst)
    for field, value in (("n_examples", 16), ("eps", 0.2), ("seed", 1)):
        other = dict(student, **{field: value})
        assert demo.comparison_table(other, reference) is None, field
    fewer = dict(student, per_attack={"fgsm": 0.5})
    assert demo.comparison_table(fewer, reference) is None
    # another training budget: SAT's stored row (10,000 images, 5 epochs) is not "the same
    # budget" any more, the teacher's stays
    assert reference["rows"][1]["budget"] == {"n_train": demo.N_TRAIN, "epochs": demo.EPOCHS}
    for budget in ({"n_train": 64, "epochs": 1}, {"n_train": demo.N_TRAIN, "epochs": 1}):
        other_budget = demo.comparison_table(student, reference, budget)
        assert other_budget is not None and "| SAT" not in other_budget
        assert "| teacher" in other_budget and "| this student" in other_budget
    assert "| SAT, same budget" in table


def test_the_readme_shows_the_stored_rows(reference) -> None:
    """The README's demo table repeats the stored teacher and SAT rows to 0.1 points (the
    demo's own student row is regenerated from a demo run whenever a change moves it)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = {
        "teacher": next(
            line for line in readme.splitlines() if "teacher `dard-fmnist-teacher` (stored)" in line
        ),
        "SAT": next(
            line
            for line in readme.splitlines()
            if "SAT, same budget" in line and "(stored)" in line
        ),
    }
    for row in reference["rows"]:
        key = "teacher" if row["label"].startswith("teacher") else "SAT"
        report = row["report"]
        values = [report["clean_accuracy"]]
        values += [report["per_attack"][a] for a in reference["attacks"]]
        values += [report["robust_accuracy"]]
        cells = [c.strip() for c in lines[key].strip("|").split("|")][1:]
        assert [float(c) for c in cells] == [round(100 * v, 1) for v in values], key
