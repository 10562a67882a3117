"""experiments/study_runner/: the plan's order, resume, claiming, provenance, and the
recorded command that reruns one unit alone, on a synthetic study (no training)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO_ROOT, hold_lock

sys.path.insert(0, str(REPO_ROOT / "experiments"))
from study_runner import ResultStore, Runner, Unit
from study_runner.provenance import cpu_model

# A whole study definition in a few lines: two squares, then their sum once both are done.
DEFINITION = textwrap.dedent(
    """
    import argparse, sys
    sys.path.insert(0, {experiments!r})
    from pathlib import Path
    from study_runner import ResultStore, Runner, Unit, add_arguments, main_for
    from study_runner.report import replace_generated
    from study_runner.store import load_units

    def main():
        parser = add_arguments(argparse.ArgumentParser(), out="results/squares",
                               work="runs/squares", report="report.md")
        args = parser.parse_args()
        store = ResultStore(Path(args.out), Path(args.work), device=args.device)

        def plan():
            units = [Unit("square", f"n{{n}}", lambda n=n: {{"value": n * n}}, 0.5)
                     for n in (2, 3)]
            done = [store.load("square", f"n{{n}}") for n in (2, 3)]
            if all(done):
                units.append(Unit("sum", "all", lambda: {{"value": sum(
                    u["value"] for u in done)}}, 0.1))
            return units

        def report():
            units = load_units(Path(args.out))
            body = "\\n".join(f"{{k}}: {{u['value']}}" for k, u in units.items())
            replace_generated(Path(args.report), "<!-- b -->", "<!-- e -->", body)

        main_for(args, Runner(store=store, plan=plan, report=report, only=args.only,
                              threads=args.threads))

    main()
    """
)


def write_definition(folder: Path) -> Path:
    script = folder / "squares.py"
    script.write_text(DEFINITION.format(experiments=str(REPO_ROOT / "experiments")))
    return script


def run_command(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command)
    assert argv[0] == "python"
    return subprocess.run(
        [sys.executable, *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def square_units(store: ResultStore, log: list[str]) -> list[Unit]:
    def work(name: str, value: int) -> dict[str, int]:
        log.append(name)
        return {"value": value}

    units = [Unit("square", f"n{n}", lambda n=n: work(f"n{n}", n * n), 1.0) for n in (2, 3, 4)]
    if store.load("square", "n2") is not None:  # known only once n2 is finished
        units.insert(1, Unit("late", "after-n2", lambda: work("after-n2", 0), 2.0))
    units.append(Unit("square", "n5", lambda: work("n5", 25), unavailable="no method n5"))
    return units


def test_plan_order_replanning_resume_and_provenance(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "out", tmp_path / "work")
    log: list[str] = []
    runner = Runner(store=store, plan=lambda: square_units(store, log), script="x/study.py")
    table = runner.plan_table()
    assert "| `square/n5` | not available: no method n5 | — |" in table
    assert "about 3 minutes" in table  # n2, n3, n4: after-n2 is not known yet
    assert runner.run() == ["square/n2", "late/after-n2", "square/n3", "square/n4"]
    assert log == ["n2", "after-n2", "n3", "n4"]  # re-planned after n2; n5 never runs
    unit = json.loads((tmp_path / "out" / "square-n3.json").read_text())
    assert unit["unit"] == "square/n3" and unit["value"] == 9
    assert unit["command"] == "python x/study.py run --only square/n3"
    provenance = unit["provenance"]
    assert len(provenance["git_commit"]) == 40 and isinstance(provenance["git_dirty"], bool)
    assert provenance["versions"]["torch"] != "not installed"
    machine = provenance["machine"]
    assert machine["cpu_model"] and machine["cuda"] is None and machine["torch_threads"] >= 1
    assert "finished (measured)" not in runner.plan_table()

    log.clear()
    assert runner.run() == []  # resumed: everything is finished
    (tmp_path / "out" / "square-n4.json").unlink()  # as if killed during n4
    assert runner.run() == ["square/n4"] and log == ["n4"]


def test_preferred_units_run_first_in_their_order_then_the_plans(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "out", tmp_path / "work")
    log: list[str] = []
    prefer = ["square/n4", "after-n2", "square/n5", "square/n3"]  # by id or by name
    runner = Runner(store=store, plan=lambda: square_units(store, log), prefer=prefer)
    # after-n2 appears once n2 is done; n5 is unavailable and never runs
    assert runner.run() == ["square/n4", "square/n3", "square/n2", "late/after-n2"]


def test_a_prefer_file_is_read_one_unit_per_line(tmp_path: Path) -> None:
    from study_runner import add_arguments

    listed = tmp_path / "first.txt"
    listed.write_text("# cheap units first\nsquare/n4\n\n  square/n2  # then this\n")
    parser = add_arguments(argparse.ArgumentParser(), out="o", work="w", report="")
    assert parser.parse_args(["--prefer", str(listed)]).prefer == ["square/n4", "square/n2"]


def test_units_held_by_a_live_process_are_left_to_it(tmp_path: Path) -> None:
    """A unit is held by a lock (flock), not by the pid a lock file names: a lock file
    naming a live process that holds no lock (a pid reused after a restart, or this
    process's own) was once left alone for ever, its unit silently skipped."""
    store = ResultStore(tmp_path / "out", tmp_path / "work")
    log: list[str] = []
    runner = Runner(store=store, plan=lambda: square_units(store, log))
    held = hold_lock(tmp_path / "work" / "square-n3.lock")  # another process's claim
    (tmp_path / "work" / "square-n4.lock").write_text(str(os.getppid()))  # a live pid, no lock
    (tmp_path / "work" / "square-n2.lock").write_text(str(os.getpid()))  # this process's pid
    try:
        assert runner.run() == ["square/n2", "late/after-n2", "square/n4"]
        assert not (tmp_path / "out" / "square-n3.json").exists()
        locks = [p.name for p in (tmp_path / "work").glob("*.lock")]
        assert locks == ["square-n3.lock"]  # the holder's; this process released its own
    finally:
        os.close(held)
    assert runner.run() == ["square/n3"]  # released: taken


def test_a_unit_records_the_code_it_started_with_where_it_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Provenance is read when a unit ends: a commit made while it ran was recorded as the
    unit's code. The state at its start is now recorded beside it where the two differ."""
    import study_runner.execute as execute
    from study_runner.provenance import code_state

    store = ResultStore(tmp_path / "out", tmp_path / "work")
    log: list[str] = []
    Runner(store=store, plan=lambda: square_units(store, log)[:1]).run()
    assert "code_at_start" not in json.loads((tmp_path / "out" / "square-n2.json").read_text())
    earlier = {**code_state(), "git_commit": "a" * 40}
    monkeypatch.setattr(execute, "code_state", lambda: earlier)
    Runner(store=store, plan=lambda: [u for u in square_units(store, log) if u.name == "n4"]).run()
    recorded = json.loads((tmp_path / "out" / "square-n4.json").read_text())
    assert recorded["code_at_start"] == earlier
    assert recorded["provenance"]["git_commit"] != "a" * 40


def test_a_training_recorded_again_goes_beside_the_committed_unit(tmp_path: Path) -> None:
    """A student trained again for an evaluation (its file not at hand) was recorded over
    the committed train unit by the study (the leaderboard already wrote retrain-): the
    committed history, which the report reads, was replaced by another run's."""
    store = ResultStore(tmp_path / "out", tmp_path / "work")
    assert store.record_training("final-s0", {"history": [1]}, 1.0).name == "train-final-s0.json"
    again = store.record_training("final-s0", {"history": [2]}, 1.0)
    assert again.name == "retrain-final-s0.json"
    assert store.load("train", "final-s0")["history"] == [1]  # the committed unit kept
    store.rerunning = True
    rerun = store.record_training("final-s0", {"history": [3]}, 1.0)
    assert rerun == tmp_path / "work" / "rerun" / "train-final-s0.json"


def test_a_lock_whose_holder_died_is_taken_over(tmp_path: Path) -> None:
    """The system releases a dead holder's lock: its file, left behind, is no claim."""
    store = ResultStore(tmp_path / "out", tmp_path / "work")
    lock = tmp_path / "work" / "square-n2.lock"
    holder = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); os._exit(0)"
    )
    lock.parent.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", holder, str(lock)], check=True)
    assert lock.read_text()  # killed while holding it: the file stays
    taken = store.claim("square", "n2")
    assert taken == lock and lock.read_text().strip() == str(os.getpid())
    assert ResultStore(tmp_path / "out", tmp_path / "work").claim("square", "n2") is None
    store.release(lock)
    assert not lock.exists()


def test_units_that_share_work_never_run_it_in_two_processes(tmp_path: Path) -> None:
    """A test unit and an AutoAttack unit that both train one student where it is missing:
    while another live process holds that student's training (it runs the test unit),
    the AutoAttack unit waits; once it is free, the unit runs and releases both locks."""
    store = ResultStore(tmp_path / "out", tmp_path / "work")
    log: list[str] = []

    def plan() -> list[Unit]:
        return [
            Unit("test", "final-s0", lambda: log.append("test") or {}, 1.0, shares="final-s0"),
            Unit("autoattack", "final-s0", lambda: log.append("aa") or {}, 1.0,
                 shares="final-s0"),
            Unit("test", "final-s1", lambda: log.append("s1") or {}, 1.0, shares="final-s1"),
        ]  # fmt: skip

    runner = Runner(store=store, plan=plan)
    work = tmp_path / "work"
    unit = hold_lock(work / "test-final-s0.lock")  # another process's unit
    training = hold_lock(work / "shared-final-s0.lock")  # ... and its training
    try:
        assert runner.run() == ["test/final-s1"] and log == ["s1"]
        assert sorted(p.name for p in work.glob("*.lock")) == [
            "shared-final-s0.lock",
            "test-final-s0.lock",
        ]  # the AutoAttack unit's own lock was given back when the shared one was busy
        (work / "shared-final-s0.lock").unlink()  # the other process's training ended
        os.close(training)
        assert runner.run() == ["autoattack/final-s0"]
        assert [p.name for p in work.glob("*.lock")] == ["test-final-s0.lock"]
    finally:
        os.close(unit)


def test_the_recorded_command_reruns_that_unit_alone_for_a_new_user(tmp_path: Path) -> None:
    author = tmp_path / "author"
    author.mkdir()
    script = write_definition(author)
    first = run_command(f"python {script}", author)
    assert first.returncode == 0, first.stderr[-2000:]
    out = author / "results" / "squares"
    assert sorted(p.name for p in out.glob("*.json")) == [
        "square-n2.json",
        "square-n3.json",
        "sum-all.json",
    ]
    assert "sum/all: 13" in (author / "report.md").read_text()
    recorded = json.loads((out / "square-n3.json").read_text())
    assert recorded["command"] == f"python {script} run --only square/n3"

    # A new user: the committed results and the script, no work folder, nothing made by hand.
    user = tmp_path / "user"
    (user / "results").mkdir(parents=True)
    (user / "results" / "squares").mkdir()
    for path in out.glob("*.json"):
        (user / "results" / "squares" / path.name).write_text(path.read_text())
    committed = {p.name: p.read_text() for p in (user / "results" / "squares").glob("*")}
    again = run_command(recorded["command"], user)
    assert again.returncode == 0, again.stderr[-2000:]
    rerun = list((user / "runs" / "squares" / "rerun").glob("*.json"))
    assert [p.name for p in rerun] == ["square-n3.json"]  # that unit, alone
    assert json.loads(rerun[0].read_text())["value"] == 9
    assert committed == {p.name: p.read_text() for p in (user / "results" / "squares").glob("*")}

    unknown = run_command(f"python {script} run --only square/n9", author)
    assert unknown.returncode != 0 and "--only square/n9: no such unit" in unknown.stderr

    planned = run_command(f"python {script} plan --only sum/all", author)
    assert planned.returncode == 0 and "| `sum/all` | finished |" in planned.stdout


def test_collect_copies_units_finished_elsewhere_then_reports(tmp_path: Path) -> None:
    """Units run in another worktree (or on a GPU machine) join the study's folder with
    `collect --from`; a wrong or conflicting file stops it before anything is copied."""
    elsewhere, here = tmp_path / "elsewhere", tmp_path / "here"
    for folder in (elsewhere, here):
        folder.mkdir()
    script = write_definition(elsewhere)
    assert run_command(f"python {script}", elsewhere).returncode == 0
    (here / "report.md").write_text("<!-- b -->\n<!-- e -->\n")
    units = elsewhere / "results" / "squares"
    (here / "results" / "squares").mkdir(parents=True)
    (here / "results" / "squares" / "square-n2.json").write_text(
        (units / "square-n2.json").read_text()
    )
    done = run_command(f"python {script} collect --from {units}", here)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "collected 2 units" in done.stdout  # n2 was there already, the same
    assert sorted(p.name for p in (here / "results" / "squares").glob("*.json")) == [
        "square-n2.json",
        "square-n3.json",
        "sum-all.json",
    ]
    assert "sum/all: 13" in (here / "report.md").read_text()
    mode = (here / "results" / "squares" / "sum-all.json").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask

    other = tmp_path / "other"
    other.mkdir()
    (other / "square-n4.json").write_text((units / "square-n2.json").read_text())
    refused = run_command(f"python {script} collect --from {other}", here)
    assert refused.returncode != 0 and "holds unit 'square/n2'" in refused.stderr
    (other / "square-n4.json").unlink()
    changed = json.loads((units / "square-n3.json").read_text())
    changed["value"] = 10
    (other / "square-n3.json").write_text(json.dumps(changed))
    refused = run_command(f"python {script} collect --from {other}", here)
    assert refused.returncode != 0 and "two different results of square/n3" in refused.stderr
    assert json.loads((here / "results" / "squares" / "square-n3.json").read_text())["value"] == 9


def test_cpu_model_is_read_from_proc_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU @ 2.00GHz\n")
    assert cpu_model(cpuinfo) == "Example CPU @ 2.00GHz"
    assert cpu_model(tmp_path / "missing")  # falls back to what platform knows


def test_a_finished_student_is_evaluated_only_with_the_settings_its_train_unit_recorded(
    tmp_path: Path,
) -> None:
    """A test unit may reuse a student in ``work`` only where the committed train unit
    recorded the run's settings now: a student trained at a learning rate no longer
    selected is refused, naming its folder, not evaluated under the new one; a rerun
    does its work in ``work/rerun/`` (and first deletes a finished run an earlier rerun
    left there, so that it trains again)."""
    store = ResultStore(tmp_path / "out", tmp_path / "work")
    settings = {"lr": 0.04, "epochs": 30, "seed": 0, "options": {"warmup": (1, 2)}}
    assert store.trained_student("final-s0", settings) is None  # nothing trained
    student = tmp_path / "work" / "final-s0" / "student.pt"
    student.parent.mkdir(parents=True)
    student.write_bytes(b"weights")
    assert store.trained_student("final-s0", settings) is None  # trained, not recorded
    store.record("train", "final-s0", {"run": {**settings, "method": "sat"}}, 1.0)
    assert store.trained_student("final-s0", settings) == student  # tuples stored as lists
    with pytest.raises(ValueError, match=r"lr: 0.04 recorded, 0.015 now.*delete .*final-s0"):
        store.trained_student("final-s0", {**settings, "lr": 0.015})
    assert student.read_bytes() == b"weights"  # refused, not removed
    # a setting added to the runs since the unit was recorded is not held against it
    assert store.trained_student("final-s0", {**settings, "new_setting": 1}) == student

    store.rerunning = True
    assert store.work_path("final-s0") == tmp_path / "work" / "rerun" / "final-s0"
    assert store.trained_student("final-s0", settings) is None  # a rerun trains first
    rerun_student = store.work_path("final-s0") / "student.pt"
    rerun_student.parent.mkdir(parents=True)
    rerun_student.write_bytes(b"an earlier rerun's")
    (rerun_student.parent / "checkpoint").mkdir()
    (rerun_student.parent / "checkpoint" / "checkpoint.pt").write_bytes(b"state")
    assert store.folder_to_train("final-s0") == rerun_student.parent
    assert not rerun_student.exists() and not (rerun_student.parent / "checkpoint").exists()
    assert student.read_bytes() == b"weights"  # the committed run's student is untouched
    (rerun_student.parent / "checkpoint").mkdir()
    (rerun_student.parent / "checkpoint" / "checkpoint.pt").write_bytes(b"unfinished")
    store.folder_to_train("final-s0")  # an unfinished rerun resumes: its checkpoint is kept
    assert (rerun_student.parent / "checkpoint" / "checkpoint.pt").read_bytes() == b"unfinished"
    # finished by this process (a test unit's rerun): the AutoAttack unit rerun with it
    # evaluates that student; it was deleted and trained again
    rerun_student.write_bytes(b"this process's rerun")
    assert store.folder_to_train("final-s0") == rerun_student.parent
    assert rerun_student.read_bytes() == b"this process's rerun"
    later = ResultStore(tmp_path / "out", tmp_path / "work")  # another invocation: deleted
    later.rerunning = True
    later.folder_to_train("final-s0")
    assert not rerun_student.exists()

    # an evaluation's resumable state: kept while an interrupted rerun resumes it, deleted
    # once an earlier rerun finished the unit (its JSON is in rerun/), never outside a rerun
    state = store.evaluation_state("aa-final-s0.json", "autoattack", "final-s0")
    assert state == tmp_path / "work" / "rerun" / "aa-final-s0.json"
    state.write_text("chunks")
    assert store.evaluation_state("aa-final-s0.json", "autoattack", "final-s0").is_file()
    store.record("autoattack", "final-s0", {}, 1.0)  # into rerun/: that rerun finished
    assert not store.evaluation_state("aa-final-s0.json", "autoattack", "final-s0").exists()
    store.rerunning = False
    committed_state = store.evaluation_state("aa-final-s0.json", "autoattack", "final-s0")
    committed_state.write_text("chunks")
    store.record("autoattack", "final-s0", {}, 1.0)
    assert store.evaluation_state("aa-final-s0.json", "autoattack", "final-s0").is_file()


def test_a_file_recorded_before_only_existed_names_its_unit_alone() -> None:
    """81 of the study's 84 files record their phase's command (``--phase grid``), which
    skips every finished unit: the leaderboard's refusal of a reused unit quoted it as
    the way to rerun that unit. The unit alone is the script's ``run --only``."""
    from study_runner.execute import file_rerun_command

    phase = "python experiments/fashion_mnist_study.py --phase grid --threads 1 --report ''"
    script = "python experiments/fashion_mnist_study.py run --only "
    assert file_rerun_command({"command": phase, "unit": "train/grid-sat-lr0.04"}) == (
        script + "train/grid-sat-lr0.04 --threads 1"
    )
    # a final's training file is written by its test unit; the device is kept too
    final = phase.replace("grid", "final") + " --device cuda --out x"
    assert file_rerun_command({"command": final, "unit": "train/final-shipped-sat-s1"}) == (
        script + "test/final-shipped-sat-s1 --device cuda --threads 1"
    )
    named = script + "train/grid-sat-lr0.1"
    assert file_rerun_command({"command": named, "unit": "train/grid-sat-lr0.1"}) == named
    assert file_rerun_command({"unit": "train/grid-sat-lr0.1"}) == "the command that made it"


def test_provenance_says_unknown_and_dirty_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy without git recorded ``git_dirty: False`` (clean); a new untracked module in
    the code did not count; a run importing another checkout's ``dard_plugin`` recorded
    this checkout's commit. Unknown is None, the module counts, the run is refused."""
    import importlib

    provenance = importlib.import_module("study_runner.provenance")  # the module, not the function
    monkeypatch.setattr(provenance, "_git", lambda *args: "unknown")
    assert provenance.git_dirty() is None
    monkeypatch.undo()

    repo = tmp_path / "checkout"
    (repo / "dard_plugin").mkdir(parents=True)
    (repo / "dard_plugin" / "__init__.py").write_text("")
    for command in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
    ):
        subprocess.run(["git", *command], cwd=repo, check=True)
    monkeypatch.setattr(provenance, "REPO", repo)
    assert provenance.git_dirty() is False
    (repo / "results.json").write_text("{}")  # a result file outside the code: still clean
    assert provenance.git_dirty() is False
    (repo / "dard_plugin" / "new_method.py").write_text("")
    assert provenance.git_dirty() is True
    with pytest.raises(RuntimeError, match=f"outside this checkout \\({repo}\\).*PYTHONPATH"):
        provenance.check_code_location()  # dard_plugin comes from the repository under test
