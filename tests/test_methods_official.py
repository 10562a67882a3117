"""IAD, AdaAD (+ IGDM), MTARD, ARD and RSLAD: each loss (and IAD's, AdaAD's and IGDM's
steps) against the official code's formula, transcribed here in plain torch, with the
stated factor for the KL scaling."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import make_prototype_data
from methods_common import (
    Linear,
    new_trainer,
    random_logits,
)
from torch import nn

from dard_plugin.losses.distillation import (
    adaad_loss,
    ard_loss,
    iad_loss,
    igdm_loss,
    mtard_kl,
    mtard_loss,
    rslad_loss,
)
from dard_plugin.training.batches import Batch


# ---------------------------------------------------------------- the official formulas
def official_iad1(outputs, teacher_outputs, basic_outputs, guide, targets, epoch, begin=60):
    """IAD-I.py's ``train`` loss (alpha 1, temp 1, beta 0.1), transcribed."""
    alpha, temp, beta = 1.0, 1.0, 0.1

    def kl_none(a, b):  # nn.KLDivLoss(reduce=False)
        return F.kl_div(a, b, reduction="none")

    n = len(outputs)
    teacher_term = (
        alpha
        * temp
        * temp
        * (1 / n)
        * torch.sum(
            kl_none(
                F.log_softmax(outputs / temp, dim=1), F.softmax(teacher_outputs / temp, dim=1)
            ).sum(dim=1)
        )
    )
    ce = (1.0 - alpha) * F.cross_entropy(basic_outputs, targets)
    if epoch < begin:
        return teacher_term + ce
    weights = torch.ones(n)
    for pp in range(n):
        weights[pp] = F.softmax(guide, dim=1)[pp][targets[pp].item()].pow(beta).item()
    introspection = (
        alpha
        * (1 / n)
        * torch.sum(
            kl_none(F.log_softmax(outputs, dim=1), F.softmax(basic_outputs, dim=1))
            .sum(dim=1)
            .mul(1 - weights)
        )
    )
    return teacher_term + introspection + ce


@pytest.mark.parametrize("epoch", [10, 60, 199])
def test_iad_loss_is_the_official_formula(epoch: int) -> None:
    student_nat, student_adv, teacher_nat, teacher_adv = random_logits(epoch)
    labels = torch.arange(6) % 10
    reliability = None
    if epoch >= 60:
        reliability = F.softmax(teacher_adv, 1).gather(1, labels[:, None]).squeeze(1) ** 0.1
    ours = iad_loss(student_nat, student_adv, teacher_nat, labels, reliability)
    official = official_iad1(student_adv, teacher_nat, student_nat, teacher_adv, labels, epoch)
    assert torch.allclose(ours, official, rtol=0, atol=1e-6), (ours, official)


def test_iad_gradient_is_the_official_one_and_finite_for_a_confident_student() -> None:
    """The introspection term's gradient (through both S(x) and S(x')) equals the code's
    where the code's is finite; at a logit gap whose softmax underflows to 0 the code's
    gradient is NaN (log 0 in the target's backward) and ours is finite."""
    labels = torch.arange(6) % 10

    def gradients(loss_of, nat, adv):
        nat, adv = nat.clone().requires_grad_(), adv.clone().requires_grad_()
        loss_of(nat, adv).backward()
        return nat.grad, adv.grad

    for gap, official_finite in ((30.0, True), (120.0, False)):
        student_nat, student_adv, teacher_nat, teacher_adv = random_logits(int(gap))
        student_nat[:, 0] += gap  # a confident student on its natural images
        reliability = F.softmax(teacher_adv, 1).gather(1, labels[:, None]).squeeze(1) ** 0.1
        ours = gradients(
            lambda n, a, t=teacher_nat, r=reliability: iad_loss(n, a, t, labels, r),
            student_nat,
            student_adv,
        )
        code = gradients(
            lambda n, a, t=teacher_nat, g=teacher_adv: official_iad1(a, t, n, g, labels, 60),
            student_nat,
            student_adv,
        )
        assert all(bool(torch.isfinite(g).all()) for g in ours)
        assert bool(torch.isfinite(code[0]).all()) is official_finite
        if official_finite:
            for mine, theirs in zip(ours, code, strict=True):
                torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)


def test_losses_refuse_logits_and_reliability_of_other_shapes() -> None:
    student_nat, student_adv, teacher_nat, _ = random_logits(3)
    labels = torch.arange(6) % 10
    with pytest.raises(ValueError, match=r"student \(6, 10\) and teacher \(1, 10\)"):
        ard_loss(student_nat, student_adv, teacher_nat[:1], labels)  # F.kl_div broadcasts
    with pytest.raises(ValueError, match="teacher"):
        rslad_loss(student_nat, student_adv, teacher_nat[:, :5])
    reliability = torch.rand(6, 1)  # a gather not squeezed: (B, 1) * (B,) broadcasts to (B, B)
    with pytest.raises(ValueError, match=r"reliability must have shape \(batch,\) = \(6,\)"):
        iad_loss(student_nat, student_adv, teacher_nat, labels, reliability)


def test_iad_trainer_wires_the_official_formula() -> None:
    """The trainer's loss, at epoch 60 of 200 (start_fraction 0.3), is IAD-I's with
    ``guide`` the teacher on the student's adversarial example; before it, ARD's."""
    x, y, _ = make_prototype_data(n=8)
    student = Linear(0)
    trainer = new_trainer("iad", student)
    adversarial = (x + 0.05).clamp(0, 1)
    teacher = trainer.teacher
    targets = {"teacher_nat": teacher(x).detach()}
    for epoch in (59, 60):
        trainer.epoch, trainer.nb_epochs = epoch, 200
        loss, terms = trainer.compute_loss(Batch(x, y, None), adversarial, targets)
        official = official_iad1(
            student(adversarial), teacher(x), student(x), teacher(adversarial), y, epoch
        )
        assert torch.allclose(loss, official, atol=1e-6)
        assert ("reliability" in terms) == (epoch >= 60)


def official_adaad_loss(adv, ori, t_adv, t_ori, dataset: str, alpha: float = 1.0):
    """main.py's AdaAD branch, transcribed (CIFAR10: nn.KLDivLoss(), CIFAR100: 1/B sum)."""
    if dataset == "CIFAR10":  # nn.KLDivLoss() averages over all elements (today's "mean")
        kl1 = F.kl_div(F.log_softmax(adv, dim=1), F.softmax(t_adv, dim=1), reduction="none")
        kl2 = F.kl_div(F.log_softmax(ori, dim=1), F.softmax(t_ori, dim=1), reduction="none")
        kl1, kl2 = kl1.mean(), kl2.mean()
    else:
        kl1 = (1 / len(adv)) * torch.sum(
            F.kl_div(F.log_softmax(adv, dim=1), F.softmax(t_adv, dim=1), reduction="none")
        )
        kl2 = (1 / len(adv)) * torch.sum(
            F.kl_div(F.log_softmax(ori, dim=1), F.softmax(t_ori, dim=1), reduction="none")
        )
    return alpha * kl1 + (1 - alpha) * kl2


@pytest.mark.parametrize("alpha", [1.0, 0.7])
def test_adaad_loss_is_the_official_formula_with_the_stated_factor(alpha: float) -> None:
    ori, adv, t_ori, t_adv = random_logits(int(alpha * 10))
    default = adaad_loss(ori, adv, t_ori, t_adv, alpha=alpha)
    element_mean = adaad_loss(ori, adv, t_ori, t_adv, alpha=alpha, kl_reduction="mean")
    cifar10 = official_adaad_loss(adv, ori, t_adv, t_ori, "CIFAR10", alpha)
    cifar100 = official_adaad_loss(adv, ori, t_adv, t_ori, "CIFAR100", alpha)
    assert torch.allclose(default, cifar100, atol=1e-6)
    assert torch.allclose(default, 10 * cifar10, atol=1e-6)  # K = 10 classes
    assert torch.allclose(element_mean, cifar10, atol=1e-6)


def official_adaad_inner(model, teacher, x_natural, noise, step_size, steps, epsilon):
    """AT_helper.py's ``adaad_inner_loss``, transcribed (``noise`` given, not drawn)."""
    x_adv = x_natural.detach() + 0.001 * noise
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = F.kl_div(
                F.log_softmax(model(x_adv), dim=1),
                F.softmax(teacher(x_adv), dim=1),
                reduction="none",
            ).sum()
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    return x_adv


def test_adaad_attack_is_the_official_inner_maximisation() -> None:
    x, y, _ = make_prototype_data(n=8, noise=0.1)  # inside (0, 1): the start needs no clip
    student = Linear(3)
    trainer = new_trainer("adaad", student, attack={"eps": 0.1, "alpha": 0.02, "steps": 4})
    trainer._generator.manual_seed(7)
    ours = trainer.craft_adversarial(Batch(x, y, None), {})
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    official = official_adaad_inner(student, trainer.teacher, x, noise, 0.02, 4, 0.1)
    assert torch.allclose(ours, official, atol=1e-6)
    # the teacher is asked at every step: the result differs from a fixed-target attack
    fixed = official_adaad_inner(student, lambda _: trainer.teacher(x), x, noise, 0.02, 4, 0.1)
    assert not torch.allclose(ours, fixed, atol=1e-4)


def official_igdm_step(student, teacher, X, inputs_adv, epoch):  # noqa: N803 (the code's name)
    """igdm.py's training loss for one batch (igdm_alpha 1, 200 epochs), transcribed."""

    def criterion_kl(a, b):  # nn.KLDivLoss(reduction="batchmean")
        return F.kl_div(a, b, reduction="batchmean")

    with torch.no_grad():
        delta = inputs_adv - X
        teacher_plus = teacher(inputs_adv)
        teacher_minus = teacher(X - delta)
    student_plus = student(X + delta)
    student_minus = student(X - delta)
    igdm = criterion_kl(
        F.log_softmax(student_plus - student_minus, dim=1),
        F.softmax((teacher_plus - teacher_minus).detach(), dim=1),
    )
    kl = criterion_kl(F.log_softmax(student_plus, dim=1), F.softmax(teacher_plus, dim=1))
    return kl + 1.0 * (epoch / 200) * igdm


def test_igdm_loss_is_the_official_formula() -> None:
    plus, minus, t_plus, t_minus = random_logits(5)
    official = F.kl_div(
        F.log_softmax(plus - minus, dim=1),
        F.softmax(t_plus - t_minus, dim=1),
        reduction="batchmean",
    )
    assert torch.allclose(igdm_loss(plus, minus, t_plus, t_minus), official, atol=1e-6)


@pytest.mark.parametrize("epoch", [0, 99, 199])
def test_adaad_igdm_trainer_is_the_official_step(epoch: int) -> None:
    """Epoch ``e`` (0-based) of 200 is igdm.py's epoch ``e + 1``: weight ``(e + 1) / 200``."""
    x, y, _ = make_prototype_data(n=8)
    student = Linear(1)
    trainer = new_trainer("adaad-igdm", student)
    trainer.epoch, trainer.nb_epochs = epoch, 200
    adversarial = (x + 0.08 * torch.sign(torch.randn(x.shape))).clamp(0, 1)
    loss, terms = trainer.compute_loss(Batch(x, y, None), adversarial, {})
    official = official_igdm_step(student, trainer.teacher, x, adversarial, epoch + 1)
    assert torch.allclose(loss, official, atol=1e-6)
    assert "loss_igdm" in terms


def official_mtard_run(batches, lr_schedule):
    """mtard_resnet18_cifar10.py's loss and weight rule over a few steps, transcribed
    (``batches``: (student_adv, student_nat, teacher_adv, teacher_nat) logits per step)."""
    weight = {"adv_loss": 1 / 2.0, "nat_loss": 1 / 2.0}
    init_loss_nat = init_loss_adv = None
    weight_learn_rate, bert = 0.025, 1

    def kl_loss(a, b):
        return -a * b + torch.log(b + 1e-5) * b

    losses, weights = [], []
    for (s_adv, s_nat, t_adv, t_nat), lr_factor in zip(batches, lr_schedule, strict=True):
        kl1 = torch.mean(kl_loss(F.log_softmax(s_adv, dim=1), F.softmax(t_adv, dim=1)))
        kl2 = torch.mean(kl_loss(F.log_softmax(s_nat, dim=1), F.softmax(t_nat, dim=1)))
        if init_loss_nat is None:
            init_loss_nat = kl2.item()
        if init_loss_adv is None:
            init_loss_adv = kl1.item()
        inv_rate_adv = (kl1.item() / init_loss_adv) ** bert
        inv_rate_nat = (kl2.item() / init_loss_nat) ** bert
        rate = weight_learn_rate * lr_factor
        weight["nat_loss"] = weight["nat_loss"] - rate * (
            weight["nat_loss"] - inv_rate_nat / (inv_rate_adv + inv_rate_nat)
        )
        weight["adv_loss"] = 1 - weight["nat_loss"]
        losses.append(weight["adv_loss"] * kl1 + weight["nat_loss"] * kl2)
        weights.append(weight["nat_loss"])
    return losses, weights


def test_mtard_kl_is_the_official_kl_with_the_stated_factor() -> None:
    student, teacher, _, _ = random_logits(11)
    official = torch.mean(
        -F.log_softmax(student, 1) * F.softmax(teacher, 1)
        + torch.log(F.softmax(teacher, 1) + 1e-5) * F.softmax(teacher, 1)
    )
    exact = mtard_kl(student, teacher, kl_reduction="mean", target_log_eps=1e-5)
    assert torch.allclose(exact, official, atol=1e-6)
    official_no_eps = torch.mean(
        -F.log_softmax(student, 1) * F.softmax(teacher, 1)
        + torch.log(F.softmax(teacher, 1)) * F.softmax(teacher, 1)
    )
    assert torch.allclose(mtard_kl(student, teacher), 10 * official_no_eps, atol=1e-6)


def official_ard(outputs, teacher_outputs, basic_outputs, targets, alpha, temp):
    """goldblum/AdversariallyRobustDistillation ``main.py`` ``train()``: ``outputs`` the
    student on x', ``basic_outputs`` on x; ``KL_loss = nn.KLDivLoss()`` (element mean)."""
    kl_loss, xent_loss = nn.KLDivLoss(), nn.CrossEntropyLoss()
    with warnings.catch_warnings():  # PyTorch's note that "mean" is not the batch mean
        warnings.simplefilter("ignore")
        kl = kl_loss(F.log_softmax(outputs / temp, dim=1), F.softmax(teacher_outputs / temp, dim=1))
    return alpha * temp * temp * kl + (1.0 - alpha) * xent_loss(basic_outputs, targets)


def official_rslad(adv_logits, nat_logits, teacher_logits, log_eps=1e-5):
    """zibojia/RSLAD ``resnet18_rslad_cifar10.py``: ``kl_loss(a, b) = -a*b + log(b+1e-5)*b``,
    each term's element mean, weighted 5/6 and 1/6."""

    def kl_loss(a, b):
        return -a * b + torch.log(b + log_eps) * b

    target = F.softmax(teacher_logits.detach(), dim=1)
    kl_1 = torch.mean(kl_loss(F.log_softmax(adv_logits, dim=1), target))
    kl_2 = torch.mean(kl_loss(F.log_softmax(nat_logits, dim=1), target))
    return 5 / 6.0 * kl_1 + 1 / 6.0 * kl_2


@pytest.mark.parametrize(("alpha", "temperature"), [(1.0, 30.0), (0.9, 4.0)])
def test_ard_loss_is_the_official_formula_with_the_stated_factor(
    alpha: float, temperature: float
) -> None:
    student_nat, student_adv, teacher_nat, _ = random_logits(5)
    labels = torch.arange(6) % 10
    official = official_ard(student_adv, teacher_nat, student_nat, labels, alpha, temperature)
    options = {"alpha": alpha, "temperature": temperature}
    exact = ard_loss(student_nat, student_adv, teacher_nat, labels, kl_reduction="mean", **options)
    assert torch.allclose(exact, official, rtol=0, atol=1e-6), (exact, official)
    # the default batch mean: the KL term K = 10 times the code's, the CE term as it is
    ce = (1.0 - alpha) * F.cross_entropy(student_nat, labels)
    default = ard_loss(student_nat, student_adv, teacher_nat, labels, **options)
    assert torch.allclose(default - ce, 10 * (official - ce), rtol=1e-5, atol=1e-6)


def test_rslad_loss_is_the_official_formula_with_the_stated_factor() -> None:
    student_nat, student_adv, teacher_nat, _ = random_logits(6)
    exact = rslad_loss(
        student_nat, student_adv, teacher_nat, kl_reduction="mean", target_log_eps=1e-5
    )
    official = official_rslad(student_adv, student_nat, teacher_nat)
    assert torch.allclose(exact, official, rtol=0, atol=1e-6), (exact, official)
    default = rslad_loss(student_nat, student_adv, teacher_nat)
    no_eps = official_rslad(student_adv, student_nat, teacher_nat, log_eps=0.0)
    assert torch.allclose(default, 10 * no_eps, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["ard", "rslad"])
def test_ard_and_rslad_trainers_take_their_codes_kl_scaling(method: str, tmp_path) -> None:
    """``kl_reduction="mean"`` reaches the loss (a tenth of the default's at alpha 1), joins
    the fingerprint only when set (a default run's checkpoint from before the option
    still resumes), and a resume under the other scaling is refused."""
    x, y, _ = make_prototype_data(n=32)
    adversarial = (x[:8] + 0.05).clamp(0, 1)
    losses = {}
    for reduction in ("batchmean", "mean"):
        trainer = new_trainer(method, Linear(0), kl_reduction=reduction)
        targets = {"teacher_nat": trainer.teacher(x[:8]).detach()}
        losses[reduction] = trainer.compute_loss(Batch(x[:8], y[:8], None), adversarial, targets)[0]
        assert ("kl_reduction" in trainer.config()) == (reduction == "mean")
    assert torch.allclose(losses["mean"], losses["batchmean"] / 10, rtol=1e-5)
    new_trainer(method, Linear(0), checkpoint_dir=tmp_path).fit(x, y, batch_size=16, nb_epochs=1)
    with pytest.raises(ValueError, match="kl_reduction"):
        resumed = new_trainer(
            method, Linear(0), checkpoint_dir=tmp_path, resume=True, kl_reduction="mean"
        )
        resumed.fit(x, y, batch_size=16, nb_epochs=2)
    with pytest.raises(ValueError, match="kl_reduction"):
        new_trainer(method, Linear(0), kl_reduction="sum")


@pytest.mark.parametrize("reproduce", [True, False])
def test_mtard_trainer_follows_the_official_weight_rule(reproduce: bool) -> None:
    """Four steps, the learning rate divided by 10 before the fourth: the trainer's losses
    and weights are the code's (its reduction), or K times its losses with the same
    weights (the defaults: batch mean, which no ratio sees)."""
    x, y, _ = make_prototype_data(n=8)
    student = Linear(2)
    options = {"kl_reduction": "mean", "target_log_eps": 1e-5} if reproduce else {}
    trainer = new_trainer("mtard", student, **options)
    natural = trainer.natural_teacher
    generator = torch.Generator().manual_seed(0)
    batches, ours, our_weights = [], [], []
    for step in range(4):
        if step == 3:
            trainer.optimizer.param_groups[0]["lr"] *= 0.1
        adversarial = (x + 0.1 * torch.rand(x.shape, generator=generator) - 0.05).clamp(0, 1)
        targets = {"natural_teacher_nat": natural(x).detach()}
        loss, terms = trainer.compute_loss(Batch(x, y, None), adversarial, targets)
        ours.append(loss)
        our_weights.append(float(terms["weight_nat"]))
        logits = (student(adversarial), student(x), trainer.teacher(adversarial), natural(x))
        batches.append(logits)
    official, weights = official_mtard_run(batches, [1, 1, 1, 0.1])
    assert our_weights == pytest.approx(weights, abs=1e-4 if not reproduce else 1e-7)
    factor = 1.0 if reproduce else 10.0
    for mine, theirs in zip(ours, official, strict=True):
        assert torch.allclose(mine, factor * theirs, atol=1e-6 if reproduce else 2e-3)


def test_mtard_weight_rate_is_capped_and_reads_the_lr_of_the_runs_first_step() -> None:
    """The weight's rate was ``0.025 * lr / lr at construction``: a warm-up schedule
    (``OneCycleLR``'s lr rises 25x by default) took it above 1 and ``w`` out of [0, 1] (a
    negative KL weight), and a scheduler made after the trainer changed it 25x. Now the
    reference is the lr at the run's first step (a scheduler's ``initial_lr``) and the rate
    never exceeds ``weight_lr``, as in the code: here the code's rule at factors 1, 1, 1,
    0.5 for lrs 1x, 10x, 40x, 0.5x the first."""
    x, y, _ = make_prototype_data(n=8)
    student = Linear(2)
    trainer = new_trainer("mtard", student)  # optimizer lr 0.05 at construction
    group = trainer.optimizer.param_groups[0]
    group["initial_lr"] = group["lr"] = 0.001  # a scheduler made after the trainer
    natural = trainer.natural_teacher
    generator = torch.Generator().manual_seed(0)
    batches, our_weights = [], []
    for lr in (0.001, 0.01, 0.04, 0.0005):
        group["lr"] = lr
        adversarial = (x + 0.1 * torch.rand(x.shape, generator=generator) - 0.05).clamp(0, 1)
        targets = {"natural_teacher_nat": natural(x).detach()}
        _, terms = trainer.compute_loss(Batch(x, y, None), adversarial, targets)
        our_weights.append(float(terms["weight_nat"]))
        batches.append((student(adversarial), student(x), trainer.teacher(adversarial), natural(x)))
    _, weights = official_mtard_run(batches, [1, 1, 1, 0.5])
    assert our_weights == pytest.approx(weights, abs=1e-4)
    assert all(0.0 <= w <= 1.0 for w in our_weights)
    assert trainer.method_state()["initial_lr"] == 0.001  # saved with the run for resume


def test_mtard_loss_weights_the_two_terms() -> None:
    s_nat, s_adv, t_nat, t_adv = random_logits(3)
    loss, adversarial, natural = mtard_loss(s_nat, s_adv, t_nat, t_adv, weight_nat=0.3)
    assert torch.allclose(loss, 0.7 * adversarial + 0.3 * natural)


# ---------------------------------------------------------------- invariants
