"""torchattacks' own code_coverage tests (code_coverage/test_atks.py, test_import.py),
ported with ``dard_plugin.DPGD`` in place of the library's attacks, on Fashion-MNIST with a
small model trained here (``host_fixtures``) in place of RobustBench's CIFAR-10 'Standard'
model, plus the ``Attack`` features torchattacks users rely on. Upstream assertions kept."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from host_fixtures import fmnist_subset, needs_fashion_mnist, trained_fmnist_model
from torch.utils.data import DataLoader, TensorDataset

import dard_plugin
import dard_plugin.attacks
from dard_plugin import DPGD
from dard_plugin.teachers.robustbench_compat import import_robustbench_utils

clean_accuracy = import_robustbench_utils().clean_accuracy  # the upstream test's helper

ATTACKS = ["DPGD", "DPGDL2"]


def test_import_version() -> None:
    assert torchattacks.__version__
    assert isinstance(DPGD(trained_fmnist_model()), torchattacks.attack.Attack)
    assert dard_plugin.DPGD is DPGD


@needs_fashion_mnist
@torch.no_grad()
@pytest.mark.parametrize("atk_class", ATTACKS)
def test_atks_on_fashion_mnist(atk_class: str) -> None:
    # test_atks_on_cifar10: 5 examples, the attack with its defaults, under an outer
    # no_grad with enable_grad around the call; then the random targeted mode
    model = trained_fmnist_model()
    _, _, images, labels = fmnist_subset()
    images, labels = images[:5], labels[:5]
    clean_acc = clean_accuracy(model, images, labels)
    atk = getattr(dard_plugin.attacks, atk_class)(model)
    with torch.enable_grad():
        adv_images = atk(images, labels)
    robust_acc = clean_accuracy(model, adv_images, labels)
    assert clean_acc >= robust_acc
    if "targeted" in atk.supported_mode:
        atk.set_mode_targeted_random(quiet=True)
        with torch.enable_grad():
            adv_images = atk(images, labels)
        robust_acc = clean_accuracy(model, adv_images, labels)
        assert clean_acc >= robust_acc


@needs_fashion_mnist
def test_attack_api_features(tmp_path) -> None:
    model = trained_fmnist_model()
    _, _, images, labels = fmnist_subset(20, 20)
    attack = DPGD(model, eps=0.1, alpha=0.02, steps=5)
    # targeted by a user function
    attack.set_mode_targeted_by_function(lambda x, y: (y + 1) % 10, quiet=True)
    adversarial = attack(images, labels)
    with torch.no_grad():
        hit = (model(adversarial).argmax(1) == (labels + 1) % 10).float().mean()
    assert hit >= 0.25  # measured: 30 % of 20 images at eps 0.1, 5 steps
    attack.set_mode_default()
    # the model's training mode switch (torchattacks runs attacks in eval by default)
    attack.set_model_training_mode(model_training=False)
    model.train()
    attack(images, labels)
    assert model.training
    model.eval()
    # save to file and load back, as torchattacks' own loader expects
    path = tmp_path / "adv.pt"
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    attack.save(loader, save_path=str(path), verbose=False)
    adv_loader = attack.load(str(path), batch_size=8)
    loaded = torch.cat([x for x, _ in adv_loader])
    assert torch.equal(loaded, attack(images, labels))
    assert (loaded - images).abs().max() <= 0.1 + 1e-6
