"""The first look's report (``fashion_mnist.py``): per result folder, the tables and the
plots, from the unit files alone. Its results are frozen (superseded by the study); this
regenerates the generated part of ``docs/results.md`` they back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fashion_mnist_runs import EPS, RUNS, RUNS_BY_NAME, STEP_COUNTS, SUITE_ATTACKS
from study_runner.report import pct, pyplot, replace_generated
from study_runner.store import load_units


def _suite_row(units: dict[str, dict[str, Any]], name: str) -> list[str]:
    suite = units.get(f"suite/{name}")
    aa = units.get(f"autoattack/{name}")
    per = suite["report"]["per_attack"] if suite else {}
    cells = [pct(suite["report"]["clean_accuracy"]) if suite else "—"]
    cells += [pct(per.get(a)) for a in SUITE_ATTACKS[1:]]
    cells.append(pct(suite["report"]["robust_accuracy"]) if suite else "—")
    cells.append(pct(aa["report"]["per_attack"].get("autoattack")) if aa else "—")
    return cells


SUITE_HEADER = (
    "| model | clean | FGSM | PGD-20 | T-PGD | BIM | DPGD | APGD-CE | APGD-T | "
    "worst case | AA standard |"
)


BEGIN, END = "<!-- fashion_mnist:begin -->", "<!-- fashion_mnist:end -->"
TABLE_RULE = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"


def result_folders(out: Path) -> list[Path]:
    """``out`` and its sibling result folders of this experiment (one per preset and
    machine: their units name a preset; the study's and the demo's folders beside them do
    not)."""
    folders = {out}
    if out.parent.is_dir():
        folders |= {
            d
            for d in out.parent.iterdir()
            if d.is_dir() and any("preset" in json.loads(p.read_text()) for p in d.glob("*.json"))
        }
    return sorted(folders)


def write_report(report_path: str | None, folders: list[Path]) -> None:
    """Rewrite the generated part of ``report_path`` (between the markers; a file without
    them gets them appended) from the JSON in ``folders``."""
    if not report_path:
        return
    sections = [_section(folder) for folder in folders if any(folder.glob("*.json"))]
    replace_generated(Path(report_path), BEGIN, END, "\n".join(sections))


def _section(folder: Path) -> str:
    units = load_units(folder)
    first = next(iter(units.values()))
    sizes = first["preset_sizes"]
    commands = sorted({u["command"] for u in units.values()})
    devices = sorted(
        {
            u["device_name"] if u["device"].startswith("cuda") else f"CPU ({u['threads']} threads)"
            for u in units.values()
        }
    )
    total = sum(u["seconds"] for u in units.values())
    lines = [
        f"### `{folder.name}`: preset `{first['preset']}` on {', '.join(devices)}",
        "",
        f"Size: {sizes['n_train']:,} training images, {sizes['epochs']} epochs, batch "
        f"{sizes['batch_size']}; evaluation on the first {sizes['n_eval']:,} test images "
        f"(AutoAttack standard on the first {sizes['n_aa']:,}); L-inf eps {EPS}; training "
        f"attacks 10 steps of eps/4. Units finished: {len(units)} of "
        f"{len(_all_unit_names())}, {total / 60:.1f} minutes of work in all. Raw JSON: "
        f"`{folder}/` (one file per unit, naming its command, device and time). "
        "Produced by: " + "; ".join(f"`{c}`" for c in commands) + ".",
        "",
        "Main comparison (accuracy %, higher is better; worst case = per sample over the "
        "eight columns before it):",
        "",
        SUITE_HEADER,
        TABLE_RULE,
        "| teacher (teacher-cnn, PGD-AT) | " + " | ".join(_suite_row(units, "teacher")) + " |",
    ]
    for run in RUNS:
        if run.group == "main":
            lines.append(f"| {run.label} | " + " | ".join(_suite_row(units, run.name)) + " |")
    lines += ["", "Seeds and learning-rate controls:", "", SUITE_HEADER, TABLE_RULE]
    for name in (
        "sat-s0",
        "sat-s1",
        "sat-lr0.01-s0",
        "dard-online-s0",
        "dard-online-s1",
        "dard-online-lr0.02-s0",
        "dard-online-lr0.05-s0",
    ):
        label = RUNS_BY_NAME[name].label + (", seed 0" if name.endswith("-s0") else "")
        lines.append(f"| {label} | " + " | ".join(_suite_row(units, name)) + " |")
    lines += [
        "",
        "DARD ablations (online targets, seed 0):",
        "",
        SUITE_HEADER,
        TABLE_RULE,
        "| DARD, adv_weight 0.5 (the paper's) | "
        + " | ".join(_suite_row(units, "dard-online-s0"))
        + " |",
    ]
    for run in RUNS:
        if run.group == "ablation":
            lines.append(f"| {run.label} | " + " | ".join(_suite_row(units, run.name)) + " |")
    lines += [
        "",
        "DPGD vs PGD-CE strength (accuracy %, steps of eps/4, no random start):",
        "",
        "| model | attack | " + " | ".join(f"{s} steps" for s in STEP_COUNTS) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in STEP_COUNTS) + " |",
    ]
    for name in ("teacher", "sat-s0"):
        study = units.get(f"steps/{name}")
        for attack in ("dpgd", "pgd-ce"):
            cells = (
                [pct(study["accuracy"][attack][str(s)]) for s in STEP_COUNTS]
                if study
                else ["—"] * len(STEP_COUNTS)
            )
            lines.append(f"| {name} | {attack} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Training time (sum of the epochs' seconds, without the per-epoch validation; "
        "a run resumed after an interruption counts each epoch once):",
        "",
        "| run | seconds | final loss | final validation clean / PGD-10 (%) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for run in RUNS:
        train = units.get(f"train/{run.name}")
        if train:
            last = train["history"][-1]
            seconds = sum(record["seconds"] for record in train["history"])
            lines.append(
                f"| {run.name} | {seconds:.0f} | {last['loss']:.4f} | "
                f"{pct(last.get('clean_accuracy'))} / {pct(last.get('pgd_accuracy'))} |"
            )
    lines += ["", *_plots(folder, units), ""]
    return "\n".join(lines)


def _plots(folder: Path, units: dict[str, dict[str, Any]]) -> list[str]:
    """PNG plots beside the JSON; none (and a note) without matplotlib."""
    try:
        plt = pyplot()
    except ImportError:
        return ["(Plots need matplotlib: `pip install dard-plugin[plots]`.)"]
    links = []
    names = [("teacher", "teacher")] + [(run.name, run.label) for run in RUNS]
    rows = [
        (label, units[f"suite/{name}"]["report"])
        for name, label in names
        if f"suite/{name}" in units
    ]
    if rows:
        figure, axis = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
        positions = range(len(rows))
        axis.barh(
            [p + 0.2 for p in positions],
            [100 * r["clean_accuracy"] for _, r in rows],
            height=0.4,
            label="clean",
        )
        axis.barh(
            [p - 0.2 for p in positions],
            [100 * r["robust_accuracy"] for _, r in rows],
            height=0.4,
            label="worst case (8 attacks)",
        )
        axis.set_yticks(list(positions), [label for label, _ in rows], fontsize=8)
        axis.invert_yaxis()
        axis.set_xlabel(f"accuracy (%), L-inf eps {EPS}")
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8)
        figure.tight_layout()
        figure.savefig(folder / "comparison.png", dpi=110)
        plt.close(figure)
        links.append(f"![clean and worst-case accuracy]({_relative(folder)}/comparison.png)")
    studies = {
        name: units[f"steps/{name}"] for name in ("teacher", "sat-s0") if f"steps/{name}" in units
    }
    if studies:
        figure, axis = plt.subplots(figsize=(6, 4))
        for name, study in studies.items():
            for attack, style in (("dpgd", "-o"), ("pgd-ce", "--s")):
                axis.plot(
                    STEP_COUNTS,
                    [100 * study["accuracy"][attack][str(s)] for s in STEP_COUNTS],
                    style,
                    label=f"{name}, {attack}",
                )
        axis.set_xscale("log")
        axis.set_xlabel("attack steps (eps/4 each)")
        axis.set_ylabel("robust accuracy (%)")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(folder / "steps.png", dpi=110)
        plt.close(figure)
        links.append(f"![DPGD vs PGD-CE by steps]({_relative(folder)}/steps.png)")
    return links


def _relative(folder: Path) -> str:
    """The folder as seen from docs/results.md (its usual report)."""
    parts = folder.parts
    return "/".join(parts[parts.index("docs") + 1 :]) if "docs" in parts else str(folder)


def _all_unit_names() -> list[str]:
    names = [f"{kind}/{run.name}" for run in RUNS for kind in ("train", "suite", "autoattack")]
    names += ["suite/teacher", "autoattack/teacher", "steps/teacher", "steps/sat-s0"]
    return names
