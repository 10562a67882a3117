"""What DARD's adversarial soft labels hold, for each shipped teacher (issue 12, item 4).

For the first ``--n`` training images (no augmentation) and each teacher, the teacher's
own DPGD example ``x_T`` is made exactly as :class:`~dard_plugin.DARDTrainer` makes it
during training (``DARDTrainer.teacher_outputs``, the training attack's settings: L-inf
eps 0.1, step eps/4, 10 steps), and the script reports:

- ``fooled``: the share of images whose ``x_T`` the teacher misclassifies;
- ``q_adv[y]``: the mean mass ``softmax(T(x_T)/tau)`` puts on the true class, overall and
  where the teacher is fooled; ``q_nat[y]`` the same on the natural image;
- ``target on y``: the mean weight DARD's adversarial half puts on the true class,
  ``(1 - a) + a q_adv[y]`` (the CE term plus the KL term's target), against 1 for SAT.

No training, no test image. Compute (2 cores): about a minute per teacher.

    python experiments/adv_targets_analysis.py --n 2000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fashion_mnist_study_design import EPS, TEACHERS
from study_runner import REPO, command_line, provenance

from dard_plugin import DARDTrainer
from dard_plugin.data import load_dataset
from dard_plugin.models import create
from dard_plugin.teachers import load_teacher
from dard_plugin.training.checkpointing import write_json

OUT = REPO / "docs" / "results" / "fashion_mnist" / "adv-targets-analysis.json"


def analyse(teacher: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> dict:
    student = create("small-cnn", num_classes=10, dataset="fashion-mnist")
    trainer = DARDTrainer(
        student,
        teacher,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.01),
        attack={"norm": "Linf", "eps": EPS, "alpha": EPS / 4, "steps": 10},
        verbose=False,
    )
    tau, alpha = trainer.temperature, trainer.alpha
    nat, adv = [], []
    for start in range(0, x.shape[0], batch):
        out = trainer.teacher_outputs(x[start : start + batch], y[start : start + batch])
        nat.append(out["teacher_nat"])
        adv.append(out["teacher_adv"])
    logits_nat, logits_adv = torch.cat(nat), torch.cat(adv)
    q_nat = torch.softmax(logits_nat / tau, dim=1).gather(1, y[:, None]).squeeze(1)
    q_adv = torch.softmax(logits_adv / tau, dim=1).gather(1, y[:, None]).squeeze(1)
    fooled = logits_adv.argmax(1) != y
    wrong_nat = logits_nat.argmax(1) != y
    return {
        "temperature": tau,
        "alpha": alpha,
        "n": int(x.shape[0]),
        "teacher_wrong_on_x": float(wrong_nat.float().mean()),
        "fooled_on_x_T": float(fooled.float().mean()),
        "q_nat_y_mean": float(q_nat.mean()),
        "q_adv_y_mean": float(q_adv.mean()),
        "q_adv_y_mean_where_fooled": float(q_adv[fooled].mean()) if fooled.any() else None,
        "q_adv_y_mean_where_not_fooled": float(q_adv[~fooled].mean()),
        "adv_target_on_y_mean": float(((1 - alpha) + alpha * q_adv).mean()),
        "nat_target_on_y_mean": float(((1 - alpha) + alpha * q_nat).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = load_dataset("fashion-mnist", n_examples=args.n)
    started = time.perf_counter()
    results = {
        key: {
            "teacher": name,
            **analyse(load_teacher(name, dataset="fashion-mnist"), x, y, args.batch_size),
        }
        for key, name in TEACHERS.items()
    }
    write_json(
        args.out,
        {
            "command": command_line(),
            "data": f"training images 0..{args.n - 1}, no augmentation",
            "seconds": time.perf_counter() - started,
            "provenance": provenance(),
            "teachers": results,
        },
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
