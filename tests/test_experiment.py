"""experiments/fashion_mnist.py: one unit of each kind on real Fashion-MNIST (smoke preset,
SAT only), the report, and the resume that skips finished units."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "experiments" / "fashion_mnist.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO_ROOT,
    )


def test_experiment_runs_reports_and_resumes(tmp_path: Path) -> None:
    out, work = tmp_path / "results" / "smoke-cpu", tmp_path / "work"
    report = tmp_path / "results.md"
    report.write_text("# Results\n\nHand-written findings stay.\n")
    args = [
        "--preset",
        "smoke",
        "--runs",
        "sat-s0",
        "--no-teacher",
        "--threads",
        "2",
        "--out",
        str(out),
        "--work",
        str(work),
        "--report",
        str(report),
    ]
    first = run_script(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    expected = {
        "train-sat-s0.json",
        "suite-sat-s0.json",
        "steps-sat-s0.json",
        "autoattack-sat-s0.json",
    }
    assert expected <= {p.name for p in out.glob("*.json")}

    train = json.loads((out / "train-sat-s0.json").read_text())
    assert train["preset"] == "smoke" and len(train["history"]) == 1
    assert "--runs sat-s0" in train["command"]
    suite = json.loads((out / "suite-sat-s0.json").read_text())["report"]
    assert suite["n_examples"] == 32
    per_attack = suite["per_attack"]
    assert set(per_attack) == {"fgsm", "pgd", "tpgd", "bim", "dpgd", "apgd-ce", "apgd-t"}
    # the worst case is per sample: never above any single attack, which is never above clean
    assert suite["robust_accuracy"] <= min(per_attack.values())
    assert max(per_attack.values()) <= suite["clean_accuracy"]
    steps = json.loads((out / "steps-sat-s0.json").read_text())
    for attack in ("dpgd", "pgd-ce"):
        assert set(steps["accuracy"][attack]) == {"1", "5", "10", "20", "50"}
    autoattack = json.loads((out / "autoattack-sat-s0.json").read_text())["report"]
    assert autoattack["n_examples"] == 8

    text = report.read_text()
    assert text.startswith("# Results\n\nHand-written findings stay.\n")
    assert "<!-- fashion_mnist:begin -->" in text and "<!-- fashion_mnist:end -->" in text
    clean = f"{100 * suite['clean_accuracy']:.1f}"
    sat_row = next(line for line in text.splitlines() if line.startswith("| SAT (PGD-AT) |"))
    assert sat_row.split("|")[2].strip() == clean
    assert "Units finished: 4 of" in text

    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    second = run_script(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert " unit " not in second.stderr  # nothing left to run
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert report.read_text().count("<!-- fashion_mnist:begin -->") == 1


def test_unknown_run_is_refused_before_any_work(tmp_path: Path) -> None:
    result = run_script(
        "--runs",
        "sat-s0,nope",
        "--out",
        str(tmp_path / "o"),
        "--work",
        str(tmp_path / "w"),
        "--report",
        "",
    )
    assert result.returncode == 2
    assert "--runs: unknown run(s) ['nope']" in result.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "w").exists()
