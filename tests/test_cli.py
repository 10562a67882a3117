"""Every `dard` subcommand run as a subprocess on tiny settings: exit codes, outputs, files,
and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

DARD = [sys.executable, "-m", "dard_plugin"]
TINY_TRAIN = [
    "--n-train",
    "128",
    "--epochs",
    "1",
    "--steps",
    "1",
    "--n-val",
    "32",
    "--n-eval",
    "32",
    "--eval-attacks",
    "clean,pgd",
    "--quiet",
]


def dard(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DARD, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_is_fast() -> None:
    start = time.perf_counter()
    script = Path(sys.executable).parent / "dard"  # the installed console script
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert time.perf_counter() - start < 2.0
    assert done.returncode == 0
    for command in ("teachers", "train-teacher", "distill", "evaluate", "attack", "demo"):
        assert command in done.stdout


def test_teachers_json() -> None:
    done = dard("teachers", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["Wong2020Fast"]["autoattack_acc"] == pytest.approx(43.21)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "sat"
    done = dard("train-teacher", "--arch", "small-cnn", *TINY_TRAIN, "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [h["epoch"] for h in result["history"]] == [1]
    assert set(result["report"]["per_attack"]) == {"pgd"}
    for name in ("student.pt", "history.json", "report.json", "report.md", "training.png"):
        assert (out / name).is_file(), name
    return out


def test_distill_with_a_checkpoint_teacher(trained, tmp_path) -> None:
    out = tmp_path / "dard"
    done = dard(
        "distill",
        "--method",
        "dard",
        "--teacher",
        str(trained / "student.pt"),
        "--teacher-targets",
        "cached",
        *TINY_TRAIN,
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "| pgd |" in done.stdout and "worst case" in done.stdout
    history = json.loads((out / "history.json").read_text())
    assert {"loss_nat", "loss_adv"} <= set(history[0])
    resumed = dard(
        "distill",
        "--method",
        "dard",
        "--teacher",
        str(trained / "student.pt"),
        "--teacher-targets",
        "cached",
        *TINY_TRAIN,
        "--out",
        str(out),
        "--resume",
    )
    assert resumed.returncode == 0, resumed.stderr  # nothing left to train: evaluates again


def test_evaluate_and_attack(trained, tmp_path) -> None:
    done = dard(
        "evaluate",
        str(trained / "student.pt"),
        "--attacks",
        "clean,fgsm,dpgd",
        "--n-examples",
        "32",
        "--json",
        "--quiet",
        "--out",
        str(tmp_path / "ev"),
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["per_attack"]) == {"fgsm", "dpgd"}
    saved = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert saved["eps"] == "0.1" and "clean_acc" in saved
    done = dard("attack", str(trained / "student.pt"), "--n", "6", "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    arrays = np.load(tmp_path / "a" / "adv.npz")
    assert arrays["adversarial"].shape == (6, 1, 28, 28)
    assert np.abs(arrays["adversarial"] - arrays["clean"]).max() <= 0.1 + 1e-6
    assert (tmp_path / "a" / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_tiny(tmp_path) -> None:
    done = dard(
        "demo",
        "--n-train",
        "128",
        "--epochs",
        "1",
        "--n-eval",
        "16",
        "--quiet",
        "--out",
        str(tmp_path / "demo"),
    )
    assert done.returncode == 0, done.stderr
    assert "worst case" in done.stdout and "dard-fmnist-teacher" in done.stdout
    assert (tmp_path / "demo" / "report.md").is_file()


def test_demo_rerun_reuses_the_finished_run_with_the_same_report(tmp_path) -> None:
    """A second `dard demo` (a resume of a finished run) once crashed on the saved report,
    whose RobustBench-style fields (eps as "0.1") are not the report's own; it must print
    and return the same report as the first run, training nothing."""
    tiny = ["demo", "--n-train", "128", "--epochs", "1", "--n-eval", "16", "--quiet"]
    first = dard(*tiny, "--out", str(tmp_path / "demo"), "--json")
    assert first.returncode == 0, first.stderr
    student = (tmp_path / "demo" / "student.pt").read_bytes()
    again = dard(*tiny, "--out", str(tmp_path / "demo"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["report"] == json.loads(first.stdout)["report"]
    assert (tmp_path / "demo" / "student.pt").read_bytes() == student
    shown = dard(*tiny, "--out", str(tmp_path / "demo"))
    assert shown.returncode == 0, shown.stderr
    assert "nothing to do" in shown.stdout and "worst case" in shown.stdout


@pytest.mark.slow  # five CLI processes, one of which trains and evaluates (~35 s alone)
def test_an_out_holding_a_run_is_never_overwritten_silently(trained, tmp_path) -> None:
    """Issue 10: a second run into the same --out is refused (naming --resume and
    --overwrite); --resume with other settings is refused naming the field; --resume with
    the same settings does nothing; --overwrite replaces the run."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = {name: (out / name).read_bytes() for name in ("student.pt", "report.json")}
    base = ["train-teacher", "--arch", "small-cnn", *TINY_TRAIN, "--out", str(out)]
    assert_one_line_error(
        dard(*base, "--seed", "1"), "already holds a finished run", "--resume", "--overwrite"
    )
    assert_one_line_error(dard(*base, "--lr", "0.5", "--resume"), "optimizer.lr", "0.5")
    again = dard(*base, "--resume", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["history"][0]["epoch"] == 1
    assert {name: (out / name).read_bytes() for name in before} == before  # nothing redone
    replaced = dard(*base, "--seed", "1", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert (out / "student.pt").read_bytes() != before["student.pt"]
    assert_one_line_error(dard(*base, "--resume", "--overwrite"), "exclude each other")


@pytest.mark.slow  # three CLI processes, one of which distils and evaluates (~25 s alone)
def test_distill_adv_targets_option(trained, tmp_path) -> None:
    out = tmp_path / "corrected"
    teacher = ["--teacher", str(trained / "student.pt")]
    done = dard(
        "distill",
        *teacher,
        "--adv-targets",
        "teacher-adv-corrected",
        *TINY_TRAIN,
        "--out",
        str(out),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert 0 <= json.loads(done.stdout)["history"][0]["teacher_fooled"] <= 1
    assert_one_line_error(
        dard("distill", "--method", "ard", "--adv-targets", "teacher-nat", "--out", str(tmp_path)),
        "--adv-targets does not apply",
    )
    assert_one_line_error(
        dard(
            "distill",
            *teacher,
            "--adv-targets",
            "student-adv",
            "--teacher-targets",
            "cached",
            *TINY_TRAIN,
            "--out",
            str(tmp_path / "s"),
        ),
        "cannot be cached",
    )


def test_bad_inputs_give_one_line(trained, tmp_path) -> None:
    assert_one_line_error(
        dard("distill", "--arch", "nope", "--out", str(tmp_path / "x")),
        "--arch must be one of",
        "small-cnn",
    )
    assert_one_line_error(dard("distill", "--eps", "0", "--out", str(tmp_path / "x")), "--eps")
    assert_one_line_error(
        dard("distill", "--method", "sat", "--adv-weight", "0.7", "--out", str(tmp_path / "x")),
        "--adv-weight does not apply",
    )
    assert_one_line_error(
        dard("distill", "--eval-attacks", "clean,deepfool", "--out", str(tmp_path / "x")),
        "--eval-attacks",
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(dard("distill", "--out", str(blocker / "sub")), "not a directory")
    assert not (tmp_path / "x").exists()
    evil = tmp_path / "evil.pt"
    torch.save({"arch": "small-cnn", "payload": Path("x")}, evil)
    assert_one_line_error(dard("evaluate", str(evil)), "refused")
    assert_one_line_error(
        dard("evaluate", str(trained / "student.pt"), "--n-examples", "20000"),
        "n_examples must be at most 10000",
    )
    assert_one_line_error(
        dard("evaluate", str(trained / "student.pt"), "--attacks", "x"), "attacks must be one of"
    )
    debug = dard("evaluate", str(tmp_path / "missing.pt"), "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.slow
def test_distill_under_torchrun_two_processes(tmp_path) -> None:
    """`torchrun ... dard distill`: the CLI joins the process group (gloo on CPU), trains
    with DDP, and only rank 0 evaluates and writes."""
    out = tmp_path / "ddp"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",
            "-m",
            "dard_plugin",
            "distill",
            "--method",
            "dard",
            "--teacher",
            "dard-fmnist-teacher",
            *TINY_TRAIN,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-3000:]
    assert done.stdout.count("worst case") == 1  # one evaluation: rank 0's
    history = json.loads((out / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1]
    assert "clean_accuracy" in history[0]
    assert (out / "student.pt").is_file()


def test_distill_in_l2_end_to_end(trained, tmp_path) -> None:
    """Issue 13 item 3: `dard distill --norm L2` trains, validates and evaluates in L2."""
    out = tmp_path / "dard-l2"
    done = dard(
        "distill",
        "--method",
        "dard",
        "--teacher",
        str(trained / "student.pt"),
        "--norm",
        "L2",
        *TINY_TRAIN,
        "--out",
        str(out),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["report"]["norm"] == "L2" and result["report"]["eps"] == 1.5
    history = json.loads((out / "history.json").read_text())
    assert 0 <= history[0]["pgd_accuracy"] <= 1 and {"loss_nat", "loss_adv"} <= set(history[0])


def test_a_bad_norm_or_data_root_is_refused_before_work(tmp_path) -> None:
    out = tmp_path / "never"
    done = dard("train-teacher", "--norm", "L1", *TINY_TRAIN, "--out", str(out))
    assert done.returncode == 2 and "--norm" in done.stderr and "'L2'" in done.stderr
    missing = tmp_path / "no-such-folder"
    done = dard("train-teacher", "--data-root", str(missing), *TINY_TRAIN, "--out", str(out))
    assert_one_line_error(done, "--data-root", "does not exist")
    assert not out.exists()
