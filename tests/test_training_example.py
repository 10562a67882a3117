"""The fifth method of docs/training.md (a TRADES-style loss), run from the page itself."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT, TinyCNN, make_prototype_data

MARKER = "<!-- tested: tests/test_training_example.py -->"


def trades_class() -> type:
    page = (REPO_ROOT / "docs" / "training.md").read_text()
    block = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", page, re.S)
    assert block is not None, "the example block is missing from docs/training.md"
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "docs/training.md", "exec"), namespace)
    return namespace["TRADESTrainer"]  # type: ignore[return-value]


def test_the_documented_example_is_about_twenty_lines() -> None:
    page = (REPO_ROOT / "docs" / "training.md").read_text()
    block = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", page, re.S)
    assert block is not None
    code = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(code) <= 30, len(code)


def test_the_fifth_method_trains_and_its_loss_is_trades() -> None:
    trades = trades_class()
    x, y, _ = make_prototype_data(n=32)
    torch.manual_seed(0)
    student = TinyCNN()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    trainer = trades(
        student,
        optimizer=optimizer,
        beta=2.0,
        attack={"eps": 0.1, "alpha": 0.05, "steps": 2},
        verbose=False,
    )
    history = trainer.fit(x, y, batch_size=16, nb_epochs=2, validation_data=(x, y))
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["loss"]) and h["robust_kl"] >= 0 for h in history)
    assert trainer.config()["beta"] == 2.0 and trainer.config()["method"] == "trades"

    # the attack stays in the eps ball and the bounds, and raises the KL above its start
    student.eval()
    from dard_plugin.training import Batch

    adversarial = trainer.craft_adversarial(Batch(x, y), {})
    assert float((adversarial - x).abs().max()) <= 0.1 + 1e-6
    assert float(adversarial.min()) >= 0 and float(adversarial.max()) <= 1
    with torch.no_grad():
        clean = F.softmax(student(x), 1)

        def kl(images: torch.Tensor) -> float:
            return float(F.kl_div(F.log_softmax(student(images), 1), clean, reduction="sum"))

        assert kl(adversarial) > kl(x)
        # the loss against the closed form CE(S(x), y) + beta KL(S(x) || S(x'))
        loss, terms = trainer.compute_loss(Batch(x, y), adversarial, {})
        expected_kl = F.kl_div(F.log_softmax(student(adversarial), 1), clean, reduction="batchmean")
        expected = F.cross_entropy(student(x), y) + 2.0 * expected_kl
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(terms["robust_kl"]) == pytest.approx(float(expected_kl), rel=1e-5)
