"""IAD, AdaAD (+ IGDM) and MTARD as trainers: their attacks inside the ball and the bounds;
teachers untouched; resumes; the registry read by the recipes and the command line; short
runs that make students robust. Their losses against the official code:
test_methods_official.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyCNN, dard_in_process, make_prototype_data, state_snapshot
from methods_common import (
    ATTACK,
    NEW_METHODS,
    REPO,
    Linear,
    new_trainer,
    teachers,
)
from torch import nn

from dard_plugin.attacks.pgd import cross_entropy_objective, pgd_linf
from dard_plugin.training import METHODS, AdaADTrainer, IADTrainer, MTARDTrainer, build_trainer
from dard_plugin.training.batches import Batch


@pytest.mark.parametrize("method", NEW_METHODS)
@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_adversarial_examples_stay_in_the_ball_and_the_bounds(method: str, norm: str) -> None:
    x, y, _ = make_prototype_data(n=16, noise=0.5)  # pixels at 0 and 1
    x[0] = 0.0
    x[1] = 1.0
    eps = 0.1 if norm == "Linf" else 1.0
    student = TinyCNN()
    trainer = new_trainer(
        method, student, attack={"norm": norm, "eps": eps, "alpha": eps / 2, "steps": 3}
    )
    teacher = trainer.teacher
    targets = {name: teacher(x).detach() for name in trainer.teacher_output_names}
    original = x.clone()
    student.eval()
    adversarial = trainer.craft_adversarial(Batch(x, y, None), targets)
    assert torch.equal(x, original)
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    delta = (adversarial - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert size.max() > 0.5 * eps  # the attack moved


@pytest.mark.parametrize("method", NEW_METHODS)
@pytest.mark.parametrize("targets", ["online", "cached"])
def test_teachers_are_left_untouched(method: str, targets: str) -> None:
    x, y, _ = make_prototype_data(n=32)
    torch.manual_seed(5)
    teacher, natural = TinyCNN().eval(), TinyCNN().eval()
    snapshots = [state_snapshot(teacher), state_snapshot(natural)]
    student = TinyCNN()
    extra: dict[str, object] = (
        {"natural_teacher": natural} if METHODS[method].needs_natural_teacher else {}
    )
    if method.startswith("adaad") and targets == "cached":
        extra["alpha"] = 0.5  # with alpha=1 AdaAD has nothing to cache (refused)
    trainer = build_trainer(
        method,
        student,
        teacher,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
        attack=ATTACK,
        teacher_targets=targets,
        verbose=False,
        **extra,
    )
    before = state_snapshot(student)
    history = trainer.fit(x, y, batch_size=16, nb_epochs=2)
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    for model, snapshot in zip((teacher, natural), snapshots, strict=True):
        assert not model.training and all(not m.training for m in model.modules())
        assert all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(v, before[k]) for k, v in student.state_dict().items())


def test_mtard_fingerprints_both_teachers_and_resumes_its_weights(tmp_path) -> None:
    x, y, _ = make_prototype_data(n=32)

    def run(natural_scale: float, epochs: int) -> MTARDTrainer:
        student = Linear(0)
        adversarial, natural = teachers()
        with torch.no_grad():
            natural.linear.weight.mul_(natural_scale)
        trainer = MTARDTrainer(
            student,
            adversarial,
            natural,
            optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
            attack=ATTACK,
            checkpoint_dir=tmp_path,
            resume=True,
            verbose=False,
        )
        trainer.fit(x, y, batch_size=16, nb_epochs=epochs)
        return trainer

    first = run(1.0, 1)
    resumed = run(1.0, 1)  # finished: nothing trained, the weight state restored
    assert resumed.epochs_run == 0
    assert resumed.method_state() == first.method_state()
    assert first.method_state()["weight_nat"] != 0.5
    with pytest.raises(ValueError, match="different configuration"):
        run(2.0, 2)  # another natural teacher


@pytest.mark.parametrize("method", ["iad", "adaad-igdm", "adaad"])
def test_a_schedule_over_the_run_is_not_resumed_as_a_run_of_another_length(
    tmp_path, method: str
) -> None:
    """IAD's start epoch and IGDM's weight are fractions of ``nb_epochs``: 2 epochs resumed
    as a run of 4 would train neither schedule, so it is refused (the run's own length
    resumes). AdaAD alone has no such schedule: continued."""
    x, y, _ = make_prototype_data(n=32)
    options = {"iad": {"start_fraction": 0.5}}.get(method, {})

    def run(epochs: int, folder: Path) -> tuple[nn.Module, list]:
        student = Linear(0)
        trainer = new_trainer(method, student, checkpoint_dir=folder, resume=True, **options)
        return student, trainer.fit(x, y, batch_size=16, nb_epochs=epochs)

    history = run(4, tmp_path / "whole")[1]
    run(2, tmp_path / "cut")
    if method == "adaad":
        run(4, tmp_path / "cut")  # continued
        return
    with pytest.raises(ValueError, match=r"planned for nb_epochs=2.*nb_epochs=4"):
        run(4, tmp_path / "cut")
    state = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["nb_epochs"] == 2  # the refused resume wrote nothing
    resumed = run(2, tmp_path / "cut")[1]  # its own length: returned as it is
    assert [h["epoch"] for h in resumed] == [1, 2]
    if method == "iad":
        assert ["reliability" in h for h in history] == [False, False, True, True]


def test_registry_drives_recipes_cli_and_docs() -> None:
    from dard_plugin.cli.main import build_parser
    from dard_plugin.training import TRAINERS

    assert set(TRAINERS) == set(METHODS)
    for name, spec in METHODS.items():
        assert spec.trainer.method == name.split("-")[0]
        assert spec.description and spec.source
        assert spec.needs_teacher == spec.trainer.needs_teacher
    distill = build_parser()._subparsers._group_actions[0].choices["distill"]
    method_action = next(a for a in distill._actions if a.dest == "method")
    assert list(method_action.choices) == list(METHODS)
    docs = (REPO / "docs" / "training.md").read_text()
    for name in METHODS:
        assert f"`{name}`" in docs, name


def test_build_trainer_checks_the_teachers() -> None:
    student = Linear(0)
    adversarial, natural = teachers()
    with pytest.raises(ValueError, match="natural_teacher"):
        build_trainer("mtard", student, adversarial)
    with pytest.raises(ValueError, match="takes no natural_teacher"):
        build_trainer("adaad", student, adversarial, natural_teacher=natural)
    with pytest.raises(ValueError, match="method must be one of"):
        build_trainer("trades", student, adversarial)
    with pytest.raises(ValueError, match="kl_reduction"):
        AdaADTrainer(student, adversarial, kl_reduction="sum")
    with pytest.raises(ValueError, match="start_fraction"):
        IADTrainer(student, adversarial, start_fraction=1.5)


@pytest.mark.parametrize(
    ("fraction", "epochs", "start"), [(0.7, 90, 63), (0.29, 100, 29), (0.3, 200, 60)]
)
def test_iads_start_epoch_is_the_floor_of_the_exact_fraction(fraction, epochs, start) -> None:
    """``floor(0.7 * 90)`` in binary is 62 (0.7 * 90 = 62.99999...): the weighting began
    one epoch before floor(0.7 x 90) = 63, as docs/training.md defines the start."""
    student, adversarial = TinyCNN(), TinyCNN().eval()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01)
    trainer = IADTrainer(student, adversarial, optimizer=optimizer, start_fraction=fraction)
    trainer.nb_epochs = epochs
    started = []
    for epoch in (start - 1, start):
        trainer.epoch = epoch
        started.append(trainer.reliability_started)
    assert started == [False, True]


# ---------------------------------------------------------------- Fashion-MNIST
@pytest.fixture(scope="module")
def fashion():
    from dard_plugin.data import load_dataset

    x, y = load_dataset("fashion-mnist", n_examples=512)
    x_test, y_test = load_dataset("fashion-mnist", train=False, n_examples=200)
    return x, y, x_test, y_test


def pgd_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.1) -> float:
    model.eval()
    adversarial = pgd_linf(
        model,
        x,
        y,
        cross_entropy_objective,
        eps=eps,
        alpha=eps / 4,
        steps=10,
        random_start=True,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        return float((model(adversarial).argmax(1) == y).float().mean())


@pytest.mark.slow
@pytest.mark.parametrize("method", NEW_METHODS)
def test_short_training_makes_a_fashion_mnist_student_robust(method: str, fashion) -> None:
    from dard_plugin import load_teacher
    from dard_plugin.models import create

    x, y, x_test, y_test = fashion
    teacher = load_teacher("dard-fmnist-teacher")
    natural = None
    if METHODS[method].needs_natural_teacher:  # a naturally trained teacher, built here
        torch.manual_seed(0)
        natural = create("small-cnn", num_classes=10)
        optimizer = torch.optim.SGD(natural.parameters(), lr=0.05, momentum=0.9)
        for _ in range(3):
            for start in range(0, 512, 64):
                loss = F.cross_entropy(natural(x[start : start + 64]), y[start : start + 64])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        natural.eval()
    torch.manual_seed(1)
    student = create("small-cnn", num_classes=10)
    initial = pgd_accuracy(student, x_test, y_test)
    trainer = build_trainer(
        method,
        student,
        teacher,
        natural_teacher=natural,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.02, momentum=0.9),
        attack={"eps": 0.1, "alpha": 0.025, "steps": 3},
        verbose=False,
    )
    trainer.fit(x, y, batch_size=64, nb_epochs=2)
    after = pgd_accuracy(student, x_test, y_test)
    # measured: from 0.0 to 0.225 (iad), 0.240 (adaad), 0.235 (adaad-igdm), 0.275 (mtard)
    assert after > initial + 0.15, (initial, after)


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    [
        pytest.param("iad", marks=pytest.mark.extended),  # the default run: AdaAD + IGDM
        pytest.param("adaad", marks=pytest.mark.extended),  # (AdaAD's path) and MTARD
        "adaad-igdm",
        "mtard",
    ],
)
def test_dard_distill_cli_runs_each_method(method: str, tmp_path) -> None:
    from dard_plugin.models import create
    from dard_plugin.recipes import save_model

    torch.manual_seed(0)
    teacher_file, natural_file = tmp_path / "teacher.pt", tmp_path / "natural.pt"
    save_model(teacher_file, create("small-cnn", num_classes=10), "small-cnn", 10)
    save_model(natural_file, create("small-cnn", num_classes=10), "small-cnn", 10)
    extra = ["--natural-teacher", str(natural_file)] if method == "mtard" else []
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dard_plugin",
            "distill",
            "--method",
            method,
            "--teacher",
            str(teacher_file),
            *extra,
            "--n-train",
            "64",
            "--epochs",
            "1",
            "--steps",
            "1",
            "--n-val",
            "16",
            "--n-eval",
            "16",
            "--eval-attacks",
            "clean",
            "--quiet",
            "--json",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1]
    assert (out / "student.pt").is_file()
    if method == "mtard":
        assert 0.0 < history[0]["weight_nat"] < 1.0
    if method == "adaad-igdm":
        assert history[0]["loss_igdm"] > 0.0


def test_cli_refuses_mtard_without_a_natural_teacher(tmp_path) -> None:
    done = dard_in_process("distill", "--method", "mtard", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "--natural-teacher" in done.stderr, done.stderr
    done = dard_in_process(
        "distill", "--method", "adaad", "--temperature", "3", "--out", str(tmp_path)
    )
    assert done.returncode == 2 and "--temperature" in done.stderr, done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["adaad-igdm", "mtard"])
def test_recipes_distill_runs_from_python(method: str) -> None:
    from dard_plugin.models import create
    from dard_plugin.recipes import distill

    torch.manual_seed(0)
    teacher, natural = create("small-cnn", num_classes=10), create("small-cnn", num_classes=10)
    result = distill(
        method=method,
        teacher=teacher.eval(),
        natural_teacher=natural.eval() if method == "mtard" else None,
        n_train=64,
        n_val=16,
        epochs=1,
        steps=1,
        batch_size=32,
        verbose=False,
    )
    assert [h["epoch"] for h in result.history] == [1]
    assert "pgd_accuracy" in result.history[0]
    with pytest.raises(ValueError, match="natural_teacher"):
        distill(method="mtard", teacher=teacher, n_train=64, epochs=1, verbose=False)
    with pytest.raises(ValueError, match="takes no natural_teacher"):
        distill(method="iad", teacher=teacher, natural_teacher=natural, verbose=False)
    # a teacher given to a method without one used to be dropped silently
    for method in ("sat", "natural"):
        with pytest.raises(ValueError, match=f"method '{method}' trains without a teacher"):
            distill(method=method, teacher=teacher, verbose=False)


def test_mtard_checks_the_natural_teacher_before_training() -> None:
    x, y, _ = make_prototype_data(n=16)
    student = Linear(0)
    adversarial, _ = teachers()
    five_classes = nn.Sequential(nn.Flatten(), nn.Linear(64, 5)).eval()
    trainer = MTARDTrainer(
        student,
        adversarial,
        five_classes,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
        verbose=False,
    )
    before = state_snapshot(student)
    with pytest.raises(ValueError, match="number of classes"):
        trainer.fit(x, y, batch_size=8, nb_epochs=1)
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())


@pytest.mark.parametrize("method", ["adaad", "adaad-igdm"])
def test_adaad_batchnorm_statistics_see_the_batches_the_code_runs(method: str) -> None:
    """AdaAD's main.py runs S(x) then S(x') in train mode (alpha 1 too); igdm.py runs
    S(x + d) and S(x - d): the student's running statistics follow the same batches."""
    import copy

    x, y, _ = make_prototype_data(n=16)
    torch.manual_seed(0)
    student = TinyCNN()
    reference = copy.deepcopy(student).train()
    trainer = new_trainer(method, student)
    trainer.epoch, trainer.nb_epochs = 0, 1
    adversarial = (x + 0.05).clamp(0, 1)
    student.train()
    trainer.compute_loss(Batch(x, y, None), adversarial, {})
    with torch.no_grad():
        if method == "adaad":
            reference(x)
            reference(adversarial)
        else:
            reference(adversarial)
            reference(x - (adversarial - x))
    for key in ("features.1.running_mean", "features.1.running_var"):
        assert torch.allclose(student.state_dict()[key], reference.state_dict()[key]), key


@pytest.mark.parametrize(
    ("method", "option", "message"),
    [
        ("sat", {"teacher_targets": "cached"}, "teacher_targets='cached' does not apply"),
        ("sat", {"teacher_batch_size": 64}, "teacher_batch_size=64 does not apply"),
        ("sat", {"cache_refresh_epochs": 2}, "cache_refresh_epochs=2 does not apply"),
        ("natural", {"teacher_targets": "cached"}, "teacher_targets='cached' does not apply"),
        ("natural", {"attack_kind": "dpgd"}, "attack kind 'dpgd' does not apply"),
        # trained plain AdaAD, recorded as adaad-igdm
        ("adaad-igdm", {"igdm": 0.0}, r"presets igdm=1.0; igdm=0.0 would train another"),
        # ran online, recorded as cached
        (
            "adaad",
            {"teacher_targets": "cached"},
            "AdaADTrainer with these settings reads none",
        ),
    ],
)
def test_options_of_an_absent_teacher_or_attack_are_refused(
    method: str, option: dict[str, object], message: str
) -> None:
    """They changed nothing but the run's fingerprint and records (and were silently
    accepted)."""
    from dard_plugin import load_teacher
    from dard_plugin.recipes import distill

    if METHODS[method].needs_teacher:
        option = {**option, "teacher": load_teacher("dard-fmnist-teacher")}
    with pytest.raises(ValueError, match=message):
        distill(method=method, n_train=64, n_val=16, epochs=1, verbose=False, **option)


def test_cli_natural_teacher_checkpoint_takes_its_own_architecture(tmp_path) -> None:
    """A natural teacher saved as a bare state dict could not be used: no flag gave its
    architecture (``--teacher-arch`` is the adversarial teacher's, refused for a named one)."""
    from dard_plugin.teachers import load_teacher

    natural = tmp_path / "natural-bare.pt"
    torch.save(load_teacher("dard-fmnist-teacher-natural").state_dict(), natural)
    run = ["distill", "--method", "mtard", "--natural-teacher", str(natural)]
    small = ["--n-train", "32", "--epochs", "1", "--steps", "1", "--n-val", "16"]
    small += ["--n-eval", "16", "--eval-attacks", "clean", "--quiet"]
    done = dard_in_process(*run, *small, "--out", str(tmp_path / "a"))
    assert done.returncode == 2 and "--natural-teacher-arch" in done.stderr, done.stderr
    done = dard_in_process(
        *run, "--natural-teacher-arch", "teacher-cnn", *small, "--out", str(tmp_path / "b")
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "b" / "run.json").read_text())
    assert record["natural_teacher_arch"] == "teacher-cnn"
    named = ["--natural-teacher", "dard-fmnist-teacher-natural"]
    done = dard_in_process(
        "distill", "--method", "mtard", *named, *small, "--out", str(tmp_path / "s")
    )
    assert done.returncode == 0, done.stderr[-2000:]
    shipped = json.loads((tmp_path / "s" / "run.json").read_text())
    assert record["teacher_weights"] == shipped["teacher_weights"]  # the same two networks
    named += ["--natural-teacher-arch", "teacher-cnn"]
    done = dard_in_process("distill", "--method", "mtard", *named, "--out", str(tmp_path / "c"))
    assert done.returncode == 2 and "drop it" in done.stderr, done.stderr
    done = dard_in_process(
        "distill", "--natural-teacher-arch", "teacher-cnn", "--out", str(tmp_path)
    )
    assert done.returncode == 2 and "no --natural-teacher is given" in done.stderr, done.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
