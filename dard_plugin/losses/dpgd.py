"""The DPGD objective: SegPGD's schedule between correct and fooled samples, over Dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dard_plugin.losses.dice import reduce_dice


def segpgd_lambda(step: int, steps: int) -> float:
    """SegPGD's weight of the already-fooled set at zero-based ``step`` of ``steps``.

    ``(t' - 1) / (2T)`` with the paper's one-based ``t'``: 0 at the first step, rising
    towards (but never reaching) 1/2 at the last.
    """
    if steps < 1 or not 0 <= step < steps:
        raise ValueError(
            f"step must be in [0, steps) with steps >= 1, got step={step}, steps={steps}"
        )
    return step / (2.0 * steps)


def dpgd_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    step: int,
    steps: int,
    *,
    reduction: str = "batch",
    smooth: float = 1e-5,
    targeted: bool = False,
) -> torch.Tensor:
    """SegPGD's schedule over Dice terms (METHOD.md §1).

    Untargeted (ascended): ``(1 - lambda_t) * Dice(correct) + lambda_t * Dice(fooled)``,
    ``correct`` holding the samples whose arg-max prediction equals ``labels`` at this step,
    ``fooled`` the rest.

    Targeted (descended, ``labels`` are the targets): ``(1 - lambda_t) * Dice(pending) +
    lambda_t * Dice(reached)``, ``pending`` holding the samples not yet predicted as their
    target and ``reached`` the rest. In both modes the early weight goes to the set that
    still has to move. Each Dice term is 0 when its set is empty.
    """
    # Softmax in at least float32, so bf16/fp16 models still get usable gradients.
    probs = F.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)
    # For a one-hot Y, sum_k Y*P = P[y] and sum_k Y^2 = 1: dice_statistics without the
    # (B, K) one-hot products, which matters inside a 10-step attack on every batch.
    intersection = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    denominator = 1.0 + (probs * probs).sum(dim=1)
    correct = (logits.argmax(dim=1) == labels).to(probs.dtype)
    # rows: the set still to move first (untargeted: still correct; targeted: not yet at
    # the target), the set already done second
    to_move = 1.0 - correct if targeted else correct
    both_sets = torch.stack([to_move, 1.0 - to_move])
    dice_to_move, dice_done = reduce_dice(
        intersection, denominator, both_sets, reduction=reduction, smooth=smooth
    )
    weight_done = segpgd_lambda(step, steps)
    return (1.0 - weight_done) * dice_to_move + weight_done * dice_done
