"""Frozen teachers are queried through a copy with their BatchNorm folded into the layer
before it (``training.models.fold_batch_norm``): the same function to float rounding, the
caller's teacher untouched and given back after ``fit``, and models with nothing to fold (or
that cannot be traced) used as they are."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_state_equal, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin.teachers import load_teacher
from dard_plugin.training import AdaADTrainer, MTARDTrainer
from dard_plugin.training.models import fold_batch_norm

ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 2}


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def conv_bn_teacher(seed: int) -> nn.Module:
    """Conv -> BatchNorm (running statistics far from the identity) -> ReLU -> Linear."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 10),
        )
    bn = model[1]
    bn.running_mean.copy_(torch.randn(4, generator=generator))
    bn.running_var.copy_(0.1 + torch.rand(4, generator=generator))
    bn.weight.data.copy_(0.5 + torch.rand(4, generator=generator))
    bn.bias.data.copy_(torch.randn(4, generator=generator))
    return model.eval().requires_grad_(False)


def input_gradient(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (gradient,) = torch.autograd.grad(logits.logsumexp(1).sum(), x)
    return logits.detach(), gradient


def test_the_shipped_teacher_folds_to_the_same_function() -> None:
    teacher = load_teacher("dard-fmnist-teacher")
    before = state_snapshot(teacher)
    folded = fold_batch_norm(teacher)
    assert folded is not teacher and not folded.training
    assert batch_norms(teacher) == 4 and batch_norms(folded) == 0
    assert all(not p.requires_grad for p in folded.parameters())
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    logits, gradient = input_gradient(teacher, x)
    folded_logits, folded_gradient = input_gradient(folded, x)
    torch.testing.assert_close(folded_logits, logits, atol=1e-4, rtol=1e-4)
    assert (folded_gradient - gradient).norm() <= 1e-3 * gradient.norm()
    assert (folded_gradient.sign() == gradient.sign()).float().mean() >= 0.999
    assert_state_equal(teacher, before)  # the caller's teacher is not changed
    assert batch_norms(teacher) == 4 and not teacher.training


def untraceable() -> nn.Module:
    class Branching(nn.Module):  # control flow on a tensor's value: fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.body = conv_bn_teacher(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x) if x.sum() > 0 else -self.body(x)

    return Branching().eval()


@pytest.mark.parametrize(
    "make",
    [
        lambda: conv_bn_teacher(0).train(),  # training: BatchNorm uses batch statistics
        lambda: nn.Sequential(  # pre-activation: the BatchNorm precedes the convolution
            nn.BatchNorm2d(1), nn.ReLU(), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(10)
        ).eval(),
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval(),  # no BatchNorm
        untraceable,
    ],
    ids=["training", "pre-activation", "no-batchnorm", "untraceable"],
)
def test_a_model_with_nothing_to_fold_is_used_as_it_is(make) -> None:
    model = make()
    assert fold_batch_norm(model) is model


class Recording(AdaADTrainer):
    """AdaAD that records, at every loss, the teacher it queries."""

    seen: list[nn.Module]

    def compute_loss(self, batch, adversarial, targets):
        self.seen.append(self.teacher)
        if getattr(self, "fail_at", None) == len(self.seen):
            raise RuntimeError("stopped mid-epoch")
        return super().compute_loss(batch, adversarial, targets)


def test_training_queries_a_folded_copy_and_gives_the_teacher_back(tmp_path) -> None:
    x, y, _ = make_prototype_data(n=32)
    teacher = conv_bn_teacher(0)
    before = state_snapshot(teacher)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    trainer = Recording(student, teacher, optimizer=optimizer, attack=ATTACK, verbose=False)
    trainer.seen = []
    trainer.fit(x, y, batch_size=16, nb_epochs=2)
    assert len(trainer.seen) == 4
    assert all(model is not teacher and batch_norms(model) == 0 for model in trainer.seen)
    assert trainer.teacher is teacher and trainer.frozen_models() == [teacher]
    assert_state_equal(teacher, before)
    assert not teacher.training and batch_norms(teacher) == 1

    trainer.seen, trainer.fail_at = [], 2  # an error mid-epoch gives the teacher back too
    with pytest.raises(RuntimeError, match="stopped mid-epoch"):
        trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert trainer.teacher is teacher


def test_both_mtard_teachers_are_folded_and_given_back() -> None:
    x, y, _ = make_prototype_data(n=32)
    adversarial, natural = conv_bn_teacher(0), conv_bn_teacher(1)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    seen: list[tuple[nn.Module, nn.Module]] = []

    class RecordingMTARD(MTARDTrainer):
        def compute_loss(self, batch, adv, targets):
            seen.append((self.teacher, self.natural_teacher))
            return super().compute_loss(batch, adv, targets)

    trainer = RecordingMTARD(
        student, adversarial, natural_teacher=natural, optimizer=optimizer, attack=ATTACK
    )
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert seen and all(batch_norms(a) == 0 and batch_norms(n) == 0 for a, n in seen)
    assert trainer.frozen_models() == [adversarial, natural]


def test_fold_teacher_false_queries_the_teacher_as_given() -> None:
    x, y, _ = make_prototype_data(n=32)
    teacher = conv_bn_teacher(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    trainer = Recording(
        student, teacher, optimizer=optimizer, attack=ATTACK, fold_teacher=False, verbose=False
    )
    trainer.seen = []
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert trainer.seen == [teacher, teacher]
    with pytest.raises(TypeError, match="fold_teacher must be a bool"):
        AdaADTrainer(student, teacher, optimizer=optimizer, fold_teacher="yes")


def test_the_folded_copy_is_kept_until_the_teacher_changes() -> None:
    """One copy across fit calls (a compiled attack step keeps its graph), a new one once
    the teacher's weights change in place."""
    x, y, _ = make_prototype_data(n=16)
    teacher = conv_bn_teacher(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    trainer = Recording(student, teacher, optimizer=optimizer, attack=ATTACK, verbose=False)
    trainer.seen = []
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert trainer.seen[0] is trainer.seen[1] is trainer.queried_model(teacher)
    with torch.no_grad():
        teacher[1].running_var.mul_(2.0)
    changed = trainer.queried_model(teacher)
    assert changed is not trainer.seen[0]
    x8 = x[:4]
    torch.testing.assert_close(changed(x8), teacher(x8), atol=1e-5, rtol=1e-5)


class Counting(nn.Module):
    """A user's own module with a side effect in forward, which a traced copy would drop."""

    def __init__(self) -> None:
        super().__init__()
        self.body = conv_bn_teacher(2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.body(x)


@pytest.mark.parametrize("fold_teacher", [None, True])
def test_a_users_own_module_is_folded_only_when_asked(fold_teacher) -> None:
    x, y, _ = make_prototype_data(n=16)
    teacher = Counting().eval()
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    trainer = Recording(
        student,
        teacher,
        optimizer=optimizer,
        attack=ATTACK,
        fold_teacher=fold_teacher,
        verbose=False,
    )
    trainer.seen = []
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    if fold_teacher is None:  # the default: its calls are seen, every one
        assert trainer.seen == [teacher] and teacher.calls > ATTACK["steps"]
    else:
        assert trainer.seen[0] is not teacher and batch_norms(trainer.seen[0]) == 0
