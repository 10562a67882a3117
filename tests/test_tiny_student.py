"""The tiny Fashion-MNIST student (``tiny-cnn``): an eighth of ``small-cnn``'s size, the
same input and output shapes, and it learns."""

from __future__ import annotations

import torch
from torch import nn

from dard_plugin.models import create, list_models


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_tiny_cnn_is_an_eighth_of_small_cnn() -> None:
    tiny = create("tiny-cnn", dataset="fashion-mnist")
    small = create("small-cnn", dataset="fashion-mnist")
    # 8*1*25+8 + 16*8*25+16 + 784*24+24 + 24*10+10, against 171,158 for small-cnn
    assert _parameters(tiny) == 22_514
    assert _parameters(small) == 171_158
    assert 7.0 < _parameters(small) / _parameters(tiny) < 8.5
    assert "tiny-cnn" in list_models()
    assert tiny.input_shape == (1, 28, 28)
    logits = tiny(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10)


def test_tiny_cnn_learns_a_separable_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 10
    # each class is a bright 4x4 patch at its own place on a dim noise background
    images = 0.2 * torch.rand(64, 1, 28, 28, generator=generator)
    for index, label in enumerate(labels.tolist()):
        row, col = 4 + 8 * (label // 4), 4 + 6 * (label % 4)
        images[index, 0, row : row + 4, col : col + 4] = 1.0
    torch.manual_seed(0)
    model = create("tiny-cnn", dataset="fashion-mnist")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        before = float(loss_fn(model(images), labels))
    for _ in range(40):
        optimizer.zero_grad()
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(loss_fn(model(images), labels))
    assert before > 2.0 and after < 0.5 * before
