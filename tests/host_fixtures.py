"""Fashion-MNIST in place of MNIST for the tests ported from ART and torchattacks: a small
classifier trained here in a few seconds (ART's tests use a small pre-trained MNIST CNN,
torchattacks' a RobustBench CIFAR-10 model), and small subsets, as in those tests."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

from dard_plugin.data import fashion_mnist as fmnist_module
from dard_plugin.data import load_dataset

needs_fashion_mnist = pytest.mark.skipif(
    not (fmnist_module.DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed (scripts/install.sh installs it)",
)


class SmallMLP(nn.Module):
    """784 -> 64 -> 10 with a ReLU, for 1x28x28 inputs (a conv net trains too slowly on
    the shared 2 cores for a test fixture)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(28 * 28, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(x.flatten(1))))


@functools.cache
def trained_fmnist_model() -> SmallMLP:
    """Trained on 2000 Fashion-MNIST images (test split, index 1000 on, which the tests
    never attack), 3 epochs, fixed seed."""
    images, labels = load_dataset("fashion-mnist", train=False, n_examples=3000, download=False)
    images, labels = images[1000:], labels[1000:]
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SmallMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        order = torch.randperm(images.shape[0], generator=generator)
        for start in range(0, images.shape[0], 100):
            batch = order[start : start + 100]
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@functools.cache
def fmnist_subset(n_train: int = 10, n_test: int = 10) -> tuple[torch.Tensor, ...]:
    """ART's default MNIST subset is 100/11 (train/test) images; 10/10 here (as ART's older
    unittest version) for 2 cores.
    Both parts come from images the model was not trained on."""
    images, labels = load_dataset(
        "fashion-mnist", train=False, n_examples=n_train + n_test, download=False
    )
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]


def art_image_classifier(*, from_logits: bool = True, train: bool = False):
    """ART's ``image_dl_estimator`` for PyTorch (``get_image_classifier_pt``): a copy of the
    pre-trained classifier (in train mode when ``train``), cross-entropy, Adam at lr 0.01,
    clip values (0, 1); ``from_logits=False`` ends it in a softmax, as ART's
    ``get_image_classifier_pt(from_logits=False)``."""
    from art.estimators.classification import PyTorchClassifier

    model: nn.Module = copy.deepcopy(trained_fmnist_model()).train(train)
    if not from_logits:
        model = nn.Sequential(model, nn.Softmax(dim=1))
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
