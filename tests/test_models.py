"""The architecture registry: every entry builds, runs forward and backward at its shape."""

from __future__ import annotations

import pytest
import torch

from dard_plugin.models import REGISTRY, Normalize, create, list_models


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_architecture_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    kwargs = {"depth": 16, "width": 2} if name == "wide-resnet" else {}
    model = create(name, num_classes=7, **kwargs)
    assert isinstance(model[0], Normalize)  # [0, 1] inputs, normalization inside
    images = torch.rand(2, *REGISTRY[name].input_shape, requires_grad=True)
    logits = model(images)
    assert logits.shape == (2, 7)
    logits.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_a_cnn_built_for_another_size_declares_it() -> None:
    """``input_size=32`` built a 32x32 network that declared (1, 28, 28): evaluate refused
    its images and accepted the ones it cannot run."""
    from dard_plugin.evaluation._checks import expected_input_shape

    model = create("small-cnn", num_classes=10, in_channels=3, input_size=32,
                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))  # fmt: skip
    assert expected_input_shape(model) == (3, 32, 32)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_default_wide_resnet_is_wrn_28_10() -> None:
    model = create("wide-resnet", num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 36_479_194


def test_normalization_is_inside() -> None:
    model = create("small-cnn", num_classes=10, mean=(0.5,), std=(0.25,))
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(model.normalize(x), (x - 0.5) / 0.25)
    assert "small-cnn" in list_models() and "resnet56" in list_models()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"name must be one of \['resnet18'"):
        create("resnet-18", num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        create("resnet18", num_classes=1)
    with pytest.raises(ValueError, match="mean and std must be given"):
        create("resnet18", num_classes=10, in_channels=1)
    with pytest.raises(ValueError, match="depth must be 6n"):
        create("wide-resnet", num_classes=10, depth=20)
    gray = create("resnet18", num_classes=10, in_channels=1, mean=(0.5,), std=(0.5,))
    assert gray(torch.rand(1, 1, 32, 32)).shape == (1, 10)


def _architectures_for(shape: tuple[int, int, int]) -> list[str]:
    return [n for n, a in REGISTRY.items() if a.input_shape[1:] == shape[1:]]


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "fashion-mnist"])
def test_models_normalize_with_their_datasets_statistics(dataset: str) -> None:
    """Once CIFAR-100 students normalized with CIFAR-10's mean and std."""
    from dard_plugin.data import DATASETS

    info = DATASETS[dataset]
    name = _architectures_for(info.input_shape)[0]
    model = create(name, dataset=dataset)
    assert torch.equal(model.normalize.mean.flatten(), torch.tensor(info.mean))
    assert torch.equal(model.normalize.std.flatten(), torch.tensor(info.std))
    assert model.input_shape == info.input_shape
    x = torch.rand(2, *info.input_shape)
    assert model(x).shape == (2, info.num_classes)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    assert torch.allclose(model.normalize(x), (x - mean) / std)


def test_every_registry_dataset_is_covered() -> None:
    from dard_plugin.data import DATASETS

    assert set(DATASETS) == {"cifar10", "cifar100", "fashion-mnist"}  # add a case above
    with pytest.raises(ValueError, match="num_classes must be given"):
        create("resnet18")
    assert create("resnet18", dataset="cifar100", num_classes=5)(
        torch.rand(1, 3, 32, 32)
    ).shape == (1, 5)


@pytest.mark.slow  # one SAT epoch of a ResNet-56 on 8 images (~1 min on 2 shared cores)
def test_distill_builds_a_cifar100_student_with_cifar100_statistics(monkeypatch) -> None:
    from dard_plugin import recipes
    from dard_plugin.data import DATASETS
    from dard_plugin.recipes import distillation

    def tiny_cifar100(name, *, train=True, n_examples=None, root=None):
        generator = torch.Generator().manual_seed(0 if train else 1)
        n = n_examples or 8
        return torch.rand(n, 3, 32, 32, generator=generator), torch.randint(
            0, 100, (n,), generator=generator
        )

    monkeypatch.setattr(distillation, "load_dataset", tiny_cifar100)  # no CIFAR-100 files here
    result = recipes.distill(
        method="sat",
        dataset="cifar100",
        student_arch="resnet56",
        n_train=8,
        n_val=4,
        validate_on_test=True,  # the stand-in training split has 8 images to hold out of
        epochs=1,
        batch_size=8,
        steps=1,
        eps=8 / 255,
        verbose=False,
    )
    normalize = result.student.normalize
    assert torch.equal(normalize.mean.flatten(), torch.tensor(DATASETS["cifar100"].mean))
    assert torch.equal(normalize.std.flatten(), torch.tensor(DATASETS["cifar100"].std))


def test_a_network_with_global_pooling_declares_the_datasets_image_shape() -> None:
    """``create("resnet56", dataset="fashion-mnist")`` declared (1, 32, 32) although it runs
    on 28x28 images, so ``evaluate`` refused Fashion-MNIST. It declares the dataset's
    shape when its network takes it; a fixed-size head keeps its own."""
    from dard_plugin import evaluate

    model = create("resnet56", dataset="fashion-mnist").eval()
    assert model.input_shape == (1, 28, 28) and model.training is False
    fresh = create("resnet56", dataset="fashion-mnist")
    assert fresh.training and all(m.training for m in fresh.modules())  # probe left it so
    images, labels = torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    report = evaluate(model, images, labels, eps=0.1, attacks=("clean",), verbose=False)
    assert report.n_examples == 4
    assert create("small-cnn", dataset="cifar10").input_shape == (3, 28, 28)  # fixed head
