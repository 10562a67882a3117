"""AutoAttack interrupted by SIGKILL and resumed, in one process and on one of two gloo
ranks under torchrun; the sharded report against the single-process one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "helpers"))
from evaluate_child import BATCH_SIZE, EPS, setup

from dard_plugin.evaluation import RobustnessReport, evaluate

CHILD = REPO_ROOT / "tests" / "helpers" / "evaluate_child.py"
SUITE_AND_AA = "clean,fgsm,bim,dpgd,pgd,apgd-ce"


def run_child(*args: str, torchrun: bool = False, env: dict[str, str] | None = None):
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    return subprocess.run(
        [*launcher, str(CHILD), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
    )


def read_report(path) -> RobustnessReport:
    return RobustnessReport.from_json(path.read_text())


@pytest.mark.slow  # three child processes, each importing torch and pyautoattack (~40 s)
def test_autoattack_killed_part_way_then_resumed_equals_uninterrupted(tmp_path) -> None:
    straight = run_child(str(tmp_path / "a.json"), str(tmp_path / "a-state.json"), "clean,apgd-ce")
    assert straight.returncode == 0, straight.stderr[-3000:]

    state = tmp_path / "b-state.json"
    killed = run_child(str(tmp_path / "b.json"), str(state), "clean,apgd-ce", "0", "2")
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "b.json").exists()
    kept = json.loads((tmp_path / "b-state.apgd-ce.json").read_text())["chunks"]
    assert sorted(kept, key=int) == ["0", "4"]  # 2 of 4 chunks done, the third interrupted
    assert not list(tmp_path.glob(".b-state*"))  # no temporary file left over

    resumed = run_child(str(tmp_path / "b.json"), str(state), "clean,apgd-ce")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = read_report(tmp_path / "a.json"), read_report(tmp_path / "b.json")
    assert 0.0 < a.per_attack["apgd-ce"] < 1.0  # a non-trivial case
    assert b.per_sample == a.per_sample and b.per_attack == a.per_attack
    assert b.robust_accuracy == a.robust_accuracy
    # the resumed run attacked only the chunks that were not done
    calls = [int((tmp_path / f"{n}.json.calls").read_text()) for n in "ab"]
    assert calls[1] < 0.7 * calls[0]


@pytest.mark.slow  # two torchrun launches of two processes each (~60 s)
def test_two_gloo_ranks_killed_resumed_equal_single_process(tmp_path) -> None:
    model, x, y = setup()
    single = evaluate(
        model,
        x,
        y,
        eps=EPS,
        attacks=SUITE_AND_AA.split(","),
        batch_size=BATCH_SIZE,
        verbose=False,
    )
    state = tmp_path / "state.json"
    # rank 1 dies in the middle of its AutoAttack shard (after 1 of its 2 chunks)
    killed = run_child(str(tmp_path / "r.json"), str(state), SUITE_AND_AA, "1", "1", torchrun=True)
    assert killed.returncode != 0 and not (tmp_path / "r.json").exists()
    rank1 = json.loads((tmp_path / "state.apgd-ce.rank1-of-2.json").read_text())["chunks"]
    assert list(rank1) == ["8"]  # rank 1 holds examples 8..15: its first chunk is done

    resumed = run_child(str(tmp_path / "r.json"), str(state), SUITE_AND_AA, torchrun=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    merged = read_report(tmp_path / "r.json")
    assert merged.world_size == 2 and merged.shards == [[0, 8], [8, 16]]
    # deterministic attacks, and (batch-seeded) PGD and chunked AutoAttack: per sample equal
    assert merged.per_sample == single.per_sample
    assert merged.per_attack == single.per_attack
    assert merged.clean_accuracy == single.clean_accuracy
    flags = torch.tensor([[c == "1" for c in v] for v in merged.per_sample.values()])
    assert merged.robust_accuracy == float(flags.all(dim=0).float().mean())
    assert 0.0 < merged.robust_accuracy < merged.clean_accuracy


@pytest.mark.slow  # two torchrun launches (~40 s)
@pytest.mark.parametrize("what", [pytest.param("data", marks=pytest.mark.extended), "model"])
def test_ranks_that_disagree_are_refused_before_work(tmp_path, what: str) -> None:
    done = run_child(
        str(tmp_path / "r.json"),
        str(tmp_path / "s.json"),
        "clean,apgd-ce",
        torchrun=True,
        env={"MISMATCH": what},
    )
    assert done.returncode != 0
    assert f"the ranks disagree on the {what} to evaluate" in done.stderr
    assert not list(tmp_path.glob("s.*"))  # no AutoAttack work started
