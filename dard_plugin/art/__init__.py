"""ART faces of the package: the DicePGD evasion attack."""

from dard_plugin.art.dice_pgd import DicePGD

__all__ = ["DicePGD"]
