"""The report's pieces every study shares: numbers, seed statistics, the rule that calls a
difference, the generated part of a markdown file, provenance lines and plots."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from study_runner.store import write_text_atomically


def pct(value: float | None) -> str:
    """``value`` (a fraction) in percent with one decimal, rounded half up as
    :func:`half_up` (``f"{x:.1f}"`` rounds a binary tie either way: 81.25 to 81.2, 81.35
    to 81.3, where the package's reports round half up)."""
    return "—" if value is None else half_up(100 * value)


def half_up(points: float) -> str:
    """``points`` with one decimal, rounded half up (1.05 -> 1.1, 0.65 -> 0.7)."""
    return str(Decimal(repr(points)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """The mean and the sample standard deviation (None for one value)."""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mean_spread(values: list[float]) -> str:
    if not values:
        return "—"
    mean, std = mean_std(values)
    if std is None:
        return f"{pct(mean)} (1 seed)"
    return f"{pct(mean)} ± {pct(std)}"


def compare(a: list[float], b: list[float]) -> tuple[float, str]:
    """``mean(a) - mean(b)`` and the verdict the report may state: a difference is called
    only where it exceeds the sum of the two seed spreads (sample standard deviations);
    with fewer than two seeds on either side nothing is called."""
    mean_a, std_a = mean_std(a)
    mean_b, std_b = mean_std(b)
    diff = mean_a - mean_b
    if std_a is None or std_b is None:
        return diff, "not called (1 seed)"
    if abs(diff) > std_a + std_b:
        return diff, "higher" if diff > 0 else "lower"
    return diff, "within the spread"


def cpu_label(threads: int) -> str:
    return f"CPU ({threads} torch thread{'' if threads == 1 else 's'} per process)"


def machine_label(machine: dict[str, Any]) -> str:
    """A unit's machine (its provenance's ``machine``): the GPU's name, else the CPU model
    where recorded (older units lack it) with the torch threads."""
    if machine.get("cuda"):
        return str(machine["cuda"])
    label = cpu_label(machine["torch_threads"])
    model = machine.get("cpu_model")
    return f"{model}, {label[len('CPU (') : -1]}" if model else label


def code_and_machines(units: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The commits (with a dirty-tree mark) and the machines behind ``units``: the GPU's
    name, else the CPU (its model where recorded) with its torch threads."""
    recorded = {
        (u["provenance"]["git_commit"][:10], u["provenance"]["git_dirty"]) for u in units.values()
    }
    commits = sorted(recorded, key=lambda commit: (commit[0], str(commit[1])))
    machines = sorted({machine_label(u["provenance"]["machine"]) for u in units.values()})
    marks = {True: " (dirty tree)", None: " (tree state unknown)"}  # None: git could not tell
    code = ", ".join(f"`{c}`{marks.get(d, '')}" for c, d in commits)
    return code, ", ".join(machines)


def replace_generated(path: Path, begin: str, end: str, body: str) -> None:
    """Put ``body`` between the markers ``begin`` and ``end`` in ``path`` (appended with
    its markers where they are missing); the rest of the file stays as written."""
    block = "\n".join([begin, "", body, end])
    text = path.read_text() if path.is_file() else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = (text + "\n" if text else "") + block + "\n"
    write_text_atomically(path, text)


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def errorbar_scatter(
    points: list[tuple[str, float, float, float, float]],
    path: Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    styles: list[int] | None = None,
) -> Path:
    """One marker per ``(label, x, x_err, y, y_err)`` with its error bars (values in %);
    ``styles`` fixes each point's marker and colour (by index), so that a method keeps
    its look across plots."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4.5))
    markers = "osD^v<>ph*X"
    for index, (label, x, x_err, y, y_err) in enumerate(points):
        style = index if styles is None else styles[index]
        axes.errorbar(
            x, y, xerr=x_err, yerr=y_err, fmt=markers[style % len(markers)], capsize=3,
            color=f"C{style % 10}", label=label,
        )  # fmt: skip
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
