"""The leaderboard's unit files, and the study's (``fashion_mnist_study.py``) where a unit's
recorded settings equal the leaderboard's: those units are read from the study's folder, not
rerun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leaderboard_design import FINAL_EPOCHS, GRID_EPOCHS, METHODS, STUDY_STUDENT, Run, selected_lr
from study_runner import ResultStore

# the rows the study also ran (on small-cnn, with the shipped teacher)
STUDY_TWINS = ("sat", "ard", "rslad", "dard", "dard-online")


class LinkedStore(ResultStore):
    """The leaderboard's unit files, and the study's where its settings are identical."""

    def __init__(self, out: Path, work: Path, study_out: Path, device: str) -> None:
        super().__init__(out, work, device=device)
        self.study_out = study_out

    def load(self, kind: str, name: str) -> dict[str, Any] | None:
        return super().load(kind, name) or self.linked(kind, name)

    def twin(self, kind: str, name: str) -> tuple[str, dict[str, Any]] | None:
        """The study's file name for this unit and the settings it must have recorded."""
        for row in STUDY_TWINS:
            grid = f"grid-{row}-{STUDY_STUDENT}-lr"
            if kind == "train" and name.startswith(grid):
                lr = float(name[len(grid) :])
                run = Run(name, row, STUDY_STUDENT, lr, GRID_EPOCHS, 0, METHODS[row][1])
                return f"train-grid-{row}-lr{lr:g}", run.study_settings()
            final = f"final-{row}-{STUDY_STUDENT}-s"
            if kind in ("train", "test") and name.startswith(final):
                lr = selected_lr(self.load, row, STUDY_STUDENT)
                if lr is None:
                    return None
                seed = int(name[len(final) :])
                run = Run(name, row, STUDY_STUDENT, lr, FINAL_EPOCHS, seed, METHODS[row][1])
                return f"{kind}-final-shipped-{row}-s{seed}", run.study_settings()
        return None

    def linked(self, kind: str, name: str) -> dict[str, Any] | None:
        twin = self.twin(kind, name)
        if twin is None:
            return None
        path = self.study_out / f"{twin[0]}.json"
        if not path.is_file():
            return None
        unit = json.loads(path.read_text())
        recorded = {key: unit.get("run", {}).get(key) for key in twin[1]}
        if recorded != twin[1]:
            return None
        return {**unit, "linked_from": str(path)}
