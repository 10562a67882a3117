"""Run by the tests as a separate process: a short training with checkpoints.

    python train_child.py CHECKPOINT_DIR WEIGHTS_OUT KILL_AT_ATTACK_CALL [METHOD]

KILL_AT_ATTACK_CALL > 0 makes the process SIGKILL itself at that student attack call
(mid-epoch); -1 runs to the end. Under torchrun, every rank writes WEIGHTS_OUT.rank<r>.
METHOD (default dard) is a name of the method registry; other than DARD (which is given a
counting DPGD callable), each method crafts its examples with its own attack, counted.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PrototypeLinear, TinyCNN, make_prototype_data

from dard_plugin.attacks.dpgd import dpgd
from dard_plugin.training import METHODS, DARDTrainer, build_trainer


def main() -> None:
    checkpoint_dir, weights_out, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    method = sys.argv[4] if len(sys.argv) > 4 else "dard"
    torch.set_num_threads(1)
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if distributed else 0
    x, y, prototypes = make_prototype_data(n=48)
    torch.manual_seed(0)
    student = TinyCNN()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [2], gamma=0.1)
    calls = 0

    def attack(model, images, labels, generator):
        nonlocal calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return dpgd(model, images, labels, eps=0.1, alpha=0.05, steps=2)

    if method == "dard":
        trainer = DARDTrainer(
            student,
            PrototypeLinear(prototypes).eval(),
            optimizer=optimizer,
            attack=attack,
            checkpoint_dir=checkpoint_dir,
            resume=True,
            eval_eps=0.1,
            verbose=False,
        )
    else:
        torch.manual_seed(1)
        natural = TinyCNN().eval() if METHODS[method].needs_natural_teacher else None
        trainer = build_trainer(
            method,
            student,
            PrototypeLinear(prototypes).eval(),
            natural_teacher=natural,
            optimizer=optimizer,
            attack={"eps": 0.1, "alpha": 0.05, "steps": 2},
            checkpoint_dir=checkpoint_dir,
            resume=True,
            verbose=False,
        )
        craft = trainer.craft_adversarial

        def counted(batch, targets):  # the method's own attack, counted for the kill
            nonlocal calls
            calls += 1
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return craft(batch, targets)

        trainer.craft_adversarial = counted  # type: ignore[method-assign]
    history = trainer.fit(
        x, y, batch_size=16, nb_epochs=3, scheduler=scheduler, validation_data=(x[:16], y[:16])
    )
    suffix = f".rank{rank}" if distributed else ""
    gc.collect()
    wrappers = [o for o in gc.get_objects() if isinstance(o, DistributedDataParallel)]
    history.append({"ddp_wrappers_alive": len(wrappers)})
    torch.save(student.state_dict(), f"{weights_out}{suffix}")
    Path(f"{weights_out}{suffix}.json").write_text(json.dumps(history))
    if distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
