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


def test_every_fit_folds_the_teacher_as_it_is_then() -> None:
    """A copy made at every fit: weights replaced without an in-place change (``p.data =``,
    which a version-counter cache missed) are in the next fit's copy."""
    x, y, _ = make_prototype_data(n=16)
    teacher = conv_bn_teacher(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    trainer = Recording(student, teacher, optimizer=optimizer, attack=ATTACK, verbose=False)
    trainer.seen = []
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    teacher[1].running_var = 2.0 * teacher[1].running_var  # a new tensor, version 0
    teacher[1].eps = 0.5
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    first, second = trainer.seen
    assert first is not second
    with torch.no_grad():
        torch.testing.assert_close(second(x[:4]), teacher(x[:4]), atol=1e-5, rtol=1e-5)
        assert (first(x[:4]) - teacher(x[:4])).abs().max() > 1e-2


class Twice(nn.Module):
    """One convolution called twice, each time before its own BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(1), nn.BatchNorm2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        for bn in (self.bn1, self.bn2):
            bn.running_mean.fill_(0.3)
            bn.running_var.fill_(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn2(self.conv(torch.relu(self.bn1(self.conv(x))))))


def linear_on_3d() -> nn.Module:
    """Linear over the last axis of (N, 8, 8), then BatchNorm1d over axis 1: the same
    feature count, another axis; fx's fuse folds it along the wrong one."""
    model = nn.Sequential(nn.Flatten(1, 2), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Flatten())
    model[2].running_mean.copy_(torch.linspace(-1, 1, 8))
    model[2].running_var.copy_(torch.linspace(0.2, 2, 8))
    return model.eval()


def with_pre_hook() -> nn.Module:
    model = conv_bn_teacher(0)
    model.register_forward_pre_hook(lambda module, args: (args[0] * 2 - 1,))
    return model


def with_instance_forward() -> nn.Module:
    model = conv_bn_teacher(0)
    base = model.forward
    model.forward = lambda x: base((x - 0.5) / 0.25)
    return model


@pytest.mark.parametrize(
    "make",
    [lambda: Twice().eval(), with_pre_hook, with_instance_forward, linear_on_3d],
    ids=["a-layer-called-twice", "a-hook", "an-instance-forward", "linear-on-3d-inputs"],
)
def test_a_model_that_folds_wrongly_is_used_as_it_is(make) -> None:
    """Each of these folded to another function (gaps of 0.4 to 3.3 before the checks)."""
    model = make()
    sample = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert fold_batch_norm(model, sample) is model


def test_a_failed_fold_of_the_second_teacher_gives_both_back(monkeypatch) -> None:
    import dard_plugin.training.models as training_models

    x, y, _ = make_prototype_data(n=16)
    adversarial, natural = conv_bn_teacher(0), conv_bn_teacher(1)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    trainer = MTARDTrainer(
        student, adversarial, natural_teacher=natural, optimizer=optimizer, attack=ATTACK
    )
    fold = training_models.fold_batch_norm

    def fold_once(model, sample=None):
        if model is natural:
            raise KeyboardInterrupt
        return fold(model, sample)

    monkeypatch.setattr(training_models, "fold_batch_norm", fold_once)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert trainer.frozen_models() == [adversarial, natural]


def test_an_explicit_fold_setting_is_part_of_the_run_fingerprint() -> None:
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    configs = {
        fold: AdaADTrainer(
            student, conv_bn_teacher(0), optimizer=optimizer, fold_teacher=fold
        ).config()
        for fold in (None, True, False)
    }
    assert "fold_teacher" not in configs[None]  # earlier runs' fingerprints still match
    assert configs[True]["fold_teacher"] is True and configs[False]["fold_teacher"] is False


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
