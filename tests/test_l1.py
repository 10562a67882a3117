"""The L1 threat model on the one loop (issue 25): ART 1.20.1's L1 geometry in the core
(``pgd_l1``, ``dpgd_l1``) and in ART's face (``DicePGD(norm=1)``), checked against ART's
own functions on the same gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.estimators.classification import PyTorchClassifier
from art.utils import projection as art_projection
from art.utils import random_sphere
from conftest import TinyCNN, assert_state_equal, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin.art import DicePGD
from dard_plugin.attacks import cross_entropy_objective, dpgd_l1, pgd_l1
from dard_plugin.attacks._geometry import ascent_direction, project, random_in_ball

RELATIVE = 1e-6  # float32 rounding of the L1 norm of a rescaled perturbation


def l1(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).abs().sum(dim=1)


@pytest.fixture
def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    images, labels, _ = make_prototype_data(n=24)
    torch.manual_seed(0)
    return TinyCNN().eval(), images, labels


def classifier_for(model: nn.Module, clip_values=(0.0, 1.0)) -> PyTorchClassifier:
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=clip_values,
    )


# ------------------------------------------------------------------------ invariants
@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("targeted", [False, True])
def test_l1_ball_and_bounds_hold(setup, random_start: bool, targeted: bool) -> None:
    model, images, labels = setup
    eps = torch.linspace(0.0, 3.0, images.shape[0])
    before = images.clone()
    snapshot = state_snapshot(model)
    for attack in (pgd_l1, dpgd_l1):
        kwargs = {"objective": cross_entropy_objective} if attack is pgd_l1 else {}
        adversarial = attack(
            model,
            images,
            labels,
            eps=eps,
            alpha=0.4,
            steps=8,
            random_start=random_start,
            targeted=targeted,
            generator=torch.Generator().manual_seed(0),
            **kwargs,
        )
        assert torch.equal(images, before)
        assert bool((adversarial >= 0).all() & (adversarial <= 1).all())
        assert bool((l1(adversarial - images) <= eps * (1 + RELATIVE)).all())
        assert torch.equal(adversarial[0], images[0])  # eps 0: nothing moves
        assert not torch.equal(adversarial, images)
    assert_state_equal(model, snapshot)


def test_random_start_is_uniform_in_the_l1_ball() -> None:
    like = torch.zeros(20000, 3)
    noise = random_in_ball(like, 2.0, "L1", torch.Generator().manual_seed(0))
    norms = l1(noise)
    assert bool((norms <= 2.0).all())
    # uniform in a d-ball: P(||x|| <= r) = (r / eps)^d, here d = 3
    for r in (1.0, 1.5):
        assert abs(float((norms <= r).float().mean()) - (r / 2.0) ** 3) < 0.01
    # symmetric, every orthant equally likely
    assert abs(float((noise > 0).float().mean()) - 0.5) < 0.01
    # the same law as ART's random_sphere(norm=1): compare the radial distributions
    np.random.seed(0)
    art_norms = np.abs(random_sphere(20000, 3, 2.0, 1)).sum(1)
    assert abs(float(norms.mean()) - float(art_norms.mean())) < 0.02


# ------------------------------------------------------------------------ agreement with ART
def test_step_and_projection_agree_with_arts_functions(setup) -> None:
    model, images, labels = setup
    classifier = classifier_for(model)
    art_pgd = ProjectedGradientDescentPyTorch(
        classifier, norm=1, eps=1.5, eps_step=0.3, max_iter=1, verbose=False
    )
    onehot = torch.nn.functional.one_hot(labels, 10).float()
    # the ascent direction: ART's L1 perturbation of the same loss gradient
    gradient = classifier.loss_gradient(images, onehot)
    theirs = art_pgd._compute_perturbation_pytorch(images, onehot, None, torch.zeros_like(images))
    ours = ascent_direction(gradient, "L1")
    assert torch.equal(ours, theirs)
    assert bool((l1(ours) == 1).all())
    # the projection: ART's step-and-clip, then its L1 rescaling (torch and numpy forms)
    start = images + 0.2 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    start = start.clamp(0, 1)
    stepped = start + 0.3 * ours
    clipped = art_pgd._apply_perturbation_pytorch(start, ours, 0.3)
    theirs_torch = images + ProjectedGradientDescentPyTorch._projection(clipped - images, 1.5, 1)
    theirs_numpy = images.numpy() + art_projection((clipped - images).numpy(), 1.5, 1)
    ours = project(stepped, images, 1.5, (0.0, 1.0), "L1")
    torch.testing.assert_close(ours, theirs_torch, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours.numpy(), theirs_numpy, rtol=0, atol=1e-7)
    assert bool((l1(ours - images) <= 1.5 * (1 + RELATIVE)).all())


def test_the_loop_with_cross_entropy_is_arts_l1_pgd(setup) -> None:
    model, images, labels = setup
    classifier = classifier_for(model)
    theirs = ProjectedGradientDescentPyTorch(
        classifier, norm=1, eps=1.0, eps_step=0.1, max_iter=12, batch_size=24, verbose=False
    ).generate(images.numpy(), labels.numpy())
    ours = pgd_l1(model, images, labels, cross_entropy_objective, eps=1.0, alpha=0.1, steps=12)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-6)
    assert not np.array_equal(theirs, images.numpy())


def test_dicepgd_norm_1_is_the_core(setup) -> None:
    model, images, labels = setup
    x, y = images.numpy(), labels.numpy()
    attack = DicePGD(
        classifier_for(model), norm=1, eps=1.5, eps_step=0.2, max_iter=6, verbose=False
    )
    x_adv = attack.generate(x, y)
    expected = dpgd_l1(model, images, labels, eps=1.5, alpha=0.2, steps=6, reduction="sample")
    assert np.array_equal(x_adv, expected.numpy())
    assert (np.abs(x_adv - x).reshape(24, -1).sum(1) <= 1.5 * (1 + RELATIVE)).all()
    # ART's random initialisation (random_sphere, norm 1) and per-sample budgets
    np.random.seed(0)
    per_sample = np.linspace(0.0, 2.0, 24).reshape(-1, 1, 1, 1).astype(np.float32)
    attack = DicePGD(
        classifier_for(model),
        norm=1,
        eps=per_sample,
        eps_step=per_sample / 5 + 1e-3,
        num_random_init=2,
        random_eps=True,
        verbose=False,
    )
    x_adv = attack.generate(x, y)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (np.abs(x_adv - x).reshape(24, -1).sum(1) <= per_sample.ravel() * 1.000001).all()
    assert np.array_equal(x_adv[0], x[0])
    # a weighted L1 ball is refused, as in ART
    per_feature = np.linspace(0.1, 0.5, 64, dtype=np.float32).reshape(1, 8, 8)
    attack = DicePGD(classifier_for(model), norm=1, eps=per_feature, eps_step=per_feature / 4)
    with pytest.raises(ValueError, match="one value per sample"):
        attack.generate(x, y)


# ------------------------------------------------------------------------ closed form
class Margin(nn.Module):
    """Two classes, logits ``[0, w . x]``: every loss gradient is a multiple of ``w``."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.flatten(1) @ self.weights
        return torch.stack([torch.zeros_like(score), score], dim=1)


@pytest.mark.parametrize("attack", ["pgd", "dpgd"])
def test_closed_form_one_feature_moves_to_the_budget_or_the_bound(attack: str) -> None:
    # the largest |w| is feature 2, with a negative weight: raising x_2 lowers the class-1
    # score, so an attack on class-1 samples moves x_2 up by min(steps * alpha, eps), or
    # to the upper bound
    weights = torch.tensor([2.5, 2.5, -3.0, 2.0])  # both samples start as class 1
    model = Margin(weights)
    images = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.9, 0.5]])
    labels = torch.tensor([1, 1])
    run = {
        "pgd": lambda **kw: pgd_l1(model, images, labels, cross_entropy_objective, **kw),
        "dpgd": lambda **kw: dpgd_l1(model, images, labels, reduction="sample", **kw),
    }[attack]
    # 2 steps of 0.1: below the budget
    adversarial = run(eps=0.25, alpha=0.1, steps=2)
    expected = images.clone()
    expected[0, 2] = 0.5 + 0.2
    expected[1, 2] = 1.0  # 0.9 + 0.2 clipped at the upper bound
    torch.testing.assert_close(adversarial, expected, rtol=0, atol=1e-6)
    # 5 steps of 0.1: the third crosses the budget and is rescaled back onto it
    adversarial = run(eps=0.25, alpha=0.1, steps=5)
    expected[0, 2] = 0.5 + 0.25
    torch.testing.assert_close(adversarial, expected, rtol=0, atol=1e-6)
