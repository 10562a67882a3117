"""Run by the tests as a separate process (alone or under torchrun): one ``evaluate`` of the
closed-form linear model on 16 prototype images, batch size 4.

    python evaluate_child.py REPORT_OUT STATE_PATH ATTACKS [KILL_RANK [KILL_AFTER_CHUNKS]]

With KILL_RANK >= 0, that rank SIGKILLs itself at its first forward pass after its
AutoAttack state holds KILL_AFTER_CHUNKS finished chunks (part-way through the evaluation).
``MISMATCH=data`` or ``MISMATCH=model`` changes rank 1's data or model. Rank 0 writes the
report to REPORT_OUT and the number of forward passes it made to REPORT_OUT.calls.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PrototypeLinear, make_prototype_data

from dard_plugin.evaluation import evaluate
from dard_plugin.evaluation.autoattack import AUTOATTACK_PARTS, state_file

EPS, BATCH_SIZE, N = 0.22, 4, 16


def setup() -> tuple[PrototypeLinear, torch.Tensor, torch.Tensor]:
    """The model and data of every run (also built by the tests for the reference)."""
    x, y, prototypes = make_prototype_data(n=32, noise=0.3)
    return PrototypeLinear(prototypes, scale=1.0).eval(), x[:N], y[:N]


def main() -> None:
    report_out, state_path, attacks = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
    kill_rank = int(sys.argv[4]) if len(sys.argv) > 4 else -1
    kill_after = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    torch.set_num_threads(1)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    model, x, y = setup()
    mismatch = os.environ.get("MISMATCH")
    if rank == 1 and mismatch == "data":
        y = y.clone()
        y[0] = (y[0] + 1) % 10
    if rank == 1 and mismatch == "model":
        with torch.no_grad():
            model.linear.bias.add_(1e-3)
    parts = next(
        (AUTOATTACK_PARTS if a == "autoattack" else (a,))
        for a in attacks
        if a == "autoattack" or a in AUTOATTACK_PARTS
    )
    own_state = state_file(state_path, parts, rank=rank, world_size=world)
    calls = 0

    def count_and_maybe_die(*_: object) -> None:
        nonlocal calls
        calls += 1
        finished = json.loads(own_state.read_text())["chunks"] if own_state.is_file() else {}
        if rank == kill_rank and len(finished) >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    model.register_forward_hook(count_and_maybe_die)
    report = evaluate(
        model,
        x,
        y,
        eps=EPS,
        attacks=attacks,
        batch_size=BATCH_SIZE,
        state_path=state_path,
        verbose=False,
        model_name="linear",
    )
    if rank == 0:
        report.to_json(report_out)
        Path(f"{report_out}.calls").write_text(str(calls))
    if distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
