"""Regenerate ``dard_plugin/teachers/robustbench_zoo.json`` from RobustBench's own
``model_info`` files at one commit of a git clone of github.com/RobustBench/robustbench
(robustbench's wheel does not ship them).

    git clone https://github.com/RobustBench/robustbench /tmp/robustbench
    python scripts/robustbench_zoo.py /tmp/robustbench [--commit SHA]

The entries are the table's present names and its ``missing`` ones (the installed
robustbench's zoo names). Each keeps RobustBench's fields: ``clean_acc``,
``autoattack_acc``, ``external`` (an adaptive attack's robust accuracy, where one was
run), ``architecture``, ``venue``, ``paper``, ``link``, ``eps``, ``additional_data``, and
``unreliable`` where RobustBench sets it. ``list_teachers`` ranks by the best known robust
accuracy, ``min(autoattack_acc, external)``, as RobustBench's leaderboard does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

TABLE = Path(__file__).resolve().parents[1] / "dard_plugin" / "teachers" / "robustbench_zoo.json"
FIELDS = ("architecture", "venue", "paper", "link", "eps", "additional_data")


def number(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path, help="a git clone of RobustBench/robustbench")
    parser.add_argument("--commit", default="HEAD")
    args = parser.parse_args()

    def git(*command: str) -> str:
        return subprocess.run(
            ["git", "-C", str(args.repo), *command], capture_output=True, text=True, check=True
        ).stdout

    commit = git("rev-parse", args.commit).strip()
    date = git("log", "-1", "--format=%ad", "--date=short", commit).strip()
    table = json.loads(TABLE.read_text())
    names = {
        (dataset, threat): sorted({*entries, *table["missing"].get(dataset, {}).get(threat, [])})
        for dataset, threats in table["models"].items()
        for threat, entries in threats.items()
    }
    models: dict[str, dict[str, dict[str, Any]]] = {}
    absent, unreliable = [], []
    for (dataset, threat), entries in names.items():
        for name in entries:
            key = f"{dataset}/{threat}/{name}"
            try:
                info = json.loads(git("show", f"{commit}:model_info/{key}.json"))
            except subprocess.CalledProcessError:
                absent.append(key)
                continue
            entry: dict[str, Any] = {
                "clean_acc": number(info.get("clean_acc")),
                "autoattack_acc": number(info.get("autoattack_acc", info.get("AA"))),
            }
            if number(info.get("external")) is not None:
                entry["external"] = number(info["external"])
            if info.get("name"):
                entry["paper"] = info["name"].strip()  # model_info's title field
            entry.update({field: info[field] for field in FIELDS if field in info})
            if info.get("unreliable"):
                unreliable.append(key)
            models.setdefault(dataset, {}).setdefault(threat, {})[name] = entry
    table["source"] = (
        f"RobustBench model_info (github.com/RobustBench/robustbench) at {commit} ({date}), "
        "by scripts/robustbench_zoo.py; accuracies in percent"
    )
    table["models"] = models
    table["missing"] = {d: {t: [] for t in threats} for d, threats in table["missing"].items()}
    for key in absent:
        dataset, threat, name = key.split("/")
        table["missing"].setdefault(dataset, {}).setdefault(threat, []).append(name)
    table["notes"] = {
        "model_info_commit": commit,
        "unreliable_flag_true": unreliable,
        "explanation": (
            "Every entry is RobustBench's model_info file at model_info_commit. 'external' "
            "is a robust accuracy under an adaptive attack where RobustBench records one; "
            "RobustBench's leaderboard shows min(autoattack_acc, external), the best known "
            "robust accuracy, and list_teachers ranks by it. 'missing' lists zoo names of "
            "the installed robustbench without a model_info file at that commit."
        ),
    }
    TABLE.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{sum(len(t) for d in models.values() for t in d.values())} entries from {commit}")


if __name__ == "__main__":
    main()
