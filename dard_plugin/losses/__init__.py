"""Losses: the Dice loss and the DPGD objective built on it."""

from dard_plugin.losses.dice import DICE_REDUCTIONS, dice_loss
from dard_plugin.losses.dpgd import dpgd_loss, segpgd_lambda

__all__ = ["DICE_REDUCTIONS", "dice_loss", "dpgd_loss", "segpgd_lambda"]
