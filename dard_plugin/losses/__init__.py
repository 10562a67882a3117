"""Losses: the Dice loss and the DPGD objective; DARD and the baselines' training losses."""

from dard_plugin.losses.dice import DICE_REDUCTIONS, dice_loss, dice_statistics, reduce_dice
from dard_plugin.losses.distillation import (
    ard_loss,
    dard_loss,
    distillation_kl,
    rslad_loss,
    sat_loss,
)
from dard_plugin.losses.dpgd import dpgd_loss, segpgd_lambda

__all__ = [
    "DICE_REDUCTIONS",
    "ard_loss",
    "dard_loss",
    "dice_loss",
    "dice_statistics",
    "distillation_kl",
    "dpgd_loss",
    "reduce_dice",
    "rslad_loss",
    "sat_loss",
    "segpgd_lambda",
]
