"""The leaderboard's report: per student, the table of rows with their calls, the
validation grid, and a plot of clean against worst-case accuracy, from the unit files (the
leaderboard's and the study's it reuses)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from leaderboard_design import (
    CHANCE,
    FLAT,
    LABELS,
    LRS,
    METHODS,
    N_AA,
    N_EVAL,
    SEEDS,
    STUDENTS,
    STUDY_OUT,
    Loader,
    call,
    final_name,
    final_value,
    grid_lrs,
    grid_name,
    load_costs,
    machine,
    one_process_costs,
    selected_lr,
)
from study_runner.report import (
    code_and_machines,
    compare,
    errorbar_scatter,
    half_up,
    mean_spread,
    mean_std,
    pct,
    replace_generated,
)

BEGIN, END = "<!-- leaderboard:begin -->", "<!-- leaderboard:end -->"
FIGURES = "results/fashion_mnist/leaderboard"  # as docs/leaderboard.md links them
COSTS = "costs"  # beside the unit folder: the measured costs, one file per machine
PARAMETERS = {"small-cnn": "171k parameters", "tiny-cnn": "22.5k parameters"}
SAT_ROWS = ("sat", "sat-warmup")  # the baselines: plain SAT and SAT with the budget warm-up


def work_seconds(unit: dict[str, Any]) -> float:
    """The compute a unit file stands for, counted once: a training unit's epochs (its
    history, which a resumed run keeps whole; at least the unit's own time, which adds the
    validation), a test or AutoAttack unit's evaluation alone (its training is a train
    unit's), else the unit's time."""
    if "history" in unit:
        return max(float(unit.get("seconds", 0)), sum(h["seconds"] for h in unit["history"]))
    for key in ("suite", "autoattack"):  # an AutoAttack unit may have retrained its student
        report = unit.get(key)
        if isinstance(report, dict) and isinstance(report.get("seconds"), dict):
            return float(sum(report["seconds"].values()))
    return float(unit.get("seconds", 0))


def median_epoch_seconds(unit: dict[str, Any]) -> float:
    """The median epoch's seconds (a paused or crowded epoch does not move it)."""
    return float(statistics.median(h["seconds"] for h in unit["history"]))


class Row:
    """One method on one student: its final units and the numbers the table shows."""

    def __init__(self, load: Loader, row: str, student: str, linked: Loader | None = None) -> None:
        self.row, self.student = row, student
        self.lr = selected_lr(load, row, student)
        names = [final_name(row, student, seed) for seed in SEEDS]
        tests = [self.matching(load("test", n)) for n in names]
        own = [self.matching(load("train", n)) for n in names]
        study = [self.matching(linked("train", n)) if linked else None for n in names]
        # a test unit reused from the study measured the study's student: its training run
        # (validation curve, epoch cost) is the study's, also where this leaderboard retrained
        # that seed for AutoAttack
        trains = [
            theirs if test and "linked_from" in test and theirs else mine
            for test, mine, theirs in zip(tests, own, study, strict=True)
        ]
        self.tests = [t for t in tests if t is not None]
        self.trains = [t for t in trains if t is not None]
        self.autoattack = self.matching(load("autoattack", names[0]))
        # AutoAttack's student retrained where the seed-0 test's (the study's, or this
        # leaderboard's: a retrain/ unit) was not at hand: the histories' largest gap
        self.retrained_gap: float | None = None
        mine = own[0] if own[0] and "linked_from" not in own[0] else None
        retrained, first = (mine if mine is not trains[0] else None), study[0]
        if retrained is None and (again := self.matching(load("retrain", names[0]))):
            retrained, first = again, trains[0]
        if retrained and self.autoattack and first:
            self.retrained_gap = history_gap(retrained["history"], first["history"])
        self.units = [
            *self.tests,
            *self.trains,
            *([retrained] if retrained and self.autoattack else []),
            *([self.autoattack] if self.autoattack else []),
        ]

    def matching(self, unit: dict[str, Any] | None) -> dict[str, Any] | None:
        """``unit`` if it ran at the selected learning rate, else None (a final left from
        an earlier selection, before a grid unit came in, is not this row's)."""
        if unit is None or self.lr is None:
            return None
        ran = unit.get("run", {}).get("lr")
        return unit if ran is None or abs(float(ran) - self.lr) <= 1e-12 else None

    def values(self, key: str) -> list[float]:
        return [t["suite"][key] for t in self.tests]

    def at_chance(self) -> bool:
        """A final stayed at chance: its last validation or its test clean accuracy."""
        tests = (t["suite"]["clean_accuracy"] for t in self.tests)
        trains = (final_value(t, "clean_accuracy") for t in self.trains)
        return any(value <= CHANCE for value in (*trains, *tests))

    def last_gain(self) -> str:
        gains = [
            final_value(t) - t["history"][-min(11, len(t["history"]))]["pgd_accuracy"]
            for t in self.trains
        ]
        if not gains:
            return "—"
        mean, _ = mean_std(gains)
        return f"{100 * mean:+.1f}{'' if abs(mean) < FLAT else ' (not flat)'}"

    def cost_vs(
        self,
        reference: list[dict[str, Any]],
        costs: dict[str, dict[str, Any]] | None = None,
        used: set[tuple[str, str]] | None = None,
    ) -> str:
        """Median epoch seconds of this row's finals (averaged) over the ``reference`` finals' on
        the same machine; for finals on a machine no reference final ran on, the ratio that
        ``costs`` measured in one process on that machine, marked ‡ (its machine and file
        added to ``used``)."""
        by_machine: dict[str, list[float]] = {}
        for unit in reference:
            by_machine.setdefault(machine(unit), []).append(median_epoch_seconds(unit))
        ratios, measured = [], False
        for unit in self.trains:
            here = machine(unit)
            if here in by_machine:
                ratios.append(median_epoch_seconds(unit) / mean_std(by_machine[here])[0])
                continue
            table = (costs or {}).get(here, {}).get("costs", {})
            own, sat = (
                table.get(key, {}).get("epoch_seconds")
                if isinstance(table.get(key), dict)
                else None
                for key in (f"{self.row}/{self.student}", f"sat/{self.student}")
            )
            if isinstance(own, float | int) and isinstance(sat, float | int) and sat > 0:
                ratios.append(own / sat)  # a method not measured there: no ratio
                measured = True
                if used is not None:
                    used.add((here, (costs or {})[here]["file"]))
        if not ratios:
            return "—"
        return f"{mean_std(ratios)[0]:.1f}x{' ‡' if measured else ''}"


def history_gap(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
    """The largest gap, in points, between two runs' per-epoch validation clean and PGD-10
    accuracies (infinite if they ran different epochs)."""
    if len(a) != len(b):
        return float("inf")
    keys = ("clean_accuracy", "pgd_accuracy")
    gap = max(100 * abs(x[k] - y[k]) for x, y in zip(a, b, strict=True) for k in keys)
    return round(gap, 6)  # 100 * (0.7905 - 0.78) is 1.0499999...: 1.05, shown half up


def autoattack_cell(r: Row) -> str:
    cell = pct(None if r.autoattack is None else r.autoattack["autoattack"]["robust_accuracy"])
    return cell if r.autoattack is None or r.retrained_gap is None else f"{cell} †"


def calls(a: Row, b: Row) -> str:
    if a is b or not a.tests or not b.tests:
        return "—"
    said = []
    for key in ("clean_accuracy", "robust_accuracy"):
        diff, verdict = compare(a.values(key), b.values(key))
        said.append(f"{100 * diff:+.1f} {call(diff, verdict)}")
    return " / ".join(said)


def worst_case_mean(r: Row) -> float:
    return mean_std(r.values("robust_accuracy"))[0]


def sat_baseline(rows: dict[str, Row]) -> Row:
    """The SAT row the others are called against: plain SAT or SAT with the budget warm-up,
    the higher mean worst case (a call against a tiny student stalled at chance says nothing)."""
    tested = [rows[r] for r in SAT_ROWS if r in rows and rows[r].tests]
    return max(tested, key=worst_case_mean) if tested else rows["sat"]


def summary(rows: dict[str, Row], best: Row | None, baseline: Row) -> list[str]:
    """The table's facts in words (generated): the best row, the others against it, and the
    distillation rows against SAT, on worst case, by the study's rule."""
    if best is None:
        return []

    def grouped(against: Row, rows_: list[Row]) -> str:
        verdicts: dict[str, list[str]] = {}
        for r in rows_:
            _, verdict = compare(r.values("robust_accuracy"), against.values("robust_accuracy"))
            verdicts.setdefault(call(0.0, verdict), []).append(LABELS[r.row])
        return "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(verdicts.items())) or "none"

    mean, std = mean_std(best.values("robust_accuracy"))
    others = [r for r in rows.values() if r is not best and r.tests]
    distilled = [r for r in rows.values() if r.row not in SAT_ROWS and r.tests and baseline.tests]
    return [
        f"Generated summary, worst case: highest mean: {LABELS[best.row]} "
        f"({100 * mean:.1f}{'' if std is None else f' ± {100 * std:.1f}'}); the other rows "
        f"against it: {grouped(best, others)}. Distillation rows against "
        f"{LABELS[baseline.row]}: {grouped(baseline, distilled)}.",
        "",
    ]


def student_section(
    load: Loader,
    student: str,
    unavailable: dict[str, str],
    linked: Loader | None = None,
    costs: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    rows = {row: Row(load, row, student, linked) for row in METHODS}
    ranked = [r for r in rows.values() if r.tests]
    best = max(ranked, key=worst_case_mean, default=None)
    baseline = sat_baseline(rows)
    # the epoch cost's unit: the SAT finals of both SAT rows (same attack steps), pooled
    sat_finals = [unit for row in SAT_ROWS for unit in rows[row].trains]
    lines = [
        f"### `{student}` ({PARAMETERS.get(student, '')})",
        "",
        "Test: clean and worst case per sample over the study's six rows (clean, FGSM, PGD, "
        f"DPGD, APGD-CE, APGD-T) on the first {N_EVAL:,} test images (mean ± sample std "
        f"over seeds, %); AutoAttack standard on the first {N_AA}, seed 0. Calls on clean / "
        "worst case, difference of means in points: called only beyond the sum of the two "
        f"seed spreads. Best = the highest mean worst case{f': {LABELS[best.row]}' if best else ''}"
        f". vs SAT = against the SAT row with the higher mean worst case ({LABELS[baseline.row]})"
        ". Epoch cost: the finals' median epoch seconds, averaged, over those of all SAT finals "
        "(both SAT rows) on the same machine (wall-clock on a shared machine: rough).",
        "",
        "| method | lr | clean | worst case | AutoAttack | epoch cost vs SAT | vs SAT "
        "| vs best | val. PGD-10, last 10 epochs | seeds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    measured: set[tuple[str, str]] = set()  # the cost files behind ‡ cells
    for row, r in rows.items():
        label = LABELS[row] + (" (at chance)" if r.at_chance() else "")
        if row in unavailable and not r.units:
            lines.append(f"| {label} | method not available: {unavailable[row]} |" + " |" * 8)
            continue
        lines.append(
            f"| {label} | {'—' if r.lr is None else f'{r.lr:g}'} | "
            f"{mean_spread(r.values('clean_accuracy'))} | "
            f"{mean_spread(r.values('robust_accuracy'))} | {autoattack_cell(r)} | "
            f"{r.cost_vs(sat_finals, costs, measured)} | "
            f"{calls(r, baseline)} | {calls(r, best) if best else '—'} | {r.last_gain()} | "
            f"{len(r.tests)} |"
        )
    retrained = {
        LABELS[r.row]: r.retrained_gap for r in rows.values() if r.retrained_gap is not None
    }
    if retrained:
        gaps = ", ".join(f"{label} {half_up(gap)}" for label, gap in retrained.items())
        lines += [
            "",
            "† AutoAttack ran on a student retrained with the settings and seed of the one "
            "the seed-0 test measured (whose file was not at hand); the largest gap between "
            f"their per-epoch validation accuracies, in points: {gaps} (0.0: the same "
            "training, bit for bit on these numbers).",
        ]
    if measured:
        where = "; ".join(f"{name}: `{file}`" for name, file in sorted(measured))
        lines += [
            "",
            "‡ No SAT final ran on this row's machine: the epoch cost is the ratio measured "
            "in one process on it by `experiments/leaderboard_costs.py` (the trainer's timer "
            f"for a steady epoch over SAT's, the same student; {where}).",
        ]
    for line in one_process_costs(student, costs or {}):
        lines += ["", line]
    lines += ["", *summary(rows, best, baseline), *grid_table(load, student), ""]
    return lines


def grid_table(load: Loader, student: str) -> list[str]:
    lrs = sorted({lr for row in METHODS for lr in grid_lrs(load, row, student)[0]} | set(LRS))
    lines = [
        f"Validation grid, `{student}` (final-epoch clean / PGD-10, %, seed 0):",
        "",
        "| method | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | selected |",
        "| --- | " + " | ".join("---:" for _ in lrs) + " | ---: |",
    ]
    for row in METHODS:
        units = [load("train", grid_name(row, student, lr)) for lr in lrs]
        cells = [
            f"{pct(final_value(u, 'clean_accuracy'))} / {pct(final_value(u))}" if u else ""
            for u in units
        ]
        lr = selected_lr(load, row, student)
        lines.append(
            f"| {LABELS[row]} | " + " | ".join(cells) + f" | {'—' if lr is None else f'{lr:g}'} |"
        )
    return lines


def plot(load: Loader, student: str, path: Path, linked: Loader | None = None) -> Path | None:
    """Rows at chance are named in the title, not drawn: at 10% they would squeeze the
    trained rows into a corner."""
    points, styles, at_chance = [], [], []
    for style, row in enumerate(METHODS):
        r = Row(load, row, student, linked)  # the table's rows: at chance as it says
        if r.tests and r.at_chance():
            at_chance.append(LABELS[row])
        elif r.tests:
            (clean, clean_std), (robust, robust_std) = (
                mean_std(r.values(key)) for key in ("clean_accuracy", "robust_accuracy")
            )
            points.append((LABELS[row], 100 * clean, 100 * (clean_std or 0), 100 * robust,
                           100 * (robust_std or 0)))  # fmt: skip
            styles.append(style)
    title = f"{student}: mean ± sample std over seeds"
    if at_chance:
        title += f"\nat chance, not drawn (see the table): {', '.join(at_chance)}"
    if not points:
        return None
    return errorbar_scatter(points, path, xlabel="clean accuracy (%)",
                            ylabel="worst case, clean and 5 attacks (%)", title=title,
                            styles=styles)  # fmt: skip


def report_section(
    load: Loader,
    out: Path,
    units: list[dict[str, Any]],
    unavailable: dict[str, str],
    linked: Loader | None = None,
    costs: dict[str, dict[str, Any]] | None = None,
    study_out: Path = Path(STUDY_OUT),
) -> str:
    lines: list[str] = []
    for student in STUDENTS:
        lines += student_section(load, student, unavailable, linked, costs)
        png = plot(load, student, out.parent / f"leaderboard-{student}.png", linked)
        if png is not None:
            lines += [
                f"![{student}: clean against worst case]({FIGURES}/{png.name})",
                "",
            ]
    linked = sorted(u["unit"] for u in units if "linked_from" in u)
    hours = sum(work_seconds(u) for u in units) / 3600
    if units:
        code, machines = code_and_machines({u["unit"]: u for u in units})
        lines += [
            f"Units: {len(units)} finished, {len(linked)} of them the study's (reused), "
            f"{hours:.1f} hours of recorded work. Code: {code}. Machines: {machines}. Raw "
            f"JSON: `{out}/` and the study's `{study_out}/`.",
            "",
        ]
    else:
        lines += ["No unit finished yet.", ""]
    return "\n".join(lines)


def write_report(
    report_path: str | None, store: Any, unavailable: dict[str, str] | None = None
) -> None:
    """Rewrite the generated part of ``report_path`` and the plots beside ``store.out``."""
    if not report_path:
        return
    load = store.load
    names = {(k, n) for k in ("train", "retrain", "test", "autoattack") for n in _names(load)}
    units = [u for u in (load(k, n) for k, n in sorted(names)) if u is not None]
    linked = getattr(store, "linked", None)  # the study's units behind reused ones
    costs = load_costs(Path(store.out).parent / COSTS)
    study = getattr(store, "study_out", STUDY_OUT)
    body = report_section(load, store.out, units, unavailable or {}, linked, costs, study)
    replace_generated(Path(report_path), BEGIN, END, body)


def _names(load: Loader) -> list[str]:
    names = []
    for student in STUDENTS:
        for row in METHODS:
            names += [grid_name(row, student, lr) for lr in grid_lrs(load, row, student)[0]]
            names += [final_name(row, student, seed) for seed in SEEDS]
    return names
