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
            the per-sample values, shape (B,).
        smooth: the smoothing constant ``s`` (1e-5 in the paper).
        mask: optional boolean (B,) selecting the samples that take part. An empty selection
            gives a loss of exactly 0 for ``"batch"`` and ``"sample"``.

    The mask is applied as a multiplicative weight rather than by indexing, so no
    device-to-host synchronisation happens on accelerators.
    """
    check_choice("reduction", reduction, DICE_REDUCTIONS)
    smooth = check_real("smooth", smooth, low=0.0, low_inclusive=False)
    if probs.ndim != 2 or probs.shape != onehot.shape:
        raise ValueError(
            f"probs and onehot must both have shape (batch_size, num_classes), "
            f"got {tuple(probs.shape)} and {tuple(onehot.shape)}"
        )
    onehot = onehot.to(probs.dtype)
    if mask is None:
        weight = torch.ones(probs.shape[0], 1, dtype=probs.dtype, device=probs.device)
    else:
        if mask.shape != probs.shape[:1]:
            raise ValueError(
                f"mask must have shape (batch_size,) = ({probs.shape[0]},), got {tuple(mask.shape)}"
            )
        weight = mask.to(probs.dtype).unsqueeze(1)

    intersection = weight * onehot * probs
    denominator = weight * (onehot * onehot + probs * probs)
    if reduction == "batch":
        return 1.0 - (2.0 * intersection.sum() + smooth) / (denominator.sum() + smooth)

    per_sample = 1.0 - (2.0 * intersection.sum(1) + smooth) / (denominator.sum(1) + smooth)
    per_sample = per_sample * weight.squeeze(1)
    if reduction == "none":
        return per_sample
    return per_sample.sum() / weight.sum().clamp_min(1.0)
