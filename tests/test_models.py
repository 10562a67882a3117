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
