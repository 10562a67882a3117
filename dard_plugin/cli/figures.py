"""Figures the command line writes: ``dard attack``'s grid of clean and DPGD images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dard_plugin._files import atomic_write_bytes


def image_grid(
    clean: Any, adversarial: Any, labels: Any, clean_pred: Any, adv_pred: Any, path: Path
) -> None:
    """Up to 8 clean images over their DPGD counterparts, each titled with its prediction
    (green where correct, red where not), written to ``path`` as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(8, clean.shape[0])
    figure, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for i in range(n):
        for row, (images, preds, title) in enumerate(
            ((clean, clean_pred, "clean"), (adversarial, adv_pred, "DPGD"))
        ):
            image = images[i].permute(1, 2, 0).squeeze(-1).numpy()
            axes[row][i].imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            ok = int(preds[i]) == int(labels[i])
            axes[row][i].set_title(
                f"{title}: {int(preds[i])}", fontsize=7, color="green" if ok else "red"
            )
            axes[row][i].axis("off")
    figure.tight_layout()
    try:
        atomic_write_bytes(path, lambda stream: figure.savefig(stream, format="png"))
    finally:
        plt.close(figure)
