"""Unit files and lock files: where a study's results and claims live."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from study_runner.provenance import command_line, provenance

logger = logging.getLogger("experiments.study_runner")


def write_text_atomically(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # a plain open's mode, not mkstemp's 0600
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_units(folder: Path) -> dict[str, dict[str, Any]]:
    """Every unit file in ``folder``, by unit id (``kind/name``), in file-name order."""
    units = (json.loads(p.read_text()) for p in sorted(folder.glob("*.json")))
    return {unit["unit"]: unit for unit in units}


class ResultStore:
    """``<out>/<kind>-<name>.json`` per finished unit; locks in ``<work>``. While
    ``rerunning``, new files go to ``<work>/rerun/`` instead of ``out``."""

    def __init__(self, out: Path, work: Path, *, device: str = "cpu") -> None:
        self.out, self.work, self.device = Path(out), Path(work), device
        self.rerun_dir = self.work / "rerun"
        self.rerunning = False
        self.command = ""  # the rerun command of the unit at work, recorded in its files
        self._held: dict[Path, int] = {}  # the locks this process holds: their descriptors
        self._trained_here: set[Path] = set()  # rerun trainings this process started
        # the code's commit and dirty flag when the unit at work started (the runner's)
        self.code_at_start: dict[str, Any] | None = None

    def path(self, kind: str, name: str) -> Path:
        return (self.rerun_dir if self.rerunning else self.out) / f"{kind}-{name}.json"

    def work_path(self, name: str) -> Path:
        """A unit's work in progress (a training run's folder, an evaluation's resumable
        state): ``<work>/<name>``, or ``<work>/rerun/<name>`` while rerunning, so that a
        rerun does the work again, as on a fresh clone, instead of finding the committed
        unit's finished student or finished evaluation."""
        return (self.rerun_dir if self.rerunning else self.work) / name

    def folder_to_train(self, name: str) -> Path:
        """:meth:`work_path`, where a rerun first deletes the finished run an earlier
        rerun left (an unfinished one resumes): the training a rerun records is its own.
        A run this process trained (a test unit's student, which the AutoAttack unit rerun
        with it evaluates too) is kept: deleting it trained the same student twice, and
        on a GPU a different one."""
        from dard_plugin.recipes.settings import existing_run, remove_run

        folder = self.work_path(name)
        if self.rerunning and folder not in self._trained_here:
            if existing_run(folder) == "finished":
                remove_run(folder)
            self._trained_here.add(folder)
        return folder

    def evaluation_state(self, filename: str, kind: str, name: str) -> Path:
        """:meth:`work_path` of an evaluation's resumable state file, where a rerun first
        deletes the state an earlier rerun of the unit ``kind/name`` finished with (its
        JSON is in ``<work>/rerun/``): the rerun attacks again, as on a fresh clone."""
        path = self.work_path(filename)
        if self.rerunning and (self.rerun_dir / f"{kind}-{name}.json").is_file():
            path.unlink(missing_ok=True)
        return path

    def trained_student(self, name: str, settings: dict[str, Any]) -> Path | None:
        """The finished student of run ``name`` that a test unit may evaluate: its file in
        :meth:`work_path` when the committed train unit recorded exactly ``settings``
        (its ``run`` field, compared on ``settings``' keys); None when there is no such file,
        or while rerunning (a rerun trains first). A student whose train unit recorded other
        settings (the plan changed, say a new learning rate was selected) is refused, naming
        its folder, rather than evaluated as if it were this run's."""
        student = self.work_path(name) / "student.pt"
        if self.rerunning or not student.is_file():
            return None
        unit = self.load("train", name)
        run = unit.get("run", {}) if unit is not None else {}
        wanted = json.loads(json.dumps(settings))  # as JSON stores them: tuples are lists
        shared = sorted(key for key in wanted if key in run)  # a setting added since: unseen
        if not shared:
            return None  # trained but not recorded: training again resumes and records it
        changed = ", ".join(
            f"{key}: {run[key]!r} recorded, {wanted[key]!r} now"
            for key in shared
            if run[key] != wanted[key]
        )
        if changed:
            raise ValueError(
                f"{student} was trained with other settings than run {name!r} has now "
                f"({changed}): delete {student.parent} and train-{name}.json to train it again"
            )
        return student

    def load(self, kind: str, name: str) -> dict[str, Any] | None:
        """The finished unit in ``out`` (never a rerun's file), or None."""
        path = self.out / f"{kind}-{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def collect(self, source: Path) -> list[str]:
        """Copy into ``out`` the unit files in ``source`` that ``out`` lacks (units finished
        elsewhere: another worktree, a GPU machine's output folder); the ids copied. Every
        file is checked first and nothing is copied if one is wrong: it must be a unit file
        whose ``unit`` matches its name, and one that ``out`` already has must be the same
        result (equal apart from its timing and provenance is not enough: equal bytes)."""
        source = Path(source)
        if not source.is_dir():
            raise ValueError(f"--from must be a folder of unit files, got {source}")
        new: list[tuple[str, Path, str]] = []
        for path in sorted(source.glob("*.json")):
            text = path.read_text()
            try:
                unit = json.loads(text)["unit"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path} is not a unit file (no 'unit' field)") from None
            kind, _, name = str(unit).partition("/")
            if path.name != f"{kind}-{name}.json":
                raise ValueError(f"{path} holds unit {unit!r}, whose file is {kind}-{name}.json")
            target = self.out / path.name
            if target.is_file():
                if target.read_text() != text:
                    raise ValueError(
                        f"{path} and {target} are two different results of {unit}: keep one"
                    )
                continue
            new.append((unit, target, text))
        for unit, target, text in new:
            write_text_atomically(target, text)
            logger.info("collected %s -> %s", unit, target)
        return [unit for unit, _, _ in new]

    def record(self, kind: str, name: str, payload: dict[str, Any], seconds: float) -> Path:
        """Write a finished unit's file. Its provenance is read now; where the checkout's
        commit or dirty flag differs from when the unit started (a commit, or an edit,
        while it ran), the file records that state too, as ``code_at_start``."""
        path = self.path(kind, name)
        found = provenance()
        start = self.code_at_start
        moved = start is not None and any(found.get(k) != v for k, v in start.items())
        if moved:
            logger.warning("%s/%s: the code changed while it ran (%s at start)", kind, name, start)
        body = {
            "unit": f"{kind}/{name}",
            "command": self.command,
            "invoked": command_line(),
            "device": self.device,
            "seconds": seconds,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "provenance": found,
            **({"code_at_start": start} if moved else {}),
            **payload,
        }
        write_text_atomically(path, json.dumps(body, indent=2))
        logger.info("%s/%s done in %.0f s -> %s", kind, name, seconds, path)
        return path

    def record_training(self, name: str, payload: dict[str, Any], seconds: float) -> Path:
        """A training's unit file: ``train-<name>``, or ``retrain-<name>`` where this store
        already holds ``train-<name>`` (a student trained again for an evaluation because its
        file was not at hand: recorded beside the committed unit, not over it). A rerun's
        goes to ``<work>/rerun/`` as ``train-``."""
        own = None if self.rerunning else self.load("train", name)
        kind = "retrain" if own is not None and "linked_from" not in own else "train"
        return self.record(kind, name, payload, seconds)

    def claim(self, kind: str, name: str) -> Path | None:
        """Take a unit for this process: a lock file in ``work`` held with an exclusive
        ``flock``, so that several processes running the same plan share its units. The
        system releases the lock when its process ends, however it ends: no pid is judged
        alive or dead (a recorded pid could name another live process after a restart, and
        two processes could both take over a dead one's lock). None when another process
        holds the unit; :meth:`release` gives it back."""
        self.work.mkdir(parents=True, exist_ok=True)
        lock = self.work / f"{kind}-{name}.lock"
        while True:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                try:  # the holder may have released (unlinked) it between open and flock
                    current = os.stat(lock).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    current = False
                if current:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())  # for people: who holds it
                    self._held[lock] = fd
                    return lock
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def release(self, lock: Path) -> None:
        """Give back a unit taken with :meth:`claim` (the file goes first, then the lock)."""
        lock.unlink(missing_ok=True)
        fd = self._held.pop(lock, None)
        if fd is not None:
            os.close(fd)
