"""The Fashion-MNIST study's report: its tables and its plot, from the unit files alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fashion_mnist_study_design import (
    ABLATION_EPOCHS,
    ADV_TARGETS,
    DIAGNOSES,
    GRID_EPOCHS,
    LONG_EPOCHS,
    LONGER_IS_BETTER,
    LRS,
    METHOD_LABELS,
    METHODS,
    N_AA,
    N_EVAL,
    ONLINE_CHECK_LRS,
    TEACHERS,
    Loader,
    final_value,
    longer_gain,
    selected_epochs,
    selected_lr,
)
from study_runner.report import (
    code_and_machines,
    compare,
    mean_spread,
    mean_std,
    pct,
    pyplot,
    replace_generated,
)
from study_runner.store import load_units

BEGIN, END = "<!-- fashion_mnist_study:begin -->", "<!-- fashion_mnist_study:end -->"

__all__ = ["compare", "plot_curves", "report_section", "write_report"]


def _loader(units: dict[str, dict[str, Any]]) -> Loader:
    """A unit loader over units already read."""
    return lambda kind, name: units.get(f"{kind}/{name}")


def _final_tests(units: dict[str, dict[str, Any]], teacher: str, method: str) -> list[Any]:
    prefix = f"test/final-{teacher}-{method}-s"
    return [u for name, u in sorted(units.items()) if name.startswith(prefix)]


CURVE_EPOCHS = (1, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30)


def _curve_runs(units: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The validation curves behind the choice of epochs: each method's selected grid run
    and its ``LONG_EPOCHS`` run, and the online-targets checks."""
    load = _loader(units)
    runs = []
    for method in METHODS:
        lr = selected_lr(load, method)
        if lr is None:
            continue
        for kind, epochs in (("grid", GRID_EPOCHS), ("epochs", LONG_EPOCHS)):
            unit = load("train", f"{kind}-{method}-lr{lr:g}")
            if unit is not None:
                runs.append((f"{METHOD_LABELS[method]}, lr {lr:g}, {epochs} epochs", unit))
    for lr in ONLINE_CHECK_LRS:
        unit = load("train", f"grid-dard-online-lr{lr:g}")
        if unit is not None:
            runs.append((f"DARD (online targets), lr {lr:g}, {GRID_EPOCHS} epochs", unit))
    return runs


def plot_curves(units: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Validation PGD-10 accuracy per epoch of the runs behind the choice of epochs."""
    runs = _curve_runs(units)
    if not runs:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for label, unit in runs:
        history = unit["history"]
        axes.plot(
            [h["epoch"] for h in history],
            [100 * h["pgd_accuracy"] for h in history],
            linestyle="--" if len(history) <= GRID_EPOCHS else "-",
            label=label,
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation PGD-10 accuracy (%)")
    axes.legend(fontsize=6)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def report_section(out: Path, units: dict[str, dict[str, Any]] | None = None) -> str:
    """The generated tables from the unit files in ``out`` (or ``units`` already read)."""
    units = load_units(out) if units is None else units
    load = _loader(units)
    lines = [
        "### Validation grid (final-epoch accuracy on the validation split, %)",
        "",
        f"clean / PGD-10 after the last of {GRID_EPOCHS} epochs, seed 0, shipped teacher; "
        "selected = best PGD-10 (clean breaks ties).",
        "",
        "| method | " + " | ".join(f"lr {lr:g}" for lr in LRS) + " | selected |",
        "| --- | " + " | ".join("---:" for _ in LRS) + " | ---: |",
    ]
    for method in (*METHODS, "dard-online"):
        cells = []
        for lr in LRS:
            unit = units.get(f"train/grid-{method}-lr{lr:g}")
            cells.append(
                "—"
                if unit is None
                else f"{pct(final_value(unit['history'], 'clean_accuracy'))} / "
                f"{pct(final_value(unit['history']))}"
            )
        label = METHOD_LABELS[method]
        lr = selected_lr(load, method) if method in METHODS else None
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {'—' if lr is None else f'{lr:g}'} |"
        )

    lines += [
        "",
        "### Epochs (validation PGD-10 accuracy per epoch, %, at the selected learning rate)",
        "",
        f"The {LONG_EPOCHS}-epoch budget is kept where its final validation PGD-10 exceeds "
        f"the {GRID_EPOCHS}-epoch run's by at least {100 * LONGER_IS_BETTER:g} point. "
        "The lr drops x0.1 at 60% and 80% of the epochs. Plot: `study-curves.png`.",
        "",
        "| run | " + " | ".join(f"ep {e}" for e in CURVE_EPOCHS) + " |",
        "| --- | " + " | ".join("---:" for _ in CURVE_EPOCHS) + " |",
    ]
    for label, unit in _curve_runs(units):
        by_epoch = {h["epoch"]: h["pgd_accuracy"] for h in unit["history"]}
        lines.append(
            f"| {label} | "
            + " | ".join(pct(by_epoch[e]) if e in by_epoch else "" for e in CURVE_EPOCHS)
            + " |"
        )
    lines += [
        "",
        "| method | lr | gain of 30 over 15 epochs | epochs used |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method in METHODS:
        lr, gain = selected_lr(load, method), longer_gain(load, method)
        epochs = selected_epochs(load, method)
        lines.append(
            f"| {METHOD_LABELS[method]} | {'—' if lr is None else f'{lr:g}'} | "
            f"{'—' if gain is None else f'{100 * gain:+.1f}'} | "
            f"{'—' if epochs is None else epochs} |"
        )

    lines += [
        "",
        "### Final comparison (test images; mean ± sample std over seeds, %)",
        "",
        f"Suite on the first {N_EVAL} test images (clean, FGSM, PGD-20, DPGD, APGD-CE, "
        f"APGD-T; worst case per sample); AutoAttack standard on the first {N_AA}, seed 0 "
        "only. Teachers: one model each, same images and attacks.",
        "",
        "| teacher | model | clean | PGD-20 | APGD-T | worst case (suite) "
        "| AutoAttack (seed 0) | seeds |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, name in TEACHERS.items():
        unit = load("test", f"teacher-{key}")
        if unit is not None:
            suite = unit["suite"]
            lines.append(
                f"| {key} | teacher `{name}` | {pct(suite['clean_accuracy'])} | "
                f"{pct(suite['per_attack']['pgd'])} | {pct(suite['per_attack']['apgd-t'])} | "
                f"{pct(suite['robust_accuracy'])} | "
                f"{pct(unit['autoattack']['robust_accuracy'])} | — |"
            )
    for teacher in TEACHERS:
        for method in (*METHODS, "dard-online"):
            if method in ("sat", "dard-online") and teacher != "shipped":
                continue
            tests = _final_tests(units, teacher, method)
            if not tests:
                continue
            aa = [t["autoattack"]["robust_accuracy"] for t in tests if "autoattack" in t]
            lines.append(
                f"| {'none' if method == 'sat' else teacher} | {METHOD_LABELS[method]} | "
                + " | ".join(
                    mean_spread(values)
                    for values in (
                        [t["suite"]["clean_accuracy"] for t in tests],
                        [t["suite"]["per_attack"]["pgd"] for t in tests],
                        [t["suite"]["per_attack"]["apgd-t"] for t in tests],
                        [t["suite"]["robust_accuracy"] for t in tests],
                        aa,
                    )
                )
                + f" | {len(tests)} |"
            )

    lines += [
        "",
        "### DARD against each method (test; difference of seed means, points)",
        "",
        "A difference is called only where it exceeds the sum of the two seed spreads.",
        "",
        "| teacher | DARD minus | clean | verdict | worst case | verdict | seeds |",
        "| --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    for teacher in TEACHERS:
        dard = _final_tests(units, teacher, "dard")
        if not dard:
            continue
        for other in ("sat", "ard", "rslad"):
            tests = _final_tests(units, "shipped" if other == "sat" else teacher, other)
            if not tests:
                continue
            row = [f"| {teacher} | {METHOD_LABELS[other]}"]
            for key in ("clean_accuracy", "robust_accuracy"):
                diff, verdict = compare(
                    [t["suite"][key] for t in dard], [t["suite"][key] for t in tests]
                )
                row.append(f"{100 * diff:+.1f} | {verdict}")
            lines.append(" | ".join(row) + f" | {len(dard)} vs {len(tests)} |")
    sat = _final_tests(units, "shipped", "sat")
    gaps = []
    for key in TEACHERS:
        unit = load("test", f"teacher-{key}")
        if unit is not None and sat:
            mean, _ = mean_std([t["suite"]["robust_accuracy"] for t in sat])
            gaps.append(
                f"`{TEACHERS[key]}` {pct(unit['suite']['robust_accuracy'])} against SAT "
                f"{pct(mean)}: a gap of {100 * (unit['suite']['robust_accuracy'] - mean):.1f}"
            )
    if gaps:
        lines += ["", "Teacher-to-SAT gap (worst case, test): " + "; ".join(gaps) + "."]

    lines += [
        "",
        "### Where DARD's adversarial soft labels come from (test images, %)",
        "",
        f"DARD, online targets, shipped teacher, selected lr, {ABLATION_EPOCHS} epochs, "
        "seed 0. Fooled: the share of training images whose teacher DPGD example x_T the "
        "teacher misclassifies (mean over the last epoch's batches).",
        "",
        "| variant | teacher fooled on x_T | clean | worst case | AutoAttack |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for variant, label in ADV_TARGETS.items():
        test = units.get(f"test/ablation-{variant}")
        train = units.get(f"train/ablation-{variant}")
        fooled = train["history"][-1].get("teacher_fooled") if train else None
        lines.append(
            f"| {label} | {pct(fooled)} | "
            f"{pct(test['suite']['clean_accuracy']) if test else '—'} | "
            f"{pct(test['suite']['robust_accuracy']) if test else '—'} | "
            f"{pct(test['autoattack']['robust_accuracy']) if test else '—'} |"
        )
    dard_lr = selected_lr(load, "dard")
    if dard_lr is not None:
        base = load("train", f"grid-dard-lr{dard_lr:g}")
        sat_lr = selected_lr(load, "sat")
        sat = load("train", f"grid-sat-lr{sat_lr:g}") if sat_lr is not None else None
        lines += [
            "",
            "### What separates DARD from SAT (validation split, %)",
            "",
            f"One change at a time from DARD's selected grid run (cached targets, lr "
            f"{dard_lr:g}, {GRID_EPOCHS} epochs, seed 0); final-epoch clean / PGD-10 on the "
            "validation images, difference in PGD-10 from DARD.",
            "",
            "| run | clean | PGD-10 | PGD-10 minus DARD |",
            "| --- | ---: | ---: | ---: |",
        ]
        rows = [("DARD (tau 3, alpha 0.7, adv weight 0.5)", base)]
        rows += [
            (label, load("train", f"diag-dard-{key}-lr{dard_lr:g}"))
            for key, (_, label) in DIAGNOSES.items()
        ]
        if sat is not None:
            rows.append((f"SAT at its selected lr {sat_lr:g}", sat))
        for label, unit in rows:
            if unit is None or base is None:
                lines.append(f"| {label} | — | — | — |")
                continue
            pgd = final_value(unit["history"])
            lines.append(
                f"| {label} | {pct(final_value(unit['history'], 'clean_accuracy'))} | "
                f"{pct(pgd)} | {100 * (pgd - final_value(base['history'])):+.1f} |"
            )

    code, machines = code_and_machines(units)
    lines += [
        "",
        f"Units finished: {len(units)}. Code: {code}. Machines: {machines}. Raw JSON: `{out}/`.",
        "",
    ]
    return "\n".join(lines)


def write_report(report_path: str | None, out: Path) -> None:
    """Rewrite the generated part of ``report_path`` (between the markers) and the plot
    ``study-curves.png`` beside ``out``."""
    if not report_path or not any(out.glob("*.json")):
        return
    units = load_units(out)
    plot_curves(units, out.parent / "study-curves.png")
    replace_generated(Path(report_path), BEGIN, END, report_section(out, units))
