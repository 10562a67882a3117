"""Issue 13, "done when": an L2 RobustBench teacher loaded offline from its file, distilled
with DARD in L2, and the student evaluated with L2 AutoAttack, through the one public API.
The teacher is RobustBench's real ``Ding2020MMA`` architecture (CIFAR-10 L2 track,
WRN-28-4) with seeded random weights saved where ``robustbench.utils.load_model`` looks;
the images are CIFAR-shaped random data (no CIFAR-10 download offline)."""

from __future__ import annotations

import numpy as np
import torch

import dard_plugin
from dard_plugin.models import create
from dard_plugin.teachers.robustbench_compat import import_robustbench_utils

EPS = 0.5  # RobustBench's CIFAR-10 L2 budget
NAME = "Ding2020MMA"


def test_an_l2_robustbench_teacher_is_distilled_and_evaluated_in_l2(tmp_path) -> None:
    import_robustbench_utils()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(0)
    entry = model_dicts[BenchmarkDataset("cifar10")][ThreatModel("L2")][NAME]
    reference = entry["model"]().eval()
    path = tmp_path / "cifar10" / "L2" / f"{NAME}.pt"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    teacher = dard_plugin.load_teacher(
        NAME, dataset="cifar10", threat_model="L2", model_dir=tmp_path
    )
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (16,), generator=generator)
    with torch.no_grad():
        assert torch.allclose(teacher(x[:4]), reference(x[:4]), atol=1e-5)

    torch.manual_seed(1)
    student = create("resnet56", dataset="cifar10")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = dard_plugin.DARDTrainer(
        student,
        teacher,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.01),
        attack={"norm": "L2", "eps": EPS, "steps": 2},
        seed=0,
        verbose=False,
    )
    history = trainer.fit(x, y, batch_size=8, nb_epochs=1)
    assert trainer.attack_settings.norm == "L2" and trainer.attack_settings.eps == EPS
    assert np.isfinite(history[0]["loss"])
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())

    student.eval()
    report = dard_plugin.evaluate(
        student, x[:4], y[:4], eps=EPS, norm="L2", attacks=["clean", "dpgd", "autoattack"]
    )
    assert report.norm == "L2" and report.eps == EPS and report.n_examples == 4
    assert set(report.per_attack) == {"dpgd", "autoattack"}
    assert report.robust_accuracy <= min(report.clean_accuracy, *report.per_attack.values())
