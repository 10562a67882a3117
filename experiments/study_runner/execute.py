"""Units, the plan, and their execution: resumable, one unit at a time, shared by processes."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study_runner.provenance import check_code_location, code_state, script_path
from study_runner.store import ResultStore

logger = logging.getLogger("experiments.study_runner")


@dataclass(frozen=True)
class Unit:
    """One piece of work that writes one result file: ``<kind>-<name>.json``.

    ``work`` returns the payload to record, or None where it recorded its files itself (a
    test unit that trains its student first records both). ``minutes`` is the estimate on
    one CPU thread (None where unknown); ``unavailable`` says why a planned unit cannot run
    yet (a method this installation lacks): it stays in the plan and the report. ``shares``
    names work that other units may also do (a student that a test unit and an AutoAttack
    unit both train where it is missing): a process holds it while the unit runs, and the
    unit waits while another process holds it, so that no two processes train one run."""

    kind: str
    name: str
    work: Callable[[], dict[str, Any] | None] = field(compare=False, repr=False)
    minutes: float | None = None
    unavailable: str | None = None
    shares: str | None = None

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    def named_in(self, only: Iterable[str]) -> bool:
        return any(key in (self.id, self.name) for key in only)


class OnlyError(ValueError):
    """``--only`` names a unit this runner cannot run."""


class UnknownUnitError(OnlyError):
    """``--only`` names a unit the plan does not hold."""


class ReusedUnitError(OnlyError):
    """``--only`` names a unit whose result the store reuses from elsewhere (another
    study's file with identical settings): it is rerun where it was made."""


def file_rerun_command(found: dict[str, Any]) -> str:
    """The command that reruns a result file's unit alone: the recorded one where it names
    the unit (``--only``). Files recorded before ``--only`` existed (most of the study's)
    record their phase's command, which skips finished units: for those, the recording
    script's ``run --only`` of the file's unit (a final's ``train/`` file is written by
    its ``test/`` unit, which has the same name), with the recorded ``--device`` and
    ``--threads``."""
    command, unit = str(found.get("command") or ""), str(found.get("unit") or "")
    if not command or not unit or "--only" in command:
        return command or "the command that made it"
    kind, _, name = unit.partition("/")
    if kind == "train" and name.startswith("final-"):
        unit = f"test/{name}"
    words = shlex.split(command)
    kept = [
        word
        for flag in ("--device", "--threads")
        if flag in words[:-1]
        for word in (flag, words[words.index(flag) + 1])
    ]
    return shlex.join([*words[:2], "run", "--only", unit, *kept])


class Runner:
    """Runs a definition's plan: ``plan()`` is asked again after each unit, finished units
    are skipped, each unit is claimed before it runs, ``report()`` follows each unit."""

    def __init__(
        self,
        *,
        store: ResultStore,
        plan: Callable[[], list[Unit]],
        report: Callable[[], None] | None = None,
        script: str | None = None,
        only: Iterable[str] | None = None,
        threads: int | None = None,
        prefer: Iterable[str] | None = None,
    ) -> None:
        self.store, self.plan, self.report = store, plan, report
        self.script = script_path(script)
        self.only = list(only or [])
        self.threads = threads
        self.prefer = {key: rank for rank, key in enumerate(prefer or [])}

    def ordered(self, units: list[Unit]) -> list[Unit]:
        """The plan with the ``prefer`` units first, in that order (by id or name); the
        others after them, in the plan's order."""
        if not self.prefer:
            return units
        last = len(self.prefer)

        def rank(unit: Unit) -> int:
            return min(self.prefer.get(unit.id, last), self.prefer.get(unit.name, last))

        return sorted(units, key=rank)  # stable: the plan's order among equals

    def rerun_command(self, unit: Unit) -> str:
        """The command that reruns exactly ``unit`` alone, from the repository root, with
        the study's default folders (a new user's: they are made as needed)."""
        parts = ["python", self.script, "run", "--only", unit.id]
        if self.store.device != "cpu":
            parts += ["--device", self.store.device]
        if self.threads:
            parts += ["--threads", str(self.threads)]
        return " ".join(shlex.quote(p) for p in parts)

    def run(self) -> list[str]:
        """Run the plan; returns the ids of the units run. A unit named in ``only`` that was
        finished when this process started is run again into ``<work>/rerun/``."""
        check_code_location()
        committed = {p.stem for p in self.store.out.glob("*.json")}
        if self.only:
            self.check_only(self.plan(), committed)
        self.store.out.mkdir(parents=True, exist_ok=True)
        self.store.work.mkdir(parents=True, exist_ok=True)
        ran: list[str] = []
        while True:
            for unit in self.ordered(self.plan()):
                if unit.id in ran or (self.only and not unit.named_in(self.only)):
                    continue
                rerun = bool(self.only) and f"{unit.kind}-{unit.name}" in committed
                if unit.unavailable or (not rerun and self.finished(unit)):
                    continue
                locks = self.claim(unit)
                if not locks:
                    continue
                try:
                    if rerun or not self.finished(unit):  # another process may have ended it
                        self._work(unit, rerun=rerun)
                        ran.append(unit.id)
                finally:
                    for lock in locks:
                        self.store.release(lock)
                break  # re-plan: a finished unit can make later units known
            else:
                break
        if self.report is not None and any(self.store.out.glob("*.json")):
            self.report()
        return ran

    def check_only(self, planned: list[Unit], committed: set[str]) -> None:
        """Refuse, before any work, an ``only`` that names no unit of the plan, or a unit
        whose result this store reuses from another (finished, but not in ``out``)."""
        assert self.only is not None
        unknown = [key for key in self.only if not any(u.named_in([key]) for u in planned)]
        if unknown:
            raise UnknownUnitError(
                f"--only {','.join(unknown)}: no such unit in the plan now (`plan` lists "
                "them; a unit that depends on others appears once they are finished, and "
                "a unit file's `command` names the unit that writes it)"
            )
        for unit in planned:
            if not unit.named_in(self.only) or f"{unit.kind}-{unit.name}" in committed:
                continue
            found = self.store.load(unit.kind, unit.name)
            if found is not None:
                where = found.get("linked_from", "another folder")
                raise ReusedUnitError(
                    f"--only {unit.id}: its result is reused from {where}, not run here; "
                    f"rerun it there: {file_rerun_command(found)}"
                )

    def claim(self, unit: Unit) -> list[Path]:
        """The unit's lock and, where it shares work, that work's; none (both released)
        where another live process holds either."""
        lock = self.store.claim(unit.kind, unit.name)
        if lock is None or unit.shares is None:
            return [] if lock is None else [lock]
        shared = self.store.claim("shared", unit.shares)
        if shared is None:
            self.store.release(lock)
            return []
        return [lock, shared]

    def finished(self, unit: Unit) -> bool:
        return self.store.load(unit.kind, unit.name) is not None

    def _work(self, unit: Unit, *, rerun: bool) -> None:
        logger.info("unit %s%s (pid %d)", unit.id, " (rerun)" if rerun else "", os.getpid())
        self.store.rerunning, self.store.command = rerun, self.rerun_command(unit)
        self.store.code_at_start = code_state()  # a unit's files record it if it moved
        try:
            started = time.perf_counter()
            payload = unit.work()
            if payload is not None:
                self.store.record(unit.kind, unit.name, payload, time.perf_counter() - started)
        finally:
            self.store.rerunning, self.store.command = False, ""
            self.store.code_at_start = None
        if not rerun and self.report is not None:
            self.report()

    def plan_table(self) -> str:
        """The plan as a markdown table: each unit, its state and its estimated minutes on
        one CPU thread (measured seconds where finished), and the total still to run."""
        lines = ["| unit | state | minutes (1 CPU thread) |", "| --- | --- | ---: |"]
        left, unknown = 0.0, 0
        for unit in self.plan():
            if self.only and not unit.named_in(self.only):
                continue
            done = self.store.load(unit.kind, unit.name)
            if done is not None:
                state = f"reused: `{done['linked_from']}`" if "linked_from" in done else "finished"
                minutes = f"{done.get('seconds', 0) / 60:.0f} (measured)"
            elif unit.unavailable:
                state, minutes = f"not available: {unit.unavailable}", "—"
            else:
                state = "to run"
                minutes = "?" if unit.minutes is None else f"{unit.minutes:.0f}"
                left += unit.minutes or 0.0
                unknown += unit.minutes is None
            lines.append(f"| `{unit.id}` | {state} | {minutes} |")
        lines.append(
            f"\nTo run: about {left:.0f} minutes ({left / 60:.1f} hours) on one CPU thread"
            + (f", and {unknown} units not yet estimated" if unknown else "")
            + "; later units appear as earlier ones finish (selection)."
        )
        return "\n".join(lines)


def add_arguments(
    parser: argparse.ArgumentParser, *, out: str, work: str, report: str
) -> argparse.ArgumentParser:
    """The command line every definition shares."""
    parser.add_argument(
        "action",
        nargs="?",
        choices=("plan", "run", "report", "collect"),
        default="run",
        help="plan: list the units and their compute; run (default): run what is not "
        "finished; report: rewrite the report from the unit files; collect: copy the unit "
        "files of --from that --out lacks (units run elsewhere), then rewrite the report",
    )
    parser.add_argument(
        "--from",
        dest="source",
        default=None,
        help="collect: a folder of unit files (another worktree's --out, a GPU machine's)",
    )
    parser.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=None,
        help="comma-separated units (kind/name or name): run only these; one already "
        "finished in --out is run again into WORK/rerun/",
    )
    parser.add_argument(
        "--prefer",
        type=_unit_list,
        default=None,
        help="a file of units (kind/name or name), one per line: those run first, in its "
        "order (the rest after them, in the plan's order); for committing cheap units first",
    )
    parser.add_argument("--out", default=out, help="unit JSON folder (default %(default)s)")
    parser.add_argument("--work", default=work, help="checkpoints, locks, reruns")
    parser.add_argument("--report", default=report, help="markdown to rewrite ('' for none)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--verbose", action="store_true", help="progress bars")
    return parser


def _unit_list(path: str) -> list[str]:
    """The non-empty, non-comment lines of the file at ``path``."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.split("#")[0].strip() for line in handle]
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error}") from None
    return [line for line in lines if line]


def main_for(args: argparse.Namespace, runner: Runner) -> None:
    """Do ``args.action`` with ``runner``."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.action == "plan":
        print(runner.plan_table())
    elif args.action == "report":
        if runner.report is not None:
            runner.report()
    elif args.action == "collect":
        if args.source is None:
            raise SystemExit("collect needs --from FOLDER (a folder of unit files)")
        try:
            collected = runner.store.collect(Path(args.source))
        except ValueError as error:
            raise SystemExit(f"collect: {error}") from None
        print(f"collected {len(collected)} units" + "".join(f"\n  {u}" for u in collected))
        if collected and runner.report is not None:
            runner.report()
    else:
        try:
            runner.run()
        except OnlyError as error:
            raise SystemExit(str(error)) from None
