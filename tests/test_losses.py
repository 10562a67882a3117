"""The Dice loss and the DPGD objective against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from dard_plugin.losses import dice_loss, dpgd_loss, segpgd_lambda

PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=torch.float64)
ONEHOT = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
S = 1e-5


def test_dice_batch_closed_form() -> None:
    # sum Y*P = 0.7 + 0.3 = 1.0; sum Y^2 = 2; sum P^2 = 0.54 + 0.46 = 1.0
    expected = 1 - (2 * 1.0 + S) / (2 + 1.0 + S)
    assert dice_loss(PROBS, ONEHOT).item() == pytest.approx(expected, abs=1e-12)


def test_dice_sample_and_none_closed_form() -> None:
    first = 1 - (2 * 0.7 + S) / (1 + 0.54 + S)
    second = 1 - (2 * 0.3 + S) / (1 + 0.46 + S)
    none = dice_loss(PROBS, ONEHOT, reduction="none")
    assert none.tolist() == pytest.approx([first, second], abs=1e-12)
    assert dice_loss(PROBS, ONEHOT, reduction="sample").item() == pytest.approx(
        (first + second) / 2, abs=1e-12
    )


@pytest.mark.parametrize("reduction", ["batch", "sample"])
def test_dice_mask_selects_and_empty_mask_is_zero(reduction: str) -> None:
    only_second = dice_loss(PROBS, ONEHOT, reduction=reduction, mask=torch.tensor([False, True]))
    assert only_second.item() == pytest.approx(
        dice_loss(PROBS[1:], ONEHOT[1:], reduction=reduction).item(), abs=1e-12
    )
    probs = PROBS.clone().requires_grad_(True)
    empty = dice_loss(probs, ONEHOT, reduction=reduction, mask=torch.tensor([False, False]))
    assert empty.item() == 0.0
    (gradient,) = torch.autograd.grad(empty, probs)
    assert torch.count_nonzero(gradient) == 0


def test_dice_perfect_prediction_is_zero() -> None:
    assert dice_loss(ONEHOT, ONEHOT, smooth=1e-5).item() == pytest.approx(0.0, abs=1e-12)


def test_dice_bad_arguments() -> None:
    with pytest.raises(ValueError, match="reduction"):
        dice_loss(PROBS, ONEHOT, reduction="mean")
    with pytest.raises(ValueError, match="smooth"):
        dice_loss(PROBS, ONEHOT, smooth=0.0)
    with pytest.raises(ValueError, match="probs and onehot"):
        dice_loss(PROBS, ONEHOT[:, :2])
    with pytest.raises(ValueError, match="mask"):
        dice_loss(PROBS, ONEHOT, mask=torch.tensor([True]))


def test_segpgd_lambda_schedule() -> None:
    assert [segpgd_lambda(t, 10) for t in range(10)] == [t / 20 for t in range(10)]
    assert segpgd_lambda(0, 1) == 0.0
    for bad in [(-1, 10), (10, 10), (0, 0)]:
        with pytest.raises(ValueError, match="step"):
            segpgd_lambda(*bad)


def test_dpgd_loss_splits_correct_and_fooled() -> None:
    logits = torch.log(PROBS)  # softmax(log p) == p
    labels = torch.tensor([0, 1])  # sample 0 correct (argmax 0), sample 1 fooled (argmax 2)
    for step, steps in [(0, 10), (3, 10), (9, 10)]:
        lam = step / (2 * steps)
        expected = (1 - lam) * dice_loss(PROBS[:1], ONEHOT[:1]) + lam * dice_loss(
            PROBS[1:], ONEHOT[1:]
        )
        got = dpgd_loss(logits, labels, step, steps)
        assert got.item() == pytest.approx(expected.item(), abs=1e-12)


def test_dpgd_loss_targeted_weights_the_samples_still_to_move_first() -> None:
    # METHOD.md §1 "Targeted mode": the samples not yet at their target carry 1 - lambda_t
    logits = torch.log(PROBS)
    targets = torch.tensor([0, 1])  # sample 0 at its target (argmax 0), sample 1 not yet
    for step, steps in [(0, 10), (3, 10), (9, 10)]:
        lam = step / (2 * steps)
        expected = (1 - lam) * dice_loss(PROBS[1:], ONEHOT[1:]) + lam * dice_loss(
            PROBS[:1], ONEHOT[:1]
        )
        got = dpgd_loss(logits, targets, step, steps, targeted=True)
        assert got.item() == pytest.approx(expected.item(), abs=1e-12)
