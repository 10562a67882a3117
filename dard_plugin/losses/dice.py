"""The squared Dice loss between predicted probabilities and one-hot labels (METHOD.md §1)."""

from __future__ import annotations

import torch

from dard_plugin._validation import check_choice, check_real

DICE_REDUCTIONS = ("batch", "sample", "none")


def dice_loss(
    probs: torch.Tensor,
    onehot: torch.Tensor,
    *,
    reduction: str = "batch",
    smooth: float = 1e-5,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Squared Dice loss ``1 - (2 sum Y*P + s) / (sum Y^2 + sum P^2 + s)``.

    Args:
        probs: predicted probabilities, shape (B, K).
        onehot: one-hot (or soft) labels, shape (B, K).
        reduction: ``"batch"`` computes one Dice over all selected samples and classes (the
            paper's form, which couples the samples of a batch); ``"sample"`` is the mean of
            per-sample Dice values (each sample independent of the others); ``"none"`` returns
            the per-sample values, shape (B,), 0 for unselected samples.
        smooth: the smoothing constant ``s`` (1e-5 in the paper).
        mask: optional boolean (B,) selecting the samples that take part. An empty selection
            gives a loss of exactly 0 for ``"batch"`` and ``"sample"``.
    """
    check_choice("reduction", reduction, DICE_REDUCTIONS)
    smooth = check_real("smooth", smooth, low=0.0, low_inclusive=False)
    if probs.ndim != 2 or probs.shape != onehot.shape:
        raise ValueError(
            f"probs and onehot must both have shape (batch_size, num_classes), "
            f"got {tuple(probs.shape)} and {tuple(onehot.shape)}"
        )
    if mask is not None and mask.shape != probs.shape[:1]:
        raise ValueError(
            f"mask must have shape (batch_size,) = ({probs.shape[0]},), got {tuple(mask.shape)}"
        )
    intersection, denominator = dice_statistics(probs, onehot.to(probs.dtype))
    weights = None if mask is None else mask.to(probs.dtype)
    return reduce_dice(intersection, denominator, weights, reduction=reduction, smooth=smooth)


def dice_statistics(probs: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``sum_k Y*P`` and ``sum_k Y^2 + sum_k P^2``, each of shape (B,)."""
    intersection = (onehot * probs).sum(dim=1)
    denominator = (onehot * onehot).sum(dim=1) + (probs * probs).sum(dim=1)
    return intersection, denominator


def reduce_dice(
    intersection: torch.Tensor,
    denominator: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    reduction: str,
    smooth: float,
) -> torch.Tensor:
    """Dice from per-sample statistics, over the samples selected by each row of ``weights``.

    ``weights`` is None (all samples), a 0/1 vector (B,), or several selections at once
    (S, B), giving S Dice values. Selecting by multiplication rather than indexing avoids a
    device-to-host synchronisation on accelerators, and an empty selection gives exactly 0.
    """
    if weights is None:
        weights = torch.ones_like(intersection)
    rows = weights if weights.ndim == 2 else weights.unsqueeze(0)
    if reduction == "batch":
        sums = rows @ torch.stack([intersection, denominator], dim=1)  # (S, 2)
        result = 1.0 - (2.0 * sums[:, 0] + smooth) / (sums[:, 1] + smooth)
    else:
        per_sample = 1.0 - (2.0 * intersection + smooth) / (denominator + smooth)
        if reduction == "none":
            result = rows * per_sample
        else:
            result = (rows @ per_sample) / rows.sum(dim=1).clamp_min(1.0)
    return result if weights.ndim == 2 else result.squeeze(0)
