"""``benchmarks/gpu_smoke.py`` in its CPU ``--smoke`` mode, so the prepared GPU run cannot
rot between the sessions that have a GPU: every part runs on tiny models and writes its
JSON; the time budget skips what it has no time for and says so."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO_ROOT

PLAIN = ("sat", "ard", "rslad", "dard_online", "dard_cached")


def load_script() -> ModuleType:
    path = REPO_ROOT / "benchmarks" / "gpu_smoke.py"
    if str(path.parent) not in sys.path:  # its helper modules beside it, as when run as a script
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("gpu_smoke", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_smoke_mode_runs_every_part_and_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu_smoke.json"
    result = load_script().main(["--smoke", "--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result, default=str))
    assert result["environment"]["device"] == "cpu"
    assert result["environment"]["bf16_gemm_tflops_measured"] > 0
    flops = result["flops"]
    for name in PLAIN:
        assert flops[name]["step_gflops_per_image"] > 0, name
        row = result["configurations"][name]
        assert "error" not in row, row.get("error")
        assert row["images_per_second"] > 0
        assert row["tflops_achieved"] > 0
    # the methods' FLOPs in the order their work implies: SAT has no teacher; DARD online
    # adds the teacher's DPGD to the student's; cached moves the teacher into the build
    assert flops["sat"]["step_gflops_per_image"] < flops["ard"]["step_gflops_per_image"]
    assert flops["ard"]["step_gflops_per_image"] < flops["dard_online"]["step_gflops_per_image"]
    online, cached = flops["dard_online"], flops["dard_cached"]
    assert cached["step_gflops_per_image"] < online["step_gflops_per_image"]
    assert cached["cache_build_gflops_per_image"] > 0
    assert result["autoattack"]["images_done"] > 0
    assert result["profile"]["top_ops"]
    assert result["cache_builds"]["teacher_batch_4"]["images_per_second"] > 0
    # the compiled rows are skipped in --smoke, each with its reason
    skipped = {entry["name"]: entry["reason"] for entry in result["skipped"]}
    assert "dard_online_compiled" in skipped and "--smoke" in skipped["dard_online_compiled"]
    assert "dard_online_no_channels_last" in result["configurations"]


def test_budget_skips_the_rest_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "gpu_smoke.json"
    result = load_script().main(["--smoke", "--budget-s", "0", "--out", str(out)])
    written = json.loads(out.read_text())
    assert "environment" in written  # needs no budget
    skipped = {entry["name"] for entry in written["skipped"]}
    assert {"flops", "autoattack", "profile", *PLAIN} <= skipped
    assert written["configurations"] == {}
    assert result["total_seconds"] >= 0
