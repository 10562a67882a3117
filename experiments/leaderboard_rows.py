"""The leaderboard's rows: one method on one student, its final units (the leaderboard's
and the study's it reuses) and the numbers its table line shows."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from typing import Any

from leaderboard_design import (
    CHANCE,
    FLAT,
    SEEDS,
    Loader,
    final_name,
    final_runs,
    final_value,
    machine,
    selected_lr,
)
from study_runner.report import mean_std


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
        self.planned = {run.name: run for run in final_runs(load, row, student)}
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
        # per seed with a test: stayed at chance (its last validation or its test clean
        # accuracy), and diverged (no student: its test recorded as 0 correct)
        self.chance = [
            t["suite"]["clean_accuracy"] <= CHANCE
            or (tr is not None and final_value(tr, "clean_accuracy") <= CHANCE)
            for t, tr in zip(tests, trains, strict=True)
            if t is not None
        ]
        self.diverged = sum(bool(t["suite"].get("diverged")) for t in self.tests)
        # tests that measured a student trained again (its file not at hand): the row's
        # curve and cost still read the first training's unit
        self.retrained_tests = sum(bool(t.get("retrained_student")) for t in self.tests)
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
        if ran is not None and abs(float(ran) - self.lr) > 1e-12:
            return None
        self.check_settings(unit)
        return unit

    def check_settings(self, unit: dict[str, Any]) -> None:
        """A unit of this row's final that recorded other settings than the plan's (epochs,
        seed, options, method, student) is refused, naming them: counted as the row's
        result, it was once checked on its learning rate alone."""
        name = str(unit.get("unit", "")).partition("/")[2]
        run = self.planned.get(name)
        if run is None:
            return
        wanted = json.loads(json.dumps({**asdict(run), **run.study_settings()}))
        recorded = unit.get("run", {})
        keys = ("epochs", "seed", "options", "method", "student", "row")
        changed = [
            f"{key}: {recorded[key]!r} recorded, {wanted[key]!r} planned"
            for key in keys
            if key in recorded and key in wanted and recorded[key] != wanted[key]
        ]
        if changed:
            raise ValueError(f"{unit['unit']} is not this plan's run ({'; '.join(changed)})")

    def values(self, key: str) -> list[float]:
        return [t["suite"][key] for t in self.tests]

    def at_chance(self) -> bool:
        """Every tested seed stayed at chance (the row is not drawn, nor called)."""
        return bool(self.chance) and all(self.chance)

    def chance_note(self) -> str:
        """The row's label's note: "at chance", or how many of its seeds stayed at chance
        (they count in its means: a run at chance is reported, not dropped) and diverged."""
        if not any(self.chance):
            return ""
        diverged = f", {self.diverged} diverged" if self.diverged else ""
        if self.at_chance():
            return f" (at chance{diverged})"
        return f" ({sum(self.chance)} of {len(self.chance)} seeds at chance{diverged})"

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
