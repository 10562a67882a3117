"""The L2 threat model (issue 13): the L2 loop, DPGD-L2 in the core, torchattacks' DPGDL2
and ART's DicePGD(norm=2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchattacks
from art.estimators.classification import PyTorchClassifier
from conftest import TinyCNN, assert_state_equal, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin.art import DicePGD
from dard_plugin.attacks import (
    DPGDL2,
    cross_entropy_objective,
    dpgd_l2,
    dpgd_objective,
    pgd_l2,
)


def l2(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


@pytest.fixture
def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    images, labels, _ = make_prototype_data(n=24)
    torch.manual_seed(0)
    return TinyCNN().eval(), images, labels


@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("targeted", [False, True])
def test_l2_ball_and_bounds_invariants(setup, random_start: bool, targeted: bool) -> None:
    model, images, labels = setup
    eps = torch.linspace(0.0, 1.5, images.shape[0])
    before = images.clone()
    for attack in (
        lambda: pgd_l2(
            model,
            images,
            labels,
            cross_entropy_objective,
            eps=eps,
            alpha=0.3,
            steps=5,
            random_start=random_start,
            targeted=targeted,
            generator=torch.Generator().manual_seed(0),
        ),
        lambda: dpgd_l2(
            model,
            images,
            labels,
            eps=eps,
            steps=5,
            random_start=random_start,
            targeted=targeted,
            generator=torch.Generator().manual_seed(0),
        ),
    ):
        adversarial = attack()
        assert torch.equal(images, before)
        assert (l2(adversarial - images) <= eps + 1e-5).all()
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        assert l2(adversarial - images)[0] == 0 and (l2(adversarial - images)[1:] > 0).all()


def test_random_start_is_uniform_in_the_ball() -> None:
    # uniform in the d-ball: radius / eps ~ U^(1/d), mean d / (d + 1); directions symmetric
    images = torch.full((2000, 1, 4, 4), 0.5)
    labels = torch.zeros(2000, dtype=torch.long)
    start = pgd_l2(
        lambda x: x.flatten(1)[:, :2] * 0.0,  # zero gradient: the step keeps the start
        images,
        labels,
        cross_entropy_objective,
        eps=0.3,
        alpha=0.1,
        steps=1,
        random_start=True,
        bounds=None,
        generator=torch.Generator().manual_seed(0),
    )
    radius = l2(start - images) / 0.3
    assert radius.max() <= 1 + 1e-6
    assert radius.mean().item() == pytest.approx(16 / 17, abs=0.01)
    assert (start - images).mean().abs() < 0.01


@pytest.mark.parametrize("targeted", [False, True])
def test_l2_loop_pgd_equals_torchattacks_pgdl2(setup, targeted: bool) -> None:
    # where the definitions coincide (no random start: torchattacks draws its own, not
    # uniform in the ball), the L2 loop with cross-entropy is torchattacks' PGDL2
    model, images, labels = setup
    attack = torchattacks.PGDL2(model, eps=0.8, alpha=0.2, steps=6, random_start=False)
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    expected = attack(images, labels)
    got = pgd_l2(
        model,
        images,
        labels,
        cross_entropy_objective,
        eps=0.8,
        alpha=0.2,
        steps=6,
        targeted=targeted,
    )
    assert torch.allclose(got, expected, atol=1e-6)


def test_dpgd_l2_is_the_l2_loop_with_the_dice_objective(setup) -> None:
    # DPGD-L2 differs from the L2 loop's PGD only by its objective: swapping Dice for
    # cross-entropy gives the loop's PGD (checked against torchattacks above)
    model, images, labels = setup
    for targeted in (False, True):
        got = dpgd_l2(model, images, labels, eps=0.8, alpha=0.2, steps=6, targeted=targeted)
        loop = pgd_l2(
            model,
            images,
            labels,
            dpgd_objective(targeted=targeted),
            eps=0.8,
            alpha=0.2,
            steps=6,
            targeted=targeted,
        )
        assert torch.equal(got, loop)
    default = dpgd_l2(model, images, labels)
    assert torch.equal(default, dpgd_l2(model, images, labels, eps=0.5, alpha=0.125))


def test_dpgd_l2_lowers_accuracy_and_leaves_the_model_as_found(tiny_cnn) -> None:
    images, labels, _ = make_prototype_data(n=32)
    with torch.no_grad():
        labels = tiny_cnn.eval()(images).argmax(1)
    tiny_cnn.train()
    snapshot = state_snapshot(tiny_cnn)
    adversarial = dpgd_l2(tiny_cnn, images, labels, eps=1.0, steps=10)
    assert tiny_cnn.training
    assert_state_equal(tiny_cnn, snapshot)
    with torch.no_grad():
        accuracy = (tiny_cnn.eval()(adversarial).argmax(1) == labels).float().mean()
    assert accuracy < 0.5


def test_per_pixel_l2_budget_message_states_the_accepted_shapes(setup) -> None:
    model, images, labels = setup
    with pytest.raises(ValueError) as error:
        dpgd_l2(model, images, labels, eps=torch.full((24, 1, 8, 8), 0.5))
    message = str(error.value)
    assert "None" not in message
    assert "a number or one value per sample, shape (batch_size,)" in message
    assert "got shape (24, 1, 8, 8)" in message


def test_l2_budget_plausibility(setup) -> None:
    model, images, labels = setup  # 64 features: the box diagonal is 8
    with pytest.raises(ValueError, match="covers the whole input range"):
        dpgd_l2(model, images, labels, eps=8.5)
    with pytest.warns(UserWarning, match="equals the whole input range"):
        dpgd_l2(model, images, labels, eps=8.0, steps=1)
    with pytest.warns(UserWarning, match="L2"):
        dpgd_l2(model, images, labels, eps=3.0, steps=1)
    with pytest.raises(ValueError, match="eps"):  # a per-feature L2 budget means nothing
        pgd_l2(
            model,
            images,
            labels,
            cross_entropy_objective,
            eps=torch.full((1, 1, 8, 8), 0.5),
            alpha=0.1,
            steps=1,
        )


# --------------------------------------------------------------- torchattacks face
def test_torchattacks_dpgdl2_equals_the_core_and_works_in_torchattacks(setup, tmp_path) -> None:
    model, images, labels = setup
    attack = DPGDL2(model, eps=0.8, steps=5)
    assert isinstance(attack, torchattacks.attack.Attack) and attack.alpha == 0.2
    expected = dpgd_l2(model, images, labels, eps=0.8, alpha=0.2, steps=5, reduction="sample")
    assert torch.equal(attack(images, labels), expected)
    # MultiAttack beside PGDL2: never weaker than either
    pgdl2 = torchattacks.PGDL2(model, eps=0.8, alpha=0.2, steps=5, random_start=False)
    multi = torchattacks.MultiAttack([attack, pgdl2])(images, labels)
    assert (l2(multi - images) <= 0.8 + 1e-5).all()
    singles = [attack(images, labels), pgdl2(images, labels)]
    with torch.no_grad():
        multi_correct = model(multi).argmax(1) == labels
        for single in singles:
            assert not (multi_correct & (model(single).argmax(1) != labels)).any()
    # targeted modes
    attack.set_mode_targeted_by_label(quiet=True)
    targeted = attack(images, (labels + 1) % 10)
    assert torch.equal(
        targeted,
        dpgd_l2(
            model, images, (labels + 1) % 10, eps=0.8, steps=5, reduction="sample", targeted=True
        ),
    )
    attack.set_mode_targeted_random(quiet=True)
    assert (l2(attack(images, labels) - images) <= 0.8 + 1e-5).all()
    attack.set_mode_default()


def test_torchattacks_dpgdl2_with_normalization() -> None:
    mean, std = [0.4], [0.2]
    images, labels, _ = make_prototype_data(n=8)
    torch.manual_seed(0)
    raw = TinyCNN().eval()
    attack = DPGDL2(raw, eps=0.5, steps=3)
    attack.set_normalization_used(mean=mean, std=std)
    adversarial = attack((images - 0.4) / 0.2, labels) * 0.2 + 0.4
    assert (l2(adversarial - images) <= 0.5 + 1e-5).all()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"eps": -1.0}, ValueError),
        ({"alpha": 0.0}, ValueError),
        ({"steps": 0}, ValueError),
        ({"reduction": "x"}, ValueError),
        ({"random_start": 1}, TypeError),
    ],
)
def test_torchattacks_dpgdl2_bad_arguments(setup, kwargs, error) -> None:
    with pytest.raises(error):
        DPGDL2(setup[0], **kwargs)


# --------------------------------------------------------------- ART face
def classifier_for(model: nn.Module) -> PyTorchClassifier:
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )


def test_art_norm_2_equals_the_core(setup) -> None:
    model, images, labels = setup
    attack = DicePGD(
        classifier_for(model),
        norm=2,
        eps=0.8,
        eps_step=0.2,
        max_iter=5,
        batch_size=8,
        verbose=False,
    )
    x_adv = attack.generate(images.numpy(), labels.numpy())
    expected = torch.cat(
        [
            dpgd_l2(
                model,
                images[i : i + 8],
                labels[i : i + 8],
                eps=0.8,
                alpha=0.2,
                steps=5,
                reduction="sample",
            )
            for i in range(0, 24, 8)
        ]
    )
    assert np.array_equal(x_adv, expected.numpy())


def test_art_norm_2_random_init_and_per_sample_eps(setup) -> None:
    model, images, labels = setup
    x, y = images.numpy(), labels.numpy()
    classifier = classifier_for(model)

    def run(seed: int, **kwargs) -> np.ndarray:
        np.random.seed(seed)
        return DicePGD(
            classifier, norm=2, max_iter=2, num_random_init=1, verbose=False, **kwargs
        ).generate(x, y)

    options = {"eps": 0.6, "eps_step": 0.1}
    assert np.array_equal(run(0, **options), run(0, **options))
    assert not np.array_equal(run(0, **options), run(1, **options))
    assert (np.linalg.norm((run(0, **options) - x).reshape(24, -1), axis=1) <= 0.6 + 1e-5).all()
    per_sample = np.linspace(0.0, 1.0, 24).reshape(-1, 1, 1, 1)
    x_adv = run(0, eps=per_sample, eps_step=per_sample / 4 + 1e-3)
    norms = np.linalg.norm((x_adv - x).reshape(24, -1), axis=1)
    assert (norms <= per_sample.ravel() + 1e-5).all() and norms[0] == 0
    per_feature = np.linspace(0.1, 0.5, 64, dtype=np.float32).reshape(1, 8, 8)
    attack = DicePGD(classifier, norm=2, eps=per_feature, eps_step=per_feature / 4, verbose=False)
    with pytest.raises(ValueError, match="one value per sample"):
        attack.generate(x, y)


def test_art_norm_validation_and_plausibility(setup) -> None:
    classifier = classifier_for(setup[0])
    assert DicePGD(classifier, norm=2, eps=0.5, eps_step=0.1).norm == 2
    with pytest.raises(ValueError, match="covers the whole input range"):
        DicePGD(classifier, norm=2, eps=8.5, eps_step=1.0)
    with pytest.warns(UserWarning, match="equals the whole input range"):
        DicePGD(classifier, norm=2, eps=8.0, eps_step=1.0)
