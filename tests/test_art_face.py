"""dard_plugin.art.DicePGD inside real ART workflows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.defences.trainer import AdversarialTrainer
from art.estimators.classification import PyTorchClassifier
from conftest import TinyCNN, assert_state_equal, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin import dpgd
from dard_plugin.art import DicePGD

EPS = 8 / 255


def classifier_for(model: nn.Module, **kwargs) -> PyTorchClassifier:
    options = {"clip_values": (0.0, 1.0)}
    options.update(kwargs)
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        input_shape=(1, 8, 8),
        nb_classes=10,
        **options,
    )


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = make_prototype_data(n=40)
    return images.numpy(), labels.numpy()


def test_generate_equals_the_core(prototype_model, data) -> None:
    x, y = data
    attack = DicePGD(
        classifier_for(prototype_model),
        eps=0.1,
        eps_step=0.02,
        max_iter=5,
        batch_size=16,
        verbose=False,
    )
    x_before = x.copy()
    x_adv = attack.generate(x, y)
    assert isinstance(x_adv, np.ndarray) and x_adv.dtype == x.dtype and x_adv.shape == x.shape
    assert np.array_equal(x, x_before)
    # batch_size 16 over 40 samples: the core on the same three batches
    expected = torch.cat(
        [
            dpgd(
                prototype_model,
                torch.from_numpy(x[i : i + 16]),
                torch.from_numpy(y[i : i + 16]),
                eps=0.1,
                alpha=0.02,
                steps=5,
            )
            for i in range(0, 40, 16)
        ]
    )
    assert np.array_equal(x_adv, expected.numpy())


def test_labels_one_hot_indices_or_predictions(prototype_model, data) -> None:
    x, y = data
    attack = DicePGD(classifier_for(prototype_model), verbose=False)
    from_indices = attack.generate(x, y)
    from_one_hot = attack.generate(x, np.eye(10, dtype=np.float32)[y])
    assert np.array_equal(from_indices, from_one_hot)
    predictions = classifier_for(prototype_model).predict(x).argmax(1)
    assert np.array_equal(attack.generate(x), attack.generate(x, predictions))


def test_preprocessing_and_clip_values_honoured(data) -> None:
    x, y = data
    torch.manual_seed(0)
    raw = TinyCNN().eval()
    mean, std = 0.4, 0.2
    classifier = classifier_for(raw, preprocessing=(mean, std))
    x_adv = DicePGD(
        classifier, eps=0.05, eps_step=0.01, max_iter=4, batch_size=64, verbose=False
    ).generate(x, y)

    class Normalized(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return raw((t - mean) / std)

    expected = dpgd(
        Normalized(), torch.from_numpy(x), torch.from_numpy(y), eps=0.05, alpha=0.01, steps=4
    )
    assert np.allclose(x_adv, expected.numpy(), atol=1e-6)

    # clip values other than [0, 1]: inputs and outputs in [-1, 1]
    shifted = classifier_for(raw, clip_values=(-1.0, 1.0))
    x_shifted = 2 * x - 1
    x_adv = DicePGD(shifted, eps=0.5, eps_step=0.2, max_iter=5, verbose=False).generate(
        x_shifted, y
    )
    assert x_adv.min() >= -1 and x_adv.max() <= 1 and x_adv.min() < 0
    assert np.abs(x_adv - x_shifted).max() <= 0.5 + 1e-6


def test_estimator_state_untouched(tiny_cnn, data) -> None:
    x, y = data
    tiny_cnn.train()
    snapshot = state_snapshot(tiny_cnn)
    attack = DicePGD(classifier_for(tiny_cnn), verbose=False)
    x_adv = attack.generate(x, y)
    assert tiny_cnn.training
    assert_state_equal(tiny_cnn, snapshot)
    assert all(p.grad is None for p in tiny_cnn.parameters())  # no parameter gradients
    assert np.abs(x_adv - x).max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_targeted_and_random_restarts(prototype_model, data) -> None:
    x, y = data
    classifier = classifier_for(prototype_model)
    targets = (y + 2) % 10
    attack = DicePGD(classifier, eps=0.3, eps_step=0.05, max_iter=10, targeted=True, verbose=False)
    assert attack.targeted
    x_adv = attack.generate(x, targets)
    assert (classifier.predict(x_adv).argmax(1) == targets).mean() > 0.9
    with pytest.raises(ValueError, match="target labels"):
        attack.generate(x)

    def restarts(seed: int) -> np.ndarray:
        return DicePGD(
            classifier,
            eps=0.02,
            eps_step=0.01,
            max_iter=2,
            num_random_init=3,
            verbose=False,
            generator=torch.Generator().manual_seed(seed),
        ).generate(x, y)

    assert np.array_equal(restarts(0), restarts(0))
    assert not np.array_equal(restarts(0), restarts(1))
    assert np.abs(restarts(0) - x).max() <= 0.02 + 1e-6


def test_lowers_accuracy_like_art_pgd(prototype_model, data) -> None:
    x, y = data
    classifier = classifier_for(prototype_model)
    dice = DicePGD(classifier, eps=0.25, eps_step=0.05, max_iter=10, verbose=False)
    pgd = ProjectedGradientDescentPyTorch(
        classifier, eps=0.25, eps_step=0.05, max_iter=10, num_random_init=0, verbose=False
    )
    clean = (classifier.predict(x).argmax(1) == y).mean()
    dice_acc = (classifier.predict(dice.generate(x, y)).argmax(1) == y).mean()
    pgd_acc = (classifier.predict(pgd.generate(x, y)).argmax(1) == y).mean()
    assert clean == 1.0
    assert dice_acc < 0.5 and pgd_acc < 0.5


def test_inside_art_adversarial_trainer(data) -> None:
    x, y = data
    torch.manual_seed(0)
    model = TinyCNN()
    classifier = classifier_for(model)
    attack = DicePGD(classifier, eps=0.1, eps_step=0.02, max_iter=3, verbose=True)
    before = state_snapshot(model)
    trainer = AdversarialTrainer(classifier, attacks=attack, ratio=0.5)
    trainer.fit(x, np.eye(10, dtype=np.float32)[y], nb_epochs=2, batch_size=16)
    assert attack.verbose is False  # ART's trainer silences its attacks
    changed = [k for k, v in state_snapshot(model).items() if not torch.equal(v, before[k])]
    assert "head.weight" in changed


def test_progress_bar_behind_verbose(prototype_model, data, capsys) -> None:
    x, y = data
    DicePGD(classifier_for(prototype_model), verbose=True).generate(x, y)
    assert "DicePGD" in capsys.readouterr().err
    DicePGD(classifier_for(prototype_model), verbose=False).generate(x, y)
    assert "DicePGD" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": -0.1}, ValueError, "eps"),
        ({"eps_step": 0.0}, ValueError, "eps_step"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"num_random_init": -1}, ValueError, "num_random_init"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"reduction": "mean"}, ValueError, "reduction"),
        ({"targeted": "no"}, TypeError, "targeted"),
        ({"verbose": None}, TypeError, "verbose"),
    ],
)
def test_bad_parameters(prototype_model, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        DicePGD(classifier_for(prototype_model), **kwargs)
    attack = DicePGD(classifier_for(prototype_model))
    with pytest.raises(error, match=match):
        attack.set_params(**kwargs)


def test_bad_inputs(prototype_model, data) -> None:
    x, y = data
    attack = DicePGD(classifier_for(prototype_model), verbose=False)
    with pytest.raises(ValueError, match="images must lie in"):
        attack.generate(x + 2, y)
    with pytest.raises(ValueError, match="y must have shape"):
        attack.generate(x, y[:-1])
    with pytest.raises(ValueError, match="labels must be class indices"):
        attack.generate(x, np.full_like(y, 12))
    with pytest.raises(ValueError, match="at least one example"):
        attack.generate(x[:0], y[:0])
    with pytest.raises(TypeError, match="numpy array"):
        attack.generate(torch.from_numpy(x), y)
    per_feature = classifier_for(
        prototype_model, clip_values=(np.zeros((1, 8, 8)), np.ones((1, 8, 8)))
    )
    with pytest.raises(ValueError, match="clip_values must be scalars"):
        DicePGD(per_feature)
