"""dard_plugin.DPGD inside real torchattacks workflows."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from conftest import TinyCNN, assert_state_equal, make_prototype_data, state_snapshot
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dard_plugin
from dard_plugin import DPGD, dpgd

EPS = 8 / 255


class ModeRecorder(nn.Module):
    """Records the training flag it was called with."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training)
        return self.inner(x)


def test_is_a_torchattacks_attack(prototype_model) -> None:
    attack = DPGD(prototype_model)
    assert isinstance(attack, torchattacks.attack.Attack)
    assert attack.supported_mode == ["default", "targeted"]
    assert "DPGD(" in repr(attack) and "reduction=sample" in repr(attack)
    assert dard_plugin.attacks.DPGD is DPGD


@pytest.mark.parametrize("reduction", ["batch", "sample"])
def test_equals_the_core(prototype_data, prototype_model, reduction: str) -> None:
    images, labels, _ = prototype_data
    attack = DPGD(prototype_model, eps=0.1, alpha=0.02, steps=5, reduction=reduction)
    expected = dpgd(
        prototype_model, images, labels, eps=0.1, alpha=0.02, steps=5, reduction=reduction
    )
    assert torch.equal(attack(images, labels), expected)


def test_invariants_and_eval_mode_during_attack(tiny_cnn) -> None:
    images, labels, _ = make_prototype_data(n=16)
    model = ModeRecorder(tiny_cnn).train()
    snapshot = state_snapshot(model)
    before = images.clone()
    attack = DPGD(model, random_start=True, generator=torch.Generator().manual_seed(3))
    adversarial = attack(images, labels)
    assert torch.equal(images, before)
    assert (adversarial - images).abs().max() <= EPS + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert model.seen and not any(model.seen)  # torchattacks runs attacks in eval mode
    assert model.training  # ... and restores the mode it found
    assert_state_equal(model, snapshot)
    assert all(p.grad is None for p in model.parameters())
    again = DPGD(model, random_start=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again(images, labels), adversarial)


def test_set_normalization_used() -> None:
    # torchattacks' convention: the model takes normalized inputs and the user passes
    # normalized images; the attack works in [0, 1] and returns normalized images.
    mean, std = [0.4], [0.2]
    images, labels, _ = make_prototype_data(n=16)
    torch.manual_seed(0)
    raw = TinyCNN().eval()
    attack = DPGD(raw, eps=0.05, alpha=0.01, steps=4, reduction="batch")
    attack.set_normalization_used(mean=mean, std=std)
    normalized = (images - mean[0]) / std[0]
    adversarial_normalized = attack(normalized, labels)

    inside = nn.Sequential(_Normalize(mean[0], std[0]), raw).eval()
    expected = dpgd(inside, images, labels, eps=0.05, alpha=0.01, steps=4)
    assert torch.allclose(adversarial_normalized * std[0] + mean[0], expected, atol=1e-6)


class _Normalize(nn.Module):
    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def test_targeted_modes(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    attack = DPGD(prototype_model, eps=0.3, alpha=0.05, steps=10)
    attack.set_mode_targeted_by_label(quiet=True)
    targets = (labels + 1) % 10
    adversarial = attack(images, targets)
    with torch.no_grad():
        assert (prototype_model(adversarial).argmax(1) == targets).float().mean() > 0.9

    for set_mode in (attack.set_mode_targeted_random, attack.set_mode_targeted_least_likely):
        set_mode(quiet=True)
        adversarial = attack(images, labels)
        assert (adversarial - images).abs().max() <= 0.3 + 1e-6
        with torch.no_grad():
            assert (prototype_model(adversarial).argmax(1) != labels).float().mean() > 0.9
    attack.set_mode_default()
    assert not attack.targeted


def test_multiattack_and_save(tmp_path, prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    dice = DPGD(prototype_model, eps=0.15, alpha=0.02, steps=10)
    pgd = torchattacks.PGD(prototype_model, eps=0.15, alpha=0.02, steps=10, random_start=False)
    multi = torchattacks.MultiAttack([dice, pgd])
    adversarial = multi(images, labels)
    per_attack = {"dice": dice(images, labels), "pgd": pgd(images, labels)}
    with torch.no_grad():  # torchattacks' own attacks fail under no_grad
        correct = {name: prototype_model(a).argmax(1) == labels for name, a in per_attack.items()}
        multi_correct = prototype_model(adversarial).argmax(1) == labels
    # MultiAttack keeps, per sample, the first attack that succeeds: never weaker.
    assert not (multi_correct & ~correct["dice"]).any()
    assert not (multi_correct & ~correct["pgd"]).any()

    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    path = tmp_path / "adv.pt"
    dice.save(loader, save_path=str(path), verbose=False)
    saved = torch.load(path, weights_only=True)
    assert saved["adv_inputs"].shape == images.shape
    assert torch.equal(saved["adv_inputs"], dice(images, labels))


def test_no_grad_context(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    attack = DPGD(prototype_model)
    expected = attack(images, labels)
    with torch.no_grad():
        assert torch.equal(attack(images, labels), expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": -1.0}, ValueError, "eps"),
        ({"alpha": 0}, ValueError, "alpha"),
        ({"steps": 0}, ValueError, "steps"),
        ({"reduction": "sum"}, ValueError, "reduction"),
        ({"random_start": 1}, TypeError, "random_start"),
    ],
)
def test_bad_arguments(prototype_model, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        DPGD(prototype_model, **kwargs)


def test_bad_images(prototype_model) -> None:
    attack = DPGD(prototype_model)
    with pytest.raises(ValueError, match="images must lie in"):
        attack(torch.rand(2, 1, 8, 8) * 3, torch.tensor([0, 1]))


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


def test_normalization_round_off_does_not_break_a_batch() -> None:
    # Issue 14: torchattacks' own inverse normalization, with CIFAR-10's statistics, returns
    # black pixels at -3e-8; the range check refused the batch (seen failing before the fix)
    torch.manual_seed(0)
    raw = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10)).eval()
    images = torch.linspace(0, 1, 256).reshape(1, 1, 16, 16).expand(4, 3, 16, 16).contiguous()
    labels = torch.arange(4)
    mean = torch.tensor(CIFAR10_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).reshape(1, 3, 1, 1)
    attack = DPGD(raw, steps=2)
    attack.set_normalization_used(mean=list(CIFAR10_MEAN), std=list(CIFAR10_STD))
    normalized = (images - mean) / std
    assert (attack.inverse_normalize(normalized) < 0).any()  # the round-off is real
    adversarial = attack(normalized, labels) * std + mean
    assert adversarial.min() >= -1e-6 and adversarial.max() <= 1 + 1e-6
    assert (adversarial - images).abs().max() <= EPS + 1e-6


def test_implausible_eps_refused_at_construction(prototype_model) -> None:
    with pytest.raises(ValueError, match=r"eps=8 covers the whole input range.*8/255"):
        DPGD(prototype_model, eps=8)
    with pytest.warns(UserWarning, match="eps=0.5"):
        DPGD(prototype_model, eps=0.5)


def test_model_in_train_mode_left_exactly_as_found(tiny_cnn) -> None:
    images, labels, _ = make_prototype_data(n=8)
    tiny_cnn.train()
    snapshot = state_snapshot(tiny_cnn)
    DPGD(tiny_cnn, steps=3)(images, labels)
    assert tiny_cnn.training and all(m.training for m in tiny_cnn.modules())
    assert_state_equal(tiny_cnn, snapshot)


def test_set_model_training_mode_as_torchattacks_pgd() -> None:
    """torchattacks' ``set_model_training_mode(model_training, batchnorm_training,
    dropout_training)``: the flags the model, its BatchNorm and its dropout have inside the
    attack's forwards are torchattacks.PGD's, for each setting (only ``False`` was tested)."""

    class Recording(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.inner = TinyCNN()
            self.seen: set[tuple[bool, bool, bool]] = set()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch_norm, dropout = self.inner.features[1], self.inner.features[3]
            self.seen.add((self.training, batch_norm.training, dropout.training))
            return self.inner(x)

    x, y, _ = make_prototype_data(n=8)
    for settings in (
        {"model_training": True},
        {"model_training": True, "batchnorm_training": True, "dropout_training": True},
        {"model_training": False},
    ):
        seen = {}
        for name, make in (
            (
                "torchattacks.PGD",
                lambda m: torchattacks.PGD(m, eps=8 / 255, alpha=2 / 255, steps=2),
            ),
            ("DPGD", lambda m: DPGD(m, steps=2)),
            ("DPGDL2", lambda m: dard_plugin.DPGDL2(m, steps=2)),
        ):
            model = Recording().eval()
            attack = make(model)
            attack.set_model_training_mode(**settings)
            attack(x, y)
            seen[name] = model.seen
        assert seen["DPGD"] == seen["torchattacks.PGD"] == seen["DPGDL2"], (settings, seen)
        assert len(seen["DPGD"]) == 1
