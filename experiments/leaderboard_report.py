"""The leaderboard's report: per student, the table of rows with their calls, the
validation grid, and a plot of clean against worst-case accuracy, from the unit files (the
leaderboard's and the study's it reuses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leaderboard_design import (
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
    one_process_costs,
    one_process_ratio,
    selected_lr,
)
from leaderboard_rows import Row, work_seconds
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


def epoch_cost(
    r: Row,
    sat_finals: list[dict[str, Any]],
    costs: dict[str, dict[str, Any]] | None,
    used: set[tuple[str, str]],
) -> str:
    """The one-process ratio where measured, else the finals' wall-clock ratio (marked)."""
    ratio = one_process_ratio(r.row, r.student, costs or {})
    if ratio is not None:
        return f"{ratio:.1f}x"
    wall = r.cost_vs(sat_finals, costs, used)
    return wall if wall == "—" or wall.endswith("‡") else f"{wall} (wall)"


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
        ". Epoch cost: a steady epoch's seconds over SAT's on this student, measured in one "
        "process on one machine by `experiments/leaderboard_costs.py` (the file named below "
        "the table); marked (wall) where that file lacks the row: the finals' median epoch "
        "seconds over the SAT finals' on the same machine (wall-clock on a shared machine, "
        "where other processes ran: rough).",
        "",
        "| method | lr | clean | worst case | AutoAttack | epoch cost vs SAT | vs SAT "
        "| vs best | val. PGD-10, last 10 epochs | seeds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    measured: set[tuple[str, str]] = set()  # the cost files behind ‡ cells
    for row, r in rows.items():
        label = LABELS[row] + r.chance_note()
        if row in unavailable and not r.units:
            lines.append(f"| {label} | method not available: {unavailable[row]} |" + " |" * 8)
            continue
        lines.append(
            f"| {label} | {'—' if r.lr is None else f'{r.lr:g}'} | "
            f"{mean_spread(r.values('clean_accuracy'))} | "
            f"{mean_spread(r.values('robust_accuracy'))} | {autoattack_cell(r)} | "
            f"{epoch_cost(r, sat_finals, costs, measured)} | "
            f"{calls(r, baseline)} | {calls(r, best) if best else '—'} | {r.last_gain()} | "
            f"{len(r.tests)}{' §' if r.retrained_tests else ''} |"
        )
    retrained = {
        LABELS[r.row]: r.retrained_gap for r in rows.values() if r.retrained_gap is not None
    }
    if retrained:
        gaps = ", ".join(
            f"{label} {half_up(gap) if gap != float('inf') else 'n/a (other epochs)'}"
            for label, gap in retrained.items()
        )
        lines += [
            "",
            "† AutoAttack ran on a student retrained with the settings and seed of the one "
            "the seed-0 test measured (whose file was not at hand); the largest gap between "
            f"their per-epoch validation accuracies, in points: {gaps} (0.0: the same "
            "training, bit for bit on these numbers).",
        ]
    again = [f"{LABELS[r.row]} {r.retrained_tests}" for r in rows.values() if r.retrained_tests]
    if again:
        lines += [
            "",
            "§ Test units that measured a student trained again with the same settings (its "
            "file was not at hand; `retrain-` beside the first training's unit), by row: "
            f"{', '.join(again)}. The row's validation curve, at-chance check and epoch cost "
            "read the first training's unit.",
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
            at_chance.append(LABELS[row])  # partly at chance: drawn, its label says so
        elif r.tests:
            (clean, clean_std), (robust, robust_std) = (
                mean_std(r.values(key)) for key in ("clean_accuracy", "robust_accuracy")
            )
            label = LABELS[row] + r.chance_note()
            points.append((label, 100 * clean, 100 * (clean_std or 0), 100 * robust,
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
