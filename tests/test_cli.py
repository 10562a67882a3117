"""Every `dard` subcommand run as a subprocess on tiny settings: exit codes, outputs, files,
and one-line errors for bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import dard_in_process

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
    run = json.loads((out / "run.json").read_text())
    assert run["lr"] == "0.05"  # the rate that ran
    # and the trainer's resolved settings (the options left unset were recorded as "None")
    assert run["trainer"]["method"] == "sat" and run["trainer"]["attack"]["eps"] == 0.1
    assert run["trainer"]["attack"]["alpha"] == pytest.approx(0.025)
    # what ran, beside the settings: --n-train resolved, and no teacher (SAT's record once
    # held the trainer's default teacher_targets "online")
    assert run["training_images"] == 128 and run["teacher_weights"] is None
    assert "teacher_targets" not in run["trainer"]
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
    trainer = json.loads((out / "run.json").read_text())["trainer"]
    assert trainer["method"] == "dard" and trainer["alpha"] == 0.7  # DARD's default, as ran
    assert trainer["temperature"] == 3.0 and trainer["adv_weight"] == 0.5
    # the teacher's weights as they ran: a file replaced later no longer passes for them
    from dard_plugin.recipes import load_model
    from dard_plugin.training.fingerprints import model_fingerprint

    recorded = json.loads((out / "run.json").read_text())["teacher_weights"]
    assert recorded == model_fingerprint(load_model(str(trained / "student.pt")))
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
    assert "worst case" in done.stdout and "| attack | accuracy (%) |" in done.stdout
    assert "dard demo: distilling" not in done.stdout  # --quiet: no banner, the results
    assert (tmp_path / "demo" / "report.md").is_file()


def test_demo_rerun_reuses_the_finished_run_with_the_same_report(tmp_path) -> None:
    """A second `dard demo` (a resume of a finished run) once crashed on the saved report,
    whose RobustBench-style fields (eps as "0.1") are not the report's own; it must print
    and return the same report as the first run, training nothing."""
    tiny = ["demo", "--n-train", "128", "--epochs", "1", "--n-eval", "16", "--quiet"]
    first = dard(*tiny, "--out", str(tmp_path / "demo"), "--json")
    assert first.returncode == 0, first.stderr
    student = (tmp_path / "demo" / "student.pt").read_bytes()
    again = dard_in_process(*tiny, "--out", str(tmp_path / "demo"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["report"] == json.loads(first.stdout)["report"]
    assert (tmp_path / "demo" / "student.pt").read_bytes() == student
    shown = dard_in_process(*tiny, "--out", str(tmp_path / "demo"))
    assert shown.returncode == 0, shown.stderr
    assert "nothing to do" in shown.stdout and "worst case" in shown.stdout
    # a run recorded before an option existed (--natural-teacher-arch, left at its
    # default) is still this run: it was evaluated again
    record = json.loads((tmp_path / "demo" / "run.json").read_text())
    assert record.pop("natural_teacher_arch") == "None"
    (tmp_path / "demo" / "run.json").write_text(json.dumps(record))
    older = dard_in_process(*tiny, "--out", str(tmp_path / "demo"))
    assert older.returncode == 0 and "nothing to do" in older.stdout, older.stderr
    # another report written into the run's folder is not the run's: evaluated again
    other = dard(
        "evaluate",
        str(tmp_path / "demo" / "student.pt"),
        "--n-examples",
        "8",
        "--attacks",
        "clean",
        "--quiet",
        "--overwrite",
        "--out",
        str(tmp_path / "demo"),
    )
    assert other.returncode == 0, other.stderr
    third = dard(*tiny, "--out", str(tmp_path / "demo"), "--json")
    assert third.returncode == 0, third.stderr
    again_report, first_report = (
        json.loads(third.stdout)["report"],
        json.loads(first.stdout)["report"],
    )
    assert again_report.pop("seconds") != first_report.pop("seconds")  # evaluated anew
    assert again_report == first_report
    # other settings into the same folder: refused naming --overwrite, which the demo has
    other_settings = [*tiny[:2], "64", *tiny[3:], "--out", str(tmp_path / "demo")]
    refused = dard_in_process(*other_settings)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr, refused.stderr
    replaced = dard(*other_settings, "--overwrite", "--json")
    assert replaced.returncode == 0, replaced.stderr
    assert len(json.loads(replaced.stdout)["history"]) == 1


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
        dard_in_process(*base, "--seed", "1"),
        "already holds a finished run",
        "--resume",
        "--overwrite",
    )
    assert_one_line_error(dard_in_process(*base, "--lr", "0.5", "--resume"), "optimizer.lr", "0.5")
    again = dard(*base, "--resume", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["history"][0]["epoch"] == 1
    assert {name: (out / name).read_bytes() for name in before} == before  # nothing redone
    replaced = dard(*base, "--seed", "1", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert (out / "student.pt").read_bytes() != before["student.pt"]
    assert_one_line_error(dard_in_process(*base, "--resume", "--overwrite"), "exclude each other")
    # a finished run whose checkpoint was deleted: a resume cannot check its settings (it
    # once retrained over it with --lr 0.2, rc 0); the student stays
    bare = tmp_path / "no-checkpoint"
    shutil.copytree(trained, bare)
    shutil.rmtree(bare / "checkpoint")
    kept = (bare / "student.pt").read_bytes()
    base = ["train-teacher", "--arch", "small-cnn", *TINY_TRAIN, "--out", str(bare)]
    assert_one_line_error(
        dard_in_process(*base, "--resume", "--lr", "0.2"), "without its checkpoint"
    )
    assert (bare / "student.pt").read_bytes() == kept
    # an evaluation's report is not a run's to replace (it once was, silently)
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    shutil.copy(trained / "report.json", evaluation / "report.json")
    report = (evaluation / "report.json").read_bytes()
    base = ["train-teacher", "--arch", "small-cnn", *TINY_TRAIN, "--out", str(evaluation)]
    for flags in ((), ("--resume",)):
        assert_one_line_error(
            dard_in_process(*base, *flags), "holds a report (report.json) but no run"
        )
    assert (evaluation / "report.json").read_bytes() == report


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
        dard_in_process(
            "distill", "--method", "ard", "--adv-targets", "teacher-nat", "--out", str(tmp_path)
        ),
        "--adv-targets does not apply",
    )
    assert_one_line_error(
        dard_in_process(
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
        dard_in_process("distill", "--arch", "nope", "--out", str(tmp_path / "x")),
        "--arch must be one of",
        "small-cnn",
    )
    assert_one_line_error(
        dard_in_process("distill", "--eps", "0", "--out", str(tmp_path / "x")), "--eps"
    )
    assert_one_line_error(
        dard_in_process(
            "distill", "--method", "sat", "--adv-weight", "0.7", "--out", str(tmp_path / "x")
        ),
        "--adv-weight does not apply",
    )
    assert_one_line_error(
        dard_in_process(
            "distill", "--eval-attacks", "clean,deepfool", "--out", str(tmp_path / "x")
        ),
        "--eval-attacks",
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(
        dard_in_process("distill", "--out", str(blocker / "sub")), "not a directory"
    )
    assert not (tmp_path / "x").exists()
    evil = tmp_path / "evil.pt"
    torch.save({"arch": "small-cnn", "payload": Path("x")}, evil)
    assert_one_line_error(dard_in_process("evaluate", str(evil)), "refused")
    assert_one_line_error(
        dard_in_process("evaluate", str(trained / "student.pt"), "--n-examples", "20000"),
        "--n-examples must be at most 10000",
    )
    assert_one_line_error(
        dard_in_process("evaluate", str(trained / "student.pt"), "--attacks", "x"),
        "attacks must be one of",
    )
    debug = dard("evaluate", str(tmp_path / "missing.pt"), "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.slow
def test_distill_under_torchrun_two_processes(tmp_path) -> None:
    """`torchrun ... dard distill`: the CLI joins the process group (gloo on CPU), trains
    with DDP, every rank evaluates its shard and rank 0 alone writes and prints."""
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
            "--json",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-3000:]
    # one JSON document (rank 1 printed its own too), the world size recorded
    result = json.loads(done.stdout)
    assert result["world_size"] == 2 and "report" in result
    assert json.loads((out / "run.json").read_text())["world_size"] == "2"
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


# In-process checks (no subprocess): every argument is checked before any teacher or data
# is loaded, so these run in well under a second each once imported.


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fails a test that loads a teacher or data: records every attempt."""
    import dard_plugin.data
    import dard_plugin.recipes
    import dard_plugin.recipes.distillation

    loaded: list[str] = []

    def refuse(what: str):
        def loader(*args, **kwargs):
            loaded.append(what)
            raise RuntimeError(f"{what} loaded before the arguments were checked")

        return loader

    monkeypatch.setattr(dard_plugin.recipes, "load_model", refuse("teacher"))
    monkeypatch.setattr(dard_plugin.recipes.distillation, "load_dataset", refuse("data"))
    monkeypatch.setattr(dard_plugin.data, "load_dataset", refuse("data"))
    return loaded


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    from dard_plugin.cli.main import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_python_distill_refuses_a_negative_n_train_before_loading_data(
    nothing_loaded, tmp_path
) -> None:
    """Issue 25, item 5: n_train=-5 once trained on 59,995 images, every validation image
    among them."""
    from dard_plugin.recipes import distill

    for n_train in (-5, 0):
        with pytest.raises(ValueError, match="n_train must be"):
            distill(method="sat", val_split=5000, n_train=n_train, verbose=False)
    with pytest.raises(ValueError, match=r"n_val must be at most val_split \(100, .*got 200"):
        distill(method="sat", val_split=100, n_val=200, verbose=False)
    with pytest.raises(ValueError, match="eps=8 covers the whole input range"):
        distill(method="sat", eps=8, out_dir=tmp_path / "never", verbose=False)
    assert nothing_loaded == [] and not (tmp_path / "never").exists()


def test_distill_checks_eps_before_loading_the_teacher(nothing_loaded, capsys, tmp_path) -> None:
    out = tmp_path / "never"
    for eps in ("8", "0", "nan"):
        code, _, err = run_main(capsys, "distill", "--eps", eps, "--out", str(out))
        assert code == 2 and "--eps" in err and "loaded before" not in err, err
    code, _, err = run_main(capsys, "distill", "--norm", "L2", "--eps", "29", "--out", str(out))
    assert code == 2 and "--eps=29" in err, err
    code, _, err = run_main(capsys, "distill", "--n-train", "-5", "--out", str(out))
    assert code == 2 and "--n-train must be" in err, err
    # the default hold-out leaves 55,000 of Fashion-MNIST's 60,000 images to train on
    code, _, err = run_main(capsys, "distill", "--n-train", "60000", "--out", str(out))
    assert code == 2 and "--n-train must be at most 55000" in err and "--val-split 5000" in err
    assert nothing_loaded == [] and not out.exists()


def test_sizes_beyond_a_split_are_refused_before_any_work(nothing_loaded, capsys, tmp_path) -> None:
    """``--n-eval`` used to be checked against the test split only after training, and
    ``--n-examples`` after the model had loaded."""
    from dard_plugin.recipes import distill

    out = tmp_path / "never"
    code, _, err = run_main(capsys, "distill", "--n-eval", "20000", "--out", str(out))
    assert code == 2 and "--n-eval must be at most 10000 (the size of the fashion-mnist test" in err
    code, _, err = run_main(
        capsys, "distill", "--validate-on-test", "--n-val", "10001", "--out", str(out)
    )
    assert code == 2 and "--n-val must be at most 10000" in err, err
    code, _, err = run_main(
        capsys, "evaluate", "no-such-file.pt", "--n-examples", "10001", "--out", str(out)
    )
    assert code == 2 and "--n-examples must be at most 10000" in err, err
    with pytest.raises(ValueError, match="n_train must be at most 60000"):
        distill(method="sat", validate_on_test=True, n_train=60_001, verbose=False)
    with pytest.raises(ValueError, match="n_val must be at most 10000"):
        distill(method="sat", validate_on_test=True, n_val=10_001, verbose=False)
    assert nothing_loaded == [] and not out.exists()


def test_fewer_eval_images_than_processes_is_refused_before_training(
    nothing_loaded, capsys, tmp_path, monkeypatch
) -> None:
    """Under torchrun ``--n-eval`` below the world size trained the whole run, then the
    final evaluation could not give every rank an image (also N=4 over 3 ranks: a batch
    of ceil(4/3) = 2 made 2 batches for 3 ranks; the batch is now N // world)."""
    monkeypatch.setenv("WORLD_SIZE", "3")
    out = tmp_path / "never"
    code, _, err = run_main(
        capsys, "distill", "--method", "sat", "--n-eval", "2", "--out", str(out)
    )
    assert code == 2 and "--n-eval 2 is fewer than the 3 processes (WORLD_SIZE)" in err, err
    assert nothing_loaded == [] and not out.exists()


def _fake_run(out: Path, epochs: int, finished: bool = True) -> None:
    """A folder as distill leaves it: the checkpoint's history (and student.pt)."""
    (out / "checkpoint").mkdir(parents=True)
    history = [{"epoch": e, "loss": 1.0} for e in range(1, epochs + 1)]
    (out / "checkpoint" / "history.json").write_text(json.dumps(history))
    (out / "checkpoint" / "checkpoint.pt").write_bytes(b"")
    if finished:
        (out / "student.pt").write_bytes(b"")
        (out / "history.json").write_text(json.dumps(history))


def test_resume_with_fewer_epochs_than_the_run_trained_is_refused_first(
    nothing_loaded, capsys, tmp_path
) -> None:
    """Issue 25, item 7: `dard distill --resume --epochs 5` on a finished 6-epoch run once
    exited 0 and wrote epochs 5 into run.json beside the 6-epoch student."""
    from dard_plugin.recipes import distill

    finished, unfinished = tmp_path / "finished", tmp_path / "unfinished"
    _fake_run(finished, 6)
    _fake_run(unfinished, 3, finished=False)
    before = sorted(p.name for p in finished.rglob("*"))
    code, _, err = run_main(capsys, "distill", "--resume", "--epochs", "5", "--out", str(finished))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    for fragment in ("--epochs 5", "6 epochs", "finished run", "--overwrite", "another --out"):
        assert fragment in lines[0], lines[0]
    code, _, err = run_main(
        capsys, "train-teacher", "--resume", "--epochs", "2", "--out", str(unfinished)
    )
    assert code == 2 and "--epochs 2" in err and "3 epochs" in err and "unfinished" in err
    with pytest.raises(ValueError, match=r"epochs=5 is fewer than the 6 epochs.*overwrite=True"):
        distill(method="sat", resume=True, epochs=5, out_dir=finished, verbose=False)
    assert nothing_loaded == []
    assert sorted(p.name for p in finished.rglob("*")) == before


def test_resume_refuses_fewer_epochs_and_continues_with_more(tmp_path) -> None:
    """The same on a real (tiny) run: fewer epochs refused, more epochs continue it."""
    from dard_plugin.recipes import distill

    tiny = {"method": "sat", "n_train": 64, "n_val": 16, "val_split": 100, "steps": 1}
    tiny.update({"batch_size": 32, "out_dir": tmp_path / "run", "verbose": False})
    # 1 and 2 epochs share the learning-rate milestones, so a resume may continue
    first = distill(epochs=1, **tiny)
    assert [h["epoch"] for h in first.history] == [1]
    more = distill(epochs=2, resume=True, **tiny)
    assert [h["epoch"] for h in more.history] == [1, 2] and more.epochs_run == 1
    with pytest.raises(ValueError, match="epochs=1 is fewer than the 2 epochs"):
        distill(epochs=1, resume=True, **tiny)
    # 5 epochs move the milestones: refused, and the refusal says that --epochs moved them
    # (it once listed only "scheduler.milestones.1: checkpoint 1, now None")
    with pytest.raises(ValueError, match=r"milestones.*another nb_epochs \(--epochs\) moves"):
        distill(epochs=5, resume=True, **tiny)


def test_method_sat_refuses_teacher_options_and_runs_without_them(
    nothing_loaded, capsys, tmp_path
) -> None:
    from dard_plugin.cli.common import DEFAULT_TEACHER
    from dard_plugin.cli.main import build_parser
    from dard_plugin.cli.training_options import choose_teacher

    out = str(tmp_path / "never")
    for method in ("sat", "natural"):  # the registry's methods without a teacher
        for given in (["--teacher", "Wong2020Fast"], ["--teacher-targets", "cached"]):
            code, _, err = run_main(capsys, "distill", "--method", method, *given, "--out", out)
            assert code == 2 and f"{given[0]} does not apply to --method {method}" in err, err
    # no teacher flag: the plain command is valid, its teacher options stay unset
    plain = build_parser().parse_args(["distill", "--method", "sat", "--out", out])
    choose_teacher(plain)
    assert plain.teacher is None and plain.teacher_targets is None
    dard_args = build_parser().parse_args(["distill", "--out", out])
    choose_teacher(dard_args)
    assert (dard_args.teacher, dard_args.teacher_targets) == (DEFAULT_TEACHER, "online")
    assert nothing_loaded == []


def test_distill_holds_out_validation_images_by_default(capsys, tmp_path) -> None:
    from dard_plugin.cli.main import build_parser
    from dard_plugin.cli.training import _announce_validation
    from dard_plugin.cli.training_options import DEFAULT_VAL_SPLIT, check_training_args

    def checked(*argv: str):
        args = build_parser().parse_args(["distill", *argv, "--out", str(tmp_path / "r")])
        check_training_args(args)
        return args

    from dard_plugin.recipes import DEFAULT_VAL_SPLIT as PYTHON_DEFAULT

    assert checked().val_split == DEFAULT_VAL_SPLIT == PYTHON_DEFAULT == 5000
    assert checked("--n-val", "6000").val_split == 6000
    assert checked("--val-split", "2000").val_split == 2000
    assert checked("--validate-on-test").val_split is None
    assert checked("--val-split", "0", "--validate-on-test").val_split is None
    with pytest.raises(Exception, match=r"--val-split 0 holds nothing out.*--validate-on-test"):
        checked("--val-split", "0")
    with pytest.raises(Exception, match="drop --val-split 2000"):
        checked("--val-split", "2000", "--validate-on-test")
    args = checked()
    args.quiet = False
    _announce_validation(args)
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and "1000 of 5000 images held out" in line
    assert "fashion-mnist training split" in line


def test_evaluate_and_distill_share_the_default_eps(tmp_path) -> None:
    """`dard evaluate --norm L2` once defaulted to 0.1 while `dard distill --norm L2` used
    1.5."""
    from dard_plugin.cli.main import build_parser
    from dard_plugin.cli.model_source import check_model_source_args
    from dard_plugin.cli.training_options import check_training_args
    from dard_plugin.recipes import default_eps

    for dataset, norm, expected in (
        ("fashion-mnist", "Linf", 0.1),
        ("fashion-mnist", "L2", 1.5),
        ("cifar10", "Linf", 8 / 255),
        ("cifar10", "L2", 0.5),
    ):
        common = ["--dataset", dataset, "--norm", norm]
        evaluate = build_parser().parse_args(["evaluate", "m.pt", *common])
        check_model_source_args(evaluate)
        arch = ["--arch", "small-cnn" if dataset == "fashion-mnist" else "resnet18"]
        distill = build_parser().parse_args(
            ["distill", *common, *arch, "--out", str(tmp_path / "r")]
        )
        check_training_args(distill)
        assert evaluate.eps == distill.eps == default_eps(dataset, norm) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train-teacher", "--natural", "--steps", "7"], "--steps does not apply to --natural"),
        (
            ["train-teacher", "--natural", "--step-size", "0.3"],
            "--step-size does not apply to --natural",
        ),
        (
            ["distill", "--method", "dard", "--cache-refresh-epochs", "2"],
            "--cache-refresh-epochs applies to --teacher-targets cached only",
        ),
        (
            ["distill", "--teacher-arch", "small-cnn"],
            "--teacher-arch applies to a checkpoint file",
        ),
        (
            ["distill", "--threat-model", "L2"],
            "dard-fmnist-teacher is a shipped teacher",
        ),
        (
            ["distill", "--method", "sat", "--threat-model", "L2"],
            "--threat-model does not apply to --method sat",
        ),
        # --model-dir looks up RobustBench names only: it changed nothing here
        (["distill", "--model-dir", "elsewhere"], "--model-dir is where a RobustBench name"),
        (
            ["distill", "--method", "sat", "--model-dir", "elsewhere"],
            "--model-dir does not apply to --method sat",
        ),
        # the attack never reached --eps: 1 epoch at eps / 5, the report at eps
        (
            ["distill", "--method", "sat", "--epochs", "1", "--eps-warmup-epochs", "5"],
            "--eps-warmup-epochs 5 is longer than --epochs 1",
        ),
        # trained all its epochs, then failed at the final evaluation (28 vs 32 pixels)
        (["distill", "--arch", "resnet56"], "--arch resnet56 is built for 32x32 images"),
        (["train-teacher", "--arch", "resnet18"], "--arch resnet18 is built for 32x32 images"),
    ],
)
def test_options_that_would_change_nothing_are_refused_before_work(
    nothing_loaded, capsys, tmp_path, argv, message
) -> None:
    """Each was accepted, recorded in run.json and fingerprinted, and changed no weight."""
    code, _, err = run_main(capsys, *argv, "--out", str(tmp_path / "never"))
    assert code == 2 and message in err, err
    assert nothing_loaded == [] and not (tmp_path / "never").exists()


def test_cache_refresh_without_cached_targets_is_refused_in_python() -> None:
    from dard_plugin import DARDTrainer, load_teacher
    from dard_plugin.models import create

    student = create("tiny-cnn", num_classes=10)
    with pytest.raises(ValueError, match="cache_refresh_epochs=2 applies to teacher_targets="):
        DARDTrainer(
            student,
            load_teacher("dard-fmnist-teacher"),
            optimizer=torch.optim.SGD(student.parameters(), lr=0.01),
            cache_refresh_epochs=2,
        )


def test_a_data_root_without_the_test_split_fails_before_training(capsys, tmp_path) -> None:
    """The test images of the final evaluation were first read after every epoch had
    trained (and student.pt was written)."""
    from dard_plugin.data import fashion_mnist

    root = tmp_path / "train-only"
    root.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (root / name).symlink_to(fashion_mnist.DEBIAN_DIR / name)
    out = tmp_path / "run"
    flags = ["--method", "sat", "--arch", "tiny-cnn", *TINY_TRAIN, "--quiet"]
    code, _, err = run_main(capsys, "distill", *flags, "--data-root", str(root), "--out", str(out))
    assert code != 0 and "t10k-images-idx3-ubyte" in err, err
    assert not (out / "student.pt").exists() and not (out / "checkpoint").exists()


def test_an_l2_run_is_taught_by_the_teachers_l2_entry(capsys, monkeypatch, tmp_path) -> None:
    """`dard distill --norm L2 --teacher NAME` loaded NAME's L-inf RobustBench entry (the
    evaluation of the same name follows --norm)."""
    import argparse

    import dard_plugin.recipes
    from dard_plugin.cli.training_options import teacher_threat_model

    run = argparse.Namespace(threat_model=None, norm="L2")
    assert teacher_threat_model(run, "Rade2021Helper_R18_ddpm") == "L2"
    assert teacher_threat_model(run, "dard-fmnist-teacher") == "Linf"  # a shipped one's own
    chosen = argparse.Namespace(threat_model="Linf", norm="L2")
    assert teacher_threat_model(chosen, "Rade2021Helper_R18_ddpm") == "Linf"
    # a file has no entry to choose: load_model refuses a threat model for one
    assert teacher_threat_model(run, str(tmp_path / "teacher.pt")) is None
    asked = []

    def record(spec, **kwargs):
        asked.append((spec, kwargs["threat_model"]))
        raise RuntimeError("stop here")

    monkeypatch.setattr(dard_plugin.recipes, "load_model", record)
    flags = ["--dataset", "cifar10", "--arch", "resnet56", "--norm", "L2", "--n-train", "64"]
    out = str(tmp_path / "r")
    code, _, err = run_main(capsys, "distill", *flags, "--teacher", "Standard", "--out", out)
    assert code != 0 and "stop here" in err, err
    assert asked == [("Standard", "L2")]


def test_the_cli_module_runs_as_a_script() -> None:
    """``python -m dard_plugin.cli.main ...`` did nothing and exited 0 (no ``__main__``
    guard); it now runs the command, as ``python -m dard_plugin`` does."""
    done = subprocess.run(
        [sys.executable, "-m", "dard_plugin.cli.main", "--help"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "usage: dard" in done.stdout, done.stdout + done.stderr


def test_a_large_budget_is_warned_once_and_empty_attack_entries_are_dropped(
    capsys, tmp_path
) -> None:
    """``dard distill --eps 0.5`` warned twice (``--eps=0.5``, then the library's
    ``eps=0.5``); ``--eval-attacks clean,,fgsm`` was refused where ``dard evaluate`` drops
    the empty entry."""
    from dard_plugin._validation import BUDGET_WARNING

    out = tmp_path / "run"
    tiny = ["--n-train", "32", "--n-val", "16", "--val-split", "100", "--epochs", "1"]
    tiny += ["--steps", "1", "--n-eval", "8", "--quiet", "--out", str(out)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_main(
            capsys, "distill", "--method", "sat", "--eps", "0.5", *tiny,
            "--eval-attacks", "clean,,fgsm",
        )  # fmt: skip
    assert code == 0, err
    budget = [w for w in caught if re.match(BUDGET_WARNING, str(w.message))]
    assert [str(w.message).split("=")[0] for w in budget] == ["--eps"], budget
    report = json.loads((out / "report.json").read_text())["dard_plugin"]
    assert sorted(report["per_attack"]) == ["fgsm"]
