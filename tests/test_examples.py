"""The examples stay runnable: each is run as a script on a tiny slice of real data."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

TINY = ["--n-train", "600", "--n-test", "64", "--epochs", "1"]


def run_example(name: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / name), *TINY],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def accuracies(output: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}.*?(\d\.\d{{3}})", output)
    assert match, output
    return float(match.group(1))


@pytest.mark.slow
def test_torchattacks_example() -> None:
    output = run_example("dpgd_torchattacks.py")
    clean = accuracies(output, "clean accuracy")
    dice = accuracies(output, "DPGD: robust accuracy")
    multi = accuracies(output, "MultiAttack(DPGD, PGD): robust accuracy")
    assert clean > 0.5 and dice < clean and multi <= dice
    assert "saved adversarial examples" in output


@pytest.mark.slow
def test_art_example() -> None:
    output = run_example("dpgd_art.py")
    clean = accuracies(output, "clean accuracy")
    assert accuracies(output, "ART DicePGD: robust accuracy") < clean
    assert "after 1 epoch of ART AdversarialTrainer with DicePGD" in output
