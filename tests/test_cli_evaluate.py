"""`dard evaluate`, `dard teachers` and `dard attack` as subprocesses: one-line errors before
any work for bad input, the shipped teachers' listing, and evaluation under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import dard_in_process

DARD = [sys.executable, "-m", "dard_plugin"]


def dard(*args: str, env: dict[str, str] | None = None, torchrun: bool = False):
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    return subprocess.run(
        [*launcher, "-m", "dard_plugin", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def student_file(tmp_path_factory) -> Path:
    from dard_plugin.models import create
    from dard_plugin.recipes import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cli-eval") / "student.pt"
    save_model(path, create("small-cnn", num_classes=10), "small-cnn", 10)
    return path


@pytest.mark.slow  # three CLI runs, one importing robustbench (~30 s on 2 shared cores)
def test_teachers_lists_the_shipped_fashion_mnist_teacher() -> None:
    """Once refused: "invalid choice: 'fashion-mnist'"."""
    done = dard_in_process("teachers", "--dataset", "fashion-mnist", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert sorted(rows) == [
        "dard-fmnist-teacher",
        "dard-fmnist-teacher-natural",
        "dard-fmnist-teacher-strong",
    ]
    measured = {
        name: tuple(row[k] for k in ("clean_acc", "autoattack_acc", "autoattack_examples"))
        for name, row in rows.items()
    }
    assert measured == {
        "dard-fmnist-teacher": (81.2, 73.0, 200),
        "dard-fmnist-teacher-strong": (82.54, 74.5, 200),
        "dard-fmnist-teacher-natural": (92.75, 0.00, 200),
    }
    cards = Path(__file__).resolve().parents[1] / "docs" / "teachers"
    for name, row in rows.items():  # the robust number's own clean accuracy, from its card
        card = json.loads((cards / f"{name}-autoattack-200.json").read_text())
        assert (row["autoattack_clean_acc"], row["autoattack_acc"]) == (
            float(card["clean_acc"]),
            float(card["autoattack_acc"]),
        )
    assert all(row["source"] == "dard-plugin" for row in rows.values())
    text = dard_in_process("teachers", "--dataset", "fashion-mnist")
    assert "dard-fmnist-teacher-strong" in text.stdout
    assert "measured (AutoAttack, first 200: clean 83.50)" in text.stdout
    zoo = dard_in_process("teachers", "--quiet")
    lines = zoo.stdout.splitlines()
    assert lines[2].split()[:3] == ["Amini2024MeanSparse_S-WRN-94-16", "93.60", "73.10"]
    assert "RobustBench: adaptive (AA 75.28)" in lines[2]
    assert "RobustBench: AutoAttack" in lines[1] and "AA unreliable" in lines[-2]
    listed = json.loads(dard_in_process("teachers", "--json").stdout)
    assert listed[1]["robust_acc"] == 73.10 and listed[1]["external_acc"] == 73.10


def test_eps_covering_the_range_is_refused_before_work(student_file, tmp_path) -> None:
    for command in ("evaluate", "attack"):
        done = dard_in_process(
            command, str(student_file), "--eps", "8", "--out", str(tmp_path / command)
        )
        assert_one_line_error(done, "--eps=8 covers the whole input range", "8/255")
    # L2: Fashion-MNIST's 28x28 box has L2 diameter 28
    done = dard_in_process("evaluate", str(student_file), "--norm", "L2", "--eps", "29")
    assert_one_line_error(done, "--eps=29", "L2 diameter of the box is 28", "0.5")
    assert not list(tmp_path.iterdir())


def test_evaluate_in_l2_runs_every_row(tmp_path) -> None:
    """Issue 13 item 4: `dard evaluate --norm L2` (once: only fgsm and pgd had L2 forms)."""
    attacks = "clean,fgsm,pgd,bim,tpgd,cw,dpgd"
    done = dard(
        "evaluate",
        "dard-fmnist-teacher",
        "--norm",
        "L2",
        "--eps",
        "1.5",
        "--attacks",
        attacks,
        "--n-examples",
        "4",
        "--json",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["norm"] == "L2" and report["eps"] == 1.5
    assert set(report["per_attack"]) == set(attacks.split(",")) - {"clean"}


def test_missing_data_root_is_an_error(student_file, tmp_path) -> None:
    """Once the system's copy of Fashion-MNIST was used silently."""
    missing = tmp_path / "does" / "not" / "exist"
    for command in ("evaluate", "attack"):
        done = dard(
            command, str(student_file), "--data-root", str(missing), "--out", str(tmp_path / "o")
        )
        assert_one_line_error(done, f"--data-root {missing} does not exist")


def test_options_that_a_named_or_file_model_ignores_are_refused(student_file, tmp_path) -> None:
    """Once `--threat-model L2 --arch resnet18` with the shipped teacher evaluated it as
    if neither were given (as `dard distill` already refused)."""
    for model, flags, fragment in (
        ("dard-fmnist-teacher", ["--threat-model", "L2"], "is a shipped teacher: drop it"),
        (str(student_file), ["--threat-model", "L2"], "is a checkpoint file: drop it"),
        ("dard-fmnist-teacher", ["--arch", "resnet18"], "named model whose architecture"),
        # --model-dir looks up RobustBench names only (it was accepted and ignored)
        ("dard-fmnist-teacher", ["--model-dir", "elsewhere"], "--model-dir is where"),
        (str(student_file), ["--model-dir", "elsewhere"], "a checkpoint file): drop it"),
    ):
        for command in ("evaluate", "attack"):
            out = tmp_path / command
            assert_one_line_error(
                dard_in_process(command, model, *flags, "--out", str(out)), fragment
            )
            assert not out.exists()  # refused before any work
    # with --overwrite, an earlier evaluation in --out is kept: refused before it is deleted
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "report.json").write_text("{}")
    flags = ["--threat-model", "L2", "--out", str(out), "--overwrite"]
    assert_one_line_error(
        dard_in_process("evaluate", "dard-fmnist-teacher", *flags), "shipped teacher"
    )
    assert (out / "report.json").read_text() == "{}"


def test_architecture_mismatch_names_the_file_and_the_arch(student_file) -> None:
    """Once torch's list of missing and unexpected keys."""
    done = dard("evaluate", str(student_file), "--arch", "teacher-cnn")
    assert_one_line_error(
        done,
        "does not fit the architecture arch='teacher-cnn'",
        "it records arch 'small-cnn'",
        "parameters",
        "first layer",
    )


@pytest.mark.slow  # two CLI runs that import robustbench for the zoo's names (~40 s)
def test_unknown_teacher_names_named_with_closest(tmp_path) -> None:
    """Once `dard distill --teacher NoSuchTeacher` answered about the dataset."""
    done = dard_in_process("distill", "--teacher", "NoSuchTeacher", "--out", str(tmp_path / "d"))
    assert_one_line_error(done, "got 'NoSuchTeacher' for dataset 'fashion-mnist'")
    done = dard_in_process("evaluate", "dard-fmnist-teachr")
    assert_one_line_error(
        done,
        "Did you mean dard-fmnist-teacher, dard-fmnist-teacher-strong, "
        "dard-fmnist-teacher-natural?",
    )


def test_unwritable_out_is_checked_first(student_file, tmp_path) -> None:
    """Once a raw Errno after the evaluation."""
    done = dard("evaluate", str(student_file), "--out", "/proc/dard-report")
    assert_one_line_error(done, "--out /proc/dard-report is not writable")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(
        dard_in_process("evaluate", str(student_file), "--out", str(blocker / "x")),
        "is not a directory",
    )


def test_model_and_dataset_shapes_must_agree(student_file) -> None:
    done = dard("evaluate", str(student_file), "--dataset", "cifar10")
    assert_one_line_error(
        done,
        "expects inputs of shape (1, 28, 28)",
        "--dataset cifar10 gives images of shape (3, 32, 32)",
    )


def test_half_set_up_torchrun_environment(student_file) -> None:
    done = dard("evaluate", str(student_file), env={"WORLD_SIZE": "2"})
    assert_one_line_error(done, "half set up", "MASTER_ADDR")


@pytest.mark.slow  # one run alone and one torchrun launch of two processes (~40 s)
def test_evaluate_under_torchrun_equals_one_process(tmp_path) -> None:
    common = [
        "dard-fmnist-teacher",
        "--attacks",
        "clean,fgsm,dpgd,pgd",
        "--n-examples",
        "32",
        "--batch-size",
        "8",
        "--quiet",
    ]
    alone = dard("evaluate", *common, "--out", str(tmp_path / "one"))
    assert alone.returncode == 0, alone.stderr[-3000:]
    shared = dard("evaluate", *common, "--out", str(tmp_path / "two"), torchrun=True)
    assert shared.returncode == 0, shared.stderr[-3000:]
    assert shared.stdout.count("worst case") == 1  # rank 0 alone prints the report
    one = json.loads((tmp_path / "one" / "report.json").read_text())["dard_plugin"]
    two = json.loads((tmp_path / "two" / "report.json").read_text())["dard_plugin"]
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert two["shards"] == [[0, 16], [16, 32]]
    assert two["per_sample"] == one["per_sample"] and two["per_attack"] == one["per_attack"]
    assert two["robust_accuracy"] == one["robust_accuracy"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["report.json", "report.md"]


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """The command in this process (no subprocess start-up)."""
    from dard_plugin.cli.main import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_refuses_an_out_holding_an_evaluation(student_file, capsys, tmp_path) -> None:
    """Issue 25, item 9: `dard evaluate A --out X` then `dard evaluate B --out X` once
    replaced A's report silently; now refused as `dard distill` refuses, unless --overwrite
    (or --resume of an interrupted evaluation)."""
    from dard_plugin.models import create
    from dard_plugin.recipes import save_model

    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_model(other, create("small-cnn", num_classes=10), "small-cnn", 10)
    out = tmp_path / "eval"
    tiny = ["--attacks", "clean,fgsm", "--n-examples", "8", "--quiet", "--out", str(out)]
    code, _, err = run_main(capsys, "evaluate", str(student_file), *tiny)
    assert code == 0, err
    first = (out / "report.json").read_text()
    assert json.loads(first)["name"] == "student"

    code, _, err = run_main(capsys, "evaluate", str(other), *tiny)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    for fragment in ("already holds a finished evaluation", "report.json", "--overwrite"):
        assert fragment in lines[0], lines[0]
    assert (out / "report.json").read_text() == first  # untouched
    code, _, err = run_main(capsys, "evaluate", str(other), *tiny, "--resume")
    assert code == 2 and "nothing to resume" in err, err
    code, _, err = run_main(capsys, "evaluate", str(other), *tiny, "--resume", "--overwrite")
    assert code == 2 and "exclude each other" in err, err

    code, _, err = run_main(capsys, "evaluate", str(other), *tiny, "--overwrite")
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["name"] == "other"


def test_evaluate_resume_needs_an_interrupted_evaluation(student_file, capsys, tmp_path) -> None:
    """AutoAttack's state files left by an interrupted evaluation: refused without
    --resume, continued with it (the state is then removed)."""
    out = tmp_path / "eval"
    out.mkdir()
    state = out / "autoattack-state.apgd-ce.json"
    state.write_text("{}")
    tiny = ["--attacks", "clean", "--n-examples", "8", "--quiet", "--out", str(out)]
    code, _, err = run_main(capsys, "evaluate", str(student_file), *tiny)
    assert code == 2 and "an interrupted evaluation" in err and "--resume" in err, err
    code, _, err = run_main(capsys, "evaluate", str(student_file), *tiny, "--resume")
    assert code == 0, err
    assert (out / "report.json").is_file()
    code, _, err = run_main(capsys, "evaluate", str(student_file), "--resume", "--quiet")
    assert code == 2 and "--resume needs --out" in err, err


def test_evaluate_state_and_attack_errors_name_the_flags(student_file, capsys, tmp_path) -> None:
    """They named evaluate()'s `state_path` and `attacks` instead of the command's flags."""
    out = tmp_path / "eval"
    out.mkdir()
    (out / "autoattack-state.apgd-ce.json").write_text("not a state file")
    tiny = ["--n-examples", "8", "--quiet", "--out", str(out)]
    code, _, err = run_main(
        capsys, "evaluate", str(student_file), "--attacks", "clean,apgd-ce", *tiny, "--resume"
    )
    assert code == 2 and "--overwrite to start over, or another --out" in err, err
    code, _, err = run_main(capsys, "evaluate", str(student_file), "--attacks", ",", *tiny)
    assert code == 2 and "--attacks must name at least one of" in err, err


def test_attack_names_its_own_n_flag(student_file, capsys, tmp_path) -> None:
    """`dard attack --n 20000` once answered about "n_examples"."""
    out = str(tmp_path / "a")
    code, _, err = run_main(capsys, "attack", str(student_file), "--n", "20000", "--out", out)
    assert code == 2 and "--n must be at most 10000" in err and "n_examples" not in err, err
    code, _, err = run_main(capsys, "attack", str(student_file), "--n", "0", "--out", out)
    assert code == 2 and "--n must be" in err, err


def test_attack_is_per_sample_by_default_and_refuses_to_overwrite(capsys, tmp_path) -> None:
    """`dard attack` once ran the batch-coupled Dice (an image's adversarial depended on
    --n, unlike dard_plugin.DPGD and DicePGD) and silently replaced an earlier --out."""
    from dard_plugin import load_teacher
    from dard_plugin.attacks.dpgd import dpgd
    from dard_plugin.data import load_dataset

    teacher = load_teacher("dard-fmnist-teacher")
    x, y = load_dataset("fashion-mnist", train=False, n_examples=8)
    expected = {
        reduction: dpgd(teacher, x, y, eps=0.1, alpha=0.025, steps=3, reduction=reduction)
        for reduction in ("sample", "batch")
    }
    assert not torch.equal(expected["sample"], expected["batch"])  # the choice matters here
    common = ["dard-fmnist-teacher", "--n", "8", "--steps", "3", "--json"]
    for reduction, extra in (("sample", []), ("batch", ["--reduction", "batch"])):
        out = tmp_path / reduction
        code, _, err = run_main(capsys, "attack", *common, *extra, "--out", str(out))
        assert code == 0, err
        saved = np.load(out / "adv.npz")
        assert str(saved["reduction"]) == reduction
        # the settings that ran (a 3-step file once read as a default 10-step one)
        assert int(saved["steps"]) == 3 and float(saved["step_size"]) == 0.025
        assert str(saved["model"]) == "dard-fmnist-teacher"
        assert torch.equal(torch.from_numpy(saved["adversarial"]), expected[reduction])
    before = (tmp_path / "sample" / "adv.npz").read_bytes()
    code, _, err = run_main(
        capsys, "attack", *common, "--n", "4", "--out", str(tmp_path / "sample")
    )
    assert code == 2 and "already holds adv.npz and grid.png" in err and "--overwrite" in err, err
    assert (tmp_path / "sample" / "adv.npz").read_bytes() == before
    code, _, err = run_main(
        capsys, "attack", *common, "--n", "4", "--overwrite", "--out", str(tmp_path / "sample")
    )
    assert code == 0, err
    assert np.load(tmp_path / "sample" / "adv.npz")["adversarial"].shape[0] == 4


def test_curve_eps_values_are_checked_before_any_evaluation(student_file, capsys, tmp_path):
    out = tmp_path / "curve"
    code, _, err = run_main(
        capsys, "evaluate", str(student_file), "--curve", "0.05,8", "--out", str(out)
    )
    assert code == 2 and "--curve=8 covers the whole input range" in err, err
    assert not (out / "report.json").exists()


def test_json_output_is_strict(student_file, capsys) -> None:
    code, text, err = run_main(
        capsys, "evaluate", str(student_file), "--attacks", "fgsm", "--n-examples", "8", "--json"
    )
    assert code == 0, err

    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    assert 0.0 <= json.loads(text, parse_constant=refuse)["clean_accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("argv", "threat_model"),
    [
        (["evaluate", "--norm", "L2"], "L2"),
        (["evaluate"], "Linf"),
        (["evaluate", "--norm", "L2", "--threat-model", "Linf"], "Linf"),
        (["attack"], "Linf"),
    ],
)
def test_the_robustbench_entry_follows_the_norm(monkeypatch, capsys, tmp_path, argv, threat_model):
    """`dard evaluate NAME --norm L2` loaded NAME's L-inf entry (13 CIFAR-10 names have
    both) and reported it as L2."""
    import dard_plugin.recipes

    asked: list[str] = []

    def load_model(spec, **kwargs):
        asked.append(kwargs["threat_model"])
        raise RuntimeError("stop after the model is asked for")

    monkeypatch.setattr(dard_plugin.recipes, "load_model", load_model)
    command, *flags = argv
    with pytest.raises(RuntimeError, match="stop after"):
        from dard_plugin.cli.main import main

        main(
            [
                command,
                "Rice2020Overfitting",
                *flags,
                "--debug",
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert asked == [threat_model]


def test_attack_image_grid_is_written_whole_or_not_at_all(monkeypatch, tmp_path) -> None:
    """`dard attack`'s grid.png was saved in place: a failure while writing left half a PNG.
    Now it goes through the atomic writer: a PNG, or the old state and no stray files."""
    from matplotlib.figure import Figure

    from dard_plugin.cli.figures import image_grid

    images = torch.rand(3, 1, 28, 28)
    labels, predictions = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 2])
    path = tmp_path / "grid.png"
    image_grid(images, images, labels, predictions, predictions, path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]

    def fail_midway(self, stream, **kwargs):
        stream.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail_midway)
    path.unlink()
    with pytest.raises(OSError, match="disk full"):
        image_grid(images, images, labels, predictions, predictions, path)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_keeps_the_earlier_evaluation_until_model_and_data_load(
    student_file, capsys, tmp_path
) -> None:
    """`dard evaluate --overwrite` once deleted the earlier report, then failed to load a
    misspelt model (or a dataset not at hand), leaving --out empty."""
    out = tmp_path / "eval"
    tiny = ["--attacks", "clean", "--n-examples", "8", "--quiet", "--out", str(out)]
    code, _, err = run_main(capsys, "evaluate", str(student_file), *tiny)
    assert code == 0, err
    first = (out / "report.json").read_text()
    code, _, err = run_main(capsys, "evaluate", "dard-fmnist-teachr", *tiny, "--overwrite")
    assert code == 2 and "dard-fmnist-teacher" in err, err
    assert (out / "report.json").read_text() == first  # still there
    code, _, err = run_main(capsys, "evaluate", "dard-fmnist-teacher", *tiny, "--overwrite")
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["name"] == "dard-fmnist-teacher"


def test_a_model_of_another_class_count_than_the_dataset_is_refused(capsys, tmp_path) -> None:
    """A 100-class model scored on a 10-class dataset's labels once gave a report."""
    from dard_plugin.models import create
    from dard_plugin.recipes import save_model

    path = tmp_path / "hundred.pt"
    save_model(path, create("small-cnn", num_classes=100), "small-cnn", 100)
    out = tmp_path / "eval"
    code, _, err = run_main(capsys, "evaluate", str(path), "--attacks", "clean", "--out", str(out))
    assert code == 2 and "outputs 100 classes, but --dataset fashion-mnist has 10" in err, err
    assert not (out / "report.json").exists()


def test_attack_refuses_a_model_with_nan_logits(capsys, tmp_path) -> None:
    """`dard attack` scored NaN logits as class 0 (argmax), reporting the share of class 0
    as clean and DPGD accuracy, where `dard evaluate` refuses the same model."""
    from dard_plugin.models import create
    from dard_plugin.recipes import save_model

    model = create("small-cnn", num_classes=10)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = tmp_path / "diverged.pt"
    save_model(path, model, "small-cnn", 10)
    out = tmp_path / "attack"
    code, _, err = run_main(capsys, "attack", str(path), "--n", "8", "--out", str(out))
    assert code == 2 and "returns NaN logits" in err, err
    assert not out.exists()


def test_attack_scores_nan_rows_past_the_first_images_as_wrong(
    monkeypatch, capsys, tmp_path
) -> None:
    """`dard attack` refuses a model whose first 8 logits hold NaN; past them, a NaN row is
    scored by the suite's rule (wrong), not by argmax, which reads it as class 0 and scored
    the class-0 images among such rows correct."""
    import dard_plugin.cli.evaluation as cli_evaluation
    from dard_plugin.data import load_dataset
    from dard_plugin.teachers import load_teacher

    teacher = load_teacher("dard-fmnist-teacher", dataset="fashion-mnist")

    class NaNPastEight(torch.nn.Module):  # NaN rows past the 8th, only when scoring
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = teacher(x)
            if not torch.is_grad_enabled() and x.shape[0] > 8:
                logits = logits.clone()
                logits[8:] = float("nan")
            return logits

    monkeypatch.setattr(cli_evaluation, "load_model_source", lambda args: NaNPastEight())
    n = 20
    x, y = load_dataset("fashion-mnist", train=False)
    assert (y[8:n] == 0).any()  # a NaN row whose label argmax would hit
    with torch.no_grad():
        first = int((teacher(x[:8]).argmax(1) == y[:8]).sum())
    out = tmp_path / "attack"
    code, printed, err = run_main(
        capsys, "attack", "dard-fmnist-teacher", "--n", str(n), "--steps", "2", "--json",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(printed)
    assert summary["clean_accuracy"] == first / n
    assert summary["dpgd_accuracy"] <= first / n


def test_attack_reports_exact_accuracies(capsys, tmp_path) -> None:
    """`dard attack --json` once printed float32 means (0.8333333134651184 for 10 of 12)."""
    out = tmp_path / "attack"
    code, printed, err = run_main(
        capsys,
        "attack",
        "dard-fmnist-teacher",
        "--n",
        "12",
        "--steps",
        "3",
        "--json",
        "--out",
        str(out),
    )
    assert code == 0, err
    summary = json.loads(printed)
    assert (summary["steps"], summary["step_size"]) == (3, 0.025)
    for key in ("clean_accuracy", "dpgd_accuracy"):
        assert summary[key] in {k / 12 for k in range(13)}, summary[key]
    assert summary["clean_accuracy"] not in (0.0, 0.5, 1.0)  # a value float32 would round


@pytest.mark.parametrize(
    "flags", [["teachers"], ["teachers", "--json"], ["--help"], ["teachers", "--help"]]
)
def test_output_into_a_closed_pipe_ends_quietly(flags: list[str]) -> None:
    """`dard teachers --json | head` ended in a BrokenPipeError traceback (the JSON printed
    outside main's error handling), and the table in "error: [Errno 32] Broken pipe".
    Run with stdout buffered as usual (no PYTHONUNBUFFERED), where a table or help text is
    written at the interpreter's exit unless main flushes it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dard_plugin", *flags, "--dataset", "fashion-mnist"]
            if flags[-1] != "--help"
            else [sys.executable, "-m", "dard_plugin", *flags],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, ""), done.stderr[-2000:]


def test_a_folder_a_json_file_and_another_tracks_name_get_errors_that_say_so(
    student_file, capsys, tmp_path
) -> None:
    """A run's folder was refused as an unknown teacher name (suggesting `--teacher FILE`, a
    flag `evaluate` has not), its history.json as holding "Python objects other than
    tensors", and an L-inf RobustBench name under --norm L2 as not an L2 model, without
    the --threat-model that loads it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "student.pt").write_bytes(student_file.read_bytes())
    (run / "history.json").write_text('[{"epoch": 1}]\n')
    out = ["--attacks", "clean", "--n-examples", "8", "--out", str(tmp_path / "eval")]
    code, _, err = run_main(capsys, "evaluate", str(run), *out)
    assert code == 2 and "is a folder, not a model" in err and "student.pt" in err, err
    code, _, err = run_main(capsys, "evaluate", str(run / "history.json"), *out)
    assert code == 2 and "is a JSON file, not a checkpoint" in err, err
    named = ["Wong2020Fast", "--dataset", "cifar10", "--norm", "L2"]
    code, _, err = run_main(capsys, "evaluate", *named, *out)
    assert code == 2 and "--threat-model Linf" in err, err
    assert not (tmp_path / "eval").exists()


def test_evaluate_names_the_model_as_told(student_file, capsys, tmp_path) -> None:
    """Every run's student.pt was reported as `student`, with no flag to name it."""
    tiny = ["--attacks", "clean", "--n-examples", "8", "--quiet"]
    code, _, err = run_main(
        capsys, "evaluate", str(student_file), *tiny, "--out", str(tmp_path / "a")
    )
    assert code == 0, err
    assert json.loads((tmp_path / "a" / "report.json").read_text())["name"] == student_file.stem
    named = [*tiny, "--name", "dard-small-cnn-s0", "--out", str(tmp_path / "b")]
    code, _, err = run_main(capsys, "evaluate", str(student_file), *named)
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "report.json").read_text())["name"] == "dard-small-cnn-s0"
    assert "Model `dard-small-cnn-s0`" in (tmp_path / "b" / "report.md").read_text()
    code, _, err = run_main(capsys, "evaluate", str(student_file), *tiny, "--name", " ")
    assert code == 2 and "--name must be a non-empty name" in err, err


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch, capsys) -> None:
    """Only stdout's reader leaving ends quietly: another pipe failing (a socket, a child
    process) is an error, reported as one."""
    import importlib

    cli_main = importlib.import_module("dard_plugin.cli.main")

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe (a worker's socket)")

    monkeypatch.setitem(cli_main.COMMANDS, "teachers", broken)
    code, _, err = run_main(capsys, "teachers")
    assert code == 2 and "a worker's socket" in err, err
