"""Issue 13 item 3: every method of the registry trains with an L2 attack (``attack={"norm":
"L2", ...}``) on the package's one L2 loop, for the student's attack and DARD's teacher DPGD,
and validate in L2; a bad norm is refused before any work."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from conftest import PrototypeLinear, TinyCNN, make_prototype_data, state_snapshot

from dard_plugin.attacks import pgd
from dard_plugin.evaluation import attacks as suite
from dard_plugin.training import (
    METHODS,
    TRAINERS,
    AttackSettings,
    attacks,
    build_trainer,
    methods,
)

EPS = 1.0  # 8x8 grey images: 0.125 per feature root-mean-square


def spy(monkeypatch: pytest.MonkeyPatch, calls: list[dict[str, Any]]) -> None:
    """Record every run of the one loop by the trainer's modules (no behaviour changed)."""

    def recording(
        model: Any, images: torch.Tensor, labels: torch.Tensor, objective: Any, **kw: Any
    ):
        result = pgd.projected_gradient_descent(model, images, labels, objective, **kw)
        calls.append({"images": images.detach().clone(), "result": result.detach(), **kw})
        return result

    for module in (
        attacks,  # attack_from_noise too: RSLAD, AdaAD, MTARD
        methods,
        suite,
    ):  # suite: validation runs SuiteAttack.run
        monkeypatch.setattr(module, "projected_gradient_descent", recording)


@pytest.mark.parametrize("method", [m for m, spec in METHODS.items() if spec.adversarial])
def test_l2_training_examples_lie_in_the_l2_ball_and_bounds(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y, prototypes = make_prototype_data(n=32, noise=0.3)
    torch.manual_seed(0)
    student = TinyCNN()
    teacher = PrototypeLinear(prototypes).eval()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    natural = PrototypeLinear(1.0 - prototypes).eval()
    trainer = build_trainer(
        method,
        student,
        teacher if METHODS[method].needs_teacher else None,
        natural_teacher=natural if METHODS[method].needs_natural_teacher else None,
        optimizer=optimizer,
        attack={"norm": "L2", "eps": EPS, "steps": 3},
        verbose=False,
    )
    assert trainer.attack_settings == AttackSettings(eps=EPS, alpha=EPS / 4, steps=3, norm="L2")
    calls: list[dict[str, Any]] = []
    spy(monkeypatch, calls)
    history = trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=(x[:16], y[:16]))
    assert np.isfinite(history[0]["loss"]) and 0 <= history[0]["pgd_accuracy"] <= 1
    # 2 training batches (DARD: the teacher's DPGD too) + 1 validation batch
    assert len(calls) == (5 if method == "dard" else 3)
    for call in calls:
        assert call["norm"] == "L2" and call["eps"] == EPS
        delta = (call["result"] - call["images"]).flatten(1)
        assert float(delta.norm(dim=1).max()) <= EPS * (1 + 1e-5)
        assert float(delta.norm(dim=1).max()) > EPS / 4  # it moved: one step at least
        assert float(delta.abs().max()) > EPS / 8  # beyond the L2 ball's per-feature RMS
        assert float(call["result"].min()) >= 0.0 and float(call["result"].max()) <= 1.0


def test_l2_defaults_and_the_teacher_follows_the_student_norm() -> None:
    settings = AttackSettings(norm="L2")
    assert (settings.eps, settings.alpha, settings.steps) == (0.5, 0.5 / 4, 10)  # RobustBench
    assert AttackSettings() == AttackSettings(eps=8 / 255, alpha=2 / 255, norm="Linf")
    _, _, prototypes = make_prototype_data(n=8)
    student = TinyCNN()
    trainer = TRAINERS["dard"](
        student,
        PrototypeLinear(prototypes).eval(),
        optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
        attack={"norm": "L2", "eps": EPS},
        verbose=False,
    )
    assert trainer.teacher_attack == trainer.attack_settings
    assert trainer.eval_norm == "L2" and trainer.config()["attack"]["norm"] == "L2"


@pytest.mark.parametrize("norm", ["l2", "L1", 2, "inf"])
def test_a_bad_norm_is_refused_before_work(norm: object) -> None:
    torch.manual_seed(0)
    student = TinyCNN()
    before = state_snapshot(student)
    with pytest.raises(ValueError, match=r"norm.*'Linf'.*'L2'"):
        TRAINERS["sat"](
            student,
            optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
            attack={"norm": norm, "eps": EPS},
            verbose=False,
        )
    after = state_snapshot(student)
    assert all(torch.equal(before[k], after[k]) for k in before)


def l2_student() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    student = TinyCNN()
    return student, torch.optim.SGD(student.parameters(), lr=0.05)


def test_validation_follows_a_torchattacks_l2_attack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25: an L2 run validated with L-inf at the L2 budget (accuracy 0, a warning)."""
    import torchattacks

    x, y, _ = make_prototype_data(n=32, noise=0.3)
    student, optimizer = l2_student()
    attack = torchattacks.PGDL2(student, eps=EPS, alpha=EPS / 4, steps=2)
    trainer = TRAINERS["sat"](student, optimizer=optimizer, attack=attack, verbose=False)
    assert (trainer.eval_norm, trainer.eval_eps) == ("L2", EPS)
    calls: list[dict[str, Any]] = []
    spy(monkeypatch, calls)  # the torchattacks training attack is not the package's loop
    trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=(x[:16], y[:16]))
    assert [(c["norm"], c["eps"]) for c in calls] == [("L2", EPS)]
    apgd = torchattacks.APGD(student, norm="L2", eps=EPS, steps=2)
    assert TRAINERS["sat"](student, optimizer=optimizer, attack=apgd).eval_norm == "L2"
    linf = torchattacks.PGD(student, eps=0.1, alpha=0.05, steps=2)
    assert TRAINERS["sat"](student, optimizer=optimizer, attack=linf).eval_norm == "Linf"


def test_an_l1_torchattacks_budget_is_no_validation_or_teacher_budget() -> None:
    """torchattacks' FAB(norm="L1", eps=0.25) validated at L-inf 0.25 and set DARD's teacher
    DPGD to L-inf 0.25: an L1 budget taken for an L-inf one, without a word."""
    import torchattacks

    _, _, prototypes = make_prototype_data(n=8)
    student, optimizer = l2_student()
    fab = torchattacks.FAB(student, norm="L1", eps=0.25, steps=2, n_classes=10)
    sat = TRAINERS["sat"](student, optimizer=optimizer, attack=fab, verbose=False)
    assert (sat.attack_norm, sat.attack_eps, sat.eval_eps) == (None, None, None)
    teacher = PrototypeLinear(prototypes).eval()
    with pytest.raises(ValueError, match="teacher_attack must be given"):
        TRAINERS["dard"](student, teacher, optimizer=optimizer, attack=fab, verbose=False)
    for targets in ("teacher-nat", "student-adv"):  # no teacher attack: none is needed
        ok = TRAINERS["dard"](
            student, teacher, optimizer=optimizer, attack=fab, adv_targets=targets
        )
        assert ok.teacher_attack == AttackSettings()  # METHOD.md's, recorded, not run


def test_a_teacher_attack_that_would_not_run_is_refused() -> None:
    """DARD with adv_targets 'teacher-nat' or 'student-adv' runs no teacher DPGD: a given
    teacher_attack was accepted, recorded in config() and the run's fingerprint, and unused
    (bit-identical weights)."""
    _, _, prototypes = make_prototype_data(n=8)
    student, optimizer = l2_student()
    for targets in ("teacher-nat", "student-adv"):
        with pytest.raises(ValueError, match=f"adv_targets='{targets}' does not run"):
            TRAINERS["dard"](
                student,
                PrototypeLinear(prototypes).eval(),
                optimizer=optimizer,
                adv_targets=targets,
                teacher_attack={"steps": 3},
            )


def test_an_explicit_eval_norm_wins_and_needs_its_own_eps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y, _ = make_prototype_data(n=32, noise=0.3)
    student, optimizer = l2_student()
    before = state_snapshot(student)
    attack = {"norm": "L2", "eps": EPS, "steps": 2}
    trainer = TRAINERS["sat"](
        student, optimizer=optimizer, attack=attack, eval_norm="Linf", verbose=False
    )
    assert trainer.eval_eps is None  # the L2 budget is no L-inf budget
    with pytest.raises(ValueError, match=r"eval_eps must be given.*eval_norm='Linf'.*'L2'"):
        trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=(x[:16], y[:16]))
    assert all(torch.equal(before[k], v) for k, v in state_snapshot(student).items())
    trainer = TRAINERS["sat"](
        student, optimizer=optimizer, attack=attack, eval_norm="Linf", eval_eps=0.1, verbose=False
    )
    calls: list[dict[str, Any]] = []
    spy(monkeypatch, calls)
    trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=(x[:16], y[:16]))
    assert [(c["norm"], c["eps"]) for c in calls] == [("L2", EPS)] * 2 + [("Linf", 0.1)]
    with pytest.raises(ValueError, match="eval_norm"):
        TRAINERS["sat"](student, optimizer=optimizer, eval_norm="l2")


@pytest.mark.parametrize("norm", ["L2", "Linf"])
def test_a_partial_teacher_attack_inherits_the_run_norm(
    norm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 25: ``teacher_attack={"steps": 3}`` in an L2 run made the teacher's DPGD L-inf
    at 8/255; it took the run's norm, and then that norm's defaults for what it omits
    (8/255 in a run at 0.1); now the student's settings in that norm."""
    x, y, prototypes = make_prototype_data(n=16, noise=0.3)
    student, optimizer = l2_student()
    eps = EPS if norm == "L2" else 0.1
    trainer = TRAINERS["dard"](
        student,
        PrototypeLinear(prototypes).eval(),
        optimizer=optimizer,
        attack={"norm": norm, "eps": eps, "steps": 2},
        teacher_attack={"steps": 3},
        verbose=False,
    )
    assert trainer.teacher_attack == AttackSettings(norm=norm, eps=eps, steps=3)
    expected_eps = eps  # the student's budget, not the norm's default
    calls: list[dict[str, Any]] = []
    spy(monkeypatch, calls)
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    teacher_calls = [c for c in calls if c["steps"] == 3]
    assert len(teacher_calls) == 1 and len(calls) == 2
    assert teacher_calls[0]["norm"] == norm and teacher_calls[0]["eps"] == expected_eps
    explicit = TRAINERS["dard"](
        student,
        PrototypeLinear(prototypes).eval(),
        optimizer=optimizer,
        attack={"norm": "L2", "eps": EPS},
        teacher_attack={"norm": "Linf", "eps": 0.1},
    )
    assert explicit.teacher_attack == AttackSettings(norm="Linf", eps=0.1)  # another norm
    partial = TRAINERS["dard"](
        student,
        PrototypeLinear(prototypes).eval(),
        optimizer=optimizer,
        attack={"norm": "Linf", "eps": 0.1, "alpha": 0.02, "steps": 7},
        teacher_attack={"eps": 0.2},
    )
    assert partial.teacher_attack == AttackSettings(norm="Linf", eps=0.2, alpha=0.05, steps=7)
    other_norm = TRAINERS["dard"](
        student,
        PrototypeLinear(prototypes).eval(),
        optimizer=optimizer,
        attack={"norm": "Linf", "eps": 0.1},
        teacher_attack={"norm": "L2"},
    )
    assert other_norm.teacher_attack == AttackSettings(norm="L2")  # L2's defaults
