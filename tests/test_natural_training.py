"""Standard (natural) training: ``NaturalTrainer`` is plain SGD on ``CE(S(x), y)``, with no
attack; ``recipes.distill(method="natural")`` and ``dard train-teacher --natural`` run it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import make_prototype_data
from torch import nn

from dard_plugin.recipes import distill
from dard_plugin.training import TRAINERS, NaturalTrainer


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(256, 10),
    )


def test_natural_training_is_sgd_on_the_natural_cross_entropy() -> None:
    x, y, _ = make_prototype_data(n=48)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]
    model = small_model()
    reference = copy.deepcopy(model)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = NaturalTrainer(model, optimizer=optimizer, verbose=False)
    history = trainer.fit_generator(batches, nb_epochs=2)

    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    reference.train()
    losses = []
    for _ in range(2):
        epoch_losses = []
        for images, labels in batches:
            loss = F.cross_entropy(reference(images), labels)
            reference_optimizer.zero_grad()
            loss.backward()
            reference_optimizer.step()
            epoch_losses.append(float(loss.detach()))
        losses.append(sum(epoch_losses) / len(epoch_losses))

    # equal up to float rounding (the trainer may run channels-last): an attack, or a
    # forward on other images, would move the weights by orders of magnitude more
    for value, expected in zip(
        model.state_dict().values(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5)
    assert [h["loss"] for h in history] == pytest.approx(losses, rel=1e-5)


def test_natural_trainer_takes_no_teacher_and_is_registered() -> None:
    assert TRAINERS["natural"] is NaturalTrainer and not NaturalTrainer.needs_teacher
    with pytest.raises(TypeError):
        NaturalTrainer(small_model(), small_model(), optimizer=None)  # type: ignore[misc]


def test_distill_natural_needs_no_teacher_and_defaults_to_lr_0_05(tmp_path) -> None:
    result = distill(
        method="natural",
        dataset="fashion-mnist",
        student_arch="small-cnn",
        n_train=64,
        n_val=16,
        epochs=1,
        verbose=False,
        out_dir=tmp_path / "run",
    )
    assert [h["epoch"] for h in result.history] == [1]
    assert result.history[0]["lr"] == pytest.approx(0.05)
    assert 0 <= result.history[0]["pgd_accuracy"] <= result.history[0]["clean_accuracy"]
    files = {p.name: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    common = {"dataset": "fashion-mnist", "student_arch": "small-cnn", "n_train": 64}
    # an attack setting for a method without an attack: refused, not recorded and ignored
    for given in ({"steps": 3}, {"step_size": 0.05}):
        name = next(iter(given))
        with pytest.raises(ValueError, match=f"{name} does not apply to method 'natural'"):
            distill(method="natural", n_val=16, epochs=1, **common, **given)
    # a method option out of range with overwrite: refused before the run is deleted
    from dard_plugin.teachers import load_teacher

    with pytest.raises(ValueError, match="alpha"):
        distill(
            method="ard", teacher=load_teacher("dard-fmnist-teacher"), n_val=16, epochs=1,
            out_dir=tmp_path / "run", overwrite=True, alpha=5.0, verbose=False, **common,
        )  # fmt: skip
    # ... nor after a check that fit makes before its first epoch (the teacher's classes)
    five_classes = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)).eval()
    with pytest.raises(ValueError, match="classes"):
        distill(
            method="ard", teacher=five_classes, n_val=16, epochs=1, out_dir=tmp_path / "run",
            overwrite=True, verbose=False, **common,
        )  # fmt: skip
    assert files == {p.name: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    replaced = distill(
        method="natural", n_val=16, epochs=1, seed=1, out_dir=tmp_path / "run", overwrite=True,
        verbose=False, **common,
    )  # fmt: skip
    assert replaced.history[0]["loss"] != result.history[0]["loss"]  # overwritten, then
    assert (tmp_path / "run" / "student.pt").read_bytes() != files["student.pt"]


def test_train_teacher_natural_on_the_command_line(tmp_path) -> None:
    out = tmp_path / "natural"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dard_plugin",
            "train-teacher",
            "--natural",
            "--arch",
            "small-cnn",
            "--n-train",
            "64",
            "--epochs",
            "1",
            "--n-val",
            "16",
            "--n-eval",
            "16",
            "--eval-attacks",
            "clean,pgd",
            "--quiet",
            "--json",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["natural"] == "True"
    # natural training runs no attack: its record named the validation's PGD-10 "attack",
    # and a teacher-target mode it has no teacher for
    trainer = run["trainer"]
    assert "attack" not in trainer and "teacher_targets" not in trainer
    assert trainer["validation_attack"]["steps"] == 10
    assert (out / "student.pt").is_file()
    history = json.loads(done.stdout)["history"]
    assert history[0]["lr"] == pytest.approx(0.05)


def test_distill_method_natural_refuses_attack_flags_on_the_command_line(tmp_path) -> None:
    """As `train-teacher --natural` did: `dard distill --method natural --steps 3` once
    trained, recorded steps 3 in run.json, and ran no attack."""
    for flags in (["--steps", "3"], ["--step-size", "0.05"], ["--eps-warmup-epochs", "2"]):
        done = subprocess.run(
            [sys.executable, "-m", "dard_plugin", "distill", "--method", "natural", *flags,
             "--out", str(tmp_path / "run")],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert f"{flags[0]} does not apply to --method natural" in done.stderr
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("attack", [{"eps": 0.3, "alpha": 0.3}, {"eps": 0.3, "steps": 1}])
def test_attack_settings_natural_training_would_not_use_are_refused(attack) -> None:
    """NaturalTrainer took attack={'alpha': ..., 'steps': ...}, recorded them in config()
    and the run's fingerprint, and ignored them (validation is PGD-10 at eps / 4)."""
    from dard_plugin.models import create

    model = create("tiny-cnn", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="would change nothing in natural training"):
        NaturalTrainer(model, optimizer=optimizer, attack=attack)
    kept = NaturalTrainer(model, optimizer=optimizer, attack={"eps": 0.3, "norm": "L2"})
    assert (kept.eval_eps, kept.eval_norm) == (0.3, "L2")
