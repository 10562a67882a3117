"""Losses: the Dice loss and the DPGD objective; the training losses of DARD, the baselines
and the later methods (IAD, AdaAD, IGDM, MTARD)."""

from dard_plugin.losses.dice import DICE_REDUCTIONS, dice_loss, dice_statistics, reduce_dice
from dard_plugin.losses.distillation import (
    KL_REDUCTIONS,
    adaad_loss,
    ard_loss,
    dard_loss,
    distillation_kl,
    iad_loss,
    igdm_loss,
    mtard_kl,
    mtard_loss,
    rslad_loss,
    sat_loss,
)
from dard_plugin.losses.dpgd import dpgd_loss, segpgd_lambda

__all__ = [
    "DICE_REDUCTIONS",
    "KL_REDUCTIONS",
    "adaad_loss",
    "ard_loss",
    "dard_loss",
    "dice_loss",
    "dice_statistics",
    "distillation_kl",
    "dpgd_loss",
    "iad_loss",
    "igdm_loss",
    "mtard_kl",
    "mtard_loss",
    "reduce_dice",
    "rslad_loss",
    "sat_loss",
    "segpgd_lambda",
]
