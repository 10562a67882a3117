"""Robustness reports: the numbers to quote, as JSON (RobustBench field names), markdown,
and robust-accuracy-versus-eps plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np

from dard_plugin._files import write_text_atomically
from dard_plugin._json import dumps_strict


def eps_string(eps: float) -> str:
    """``8/255`` for budgets on the 1/255 grid (RobustBench's notation), else the number
    to float32 precision (``np.float32(8 / 255)`` is ``8/255`` too, ``np.float32(0.1)``
    ``0.1``; eight significant digits, not ``:g``'s six, which merged nearby budgets)."""
    eps = float(eps)
    steps = round(eps * 255)
    on_grid = steps > 0 and abs(steps / 255 - eps) <= 1e-7 * eps
    short = abs(float(f"{eps:.4g}") - eps) <= 1e-7 * eps  # 0.2 (51/255) and 1.0 stay decimals
    if on_grid:
        return f"{eps:.4g}" if short else f"{steps}/255"
    if float(np.float32(eps)) == eps:  # a float32 budget: its shortest float32 form
        return np.format_float_positional(np.float32(eps), unique=True, trim="-")
    return f"{eps:.8g}"  # float32's precision: 0.1234567 and 0.1234568 stay apart


def percent(fraction: float) -> str:
    """``fraction`` in percent with two decimals, rounded half up from its shortest decimal
    form (``115/800`` is ``14.38``: ``100 * 0.14375`` is ``14.374999...`` in binary, which
    ``f"{x:.2f}"`` printed as ``14.37``)."""
    value = Decimal(repr(float(fraction))) * 100
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# what an L2 report's rows are (docs/evaluation.md's names): the keys stay the attack names
L2_LABELS = {
    "fgsm": "FGM",
    "pgd": "PGD-L2",
    "bim": "BIM-L2",
    "tpgd": "T-PGD-L2",
    "cw": "CW-L2",
    "dpgd": "DPGD-L2",
    "autoattack": "standard, L2",
    "apgd-ce": "APGD-CE, L2",
    "apgd-t": "APGD-T, L2",
    "fab-t": "FAB-T, L2",
    "square": "Square, L2",
}


@dataclass
class RobustnessReport:
    """Accuracies in [0, 1]. ``robust_accuracy`` is the per-sample worst case over every
    attack run and the clean prediction (a sample counts only if it is classified correctly
    clean and under each attack, whether or not ``"clean"`` was listed): the number to
    quote. ``per_attack[name]`` is the accuracy on that attack's examples alone (it can
    exceed ``clean_accuracy`` for an attack that ignores the labels, such as T-PGD).
    ``per_sample[name]`` holds one character per example, ``1`` where it was classified
    correctly (clean, or under that attack). ``world_size``
    and ``shards`` (each rank's ``[start, stop)`` of the examples) say how the work was
    split over ``torch.distributed`` ranks (1 and one shard in a single process)."""

    clean_accuracy: float
    per_attack: dict[str, float]
    robust_accuracy: float
    eps: float
    norm: str
    n_examples: int
    seed: int
    seconds: dict[str, float]
    versions: dict[str, str]
    model_name: str = "model"
    extra: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    shards: list[list[int]] = field(default_factory=list)
    per_sample: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        """RobustBench ``model_info`` names (``clean_acc``, ``autoattack_acc`` in percent as
        strings, ``eps`` as ``"8/255"``), then this package's full record."""
        payload: dict[str, Any] = {
            "name": self.model_name,
            "eps": eps_string(self.eps),
            "norm": self.norm,
            "clean_acc": percent(self.clean_accuracy),
        }
        if "autoattack" in self.per_attack:
            payload["autoattack_acc"] = percent(self.per_attack["autoattack"])
        payload["robust_acc"] = percent(self.robust_accuracy)
        payload["n_examples"] = self.n_examples
        payload["dard_plugin"] = self.to_dict()
        text = dumps_strict(payload)
        if path is not None:
            write_text_atomically(path, text)
        return text

    @classmethod
    def from_json(cls, text: str) -> RobustnessReport:
        return cls(**json.loads(text)["dard_plugin"])

    def to_markdown(self) -> str:
        """A table to paste into a paper or a README."""
        lines = [
            f"Model `{self.model_name}`, {self.norm} eps = {eps_string(self.eps)}, "
            f"{self.n_examples} examples, attack seed {self.seed}",
            "",
            "| attack | accuracy (%) | seconds |",
            "| --- | ---: | ---: |",
            f"| clean | {percent(self.clean_accuracy)} | {self.seconds.get('clean', 0.0):.1f} |",
        ]
        for name, value in self.per_attack.items():
            label = (
                f"{name} ({L2_LABELS[name]})" if self.norm == "L2" and name in L2_LABELS else name
            )
            lines.append(f"| {label} | {percent(value)} | {self.seconds.get(name, 0.0):.1f} |")
        lines.append(f"| **worst case over all** | **{percent(self.robust_accuracy)}** | |")
        return "\n".join(lines) + "\n"


def plot_robustness_curve(
    reports: list[RobustnessReport], path: str | Path, *, title: str | None = None
) -> Path:
    """Robust accuracy (each attack and the worst case) against eps; PNG or SVG by suffix.

    ``reports`` are one model's curve (as :func:`robustness_curve` returns them): one norm,
    one model name, the same attacks and images, and one report per eps; anything else is
    refused, since the plot would join points of different evaluations into one line."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"path must end in .png or .svg, got {path.name}")
    _check_one_curve(reports)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(reports, key=lambda r: r.eps)
    eps = [r.eps for r in ordered]
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for name in ordered[0].per_attack:
        axes.plot(eps, [100 * r.per_attack[name] for r in ordered], marker="o", label=name)
    axes.plot(
        eps,
        [100 * r.robust_accuracy for r in ordered],
        marker="s",
        color="black",
        linewidth=2,
        label="worst case",
    )
    axes.set_xlabel(f"{ordered[0].norm} eps")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title or ordered[0].model_name)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _check_one_curve(reports: list[RobustnessReport]) -> None:
    if not reports:
        raise ValueError("reports must hold at least one RobustnessReport, got none")
    for what, key in (
        ("norm", lambda r: r.norm),
        ("model_name", lambda r: r.model_name),
        ("n_examples", lambda r: r.n_examples),
        ("attacks", lambda r: tuple(r.per_attack)),
    ):
        values = {key(r) for r in reports}
        if len(values) > 1:
            raise ValueError(
                f"reports must be one model's curve with one {what}, got "
                f"{sorted(map(str, values))}: plot each evaluation separately"
            )
    eps = [r.eps for r in reports]
    if len(set(eps)) < len(eps):
        repeated = sorted({e for e in eps if eps.count(e) > 1})
        raise ValueError(f"reports must have one report per eps, got eps {repeated} twice or more")
