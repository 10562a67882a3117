"""The epsilon schedule (``eps_warmup_epochs=k``): epoch ``e`` (1-based) attacks with
``eps * min(1, e / k)`` and step ``alpha * min(1, e / k)``, for every method's student
attack; off by default; part of the fingerprint; resumable mid-ramp."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping

import pytest
import torch
from conftest import PrototypeLinear, TinyCNN, make_prototype_data

from dard_plugin.recipes import distill
from dard_plugin.training import TRAINERS, AttackSettings, NaturalTrainer, SATTrainer
from dard_plugin.training.attacks import scheduled_settings, warmup_factor
from dard_plugin.training.batches import Batch
from dard_plugin.training.registry import method_spec

ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 2}
METHODS = sorted(m for m in TRAINERS if method_spec(m).adversarial)


def expected_eps(epoch: int, k: int, eps: float = 0.1) -> float:  # epoch 0-based
    return eps * min(1.0, (epoch + 1) / k)


def test_the_formula() -> None:
    assert [warmup_factor(e, 4) for e in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [warmup_factor(e, None) for e in range(3)] == [1.0, 1.0, 1.0]
    assert [warmup_factor(e, 1) for e in range(3)] == [1.0, 1.0, 1.0]
    full = AttackSettings(eps=0.2, alpha=0.04, steps=7, norm="L2")
    half = scheduled_settings(full, 1, 4)
    assert (half.eps, half.alpha, half.steps, half.norm) == pytest.approx((0.1, 0.02, 7, "L2"))
    assert scheduled_settings(full, 3, 4) is full and scheduled_settings(full, 0, None) is full


def recording(cls: type) -> type:
    """The method's trainer, recording the largest perturbation of each epoch (L-inf, or
    L2 per image when the attack is L2)."""

    class Recording(cls):  # type: ignore[misc, valid-type]
        def craft_adversarial(
            self, batch: Batch, targets: Mapping[str, torch.Tensor]
        ) -> torch.Tensor:
            adversarial = super().craft_adversarial(batch, targets)
            delta = (adversarial - batch.images).flatten(1)
            l2 = self.attack_settings is not None and self.attack_settings.norm == "L2"
            largest = float(delta.norm(dim=1).max() if l2 else delta.abs().max())
            self.largest[self.epoch_now] = max(self.largest.get(self.epoch_now, 0.0), largest)
            return adversarial

        def _schedule_attack(self, epoch: int | None) -> dict[str, float]:
            self.epoch_now = epoch
            return super()._schedule_attack(epoch)

    return Recording


def make(method: str, student, *, cls: type | None = None, **kwargs):
    cls = cls or TRAINERS[method]
    x, y, prototypes = make_prototype_data(n=32)
    teacher = PrototypeLinear(prototypes).eval() if TRAINERS[method].needs_teacher else None
    args = (student,) if teacher is None else (student, teacher)
    if method_spec(method).needs_natural_teacher:  # MTARD: a second, "natural" teacher
        kwargs["natural_teacher"] = PrototypeLinear(1.0 - prototypes).eval()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    return cls(*args, optimizer=optimizer, seed=1, verbose=False, **kwargs), x, y


@pytest.mark.parametrize("method", METHODS)
def test_each_epoch_attacks_within_and_up_to_its_scheduled_budget(method: str) -> None:
    torch.manual_seed(0)
    trainer, x, y = make(
        method, TinyCNN(), cls=recording(TRAINERS[method]), attack=ATTACK, eps_warmup_epochs=3
    )
    trainer.largest = {}
    history = trainer.fit(x, y, batch_size=16, nb_epochs=4, validation_data=(x, y))
    budgets = [expected_eps(e, 3) for e in range(4)]
    assert [h["attack_eps"] for h in history] == pytest.approx(budgets, abs=1e-12)
    for epoch, budget in enumerate(budgets):
        # inside the scheduled ball, and reaching its surface (a sign step saturates)
        assert trainer.largest[epoch] <= budget + 1e-6
        assert trainer.largest[epoch] >= budget - 1e-6, (epoch, trainer.largest)
    # validation at the full budget, and the full attack back after training
    assert trainer.attack_settings == AttackSettings(**ATTACK)
    if method == "dard":
        assert trainer.teacher_attack == AttackSettings(**ATTACK)  # the teacher's: full


def test_an_l2_attack_ramps_in_its_own_norm() -> None:
    torch.manual_seed(0)
    attack = {"norm": "L2", "eps": 1.0, "alpha": 0.5, "steps": 3}
    trainer, x, y = make(
        "sat", TinyCNN(), cls=recording(SATTrainer), attack=attack, eps_warmup_epochs=2
    )
    trainer.largest = {}
    history = trainer.fit(x, y, batch_size=16, nb_epochs=3)
    assert [h["attack_eps"] for h in history] == pytest.approx([0.5, 1.0, 1.0])
    for epoch, budget in enumerate([0.5, 1.0, 1.0]):
        assert budget - 1e-3 <= trainer.largest[epoch] <= budget + 1e-5, trainer.largest


def trained(k: int | None, epochs: int = 2, **kwargs) -> tuple[dict, list]:
    torch.manual_seed(0)
    trainer, x, y = make("sat", TinyCNN(), attack=ATTACK, eps_warmup_epochs=k, **kwargs)
    history = trainer.fit(x, y, batch_size=16, nb_epochs=epochs)
    return {n: v.clone() for n, v in trainer.student.state_dict().items()}, history


def test_off_by_default_and_a_ramp_of_one_epoch_is_the_same_run() -> None:
    default, history = trained(None)
    one, history_one = trained(1)  # factor 1 throughout: the schedule's path, same attack
    ramp, _ = trained(2)
    assert all(torch.equal(default[n], one[n]) for n in default)
    assert not all(torch.equal(default[n], ramp[n]) for n in default)
    assert "attack_eps" not in history[0] and history_one[0]["attack_eps"] == 0.1
    assert [h["loss"] for h in history] == [h["loss"] for h in history_one]
    student = TinyCNN()
    assert "eps_warmup_epochs" not in make("sat", student, attack=ATTACK)[0].config()


def test_resume_mid_ramp_is_exact_and_a_changed_schedule_is_refused(tmp_path) -> None:
    straight, straight_history = trained(4, epochs=3)
    trained(4, epochs=1, checkpoint_dir=tmp_path)
    resumed, resumed_history = trained(4, epochs=3, checkpoint_dir=tmp_path, resume=True)
    assert all(torch.equal(straight[n], resumed[n]) for n in straight)
    assert [h["attack_eps"] for h in resumed_history] == pytest.approx([0.025, 0.05, 0.075])
    assert [h["loss"] for h in resumed_history] == [h["loss"] for h in straight_history]
    for other in (3, None):
        with pytest.raises(ValueError, match="eps_warmup_epochs"):
            trained(other, epochs=3, checkpoint_dir=tmp_path, resume=True)


def test_bad_schedules_are_refused() -> None:
    student = TinyCNN()
    for bad in (0, -1, 1.5):
        with pytest.raises((ValueError, TypeError), match="eps_warmup_epochs must be an int"):
            make("sat", student, attack=ATTACK, eps_warmup_epochs=bad)
    with pytest.raises(ValueError, match="eps_warmup_epochs needs an attack"):
        make("sat", student, attack=lambda m, x, y, g: x, eps_warmup_epochs=2)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="natural training"):
        NaturalTrainer(student, optimizer=optimizer, eps_warmup_epochs=2)
    assert SATTrainer(student, optimizer=optimizer, attack=ATTACK).eps_warmup_epochs is None


def test_distill_and_the_command_line_take_the_schedule(tmp_path) -> None:
    result = distill(
        method="sat",
        student_arch="small-cnn",
        n_train=64,
        n_val=16,
        epochs=2,
        steps=1,
        eps_warmup_epochs=2,
        verbose=False,
    )
    assert [h["attack_eps"] for h in result.history] == pytest.approx([0.05, 0.1])
    with pytest.raises(ValueError, match="eps_warmup_epochs"):
        distill(method="sat", epochs=1, eps_warmup_epochs=0, verbose=False)
    # a ramp longer than the run never reached eps, and the report was at eps: refused
    with pytest.raises(ValueError, match=r"eps_warmup_epochs must be at most epochs \(2\)"):
        distill(method="sat", epochs=2, eps_warmup_epochs=4, verbose=False)

    command = [sys.executable, "-m", "dard_plugin", "train-teacher", "--arch", "small-cnn"]
    tiny = ["--n-train", "64", "--epochs", "2", "--steps", "1", "--n-val", "16"]
    tiny += ["--n-eval", "16", "--eval-attacks", "clean", "--quiet", "--json"]
    done = subprocess.run(
        [*command, *tiny, "--eps-warmup-epochs", "2", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    history = json.loads(done.stdout)["history"]
    assert [h["attack_eps"] for h in history] == pytest.approx([0.05, 0.1])
    refused = subprocess.run(
        [*command, *tiny, "--eps-warmup-epochs", "0", "--out", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert refused.returncode == 2 and "--eps-warmup-epochs" in refused.stderr
    assert not (tmp_path / "bad").exists()
