"""The README's summary of the leaderboard: one line per method with both students side
by side (clean and worst case, mean ± sample std over seeds; AutoAttack at seed 0; the call
on worst case against the SAT baseline), from the same rows, the same unit files and the
same rule as the tables of ``docs/leaderboard.md``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from leaderboard_design import LABELS, METHODS, SEEDS, STUDENTS, Loader, call
from leaderboard_report import autoattack_cell, sat_baseline, worst_case_mean
from leaderboard_rows import Row
from study_runner.report import compare, mean_spread, replace_generated

logger = logging.getLogger(__name__)

MARKERS = ("<!-- leaderboard-summary:begin -->", "<!-- leaderboard-summary:end -->")


def _vs(r: Row, baseline: Row) -> str:
    """The worst-case call against the baseline, or why there is none."""
    if r.at_chance():
        return "at chance"
    if not r.tests:
        return "not run yet"
    if r is baseline:
        return "baseline"
    if not baseline.tests:
        return "—"  # no SAT row measured yet: nothing to call against
    diff, verdict = compare(r.values("robust_accuracy"), baseline.values("robust_accuracy"))
    return f"{100 * diff:+.1f} {call(diff, verdict)}{r.chance_note()}"


def _cell(r: Row, key: str, bold: bool) -> str:
    text = mean_spread(r.values(key))
    if r.tests and len(r.tests) < len(SEEDS) and "seed" not in text:
        text += f" ({len(r.tests)} seeds)"
    return f"**{text}**" if bold else text


def summary_table(load: Loader, linked: Loader | None = None) -> str:
    """The summary's markdown: a header line, the table, and what its marks mean."""
    rows = {s: {m: Row(load, m, s, linked) for m in METHODS} for s in STUDENTS}
    baselines = {s: sat_baseline(rows[s]) for s in STUDENTS}
    best = {
        s: max((r for r in rows[s].values() if r.tests), key=worst_case_mean, default=None)
        for s in STUDENTS
    }
    head = "| method | " + " | ".join(
        f"`{s}` clean | worst case | AutoAttack | vs SAT" for s in STUDENTS
    )
    named = "; ".join(f"`{s}`: {LABELS[baselines[s].row]}" for s in STUDENTS)
    lines = [
        "Generated from the leaderboard's unit files by `python experiments/leaderboard.py "
        "report` (the tables of [docs/leaderboard.md](docs/leaderboard.md), with their "
        "learning rates, grids, epoch costs and provenance). Fashion-MNIST, L-inf eps 0.1, "
        "teacher `dard-fmnist-teacher`; % on the first 1,000 test images, worst case per "
        "sample over clean and five attacks, mean ± sample std over seeds; AutoAttack "
        "standard on the first 500 at seed 0 (†: on a retrained student, see the page). vs "
        f"SAT: the worst-case difference to the student's SAT row with the higher mean ({named}), "
        "called only beyond the sum of the two seed spreads. Bold: the highest mean worst "
        "case per student.",
        "",
        head + " |",
        "| --- |" + " ---: | ---: | ---: | --- |" * len(STUDENTS),
    ]
    for method in METHODS:
        cells = []
        for s in STUDENTS:
            r = rows[s][method]
            top = r is best[s]
            cells += [
                _cell(r, "clean_accuracy", False),
                _cell(r, "robust_accuracy", top),
                autoattack_cell(r),
                _vs(r, baselines[s]),
            ]
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(readme: str | Path | None, store: Any) -> bool:
    """Rewrite the summary between :data:`MARKERS` in ``readme``; a file without the
    markers is left alone (the README shows the summary where it carries them). True when
    written."""
    if not readme:
        return False
    path = Path(readme)
    text = path.read_text() if path.is_file() else ""
    if MARKERS[0] not in text or MARKERS[1] not in text:
        logger.info("%s has no %s markers: its summary is not rewritten", path, MARKERS[0])
        return False
    body = summary_table(store.load, getattr(store, "linked", None))
    replace_generated(path, *MARKERS, body)
    return True
