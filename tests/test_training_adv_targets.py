"""DARD's ``adv_targets`` (issue 12 item 4): each variant's q_adv against a direct
computation, the teacher-fooled fraction in the history, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PrototypeLinear, TinyCNN, make_prototype_data

from dard_plugin.attacks.dpgd import dpgd
from dard_plugin.training import ADV_TARGETS, DARDTrainer
from dard_plugin.training.batches import Batch

EPS, STEP, STEPS = 0.25, 0.1, 3  # large enough that the teacher is fooled on some x_T
TAU = 3.0


def setup(adv_targets: str, **kwargs):
    x, y, prototypes = make_prototype_data(n=32, noise=0.3)
    teacher = PrototypeLinear(prototypes).eval()
    torch.manual_seed(0)
    student = TinyCNN()
    trainer = DARDTrainer(
        student,
        teacher,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
        attack={"eps": EPS, "alpha": STEP, "steps": STEPS},
        adv_targets=adv_targets,
        temperature=TAU,
        verbose=False,
        **kwargs,
    )
    return trainer, teacher, student, x, y


def direct_teacher_adversarial(teacher, x, y) -> torch.Tensor:
    return dpgd(teacher, x, y, eps=EPS, alpha=STEP, steps=STEPS)


@pytest.mark.parametrize("variant", ADV_TARGETS)
def test_q_adv_of_each_variant_against_a_direct_computation(variant: str) -> None:
    trainer, teacher, student, x, y = setup(variant)
    x_student = dpgd(student.eval(), x, y, eps=EPS, alpha=STEP, steps=STEPS)
    targets = trainer.teacher_outputs(x, y)
    logits, fooled = trainer.adversarial_targets(Batch(x, y), x_student, targets)
    q_adv = F.softmax(logits.float() / TAU, dim=1)
    with torch.no_grad():
        on_x_t = teacher(direct_teacher_adversarial(teacher, x, y))
        expected_fooled = on_x_t.argmax(1) != y
        assert 0 < int(expected_fooled.sum()) < len(y)  # the premise: some fooled, not all
        if variant == "teacher-adv":
            expected = F.softmax(on_x_t / TAU, dim=1)
        elif variant == "teacher-nat":
            expected = F.softmax(teacher(x) / TAU, dim=1)
        elif variant == "student-adv":
            expected = F.softmax(teacher(x_student) / TAU, dim=1)
        else:
            expected = torch.where(
                expected_fooled[:, None], F.one_hot(y, 10).float(), F.softmax(on_x_t / TAU, 1)
            )
    assert torch.allclose(q_adv, expected, atol=1e-6)
    if variant in ("teacher-adv", "teacher-adv-corrected"):
        assert fooled is not None and torch.equal(fooled, expected_fooled)
    else:
        assert fooled is None
    # the natural term's target is the teacher on x in every variant
    assert torch.allclose(targets["teacher_nat"], teacher(x).detach(), atol=1e-6)


@pytest.mark.parametrize("variant", ADV_TARGETS)
def test_each_variant_trains_and_records_the_fooled_fraction(variant: str) -> None:
    mode = "online" if variant == "student-adv" else "cached"
    trainer, teacher, _, x, y = setup(variant, teacher_targets=mode)
    history = trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert np.isfinite(history[0]["loss"])
    if variant in ("teacher-adv", "teacher-adv-corrected"):
        # cached, no augmentation, two equal batches: the epoch's mean is the fraction of
        # the training set on which the teacher is fooled on its own DPGD example
        with torch.no_grad():
            fooled = teacher(direct_teacher_adversarial(teacher, x, y)).argmax(1) != y
        assert history[0]["teacher_fooled"] == pytest.approx(float(fooled.float().mean()))
    else:
        assert "teacher_fooled" not in history[0]


def test_student_adv_refuses_cached_targets_and_unknown_variants() -> None:
    with pytest.raises(ValueError, match=r"student-adv.*online.*cannot be cached"):
        setup("student-adv", teacher_targets="cached")
    with pytest.raises(ValueError, match="adv_targets must be one of"):
        setup("teacher-adversarial")


def test_default_is_the_paper() -> None:
    _, _, prototypes = make_prototype_data(n=4)
    student = TinyCNN()
    trainer = DARDTrainer(
        student,
        PrototypeLinear(prototypes).eval(),
        optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
    )
    assert trainer.adv_targets == "teacher-adv"
    assert trainer.config()["adv_targets"] == "teacher-adv"
